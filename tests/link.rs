//! End-to-end: the service fills a deal's `client_id` and `conversation_id` from the business's own
//! tables through the configured queries (PostgreSQL and SQLite, wiremock as amoCRM), and a failing
//! query never holds up the event.

use std::time::{Duration, Instant};

use jarvis_tests::{API_TOKEN, Backend, TestApp, fixture, fresh_database};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const CLIENT: &str = "6f1d2c3b-0000-4000-8000-00000000000a";
const OTHER_CLIENT: &str = "6f1d2c3b-0000-4000-8000-00000000000b";
const CONVERSATION: &str = "7a2e3d4c-0000-4000-8000-0000000000c1";
const WAIT: Duration = Duration::from_secs(20);

/// The README's client query for `clients(id uuid, phone text, email text)`, per backend.
fn client_sql(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => {
            "SELECT id FROM clients WHERE phone = ANY($1) OR lower(email) = ANY($2) ORDER BY id LIMIT 1"
        }
        Backend::Sqlite => {
            "SELECT id FROM clients WHERE phone IN (SELECT value FROM json_each($1)) \
             OR lower(email) IN (SELECT value FROM json_each($2)) ORDER BY id LIMIT 1"
        }
    }
}

const CONVERSATION_SQL: &str = "SELECT id FROM conversations WHERE amocrm_talk_id = $1 OR amocrm_lead_id = $4 ORDER BY id LIMIT 1";

/// The business's tables, created in the database the service will use.
async fn create_business_tables(backend: Backend, url: &str) {
    let uuid = match backend {
        Backend::Postgres => "uuid",
        Backend::Sqlite => "text",
    };
    // The contact amoCRM returns has the phone +7 (999) 123-45-67 and no e-mail; the other client
    // has a matching e-mail in another case but a later id, so the first row is CLIENT.
    let sql = format!(
        "CREATE TABLE clients (id {uuid} PRIMARY KEY, phone text, email text);
        INSERT INTO clients VALUES ('{CLIENT}', '+79991234567', NULL),
            ('{OTHER_CLIENT}', '+74950000000', 'Other@Example.ru');
        CREATE TABLE conversations (id {uuid} PRIMARY KEY, amocrm_talk_id text, amocrm_lead_id text);
        INSERT INTO conversations VALUES ('{CONVERSATION}', '8841', NULL);"
    );
    match backend {
        Backend::Postgres => {
            let store = jarvis_store::PgStore::connect(url).await.unwrap();
            sqlx::raw_sql(&sql).execute(store.pool()).await.unwrap();
            store.close().await;
        }
        Backend::Sqlite => {
            let store = jarvis_store::SqliteStore::connect(url).await.unwrap();
            sqlx::raw_sql(&sql).execute(store.pool()).await.unwrap();
            store.close().await;
        }
    }
}

/// amoCRM answering the fixtures' lead with its main contact, whose phone is in `clients`.
async fn amocrm() -> MockServer {
    let server = MockServer::start().await;
    let lead = json!({
        "id": 31840021, "name": "Аренда", "price": 10500, "status_id": 142, "pipeline_id": 7401234,
        "responsible_user_id": 8215487, "created_at": 1763990000, "updated_at": 1764000150,
        "is_deleted": false, "custom_fields_values": null,
        "_embedded": {"contacts": [{"id": 52110077, "is_main": true}]}
    });
    let contact = json!({
        "id": 52110077, "name": "Иван Петров", "updated_at": 1764000300, "is_deleted": false,
        "custom_fields_values": [
            {"field_id": 640101, "field_name": "Телефон", "field_code": "PHONE", "field_type": "multitext",
             "values": [{"value": "8 (999) 123-45-67", "enum_code": "WORK"}]}
        ]
    });
    Mock::given(method("GET"))
        .and(path("/api/v4/leads"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"_embedded": {"leads": [lead]}})),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v4/contacts"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"_embedded": {"contacts": [contact]}})),
        )
        .mount(&server)
        .await;
    server
}

async fn spawn(backend: Backend, server: &MockServer, client_sql: &str) -> Option<TestApp> {
    let (url, dir) = fresh_database(backend).await?;
    create_business_tables(backend, &url).await;
    let base = server.uri();
    let env = [
        ("AMOCRM_BASE_URL", base.as_str()),
        ("AMOCRM_SUBDOMAIN", "geodrive"),
        ("AMOCRM_LONG_LIVED_TOKEN", "e2e-long-lived-token"),
        ("JARVIS_LINK_CLIENT_SQL", client_sql),
        ("JARVIS_LINK_CONVERSATION_SQL", CONVERSATION_SQL),
    ];
    Some(TestApp::spawn_on(&url, dir, &env).await)
}

