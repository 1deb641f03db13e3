//! Builds the application from settings: store, amoCRM client, router, worker.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use amocrm_webhook::{Limits, Parser};
use anyhow::Context;
use axum::Router;
use axum::routing::{get, post};
use jarvis_store::DynStore;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tower_http::trace::TraceLayer;

use crate::amo;
use crate::config::{HttpSettings, Settings};
use crate::routes;
use crate::spool::{DrainTarget, Spool};
use crate::state::AppState;
use crate::task::{stopped, supervise};
use crate::telemetry;
pub use crate::telemetry::redact_url;
use crate::worker::Worker;

/// The HTTP surface.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/amocrm/webhook/{secret}", post(routes::webhook::receive))
        .route(
            "/amocrm/process-webhook",
            post(routes::process_webhook::process),
        )
        .route("/healthz", get(routes::health::healthz))
        .route("/readyz", get(routes::health::readyz))
        .route("/metrics", get(routes::health::metrics))
        .route("/status", get(routes::status::page))
        // The webhook route enforces its own limit (and keeps the refused body); this caps the others.
        .layer(axum::extract::DefaultBodyLimit::max(
            state.parser_limits.max_body_bytes.max(1024 * 1024),
        ))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
                // The path holds the webhook secret: log the route, never the path.
                let route = req
                    .extensions()
                    .get::<axum::extract::MatchedPath>()
                    .map(|p| p.as_str())
                    .unwrap_or_default();
                let request_id = req
                    .extensions()
                    .get::<telemetry::RequestId>()
                    .map(|id| id.0.as_str())
                    .unwrap_or_default();
                tracing::info_span!("http", method = %req.method(), route = %route, request_id = %request_id)
            }),
        )
        // Outermost, so the id is known to the span above and echoed on every answer.
        .layer(axum::middleware::from_fn(telemetry::request_id))
        .with_state(std::sync::Arc::new(state))
}

/// Which parts of the service run in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunParts {
    pub http: bool,
    pub worker: bool,
}

impl Default for RunParts {
    fn default() -> Self {
        Self {
            http: true,
            worker: true,
        }
    }
}

/// A built, not yet running, service.
pub struct Application {
    settings: Settings,
    state: AppState,
    parts: RunParts,
    listener: Option<TcpListener>,
    local_addr: Option<SocketAddr>,
}

impl Application {
    /// Opens and migrates the store, builds the amoCRM client (when credentials are set) and binds the
    /// listener (when `parts.http`).
    pub async fn build(settings: Settings, parts: RunParts) -> anyhow::Result<Self> {
        let store = open_store_with(
            &settings.database_url,
            settings.startup_wait,
            settings.db_pool.clone(),
        )
        .await?;
        if parts.worker {
            // Leases and the account lock need a real session: refuse to start behind a pooler.
            store.check_session().await?;
        }
        let spool = match (&settings.spool, parts.http) {
            (Some(spool), true) => {
                Some(Spool::open(&spool.dir, spool.max_bytes).with_context(|| {
                    format!("opening the spool directory {}", spool.dir.display())
                })?)
            }
            _ => None,
        };
        let client = amo::build_client(&settings.amocrm, &store)?;
        let linker = crate::link::Linker::new(store.clone(), settings.link.clone()).map(Arc::new);
        let parser_limits = Limits {
            max_body_bytes: settings.max_body_bytes,
            ..Limits::default()
        };
        let settle_on_receipt =
            client.is_none() && linker.is_none() && parts.worker && store.settles_inserts();
        let state = AppState {
            settle_on_receipt,
            store,
            parser: Arc::new(Parser::new(parser_limits)),
            parser_limits,
            webhook_secret: settings.webhook_secret.clone(),
            api_token: settings.api_token.clone(),
            account_id: settings.account_id,
            metadata_fields: settings.metadata_fields.clone().into(),
            wake: Arc::new(Notify::new()),
            storing: Arc::default(),
            metrics: telemetry::metrics_handle(),
            client,
            account_key: settings.amocrm.account_key(),
            activity: Arc::new(crate::activity::Activity::new()),
            amocrm: settings.amocrm.clone(),
            gaps: Arc::new(crate::catch_up::GapTracker::new(
                settings.amocrm.auth.is_some(),
            )),
            linker,
            http: settings.http.clone(),
            spool,
        };
        metrics::gauge!(crate::metrics::names::API_MODE).set(if state.client.is_some() {
            1.0
        } else {
            0.0
        });
        let budget = |b: Option<u32>| b.map(f64::from).unwrap_or(0.0);
        metrics::gauge!(crate::metrics::names::API_BUDGET_PER_MINUTE)
            .set(budget(settings.amocrm.rate_per_minute));
        metrics::gauge!(crate::metrics::names::API_BUDGET_PER_HOUR)
            .set(budget(settings.amocrm.rate_per_hour));
        if parts.http || parts.worker {
            // Gaps: the downtime before this start, and the first heartbeat. Bounded: a slow
            // database must not hold the start (the heartbeat's silence tells the downtime later).
            let start = crate::catch_up::record_start(&state.store, state.client.is_some());
            match tokio::time::timeout(std::time::Duration::from_secs(5), start).await {
                Ok(Err(e)) => tracing::warn!(error = %e, "recording the start failed"),
                Err(_) => tracing::warn!("recording the start timed out"),
                Ok(Ok(_)) => {}
            }
        }
        let (listener, local_addr) = if parts.http {
            let listener = TcpListener::bind(settings.listen)
                .await
                .with_context(|| format!("listening on {}", settings.listen))?;
            let addr = listener.local_addr()?;
            (Some(listener), Some(addr))
        } else {
            (None, None)
        };
        Ok(Self {
            settings,
            state,
            parts,
            listener,
            local_addr,
        })
    }

