//! What an operator relies on: the metrics the alert rules and the dashboard use exist on a fresh
//! start, the status page, request ids, plain logs, and the deploy files.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::TcpListener as StdTcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use jarvis_service::{Application, RunParts, Settings};
use jarvis_store::DynStore;
use tokio::sync::oneshot;

const SECRET: &str = "operations-webhook-secret-0123";
const TOKEN: &str = "operations-status-token";
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{ROOT}/amocrm-webhook/tests/fixtures/{name}")).unwrap()
}

/// The service in this process on a fresh SQLite file and a random port.
struct App {
    base: String,
    store: DynStore,
    http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

impl App {
    async fn start(extra: &[(&str, &str)], parts: RunParts) -> App {
        let dir = tempfile::tempdir().unwrap();
        let mut env = BTreeMap::new();
        let url = format!("sqlite://{}", dir.path().join("jarvis.db").display());
        env.insert("DATABASE_URL".to_string(), url);
        env.insert("JARVIS_LISTEN".into(), "127.0.0.1:0".into());
        env.insert("AMOCRM_WEBHOOK_SECRET".into(), SECRET.into());
        env.insert("JARVIS_BATCH_WINDOW_MS".into(), "20".into());
        for (k, v) in extra {
            env.insert(k.to_string(), v.to_string());
        }
        let settings = Settings::from_sources(None, &env).unwrap();
        let app = Application::build(settings, parts).await.unwrap();
        let base = format!("http://{}", app.local_addr().unwrap());
        let store = app.state().store.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run(async move {
            let _ = stopped.await;
        }));
        App {
            base,
            store,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            stop: Some(stop),
            task,
            _dir: dir,
        }
    }

    async fn post(&self, body: String, request_id: Option<&str>) -> reqwest::Response {
        let mut req = self
            .http
            .post(format!("{}/amocrm/webhook/{SECRET}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(id) = request_id {
            req = req.header("x-request-id", id);
        }
        req.send().await.unwrap()
    }

    async fn get(&self, path: &str, bearer: Option<&str>) -> reqwest::Response {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        req.send().await.unwrap()
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(30), &mut self.task)
            .await
            .expect("the service stops")
            .unwrap()
            .unwrap();
    }
}

/// Metric names in a Prometheus text exposition (`name{labels} value`).
fn series_names(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_owned())
        .collect()
}

/// Every `jarvis_*` metric name in a text.
fn jarvis_metrics_in(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("jarvis_") {
        let start = i + pos;
        let boundary =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start;
        while end < bytes.len()
            && (bytes[end].is_ascii_lowercase()
                || bytes[end].is_ascii_digit()
                || bytes[end] == b'_')
        {
            end += 1;
        }
        // `jarvis_*` in prose names no metric.
        if boundary && end > start + "jarvis_".len() {
            out.insert(text[start..end].to_owned());
        }
        i = end;
    }
    out
}

