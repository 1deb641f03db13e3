//! Shared support for the end-to-end tests: spawn the real service on a random port against a fresh
//! database (PostgreSQL schema or SQLite file), with wiremock standing in for amoCRM.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use jarvis_service::{Application, RunParts, Settings};
use jarvis_store::DynStore;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const SECRET: &str = "e2e-webhook-secret-0123456789";
pub const API_TOKEN: &str = "e2e-api-token";

/// Which database the service runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// A fresh database URL for the backend, or `None` when PostgreSQL is unreachable outside CI (the
/// store's test support panics instead when `CI=true`).
pub async fn fresh_database(backend: Backend) -> Option<(String, Option<tempdir::Guard>)> {
    match backend {
        Backend::Postgres => jarvis_store::testing::fresh_postgres_url()
            .await
            .map(|url| (url, None)),
        Backend::Sqlite => {
            let guard = tempdir::Guard::new();
            let url = format!("sqlite://{}", guard.path().join("jarvis.db").display());
            Some((url, Some(guard)))
        }
    }
}

/// A temporary directory removed on drop (no extra dependency for one directory).
pub mod tempdir {
    use std::path::{Path, PathBuf};

    pub struct Guard(PathBuf);

    impl Guard {
        pub fn new() -> Self {
            let dir = std::env::temp_dir().join(format!(
                "jarvis-e2e-{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            Guard(dir)
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Default for Guard {
        fn default() -> Self {
            Self::new()
        }
    }

    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A running service.
pub struct TestApp {
    pub base: String,
    pub store: DynStore,
    /// The service's count of webhooks being stored (`AppState::storing`).
    pub storing: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    pub http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    _dir: Option<tempdir::Guard>,
}

/// Settings for a test: the database, a random port, the webhook secret; `extra` adds or overrides.
pub fn test_env(database_url: &str, extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert("DATABASE_URL".into(), database_url.to_string());
    env.insert("JARVIS_LISTEN".into(), "127.0.0.1:0".into());
    env.insert("AMOCRM_WEBHOOK_SECRET".into(), SECRET.into());
    env.insert("JARVIS_API_TOKEN".into(), API_TOKEN.into());
    env.insert("JARVIS_METADATA_FIELDS".into(), "rentprog_id=771001".into());
    env.insert("JARVIS_BATCH_WINDOW_MS".into(), "50".into());
    for (k, v) in extra {
        env.insert(k.to_string(), v.to_string());
    }
    env
}

impl TestApp {
    /// Spawns the service on `backend`; `None` when the backend is unavailable outside CI.
    pub async fn spawn(backend: Backend, extra: &[(&str, &str)]) -> Option<TestApp> {
        let (url, dir) = fresh_database(backend).await?;
        Some(Self::spawn_on(&url, dir, extra).await)
    }

    /// Spawns the service on a given database URL.
    pub async fn spawn_on(
        url: &str,
        dir: Option<tempdir::Guard>,
        extra: &[(&str, &str)],
    ) -> TestApp {
        Self::spawn_parts(url, dir, extra, RunParts::default()).await
    }

    /// Spawns only some parts of the service (`serve --http-only` or `--worker-only`) on a given
    /// database URL. A worker-only app has no HTTP address.
    pub async fn spawn_parts(
        url: &str,
        dir: Option<tempdir::Guard>,
        extra: &[(&str, &str)],
        parts: RunParts,
    ) -> TestApp {
        let settings = Settings::from_sources(None, &test_env(url, extra)).expect("test settings");
        let app = Application::build(settings, parts)
            .await
            .expect("service builds");
        let addr = app
            .local_addr()
            .map(|addr| addr.to_string())
            .unwrap_or_default();
        let store = app.state().store.clone();
        let storing = app.state().storing.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run(async move {
            let _ = stopped.await;
        }));
        TestApp {
            base: format!("http://{addr}"),
            store,
            storing,
            http: reqwest::Client::new(),
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        }
    }

    pub fn webhook_url(&self) -> String {
        format!("{}/amocrm/webhook/{SECRET}", self.base)
    }

    /// Posts a form body to the webhook endpoint.
    pub async fn post_form(&self, body: impl Into<String>) -> reqwest::Response {
        self.http
            .post(self.webhook_url())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.into())
            .send()
            .await
            .expect("webhook request")
    }

    /// Waits until no event is pending (or panics after `timeout`).
    pub async fn wait_idle(&self, timeout: Duration) {
        let started = Instant::now();
        loop {
            let stats = self.store.stats().await.expect("stats");
            if stats.backlog == 0 {
                return;
            }
            assert!(
                started.elapsed() < timeout,
                "backlog still {} after {timeout:?}",
                stats.backlog
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Graceful stop: waits for the server and the worker to finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("service task").expect("service run");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// A webhook fixture body by file name (`lead_status.form`).
pub fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../amocrm-webhook/tests/fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// A TCP forwarder in front of a database, which a test can cut to simulate an outage.
pub struct Switch {
    pub port: u16,
    on: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
}

impl Switch {
    /// Forwards 127.0.0.1:<random> to `target` until cut.
    pub async fn start(target: &str) -> Switch {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let on = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let conns: std::sync::Arc<std::sync::Mutex<Vec<JoinHandle<()>>>> = Default::default();
        let target = target.to_string();
        let (on2, conns2) = (on.clone(), conns.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !on2.load(std::sync::atomic::Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                let handle = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                conns2.lock().unwrap().push(handle);
            }
        });
        Switch { port, on, conns }
    }

    /// Drops every connection and refuses new ones.
    pub fn cut(&self) {
        self.on.store(false, std::sync::atomic::Ordering::SeqCst);
        for handle in self.conns.lock().unwrap().drain(..) {
            handle.abort();
        }
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.on.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}