    /// The bound address (port 0 in settings gives a random free port).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Runs until `shutdown` completes: stops accepting, lets in-flight requests finish, lets the worker
    /// finish its batch and release what it still holds.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let heartbeat_task = tokio::spawn(crate::catch_up::run_heartbeat(
            self.state.store.clone(),
            self.state.gaps.clone(),
            stop_rx.clone(),
        ));
        let catch_up_task = self.parts.worker.then(|| {
            tokio::spawn(crate::worker::catch_up::run(
                self.state.clone(),
                self.settings.clone(),
                stop_rx.clone(),
            ))
        });
        let worker_task = if self.parts.worker {
            let (state, settings, stop) = (
                self.state.clone(),
                self.settings.worker.clone(),
                stop_rx.clone(),
            );
            let make = move || Worker::new(state.clone(), settings.clone(), stop.clone()).run();
            Some(tokio::spawn(supervise(
                make,
                stop_rx.clone(),
                WORKER_RESTART_DELAY,
            )))
        } else {
            None
        };
        let server_task = self.listener.map(|listener| {
            let app = router(self.state.clone());
            tokio::spawn(serve(
                listener,
                app,
                self.settings.http.clone(),
                stop_rx.clone(),
            ))
        });
        // The spool is durable and its drain idempotent: stopping the drainer anywhere loses nothing.
        let drainer = self.state.spool.clone().map(|spool| {
            let target = DrainTarget {
                store: self.state.store.clone(),
                parser: self.state.parser.clone(),
                events: routes::webhook::new_events,
                wake: self.state.wake.clone(),
            };
            tokio::spawn(spool.run_drainer(target, stop_rx.clone()))
        });
        if let Some(addr) = self.local_addr {
            let spool = self
                .state
                .spool
                .as_ref()
                .map(|s| s.dir().display().to_string());
            tracing::info!(%addr, database = %redact_url(&self.settings.database_url), spool = spool.as_deref().unwrap_or("off"), "listening");
        }
        if self.parts.worker && behind_pooler(&self.settings.database_url) {
            tracing::warn!(
                "DATABASE_URL looks like a transaction pooler (a `-pooler` host or port 6432); the \
                 worker's per-account lock is a session lock that such a pooler does not keep, so two \
                 instances could both call amoCRM: use the direct connection string"
            );
        }
        shutdown.await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
        if let Some(task) = server_task {
            task.await.context("server task")?;
        }
        if let Some(task) = drainer {
            task.abort();
        }
        if let Some(task) = worker_task {
            task.await.context("worker task")?;
        }
        if let Some(task) = catch_up_task {
            let _ = task.await;
        }
        let _ = heartbeat_task.await;
        crate::catch_up::record_stop(&self.state.store, &self.state.gaps).await;
        if let Some(client) = &self.state.client {
            amo::save_pending_tokens(client).await?;
        }
        Ok(())
    }
}

/// Serves HTTP/1.1 on `listener` until `stop` turns true, within the limits: a header read timeout, an
/// idle timeout for keep-alive connections, at most `max_connections` at once (the next clients wait
/// in the listen backlog). On stop, accepting ends, idle connections close at once, requests in flight
/// get up to the shutdown grace to be answered, and whatever is still open then is closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpSettings,
    mut stop: watch::Receiver<bool>,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let (close_tx, close_rx) = watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            _ = stopped(&mut stop) => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors or a connection reset before it was taken: keep
                    // serving the connections already open and try again shortly.
                    tracing::warn!(error = %error, "accepting a connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut stop) => break,
        };
        while connections.try_join_next().is_some() {}
        connections.spawn(serve_connection(
            stream,
            app.clone(),
            builder.clone(),
            limits.idle_timeout,
            close_rx.clone(),
            permit,
        ));
    }
    drop(listener);
    let _ = close_tx.send(true);
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            grace_secs = limits.shutdown_grace.as_secs_f64(),
            "closing the connections still open after the shutdown grace"
        );
        connections.shutdown().await;
    }
}