/// The `expr` of every target of every panel of a Grafana dashboard.
fn dashboard_queries(dashboard: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            out.push(target["expr"].as_str().expect("expr").to_owned());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_service_exports_every_metric_the_alerts_and_the_dashboard_use() {
    let app = App::start(&[], RunParts::default()).await;
    let resp = app.get("/metrics", None).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let exported = series_names(&text);

    // Everything the service declares, at zero, before any traffic.
    for name in jarvis_service::metrics::exported_series() {
        assert!(
            exported.contains(&name),
            "{name} is not exported on a fresh start:\n{text}"
        );
    }
    for name in &exported {
        assert!(
            name.starts_with("jarvis_"),
            "{name}: one prefix for every metric"
        );
    }
    assert!(
        text.contains(&format!(
            "jarvis_build_info{{version=\"{}\"",
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
    assert!(
        text.contains("jarvis_events_failed_total{kind=\"permanent\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("jarvis_webhook_requests_total{status=\"503\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("jarvis_webhooks_rejected_total{reason=\"malformed\"} 0"),
        "{text}"
    );

    let alerts =
        std::fs::read_to_string(format!("{ROOT}/deploy/prometheus/jarvis-alerts.yml")).unwrap();
    let used = jarvis_metrics_in(&alerts);
    assert!(used.len() >= 10, "the rules use {used:?}");
    for name in &used {
        assert!(
            exported.contains(name),
            "the alert rules use {name}, which is not exported"
        );
    }

    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{ROOT}/deploy/grafana/jarvis-dashboard.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() >= 10);
    for query in &queries {
        let used = jarvis_metrics_in(query);
        assert!(
            !used.is_empty(),
            "a panel query uses no jarvis metric: {query}"
        );
        for name in used {
            assert!(
                exported.contains(&name),
                "the dashboard uses {name}, which is not exported: {query}"
            );
        }
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_needs_the_token_and_shows_queue_deliveries_and_dead_events() {
    // No worker: the events stay where the test puts them.
    let parts = RunParts {
        http: true,
        worker: false,
    };
    let app = App::start(
        &[
            ("JARVIS_API_TOKEN", TOKEN),
            ("AMOCRM_RATE_PER_HOUR", "7000"),
        ],
        parts,
    )
    .await;

    for (path, bearer) in [
        ("/status", None),
        ("/status", Some("wrong-token")),
        ("/status?token=wrong-token", None),
    ] {
        assert_eq!(
            app.get(path, bearer).await.status(),
            401,
            "{path} {bearer:?}"
        );
    }

    let resp = app
        .post(fixture("leads_update_two.form"), Some("delivery-42"))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-request-id"], "delivery-42");
    let bad = app.post("leads%5Bupdate%ZZ=1".into(), None).await;
    assert_eq!(bad.status(), 400);
    let generated = bad.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(generated.len(), 16, "{generated}");

    // One of the two events dies.
    let claimed = app
        .store
        .claim_events(1, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let outcome = app
        .store
        .fail_event(
            claimed[0].id,
            "amoCRM said <b>no</b>",
            chrono::Utc::now(),
            1,
        )
        .await
        .unwrap();
    assert_eq!(outcome, jarvis_store::FailOutcome::Dead);

    let resp = app.get("/status", Some(TOKEN)).await;
    assert_eq!(resp.status(), 200);
    let headers = resp.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with("default-src 'none'")
    );
    assert_eq!(headers["referrer-policy"], "no-referrer");
    let page = resp.text().await.unwrap();
    for section in [
        "backlog",
        "rate",
        "deliveries",
        "dead",
        "api",
        "token",
        "worker",
        "gaps",
    ] {
        assert!(
            page.contains(&format!("<section id=\"{section}\">")),
            "{section} missing"
        );
    }
    assert!(page.contains("id=\"backlog-count\">1<"), "{page}");
    assert!(page.contains("id=\"dead-count\">1<"), "{page}");
    assert!(
        page.contains("amoCRM said &lt;b&gt;no&lt;/b&gt;"),
        "the error is escaped: {page}"
    );
    assert!(
        page.contains("delivery-42") && page.contains(&generated),
        "{page}"
    );
    assert!(page.contains("<svg id=\"chart\""), "{page}");
    assert!(
        page.contains("class=\"bar\""),
        "the stored events show in the chart: {page}"
    );
    assert!(page.contains("of 7000"), "the hourly budget: {page}");
    assert!(page.contains("No worker runs in this process"), "{page}");
    assert!(page.contains("Open gaps"), "{page}");
    // Self-contained: nothing to fetch.
    for external in ["<script", "<link", " src=", "url("] {
        assert!(!page.contains(external), "{external} in the page");
    }
    assert!(!page.contains(TOKEN), "the page never repeats the token");

    let by_query = app.get(&format!("/status?token={TOKEN}"), None).await;
    assert_eq!(by_query.status(), 200);
    app.stop().await;

    let closed = App::start(&[], RunParts::default()).await;
    assert_eq!(
        closed.get("/status", Some(TOKEN)).await.status(),
        404,
        "no token configured, no page"
    );
    closed.stop().await;
}

#[test]
fn the_example_configuration_loads_and_covers_every_setting() {
    let text = std::fs::read_to_string(format!("{ROOT}/deploy/jarvis.example.toml")).unwrap();
    let env = BTreeMap::new();
    Settings::from_sources(Some(&text), &env).expect("the example loads as it is");

    // With every optional line switched on, it still loads, and names every setting.
    let mut keys = BTreeSet::new();
    let mut all_on = String::new();
    for line in text.lines() {
        let line = match line.strip_prefix("# ") {
            Some(rest)
                if rest.split_once(" = ").is_some_and(|(k, _)| {
                    k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                }) =>
            {
                rest
            }
            _ => line,
        };
        if let Some((key, _)) = line.split_once(" = ")
            && !key.starts_with('#')
        {
            keys.insert(key.trim().to_owned());
        }
        all_on.push_str(line);
        all_on.push('\n');
    }
    let settings =
        Settings::from_sources(Some(&all_on), &env).expect("every optional line is valid");
    assert!(settings.amocrm.auth.is_some());
    let expected: BTreeSet<String> = jarvis_service::config::SETTINGS
        .iter()
        .map(|s| s.key())
        .collect();
    assert_eq!(keys, expected, "the example covers exactly the settings");
}

#[test]
fn the_systemd_unit_is_hardened() {
    let unit = std::fs::read_to_string(format!("{ROOT}/deploy/jarvis.service")).unwrap();
    for directive in [
        "User=jarvis",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "StateDirectory=jarvis",
        "EnvironmentFile=/etc/jarvis/jarvis.env",
        "ExecStart=/usr/local/bin/jarvis serve",
        "CapabilityBoundingSet=\n",
    ] {
        assert!(unit.contains(directive), "{directive:?} missing");
    }
}

fn free_port() -> u16 {
    StdTcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills the process when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_plain_text_with_request_ids_and_batch_spans() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_jarvis"))
        .arg("serve")
        .env_clear()
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", dir.path().join("jarvis.db").display()),
        )
        .env("JARVIS_LISTEN", format!("127.0.0.1:{port}"))
        .env("AMOCRM_WEBHOOK_SECRET", SECRET)
        .env("JARVIS_BATCH_WINDOW_MS", "20")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Killed(child);
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let wait_for = |lines: &mut Vec<String>, needle: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if lines.iter().any(|l: &String| l.contains(needle)) {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => lines.push(line),
                Err(_) => panic!(
                    "no log line with {needle:?} within 30s:\n{}",
                    lines.join("\n")
                ),
            }
        }
    };
    wait_for(&mut lines, "listening");

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let resp = http
        .post(format!("http://127.0.0.1:{port}/amocrm/webhook/{SECRET}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-request-id", "req-7f3a")
        .body(fixture("lead_status.form"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-request-id"], "req-7f3a");
    wait_for(&mut lines, "worker batch done");
    drop(child);

    let all = lines.join("\n");
    assert!(
        !all.contains('\u{1b}'),
        "colour codes in a log that is not a terminal:\n{all}"
    );
    let stored = lines
        .iter()
        .find(|l| l.contains("webhook batch stored"))
        .expect("a line per webhook batch");
    assert!(stored.contains("request_id=req-7f3a"), "{stored}");
    assert!(
        stored.contains("events=1") && stored.contains("stored=1"),
        "{stored}"
    );
    let batch = lines
        .iter()
        .find(|l| l.contains("worker batch done"))
        .unwrap();
    assert!(batch.contains("batch{events=1 event_ids=1}"), "{batch}");
    for field in ["deals=1", "contacts=0", "api_requests=0", "duration_ms="] {
        assert!(batch.contains(field), "{field} missing: {batch}");
    }
    assert!(
        !all.contains(SECRET),
        "the webhook secret is never logged:\n{all}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oauth_token_expiry_shows_on_the_page_and_in_metrics() {
    let parts = RunParts {
        http: true,
        worker: false,
    };
    let app = App::start(
        &[
            ("JARVIS_API_TOKEN", TOKEN),
            ("AMOCRM_SUBDOMAIN", "geodrive"),
            // Never called: no worker runs.
            ("AMOCRM_BASE_URL", "http://127.0.0.1:9"),
            ("AMOCRM_CLIENT_ID", "client-1"),
            ("AMOCRM_CLIENT_SECRET", "client-secret-value"),
            ("AMOCRM_REDIRECT_URI", "https://example.com/cb"),
        ],
        parts,
    )
    .await;
    let page = app.get("/status", Some(TOKEN)).await.text().await.unwrap();
    assert!(page.contains("No OAuth token stored"), "{page}");

    let expires_at = chrono::Utc::now() + chrono::Duration::hours(3);
    let tokens = jarvis_store::StoredTokens {
        access_token: "access-token-value".into(),
        refresh_token: "refresh-token-value".into(),
        token_type: "Bearer".into(),
        expires_at,
        updated_at: chrono::Utc::now(),
    };
    app.store.save_tokens("geodrive", &tokens).await.unwrap();
    let page = app.get("/status", Some(TOKEN)).await.text().await.unwrap();
    assert!(
        page.contains("Access token <span class=\"ok\">expires in 2h 59m"),
        "{page}"
    );
    assert!(page.contains("API mode"), "{page}");
    for secret in [
        "access-token-value",
        "refresh-token-value",
        "client-secret-value",
    ] {
        assert!(!page.contains(secret), "{secret} on the page");
    }

    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("jarvis_amocrm_token_expiry_timestamp_seconds "))
        .expect("the expiry gauge");
    let value: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert_eq!(value as i64, expires_at.timestamp(), "{line}");
    app.stop().await;
}
