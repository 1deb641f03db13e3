//! The `jarvis` command line, run as a user runs it.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../amocrm-webhook/tests/fixtures"
);

/// `jarvis` with a clean environment (no settings leak in from the caller's shell).
fn jarvis(dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_jarvis"));
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd
}

fn run(cmd: &mut Command, stdin: Option<&[u8]>) -> Output {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("jarvis runs");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn serve_without_a_webhook_secret_says_what_to_set() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(jarvis(dir.path()).arg("serve"), None);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("AMOCRM_WEBHOOK_SECRET"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn webhook_parse_prints_one_json_line_per_event() {
    let dir = tempfile::tempdir().unwrap();
    let body = std::fs::read(format!("{FIXTURES}/leads_update_two.form")).unwrap();
    let out = run(jarvis(dir.path()).args(["webhooks", "parse"]), Some(&body));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["event_type"], "lead.update");
    assert_eq!(lines[0]["entity_id"], "31840023");
    assert_eq!(lines[1]["entity_id"], "31840024");
    assert_eq!(lines[0]["account_id"], 29071803);
    assert_eq!(lines[0]["event_hash"].as_str().unwrap().len(), 64);
    assert_ne!(lines[0]["event_hash"], lines[1]["event_hash"]);
}

#[test]
fn webhook_parse_reports_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        jarvis(dir.path()).args(["webhooks", "parse"]),
        Some(b"leads%5Bupdate%ZZ=1"),
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("error:"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn migrate_status_and_replay_on_the_default_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(jarvis(dir.path()).arg("migrate"), None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        dir.path().join("jarvis.db").exists(),
        "the default database is ./jarvis.db"
    );

    let out = run(jarvis(dir.path()).args(["status", "--json"]), None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["mode"], "webhook-only");
    assert_eq!(status["backlog"], 0);
    assert_eq!(status["dead"], 0);
    assert_eq!(status["api_requests_last_hour"], 0);

    let out = run(
        jarvis(dir.path()).args(["events", "replay", "--dead"]),
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("requeued 0"));

    let out = run(jarvis(dir.path()).args(["events", "replay"]), None);
    assert!(!out.status.success(), "replay needs --dead or --id");
}

#[test]
fn auth_url_names_the_integration_and_hides_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = jarvis(dir.path());
    cmd.args(["auth", "url", "--state", "xyz"])
        .env("AMOCRM_SUBDOMAIN", "geodrive")
        .env("AMOCRM_CLIENT_ID", "integration-id-123")
        .env("AMOCRM_CLIENT_SECRET", "very-secret-value")
        .env("AMOCRM_REDIRECT_URI", "https://example.com/cb");
    let out = run(&mut cmd, None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let url = text(&out.stdout);
    assert!(url.contains("client_id=integration-id-123"), "{url}");
    assert!(url.contains("state=xyz"), "{url}");
    assert!(!url.contains("very-secret-value") && !text(&out.stderr).contains("very-secret-value"));
}

#[tokio::test]
async fn auth_exchange_stores_tokens_in_the_database() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth2/access_token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "token_type": "Bearer", "expires_in": 86400,
            "access_token": "new-access-token", "refresh_token": "new-refresh-token"
        })))
        .expect(1)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = jarvis(dir.path());
    cmd.args(["auth", "exchange", "the-code"])
        .env("AMOCRM_SUBDOMAIN", "geodrive")
        .env("AMOCRM_BASE_URL", server.uri())
        .env("AMOCRM_CLIENT_ID", "integration-id-123")
        .env("AMOCRM_CLIENT_SECRET", "very-secret-value")
        .env("AMOCRM_REDIRECT_URI", "https://example.com/cb");
    let out = tokio::task::spawn_blocking(move || run(&mut cmd, None))
        .await
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        !all.contains("new-access-token")
            && !all.contains("new-refresh-token")
            && !all.contains("very-secret")
    );

    let store = jarvis_store::connect(&format!(
        "sqlite://{}",
        dir.path().join("jarvis.db").display()
    ))
    .await
    .unwrap();
    let tokens = store
        .load_tokens("geodrive")
        .await
        .unwrap()
        .expect("tokens stored");
    assert_eq!(tokens.refresh_token, "new-refresh-token");
}

#[tokio::test]
async fn webhooks_register_subscribes_the_secret_url_with_the_design_settings() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v4/webhooks"))
        .and(header("authorization", "Bearer llt-1"))
        .and(body_json(json!({
            "destination": "https://jarvis.example.com/amocrm/webhook/hook-secret-0123456789",
            "settings": ["add_lead", "status_lead", "update_contact"]
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "id": 1, "destination": "https://jarvis.example.com/amocrm/webhook/hook-secret-0123456789",
            "created_at": 1764000000, "updated_at": 1764000000, "account_id": 29071803, "created_by": 0,
            "sort": 1, "disabled": false, "settings": ["add_lead", "status_lead", "update_contact"]
        })))
        .expect(1)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = jarvis(dir.path());
    cmd.args(["webhooks", "register"])
        .env("AMOCRM_BASE_URL", server.uri())
        .env("AMOCRM_LONG_LIVED_TOKEN", "llt-1")
        .env("AMOCRM_WEBHOOK_SECRET", "hook-secret-0123456789")
        .env("JARVIS_PUBLIC_URL", "https://jarvis.example.com/")
        .env(
            "JARVIS_WEBHOOK_SETTINGS",
            "add_lead,status_lead,update_contact",
        );
    let out = tokio::task::spawn_blocking(move || run(&mut cmd, None))
        .await
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("<secret>") && !stdout.contains("hook-secret"),
        "{stdout}"
    );
}