/// Requests in flight on one connection and when the last one ended.
struct ConnectionActivity {
    in_flight: std::sync::atomic::AtomicUsize,
    last: std::sync::Mutex<tokio::time::Instant>,
}

impl ConnectionActivity {
    fn in_flight(&self) -> usize {
        self.in_flight.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Completes once the connection has had no request in flight for `idle`.
    async fn idle_for(&self, idle: std::time::Duration) {
        loop {
            let since = self
                .last
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .elapsed();
            if self.in_flight() == 0 && since >= idle {
                return;
            }
            tokio::time::sleep(idle.saturating_sub(since).max(idle / 10)).await;
        }
    }
}

/// Counts a request in flight until dropped (when its response is ready, or it is abandoned).
struct InFlight(Arc<ConnectionActivity>);

impl InFlight {
    fn begin(activity: Arc<ConnectionActivity>) -> Self {
        activity
            .in_flight
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        InFlight(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        *self.0.last.lock().unwrap_or_else(|p| p.into_inner()) = tokio::time::Instant::now();
        self.0
            .in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    app: Router,
    builder: hyper::server::conn::http1::Builder,
    idle_timeout: std::time::Duration,
    mut close: watch::Receiver<bool>,
    _permit: tokio::sync::OwnedSemaphorePermit,
) {
    use tower::ServiceExt;

    metrics::gauge!(crate::telemetry::names::HTTP_CONNECTIONS).increment(1.0);
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(ConnectionActivity {
        in_flight: Default::default(),
        last: std::sync::Mutex::new(tokio::time::Instant::now()),
    });
    let requests = activity.clone();
    let service = hyper::service::service_fn(move |request| {
        let in_flight = InFlight::begin(requests.clone());
        let app = app.clone();
        async move {
            let response = app.oneshot(request).await;
            drop(in_flight);
            response
        }
    });
    let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(error = %error, "HTTP connection ended with an error");
                }
                break;
            }
            _ = activity.idle_for(idle_timeout) => {
                metrics::counter!(crate::telemetry::names::HTTP_IDLE_CLOSED).increment(1);
                break;
            }
            _ = stopped(&mut close), if !closing => {
                closing = true;
                // No request in flight: nothing to settle, close now (a half-sent request included).
                if activity.in_flight() == 0 {
                    break;
                }
                conn.as_mut().graceful_shutdown();
            }
        }
    }
    metrics::gauge!(crate::telemetry::names::HTTP_CONNECTIONS).decrement(1.0);
}

/// How long a worker that panicked waits before it starts again.
const WORKER_RESTART_DELAY: std::time::Duration = std::time::Duration::from_secs(1);

/// Opens and migrates the store. A database that is not reachable yet (a restart, a serverless database
/// waking up) is retried for up to `wait`; any other error is final.
pub async fn open_store(url: &str, wait: std::time::Duration) -> anyhow::Result<DynStore> {
    open_store_with(url, wait, jarvis_store::PoolSettings::default()).await
}

/// [`open_store`] with explicit pool settings.
pub async fn open_store_with(
    url: &str,
    wait: std::time::Duration,
    pool: jarvis_store::PoolSettings,
) -> anyhow::Result<DynStore> {
    let deadline = std::time::Instant::now() + wait;
    let mut delay = std::time::Duration::from_millis(250);
    loop {
        let attempt = async {
            let store = jarvis_store::connect_with(url, pool.clone()).await?;
            store.migrate().await?;
            Ok::<_, jarvis_store::Error>(store)
        };
        match attempt.await {
            Ok(store) => return Ok(store),
            Err(e) if e.is_unavailable() && std::time::Instant::now() + delay < deadline => {
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "database not reachable yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(5));
            }
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context(format!("opening the database {}", redact_url(url))));
            }
        }
    }
}

/// Whether a PostgreSQL URL points at a connection pooler in transaction mode: Neon's `-pooler`
/// hosts, or PgBouncer's usual port.
pub fn behind_pooler(url: &str) -> bool {
    match url::Url::parse(url) {
        Ok(parsed) if parsed.scheme().starts_with("postgres") => {
            parsed.host_str().is_some_and(|host| {
                host.split('.')
                    .next()
                    .is_some_and(|label| label.ends_with("-pooler"))
            }) || parsed.port() == Some(6432)
        }
        _ => false,
    }
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poolers_are_recognised() {
        assert!(behind_pooler(
            "postgres://u:p@ep-cool-term-123456-pooler.eu-central-1.aws.neon.tech/db?sslmode=require"
        ));
        assert!(behind_pooler("postgresql://u@10.0.0.5:6432/db"));
        assert!(!behind_pooler(
            "postgres://u:p@ep-cool-term-123456.eu-central-1.aws.neon.tech/db?sslmode=require"
        ));
        assert!(!behind_pooler("postgres://postgres@127.0.0.1:5432/test"));
        assert!(!behind_pooler("sqlite://jarvis.db"));
    }
}