/// Polls the deal until `done` holds, or panics after [`WAIT`].
async fn wait_for_deal(app: &TestApp, what: &str, done: impl Fn(&jarvis_store::Deal) -> bool) {
    let started = Instant::now();
    loop {
        if let Some(deal) = app.store.get_deal("31840021").await.unwrap()
            && done(&deal)
        {
            return;
        }
        assert!(started.elapsed() < WAIT, "{what} not within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name(jarvis_tests::Backend::Postgres).await } )*
        }
        mod sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name(jarvis_tests::Backend::Sqlite).await } )*
        }
    };
}

on_both_backends!(
    deal_gets_client_and_conversation_from_the_configured_queries,
    a_failing_query_never_holds_up_the_event,
    deals_sent_to_process_webhook_are_linked_too,
);

async fn deal_gets_client_and_conversation_from_the_configured_queries(backend: Backend) {
    let server = amocrm().await;
    let Some(app) = spawn(backend, &server, client_sql(backend)).await else {
        return;
    };
    let response = app.post_form(fixture("lead_status.form")).await;
    assert_eq!(response.status(), 200);
    wait_for_deal(&app, "client_id", |deal| deal.client_id.is_some()).await;
    let deal = app.store.get_deal("31840021").await.unwrap().unwrap();
    assert_eq!(deal.client_id.unwrap().to_string(), CLIENT);
    // Before its talk starts the lead has no conversation in the business's table.
    assert_eq!(deal.conversation_id, None);

    let response = app.post_form(fixture("talk_add.form")).await;
    assert_eq!(response.status(), 200);
    wait_for_deal(&app, "conversation_id", |deal| {
        deal.conversation_id.is_some()
    })
    .await;
    let deal = app.store.get_deal("31840021").await.unwrap().unwrap();
    assert_eq!(deal.conversation_id.unwrap().to_string(), CONVERSATION);
    assert_eq!(deal.client_id.unwrap().to_string(), CLIENT);

    let metrics: String = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.lines().any(|l| l.starts_with("jarvis_links_total")
            && l.contains("link=\"conversation\"")
            && l.contains("outcome=\"linked\"")),
        "{metrics}"
    );
    app.stop().await;
}

async fn a_failing_query_never_holds_up_the_event(backend: Backend) {
    let server = amocrm().await;
    let Some(app) = spawn(
        backend,
        &server,
        "SELECT id FROM no_such_table WHERE phone = $1",
    )
    .await
    else {
        return;
    };
    let response = app.post_form(fixture("lead_status.form")).await;
    assert_eq!(response.status(), 200);
    app.wait_idle(WAIT).await;
    let stats = app.store.stats().await.unwrap();
    assert_eq!((stats.processed, stats.dead, stats.retrying), (1, 0, 0));
    // The deal row is written without the link, and marked to be tried again.
    wait_for_deal(&app, "the deal row", |deal| deal.status_id == Some(142)).await;
    let started = Instant::now();
    loop {
        let links = app
            .store
            .links()
            .deal_links("31840021")
            .await
            .unwrap()
            .unwrap();
        if links.link_failed_at.is_some() {
            assert_eq!(links.client_id, None);
            break;
        }
        assert!(started.elapsed() < WAIT, "no failure mark");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.stop().await;
}

async fn deals_sent_to_process_webhook_are_linked_too(backend: Backend) {
    let server = amocrm().await;
    let Some(app) = spawn(backend, &server, client_sql(backend)).await else {
        return;
    };
    let body = json!({
        "event_type": "lead.status",
        "lead": {"id": 31840021, "status_id": 142, "updated_at": 1764000150,
                 "_embedded": {"contacts": [{"id": 52110077, "is_main": true}]}},
        "contact": {"id": 52110077, "updated_at": 1764000300, "custom_fields_values": [
            {"field_code": "EMAIL", "values": [{"value": "OTHER@example.RU"}]}]}
    });
    let response = app
        .http
        .post(format!("{}/amocrm/process-webhook", app.base))
        .bearer_auth(API_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    wait_for_deal(&app, "client_id", |deal| deal.client_id.is_some()).await;
    let deal = app.store.get_deal("31840021").await.unwrap().unwrap();
    assert_eq!(deal.client_id.unwrap().to_string(), OTHER_CLIENT);
    assert!(server.received_requests().await.unwrap().is_empty());
    app.stop().await;
}