#[test]
fn help_is_available_everywhere_and_lists_every_setting() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["migrate", "--help"],
        vec!["auth", "--help"],
        vec!["auth", "exchange", "--help"],
        vec!["webhooks", "--help"],
        vec!["webhooks", "register", "--help"],
        vec!["webhooks", "remove", "--help"],
        vec!["webhooks", "parse", "--help"],
        vec!["events", "replay", "--help"],
        vec!["status", "--help"],
        vec!["config", "check", "--help"],
        vec!["webhook", "parse", "--help"],
    ] {
        let out = run(jarvis(dir.path()).args(&args), None);
        assert!(out.status.success(), "{args:?}");
        let help = text(&out.stdout);
        assert!(help.contains("Usage"), "{args:?}");
        for setting in jarvis_service::config::SETTINGS {
            assert!(
                help.contains(setting.name),
                "{args:?}: {} missing",
                setting.name
            );
        }
        assert!(
            help.contains("[default: 1000]"),
            "{args:?}: defaults missing"
        );
    }
    // -h stays short and says where the settings are.
    let out = run(jarvis(dir.path()).args(["serve", "-h"]), None);
    assert!(text(&out.stdout).contains("`--help` lists each"));
    assert!(!text(&out.stdout).contains("JARVIS_CLAIM_BATCH"));
}

#[test]
fn one_webhooks_command_with_the_old_spelling_unlisted() {
    let dir = tempfile::tempdir().unwrap();
    let top = text(&run(jarvis(dir.path()).arg("--help"), None).stdout);
    let commands: Vec<&str> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(commands.contains(&"webhooks"), "{commands:?}");
    assert!(!commands.contains(&"webhook"), "{commands:?}");
    let sub = text(&run(jarvis(dir.path()).args(["webhooks", "--help"]), None).stdout);
    for name in ["parse", "register", "list", "remove"] {
        assert!(sub.contains(&format!("  {name}")), "{name}: {sub}");
    }
    let remove = text(
        &run(
            jarvis(dir.path()).args(["webhooks", "remove", "--help"]),
            None,
        )
        .stdout,
    );
    assert!(remove.contains("--destination <URL>"), "{remove}");
    assert!(
        remove.contains("Destination URL to unsubscribe"),
        "{remove}"
    );

    let body = std::fs::read(format!("{FIXTURES}/lead_status.form")).unwrap();
    let new = run(jarvis(dir.path()).args(["webhooks", "parse"]), Some(&body));
    let old = run(jarvis(dir.path()).args(["webhooks", "parse"]), Some(&body));
    assert!(new.status.success(), "{}", text(&new.stderr));
    assert_eq!(new.stdout, old.stdout);
    assert!(text(&new.stdout).contains("lead.status"));
}

#[test]
fn config_check_prints_effective_settings_with_secrets_masked() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jarvis.toml");
    std::fs::write(
        &file,
        "jarvis_batch_window_ms = 120\njarvis_webhook_settings = [\"add_lead\"]\n\
         amocrm_client_secret = \"client-secret-value\"\n",
    )
    .unwrap();
    let out = run(
        jarvis(dir.path())
            .args(["config", "check", "--config"])
            .arg(&file)
            .env("AMOCRM_WEBHOOK_SECRET", "webhook-secret-value-0123")
            .env(
                "DATABASE_URL",
                "postgres://jarvis:db-password@db.example.com/jarvis",
            )
            .env("AMOCRM_SUBDOMAIN", "geodrive")
            .env("AMOCRM_CLIENT_ID", "client-1")
            .env("AMOCRM_REDIRECT_URI", "https://example.com/cb"),
        None,
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    for secret in [
        "client-secret-value",
        "webhook-secret-value-0123",
        "db-password",
    ] {
        assert!(!stdout.contains(secret), "{secret} printed: {stdout}");
    }
    let line = |name: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing: {stdout}"))
            .to_owned()
    };
    assert!(
        line("JARVIS_BATCH_WINDOW_MS").contains("120  [file]"),
        "{stdout}"
    );
    assert!(
        line("JARVIS_CLAIM_BATCH").contains("1000  [default]"),
        "{stdout}"
    );
    assert!(
        line("AMOCRM_WEBHOOK_SECRET").contains("********"),
        "{stdout}"
    );
    assert!(
        line("AMOCRM_WEBHOOK_SECRET").contains("[environment]"),
        "{stdout}"
    );
    assert!(line("DATABASE_URL").contains("db.example.com"), "{stdout}");
    assert!(
        line("AMOCRM_LONG_LIVED_TOKEN").contains("[unset]"),
        "{stdout}"
    );
    assert!(stdout.contains("settings are valid"), "{stdout}");
}

#[test]
fn config_check_names_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        jarvis(dir.path())
            .args(["config", "check"])
            .env("AMOCRM_WEBHOOK_SECRET", "x"),
        None,
    );
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("AMOCRM_WEBHOOK_SECRET is too short (1 of at least 16 characters)"),
        "{stderr}"
    );

    let file = dir.path().join("jarvis.toml");
    std::fs::write(&file, "jarvis_claim_bach = 10\n").unwrap();
    let out = run(
        jarvis(dir.path())
            .args(["config", "check", "--config"])
            .arg(&file),
        None,
    );
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("unknown setting `jarvis_claim_bach`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("did you mean `jarvis_claim_batch`"),
        "{stderr}"
    );
}
