//! No secret in any output: the `jarvis` binary runs with known secrets (database password, webhook
//! secret, API token, OAuth client secret, OAuth tokens before and after a refresh) through a normal
//! day and a bad one (amoCRM refusing access, bad input, wrong secrets, bad settings), logging at
//! debug level; every line it prints is then searched for every secret.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use fake_amocrm::{Failure, FakeAmo, FakeConfig, lead_event_body};
use jarvis_store::StoredTokens;

const DB_PASSWORD: &str = "db-pw-Zq8x1RmT";
const WEBHOOK_SECRET: &str = "webhook-secret-Kd93LmQ0pXz7";
const API_TOKEN: &str = "api-token-Vb72NcQe1";
const CLIENT_SECRET: &str = "client-secret-Hs81PwLa4";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn jarvis(env: &[(&str, String)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_jarvis"));
    // Only what the test sets: a developer's own settings must not leak in.
    command.env_clear().env("RUST_LOG", "debug");
    for (key, value) in env {
        command.env(key, value);
    }
    command
}

fn output_text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `url` with `password` as the user's password.
fn with_password(url: &str, password: &str) -> String {
    let mut parsed = url::Url::parse(url).unwrap();
    parsed.set_password(Some(password)).unwrap();
    parsed.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_appears_in_any_output() {
    let Some(plain_url) = jarvis_store::testing::fresh_postgres_url().await else {
        return;
    };
    // Trust authentication: the server never asks for the password, yet the service holds it.
    let database_url = with_password(&plain_url, DB_PASSWORD);

    let fake = FakeAmo::new(FakeConfig::default());
    fake.seed(5, 5, 7);
    let addr = fake.start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    // Tokens as `jarvis auth exchange` stores them, already expired: the first call refreshes them.
    let issued = fake.issue_tokens();
    let store = jarvis_store::connect(&plain_url).await.unwrap();
    store.migrate().await.unwrap();
    store
        .save_tokens(
            "geodrive",
            &StoredTokens {
                access_token: issued.access_token.clone(),
                refresh_token: issued.refresh_token.clone(),
                token_type: issued.token_type.clone(),
                expires_at: Utc::now() - chrono::Duration::minutes(1),
                updated_at: Utc::now(),
            },
        )
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let env: Vec<(&str, String)> = vec![
        ("DATABASE_URL", database_url.clone()),
        ("JARVIS_LISTEN", format!("127.0.0.1:{port}")),
        ("AMOCRM_WEBHOOK_SECRET", WEBHOOK_SECRET.into()),
        ("JARVIS_API_TOKEN", API_TOKEN.into()),
        ("AMOCRM_BASE_URL", format!("http://{addr}")),
        ("AMOCRM_SUBDOMAIN", "geodrive".into()),
        ("AMOCRM_CLIENT_ID", "integration-id".into()),
        ("AMOCRM_CLIENT_SECRET", CLIENT_SECRET.into()),
        (
            "AMOCRM_REDIRECT_URI",
            "https://jarvis.example.com/oauth".into(),
        ),
        ("AMOCRM_MAX_RETRIES", "0".into()),
        ("JARVIS_BATCH_WINDOW_MS", "20".into()),
    ];
    let log_path = dir.path().join("serve.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut serve = jarvis(&env)
        .arg("serve")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while http.get(format!("{base}/readyz")).send().await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "serve did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A normal day: a webhook processed through the API (refreshing the tokens), the old contract.
    let config = fake.config().clone();
    let lead = fake.touch_lead(fake.lead_ids()[0]);
    let body = lead_event_body(&lead, "status", config.account_id, &config.subdomain);
    let webhook = format!("{base}/amocrm/webhook/{WEBHOOK_SECRET}");
    let post = |url: String, body: String| {
        let http = http.clone();
        async move {
            http.post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(post(webhook.clone(), body).await, 200);
    let started = Instant::now();
    while store.stats().await.unwrap().processed == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the event was not processed:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refreshed = store.load_tokens("geodrive").await.unwrap().unwrap();
    assert_ne!(
        refreshed.access_token, issued.access_token,
        "the tokens were refreshed"
    );
    let process = http
        .post(format!("{base}/amocrm/process-webhook"))
        .bearer_auth(API_TOKEN)
        .json(&serde_json::json!({"event_type": "lead.update", "lead": lead}))
        .send()
        .await
        .unwrap();
    assert_eq!(process.status(), 200);

    // A bad day: wrong secrets, bad input, amoCRM refusing access.
    assert_eq!(
        post(
            format!("{base}/amocrm/webhook/{WEBHOOK_SECRET}x"),
            "a=1".into()
        )
        .await,
        404
    );
    assert_eq!(post(webhook.clone(), "leads[[[=".into()).await, 400);
    let wrong_token = http
        .post(format!("{base}/amocrm/process-webhook"))
        .bearer_auth(format!("{API_TOKEN}-wrong"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_token.status(), 401);
    fake.set_failure(Failure::Status {
        status: 401,
        count: None,
    });
    let lead = fake.touch_lead(fake.lead_ids()[1]);
    let body = lead_event_body(&lead, "status", config.account_id, &config.subdomain);
    assert_eq!(post(webhook.clone(), body).await, 200);
    let started = Instant::now();
    while store.get_state("api_access").await.unwrap().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no API access report"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);

    let pid = serve.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let started = Instant::now();
    while serve.try_wait().unwrap().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "serve did not stop"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let serve_log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        serve_log.contains("amoCRM API access is broken"),
        "the refused access is logged:\n{serve_log}"
    );
    assert!(
        serve_log.contains(":***@"),
        "the database URL is shown redacted"
    );

    // The commands, with the password as a URL parameter and in broken settings.
    let mut outputs = vec![("serve".to_string(), serve_log)];
    let separator = if plain_url.contains('?') { '&' } else { '?' };
    let parameter_url = format!("{plain_url}{separator}password={DB_PASSWORD}");
    let mut run = |name: &str, env: &[(&str, String)], args: &[&str]| {
        let output = jarvis(env).args(args).output().unwrap();
        outputs.push((name.to_string(), output_text(&output)));
        output
    };
    let status_env = [("DATABASE_URL", parameter_url.clone())];
    let status = run("status", &status_env, &["status"]);
    assert!(status.status.success(), "{}", output_text(&status));
    assert!(
        output_text(&status).contains("API access broken since"),
        "{}",
        output_text(&status)
    );
    let status = run("status --json", &status_env, &["status", "--json"]);
    assert!(status.status.success(), "{}", output_text(&status));
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(json["api_access"]["ok"], false);
    assert_eq!(json["api_access"]["reason"], "token_refresh_refused");
    assert!(json["api_access"]["broken_since"].is_string());
    let unparsable = format!("postgres://postgres:{DB_PASSWORD}@127.0.0.1:notaport/test");
    let failed = run(
        "migrate",
        &[("DATABASE_URL", unparsable.clone())],
        &["migrate"],
    );
    assert!(!failed.status.success());
    let failed = run(
        "serve with an unparsable URL",
        &[
            ("DATABASE_URL", unparsable),
            ("AMOCRM_WEBHOOK_SECRET", WEBHOOK_SECRET.into()),
        ],
        &["serve"],
    );
    assert!(!failed.status.success());
    let refused = format!("{database_url}&channel_binding=require");
    let failed = run(
        "serve with channel_binding=require",
        &[
            ("DATABASE_URL", refused),
            ("AMOCRM_WEBHOOK_SECRET", WEBHOOK_SECRET.into()),
        ],
        &["serve"],
    );
    assert!(!failed.status.success());
    assert!(output_text(&failed).contains("channel_binding=require"));
    let config = dir.path().join("jarvis.toml");
    write(
        &config,
        &format!(
            "amocrm_webhook_secret = \"{WEBHOOK_SECRET}\"\namocrm_client_secret = \"{CLIENT_SECRET}\n"
        ),
    );
    let failed = run(
        "a broken TOML file",
        &[("JARVIS_CONFIG", config.display().to_string())],
        &["status"],
    );
    assert!(!failed.status.success());
    let failed = run(
        "a secret in a number setting",
        &[("JARVIS_CLAIM_BATCH", API_TOKEN.into())],
        &["status"],
    );
    assert!(!failed.status.success());

    let secrets = [
        DB_PASSWORD,
        WEBHOOK_SECRET,
        API_TOKEN,
        CLIENT_SECRET,
        &issued.access_token,
        &issued.refresh_token,
        &refreshed.access_token,
        &refreshed.refresh_token,
    ];
    let mut leaks = Vec::new();
    let mut lines = 0;
    for (name, text) in &outputs {
        for line in text.lines() {
            lines += 1;
            for secret in secrets {
                if line.contains(secret) {
                    leaks.push(format!("{name}: {line}"));
                }
            }
        }
    }
    assert!(lines > 20, "only {lines} lines were printed");
    assert!(
        leaks.is_empty(),
        "secrets in the output:\n{}",
        leaks.join("\n")
    );
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}
