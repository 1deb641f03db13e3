//! End-to-end: the real service (HTTP + worker) against PostgreSQL and SQLite, wiremock as amoCRM.
//!
//! Every scenario runs on both backends (`_postgres` and `_sqlite` variants). PostgreSQL tests use a
//! fresh schema each; outside CI they are skipped with a message when no server is reachable.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use jarvis_service::RunParts;
use jarvis_tests::{API_TOKEN, Backend, SECRET, Switch, TestApp, fixture};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const IDLE: Duration = Duration::from_secs(20);

/// The `filter[id][]` values of a request.
fn filter_ids(req: &Request) -> Vec<u64> {
    req.url
        .query_pairs()
        .filter(|(k, _)| k == "filter[id][]" || k.starts_with("filter[id]"))
        .filter_map(|(_, v)| v.parse().ok())
        .collect()
}

/// A lead as `GET /api/v4/leads` returns it (amoCRM's documented shape), main contact `id + 1_000_000`.
fn api_lead(id: u64, updated_at: i64) -> Value {
    json!({
        "id": id, "name": format!("Аренда #{id}"), "price": 10500, "responsible_user_id": 8215487,
        "group_id": 0, "status_id": 142, "pipeline_id": 7401234, "loss_reason_id": null,
        "created_by": 0, "updated_by": 8215487, "created_at": 1763990000, "updated_at": updated_at,
        "closed_at": 1764000150, "closest_task_at": null, "is_deleted": false,
        "custom_fields_values": [
            {"field_id": 771001, "field_name": "RentProg ID", "field_code": null, "field_type": "text",
             "values": [{"value": format!("RP-{id}")}]},
            {"field_id": 771002, "field_name": "Класс авто", "field_code": null, "field_type": "select",
             "values": [{"value": "Эконом", "enum_id": 551201, "enum_code": null}]}
        ],
        "score": null, "account_id": 29071803, "labor_cost": null,
        "_links": {"self": {"href": format!("https://geodrive.amocrm.ru/api/v4/leads/{id}")}},
        "_embedded": {"tags": [], "companies": [],
            "contacts": [{"id": id + 1_000_000, "is_main": true,
                          "_links": {"self": {"href": format!("https://geodrive.amocrm.ru/api/v4/contacts/{}", id + 1_000_000)}}}]}
    })
}

fn api_contact(id: u64) -> Value {
    json!({
        "id": id, "name": "Иван Петров", "first_name": "Иван", "last_name": "Петров",
        "responsible_user_id": 8215487, "group_id": 0, "created_by": 0, "updated_by": 0,
        "created_at": 1763990000, "updated_at": 1764000300, "closest_task_at": null, "is_deleted": false,
        "custom_fields_values": [
            {"field_id": 640101, "field_name": "Телефон", "field_code": "PHONE", "field_type": "multitext",
             "values": [{"value": "+7 (999) 123-45-67", "enum_id": 331001, "enum_code": "WORK"}]}
        ],
        "account_id": 29071803,
        "_links": {"self": {"href": format!("https://geodrive.amocrm.ru/api/v4/contacts/{id}")}},
        "_embedded": {"tags": [], "companies": []}
    })
}

/// Answers `GET /api/v4/leads?filter[id][]=..` with exactly the asked leads.
struct Leads;
impl Respond for Leads {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let leads: Vec<Value> = filter_ids(req)
            .into_iter()
            .map(|id| api_lead(id, 1764000150))
            .collect();
        if leads.is_empty() {
            return ResponseTemplate::new(204);
        }
        ResponseTemplate::new(200).set_body_json(json!({
            "_page": 1, "_links": {"self": {"href": "https://geodrive.amocrm.ru/api/v4/leads"}},
            "_embedded": {"leads": leads}
        }))
    }
}

struct Contacts;
impl Respond for Contacts {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let contacts: Vec<Value> = filter_ids(req).into_iter().map(api_contact).collect();
        if contacts.is_empty() {
            return ResponseTemplate::new(204);
        }
        ResponseTemplate::new(200).set_body_json(json!({
            "_page": 1, "_links": {"self": {"href": "https://geodrive.amocrm.ru/api/v4/contacts"}},
            "_embedded": {"contacts": contacts}
        }))
    }
}

async fn amocrm() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v4/leads"))
        .respond_with(Leads)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v4/contacts"))
        .respond_with(Contacts)
        .mount(&server)
        .await;
    server
}

/// amoCRM whose leads endpoint answers `failure` the first `times` times, then like [`amocrm`].
async fn amocrm_failing_first(times: u64, failure: ResponseTemplate) -> MockServer {
    let server = amocrm().await;
    Mock::given(method("GET"))
        .and(path("/api/v4/leads"))
        .respond_with(failure)
        .up_to_n_times(times)
        .with_priority(1)
        .mount(&server)
        .await;
    server
}

async fn requests_to(server: &MockServer, p: &str) -> Vec<Request> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.url.path() == p)
        .collect()
}

fn api_env(server: &MockServer) -> Vec<(&'static str, String)> {
    vec![
        ("AMOCRM_BASE_URL", server.uri()),
        ("AMOCRM_SUBDOMAIN", "geodrive".to_string()),
        (
            "AMOCRM_LONG_LIVED_TOKEN",
            "e2e-long-lived-token".to_string(),
        ),
    ]
}

async fn spawn_api(
    backend: Backend,
    server: &MockServer,
    extra: &[(&str, &str)],
) -> Option<TestApp> {
    let env = api_env(server);
    let mut all: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    all.extend_from_slice(extra);
    TestApp::spawn(backend, &all).await
}

/// A lead status-change body for `id` (the fixture's shape with another id and `updated_at`).
fn status_body(id: u64, updated_at: i64) -> String {
    fixture("lead_status.form")
        .replace("31840021", &id.to_string())
        .replace(
            "updated_at%5D=1764000150",
            &format!("updated_at%5D={updated_at}"),
        )
}

/// Posts `bodies` from `senders` concurrent senders, each taking the next body not yet sent; every
/// answer must be 200.
async fn send_concurrently(app: &TestApp, bodies: Vec<String>, senders: usize) {
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..senders {
        let (bodies, next, http, url) = (
            bodies.clone(),
            next.clone(),
            app.http.clone(),
            app.webhook_url(),
        );
        tasks.push(tokio::spawn(async move {
            while let Some(body) = bodies.get(next.fetch_add(1, Ordering::SeqCst)) {
                let r = http
                    .post(&url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
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
    status_change_mirrors_deal_with_contact_fields_and_rentprog_id,
    burst_is_coalesced_into_few_requests,
    a_burst_after_an_idle_spell_is_fetched_together,
    a_webhook_being_stored_holds_the_gathering,
    duplicates_are_not_processed_twice,
    delete_is_confirmed_against_the_api,
    server_error_then_success_is_retried,
    rate_limited_then_success_waits,
    wrong_secret_is_404_and_stores_nothing,
    malformed_body_is_400_and_kept,
    oversize_body_is_413_and_kept,
    unsupported_content_type_is_415_and_kept,
    process_webhook_upserts_without_amocrm,
    webhook_only_mode_mirrors_from_bodies,
    a_receiver_alone_leaves_the_mirror_to_the_workers,
    webhook_only_batch_settles_what_it_can_and_fails_the_rest,
    outage_leaves_events_pending_then_drains,
    out_of_order_update_never_overwrites_newer_data,
    permanent_failure_goes_dead_then_replays,
    health_and_metrics_report_the_queue,
    missing_oauth_tokens_leave_events_waiting,
    contact_change_reaches_its_deals_without_a_lead_request,
    a_value_the_database_refuses_is_bad_input_not_an_outage,
    outages_do_not_count_towards_dead,
);

async fn status_change_mirrors_deal_with_contact_fields_and_rentprog_id(backend: Backend) {
    let server = amocrm().await;
    let Some(app) = spawn_api(backend, &server, &[]).await else {
        return;
    };
    let response = app.post_form(fixture("lead_status.form")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"stored": 1, "duplicates": 0})
    );
    app.wait_idle(IDLE).await;

    let deal = app
        .store
        .get_deal("31840021")
        .await
        .unwrap()
        .expect("deal row");
    assert_eq!(deal.status_id, Some(142));
    assert_eq!(deal.pipeline_id, Some(7401234));
    assert_eq!(deal.metadata["rentprog_id"], "RP-31840021");
    let contact_fields = deal.contact_custom_fields.expect("contact fields");
    assert_eq!(contact_fields[0]["field_code"], "PHONE");
    assert_eq!(
        deal.deal_full_data.expect("full data")["_embedded"]["contacts"][0]["id"],
        32840021
    );
    let leads = requests_to(&server, "/api/v4/leads").await;
    assert_eq!(leads.len(), 1);
    assert_eq!(
        leads[0].headers["authorization"],
        "Bearer e2e-long-lived-token"
    );
    assert!(leads[0].url.query().unwrap().contains("with=contacts"));
    assert_eq!(requests_to(&server, "/api/v4/contacts").await.len(), 1);
    app.stop().await;
}

async fn burst_is_coalesced_into_few_requests(backend: Backend) {
    let server = amocrm().await;
    // The burst is received first and processed after, so how many batches it makes does not
    // depend on how fast the senders happen to be: this checks what one batch costs.
    let Some((url, _dir)) = jarvis_tests::fresh_database(backend).await else {
        return;
    };
    let env = api_env(&server);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let http_only = RunParts {
        http: true,
        worker: false,
    };
    let app = TestApp::spawn_parts(&url, None, &env, http_only).await;
    // 500 events over 120 leads, sent by 16 concurrent senders.
    let bodies: Vec<String> = (0..500u64)
        .map(|i| status_body(40_000_000 + i % 120, 1764000000 + i as i64))
        .collect();
    send_concurrently(&app, bodies, 16).await;
    assert!(requests_to(&server, "/api/v4/leads").await.is_empty());
    let worker_only = RunParts {
        http: false,
        worker: true,
    };
    let worker = TestApp::spawn_parts(&url, None, &env, worker_only).await;
    app.wait_idle(IDLE).await;
    let stats = app.store.stats().await.unwrap();
    assert_eq!(stats.processed, 500);
    let lead_requests = requests_to(&server, "/api/v4/leads").await;
    let contact_requests = requests_to(&server, "/api/v4/contacts").await;
    // ceil(120 distinct leads / 250 per request) = 1.
    assert_eq!(
        lead_requests.len(),
        1,
        "{} lead requests",
        lead_requests.len()
    );
    assert!(
        contact_requests.len() <= 1,
        "{} contact requests",
        contact_requests.len()
    );
    let asked: BTreeSet<u64> = lead_requests.iter().flat_map(filter_ids).collect();
    assert_eq!(asked.len(), 120);
    assert!(app.store.get_deal("40000119").await.unwrap().is_some());
    worker.stop().await;
    app.stop().await;
}

/// API mode with the worker running while events arrive: after an idle spell a burst is claimed
/// once its arrivals pause, not at its first event, so its first change is not fetched alone; and a
/// lone change is fetched once the quiet time has passed, not a whole batch window later.
async fn a_burst_after_an_idle_spell_is_fetched_together(backend: Backend) {
    let server = amocrm().await;
    // Generous bounds for a loaded test machine: arrivals up to 300 ms apart count as one burst,
    // gathered for at most 3 s.
    let quiet = [
        ("JARVIS_BATCH_QUIET_MS", "300"),
        ("JARVIS_BATCH_WINDOW_MS", "3000"),
    ];
    let Some(app) = spawn_api(backend, &server, &quiet).await else {
        return;
    };
    // 150 events over 60 leads from 8 concurrent senders, the worker running.
    let bodies: Vec<String> = (0..150u64)
        .map(|i| status_body(41_000_000 + i % 60, 1764000000 + i as i64))
        .collect();
    send_concurrently(&app, bodies, 8).await;
    app.wait_idle(IDLE).await;
    let lead_requests = requests_to(&server, "/api/v4/leads").await;
    let asked: BTreeSet<u64> = lead_requests.iter().flat_map(filter_ids).collect();
    assert_eq!(asked.len(), 60);
    assert_eq!(
        lead_requests.len(),
        1,
        "the burst's 60 leads fit one request; asked in {:?}",
        lead_requests.iter().map(filter_ids).collect::<Vec<_>>()
    );

    // After an idle spell (more than the window since the last batch), a lone change is claimed
    // once the quiet time has passed, not when the gathering's bound (the window) runs out.
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let sent = std::time::Instant::now();
    let r = app.post_form(status_body(41_000_100, 1764001000)).await;
    assert_eq!(r.status(), 200);
    app.wait_idle(IDLE).await;
    let took = sent.elapsed();
    assert!(
        took < Duration::from_millis(2000),
        "a lone change took {took:?}"
    );
    assert!(app.store.get_deal("41000100").await.unwrap().is_some());
    assert_eq!(requests_to(&server, "/api/v4/leads").await.len(), 2);
    app.stop().await;
}

/// After an idle spell the worker does not claim while a webhook is still being stored, however
/// long past the quiet time: that webhook's events join the batch (a burst's commits can come
/// further apart than the quiet time).
async fn a_webhook_being_stored_holds_the_gathering(backend: Backend) {
    let server = amocrm().await;
    let quiet = [
        ("JARVIS_BATCH_QUIET_MS", "100"),
        ("JARVIS_BATCH_WINDOW_MS", "10000"),
    ];
    let Some(app) = spawn_api(backend, &server, &quiet).await else {
        return;
    };
    // As if another webhook's insert were under way.
    app.storing.fetch_add(1, Ordering::SeqCst);
    let r = app.post_form(status_body(42_000_001, 1764000001)).await;
    assert_eq!(r.status(), 200);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        requests_to(&server, "/api/v4/leads").await.is_empty(),
        "claimed while a webhook was being stored"
    );
    let r = app.post_form(status_body(42_000_002, 1764000002)).await;
    assert_eq!(r.status(), 200);
    app.storing.fetch_sub(1, Ordering::SeqCst);
    app.wait_idle(IDLE).await;
    let lead_requests = requests_to(&server, "/api/v4/leads").await;
    assert_eq!(lead_requests.len(), 1);
    let asked: BTreeSet<u64> = lead_requests.iter().flat_map(filter_ids).collect();
    assert_eq!(asked, BTreeSet::from([42_000_001, 42_000_002]));
    app.stop().await;
}

async fn duplicates_are_not_processed_twice(backend: Backend) {
    let server = amocrm().await;
    let Some(app) = spawn_api(backend, &server, &[]).await else {
        return;
    };
    let first = app.post_form(fixture("lead_status.form")).await;
    assert_eq!(
        first.json::<Value>().await.unwrap(),
        json!({"stored": 1, "duplicates": 0})
    );
    app.wait_idle(IDLE).await;
    let again = app.post_form(fixture("lead_status.form")).await;
    assert_eq!(
        again.json::<Value>().await.unwrap(),
        json!({"stored": 0, "duplicates": 1})
    );
    // Give the worker a chance to (wrongly) process something.
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.wait_idle(IDLE).await;
    assert_eq!(requests_to(&server, "/api/v4/leads").await.len(), 1);
    assert_eq!(app.store.stats().await.unwrap().processed, 1);
    app.stop().await;
}

/// A delete body carries no time: API mode confirms it (the API no longer returns the lead) in the
/// batch's one lead request.
async fn delete_is_confirmed_against_the_api(backend: Backend) {
    let server = amocrm().await;
    Mock::given(method("GET"))
        .and(path("/api/v4/leads"))
        .and(wiremock::matchers::query_param("filter[id][]", "31840025"))
        .respond_with(ResponseTemplate::new(204))
        .with_priority(1)
        .mount(&server)
        .await;
    let Some(app) = spawn_api(backend, &server, &[]).await else {
        return;
    };
    assert_eq!(
        app.post_form(fixture("lead_delete.form")).await.status(),
        200
    );
    app.wait_idle(IDLE).await;
    let deal = app
        .store
        .get_deal("31840025")
        .await
        .unwrap()
        .expect("row for the deleted lead");
    assert!(deal.is_deleted);
    assert_eq!(requests_to(&server, "/api/v4/leads").await.len(), 1);
    app.stop().await;
}

async fn server_error_then_success_is_retried(backend: Backend) {
    let server = amocrm_failing_first(1, ResponseTemplate::new(500)).await;
    let Some(app) = spawn_api(backend, &server, &[]).await else {
        return;
    };
    app.post_form(fixture("lead_status.form")).await;
    app.wait_idle(IDLE).await;
    assert!(app.store.get_deal("31840021").await.unwrap().is_some());
    assert_eq!(
        requests_to(&server, "/api/v4/leads").await.len(),
        2,
        "one failed and one retried lead request"
    );
    app.stop().await;
}

/// Answers 429 with `Retry-After: 1` the first time, then like [`Leads`]; records when each call came.
struct RateLimitedOnce {
    calls: Arc<std::sync::Mutex<Vec<std::time::Instant>>>,
}
impl Respond for RateLimitedOnce {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut calls = self.calls.lock().unwrap();
        calls.push(std::time::Instant::now());
        if calls.len() == 1 {
            ResponseTemplate::new(429).insert_header("retry-after", "1")
        } else {
            Leads.respond(req)
        }
    }
}

async fn rate_limited_then_success_waits(backend: Backend) {
    let server = MockServer::start().await;
    let calls = Arc::new(std::sync::Mutex::new(Vec::new()));
    Mock::given(method("GET"))
        .and(path("/api/v4/leads"))
        .respond_with(RateLimitedOnce {
            calls: calls.clone(),
        })
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v4/contacts"))
        .respond_with(Contacts)
        .mount(&server)
        .await;
    let Some(app) = spawn_api(backend, &server, &[]).await else {
        return;
    };
    app.post_form(fixture("lead_status.form")).await;
    app.wait_idle(IDLE).await;
    assert!(app.store.get_deal("31840021").await.unwrap().is_some());
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 2);
    // The retry honoured Retry-After: 1.
    let gap = calls[1] - calls[0];
    assert!(gap >= Duration::from_millis(900), "retried after {gap:?}");
    app.stop().await;
}

async fn wrong_secret_is_404_and_stores_nothing(backend: Backend) {
    let Some(app) = TestApp::spawn(backend, &[]).await else {
        return;
    };
    let response = app
        .http
        .post(format!("{}/amocrm/webhook/not-{SECRET}", app.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(fixture("lead_status.form"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let stats = app.store.stats().await.unwrap();
    assert_eq!((stats.backlog, stats.processed, stats.rejected), (0, 0, 0));
    app.stop().await;
}

async fn malformed_body_is_400_and_kept(backend: Backend) {
    let Some(app) = TestApp::spawn(backend, &[]).await else {
        return;
    };
    let body = "leads%5Bupdate%5D%5B0%5D%5Bid%5D=1%ZZ&account%5Bid%5D=1";
    let response = app.post_form(body).await;
    assert_eq!(response.status(), 400);
    let reason: Value = response.json().await.unwrap();
    assert!(
        reason["reason"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("percent"),
        "{reason}"
    );
    let rejected = app.store.list_rejected(10).await.unwrap();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].rejected.body, body.as_bytes());
    assert_eq!(
        rejected[0].rejected.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(app.store.stats().await.unwrap().backlog, 0);
    app.stop().await;
}

async fn oversize_body_is_413_and_kept(backend: Backend) {
    let Some(app) = TestApp::spawn(backend, &[("JARVIS_MAX_BODY_BYTES", "4096")]).await else {
        return;
    };
    let body = format!("{}&pad={}", fixture("lead_status.form"), "x".repeat(8000));
    let response = app.post_form(body.clone()).await;
    assert_eq!(response.status(), 413);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"],
        "payload_too_large"
    );
    let rejected = app.store.list_rejected(10).await.unwrap();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].rejected.body, body.as_bytes()[..4096]);
    app.stop().await;
}

async fn unsupported_content_type_is_415_and_kept(backend: Backend) {
    let Some(app) = TestApp::spawn(backend, &[]).await else {
        return;
    };
    let response = app
        .http
        .post(app.webhook_url())
        .header("content-type", "text/xml")
        .body("<lead/>")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    assert_eq!(app.store.list_rejected(10).await.unwrap().len(), 1);
    app.stop().await;
}

async fn process_webhook_upserts_without_amocrm(backend: Backend) {
    let server = amocrm().await;
    let Some(app) = spawn_api(backend, &server, &[]).await else {
        return;
    };
    let url = format!("{}/amocrm/process-webhook", app.base);
    let body = json!({"event_type": "lead.status", "lead": api_lead(555, 1764000999), "contact": api_contact(1000555)});
    let unauthorized = app.http.post(&url).json(&body).send().await.unwrap();
    assert_eq!(unauthorized.status(), 401);
    let response = app
        .http
        .post(&url)
        .bearer_auth(API_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let deal = app.store.get_deal("555").await.unwrap().expect("deal");
    assert_eq!(deal.metadata["rentprog_id"], "RP-555");
    assert_eq!(
        deal.contact_custom_fields.unwrap()[0]["field_code"],
        "PHONE"
    );
    assert!(server.received_requests().await.unwrap().is_empty());
    app.stop().await;
}

async fn webhook_only_mode_mirrors_from_bodies(backend: Backend) {
    let Some(app) = TestApp::spawn(backend, &[]).await else {
        return;
    };
    for name in [
        "lead_add.form",
        "lead_status.form",
        "contact_update.form",
        "note_add_lead.form",
        "talk_add.form",
    ] {
        assert_eq!(app.post_form(fixture(name)).await.status(), 200, "{name}");
    }
    app.wait_idle(IDLE).await;
    let deal = app
        .store
        .get_deal("31840021")
        .await
        .unwrap()
        .expect("deal from the body");
    assert_eq!(deal.status_id, Some(142));
    assert_eq!(deal.metadata["rentprog_id"], "RP-48213");
    assert_eq!(deal.custom_fields.unwrap()[0]["field_id"], 771001);
    let contact = app
        .store
        .get_contact("52110077")
        .await
        .unwrap()
        .expect("contact from the body");
    assert_eq!(contact.custom_fields.unwrap()[0]["field_code"], "PHONE");
    let stats = app.store.stats().await.unwrap();
    assert_eq!((stats.processed, stats.dead), (5, 0));
    app.stop().await;
}

/// Webhook-only mode with a worker in the process, on PostgreSQL: a lead's change is mirrored in
/// the statement that stores its event, so its row is there when the webhook is answered, the
/// event already processed; a contact's change waits for the worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_webhook_only_mode_mirrors_a_lead_before_answering() {
    let Some(app) = TestApp::spawn(Backend::Postgres, &[]).await else {
        return;
    };
    let answer = app.post_form(fixture("lead_status.form")).await;
    assert_eq!(answer.status(), 200);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body, serde_json::json!({ "stored": 1, "duplicates": 0 }));
    // No wait: the row was committed with the event, before the answer.
    let deal = app
        .store
        .get_deal("31840021")
        .await
        .unwrap()
        .expect("written on receipt");
    assert_eq!(deal.status_id, Some(142));
    let event = app.store.get_event(1).await.unwrap().unwrap();
    assert!(event.processed && event.processed_at.is_some(), "{event:?}");
    assert_eq!(event.attempts, 0);

    // The same delivery again: a duplicate, nothing written twice.
    let again = app.post_form(fixture("lead_status.form")).await;
    let body: serde_json::Value = again.json().await.unwrap();
    assert_eq!(body, serde_json::json!({ "stored": 0, "duplicates": 1 }));

    assert_eq!(
        app.post_form(fixture("contact_update.form")).await.status(),
        200
    );
    app.wait_idle(IDLE).await;
    assert!(app.store.get_contact("52110077").await.unwrap().is_some());
    let stats = app.store.stats().await.unwrap();
    assert_eq!((stats.processed, stats.backlog, stats.dead), (2, 0, 0));
    app.stop().await;
}

/// A receiver alone (`serve --http-only`) only stores: the workers elsewhere mirror.
async fn a_receiver_alone_leaves_the_mirror_to_the_workers(backend: Backend) {
    let Some((url, dir)) = jarvis_tests::fresh_database(backend).await else {
        return;
    };
    let parts = RunParts {
        http: true,
        worker: false,
    };
    let app = TestApp::spawn_parts(&url, dir, &[], parts).await;
    assert_eq!(
        app.post_form(fixture("lead_status.form")).await.status(),
        200
    );
    assert!(app.store.get_deal("31840021").await.unwrap().is_none());
    let stats = app.store.stats().await.unwrap();
    assert_eq!((stats.backlog, stats.processed), (1, 0));
    app.stop().await;
}

/// Webhook-only mode settles a batch in one transaction; an event in it that is not a webhook
/// event (written by something else) does not hold the batch back: it fails on its own, the rest
/// are mirrored and completed.
async fn webhook_only_batch_settles_what_it_can_and_fails_the_rest(backend: Backend) {
    let Some(url_dir) = jarvis_tests::fresh_database(backend).await else {
        return;
    };
    let (url, _dir) = url_dir;
    // Stored before the worker starts, so they are one batch.
    let store = jarvis_store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    let parser = amocrm_webhook::Parser::default();
    let mut rows = Vec::new();
    for name in ["lead_status.form", "contact_update.form"] {
        let batch = parser
            .parse(
                Some("application/x-www-form-urlencoded"),
                fixture(name).as_bytes(),
            )
            .unwrap();
        rows.extend(
            batch
                .events
                .iter()
                .map(|e| jarvis_store::NewEvent::from_webhook(e, chrono::Utc::now())),
        );
    }
    let mut foreign = rows[0].clone();
    foreign.event_hash = "written-by-another-service".into();
    foreign.payload = serde_json::json!({"not": "an event"}).into();
    rows.push(foreign);
    assert_eq!(store.insert_events(&rows).await.unwrap().stored, 3);

    let app = TestApp::spawn_on(&url, None, &[]).await;
    let deadline = std::time::Instant::now() + IDLE;
    loop {
        let stats = app.store.stats().await.unwrap();
        if stats.processed == 2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{stats:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(app.store.get_deal("31840021").await.unwrap().is_some());
    assert!(app.store.get_contact("52110077").await.unwrap().is_some());
    // A fresh database: the three rows are events 1 to 3.
    let failed = loop {
        let mut error = None;
        for id in 1..=3 {
            let event = app.store.get_event(id).await.unwrap().unwrap();
            if event.event_hash == "written-by-another-service" {
                assert!(!event.processed);
                error = event.last_error.filter(|_| event.attempts == 1);
            }
        }
        if let Some(error) = error {
            break error;
        }
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(failed.contains("not a webhook event"), "{failed}");
    app.stop().await;
}

/// The database goes away under the service: webhooks get 503 (amoCRM retries), nothing acknowledged
/// is lost, and the service recovers by itself.
async fn outage_leaves_events_pending_then_drains(backend: Backend) {
    match backend {
        Backend::Sqlite => sqlite_outage().await,
        Backend::Postgres => postgres_outage().await,
    }
}

async fn sqlite_outage() {
    // SQLite has no server to stop; the amoCRM side is what goes down: events wait, then drain.
    let server = amocrm_failing_first(4, ResponseTemplate::new(503)).await;
    let Some(app) = spawn_api(Backend::Sqlite, &server, &[("AMOCRM_MAX_RETRIES", "1")]).await
    else {
        return;
    };
    app.post_form(fixture("lead_status.form")).await;
    app.wait_idle(Duration::from_secs(60)).await;
    let stats = app.store.stats().await.unwrap();
    assert_eq!((stats.processed, stats.dead), (1, 0));
    assert!(app.store.get_deal("31840021").await.unwrap().is_some());
    app.stop().await;
}

async fn postgres_outage() {
    let Some(url) = jarvis_store::testing::fresh_postgres_url().await else {
        return;
    };
    let mut parsed = reqwest::Url::parse(&url).unwrap();
    let target = format!(
        "{}:{}",
        parsed.host_str().unwrap(),
        parsed.port().unwrap_or(5432)
    );
    let switch = Switch::start(&target).await;
    parsed.set_port(Some(switch.port)).unwrap();
    let app = TestApp::spawn_on(parsed.as_str(), None, &[]).await;

    assert_eq!(app.post_form(fixture("lead_add.form")).await.status(), 200);
    switch.cut();
    let during = app.post_form(fixture("lead_status.form")).await;
    assert_eq!(during.status(), 503, "database down must answer 503");
    assert_eq!(
        app.http
            .get(format!("{}/readyz", app.base))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    switch.restore();
    // amoCRM retries the same body; now it is stored.
    let mut stored = false;
    for _ in 0..50 {
        let r = app.post_form(fixture("lead_status.form")).await;
        if r.status() == 200 {
            stored = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        stored,
        "service did not recover after the database came back"
    );
    app.wait_idle(IDLE).await;
    let stats = app.store.stats().await.unwrap();
    assert_eq!(stats.processed, 2);
    assert!(app.store.get_deal("31840022").await.unwrap().is_some());
    app.stop().await;
}

async fn out_of_order_update_never_overwrites_newer_data(backend: Backend) {
    let Some(app) = TestApp::spawn(backend, &[]).await else {
        return;
    };
    let newer = status_body(777, 1764000500).replace("status_id%5D=142", "status_id%5D=143");
    let older = status_body(777, 1764000100);
    assert_eq!(app.post_form(newer).await.status(), 200);
    app.wait_idle(IDLE).await;
    assert_eq!(app.post_form(older).await.status(), 200);
    app.wait_idle(IDLE).await;
    let deal = app.store.get_deal("777").await.unwrap().unwrap();
    assert_eq!(deal.status_id, Some(143), "the older event must not win");
    assert_eq!(deal.updated_at.unwrap().timestamp(), 1764000500);
    assert_eq!(app.store.stats().await.unwrap().processed, 2);
    app.stop().await;
}

async fn permanent_failure_goes_dead_then_replays(backend: Backend) {
    // amoCRM refuses the request (a 400 is not worth retrying as is): the event dies after 2 attempts.
    let refused = ResponseTemplate::new(400).set_body_json(json!({
        "title": "Bad Request", "type": "https://httpstatus.es/400", "status": 400,
        "detail": "Request validation failed",
        "validation-errors": [{"request_id": "0", "errors": [{"code": "NotSupportedChoice", "path": "filter.id", "detail": "bad"}]}]
    }));
    let server = amocrm_failing_first(2, refused).await;
    let Some(app) = spawn_api(backend, &server, &[("JARVIS_MAX_ATTEMPTS", "2")]).await else {
        return;
    };
    app.post_form(fixture("lead_status.form")).await;
    let mut dead = Vec::new();
    for _ in 0..200 {
        dead = app.store.dead_events(10).await.unwrap();
        if !dead.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(dead.len(), 1, "the event is dead and visible");
    assert_eq!(dead[0].attempts, 2);
    assert!(
        dead[0].last_error.as_deref().unwrap().contains("400"),
        "{:?}",
        dead[0].last_error
    );
    assert!(app.store.get_deal("31840021").await.unwrap().is_none());

    assert_eq!(
        app.store
            .requeue(jarvis_store::Requeue::Dead)
            .await
            .unwrap(),
        1
    );
    app.wait_idle(IDLE).await;
    assert!(
        app.store.get_deal("31840021").await.unwrap().is_some(),
        "replayed event processed"
    );
    assert_eq!(app.store.stats().await.unwrap().dead, 0);
    app.stop().await;
}

async fn health_and_metrics_report_the_queue(backend: Backend) {
    let Some(app) = TestApp::spawn(backend, &[]).await else {
        return;
    };
    let get = |p: &str| app.http.get(format!("{}{p}", app.base)).send();
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    assert_eq!(get("/readyz").await.unwrap().status(), 200);
    app.post_form(fixture("lead_add.form")).await;
    app.post_form("not a webhook").await;
    app.wait_idle(IDLE).await;
    let metrics = get("/metrics").await.unwrap().text().await.unwrap();
    for name in [
        "jarvis_events_received_total",
        "jarvis_events_stored_total",
        "jarvis_webhooks_rejected_total",
        "jarvis_events_processed_total",
        "jarvis_backlog_events",
        "jarvis_dead_events",
        "jarvis_webhook_duration_seconds_bucket",
        "jarvis_processing_lag_seconds_bucket",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    app.stop().await;
}

async fn missing_oauth_tokens_leave_events_waiting(backend: Backend) {
    let server = amocrm().await;
    let Some(app) = TestApp::spawn(
        backend,
        &[
            ("AMOCRM_BASE_URL", &server.uri()),
            ("AMOCRM_SUBDOMAIN", "geodrive"),
            ("AMOCRM_CLIENT_ID", "integration-id"),
            ("AMOCRM_CLIENT_SECRET", "client-secret"),
            ("AMOCRM_REDIRECT_URI", "https://example.com/cb"),
            ("JARVIS_MAX_ATTEMPTS", "1"),
        ],
    )
    .await
    else {
        return;
    };
    app.post_form(fixture("lead_status.form")).await;
    // No tokens yet: the attempt fails, and even with one allowed attempt the event waits, not dies.
    let mut stats = app.store.stats().await.unwrap();
    for _ in 0..200 {
        if stats.retrying > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
        stats = app.store.stats().await.unwrap();
    }
    assert_eq!((stats.retrying, stats.dead, stats.backlog), (1, 0, 1));
    assert!(server.received_requests().await.unwrap().is_empty());

    // An operator exchanges a code (here: the pair is stored directly); the event then goes through.
    let tokens = jarvis_store::StoredTokens {
        access_token: "access-1".into(),
        refresh_token: "refresh-1".into(),
        token_type: "Bearer".into(),
        expires_at: chrono_now_plus_day(),
        updated_at: chrono_now_plus_day(),
    };
    app.store.save_tokens("geodrive", &tokens).await.unwrap();
    app.wait_idle(IDLE).await;
    assert!(app.store.get_deal("31840021").await.unwrap().is_some());
    let leads = requests_to(&server, "/api/v4/leads").await;
    assert_eq!(leads[0].headers["authorization"], "Bearer access-1");
    app.stop().await;
}

fn chrono_now_plus_day() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now() + chrono::Duration::days(1)
}

/// Two instances on one PostgreSQL database: both receive webhooks, one worker spends the account's
/// API budget (the other stands by), so a burst split between them is still fetched in one request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_api_worker() {
    let Some(url) = jarvis_store::testing::fresh_postgres_url().await else {
        return;
    };
    let server = amocrm().await;
    let env = api_env(&server);
    let mut extra: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    extra.push(("JARVIS_BATCH_WINDOW_MS", "3000"));
    let first = TestApp::spawn_on(&url, None, &extra).await;
    let second = TestApp::spawn_on(&url, None, &extra).await;
    for i in 0..100u64 {
        let app = if i % 2 == 0 { &first } else { &second };
        let response = app
            .post_form(status_body(50_000_000 + i % 40, 1764000000 + i as i64))
            .await;
        assert_eq!(response.status(), 200);
    }
    first.wait_idle(IDLE).await;
    assert_eq!(first.store.stats().await.unwrap().processed, 100);
    let lead_requests = requests_to(&server, "/api/v4/leads").await;
    assert!(
        lead_requests.len() <= 2,
        "{} lead requests",
        lead_requests.len()
    );
    let asked: BTreeSet<u64> = lead_requests.iter().flat_map(filter_ids).collect();
    assert_eq!(asked.len(), 40);
    first.stop().await;
    second.stop().await;
}

async fn contact_change_reaches_its_deals_without_a_lead_request(backend: Backend) {
    let server = amocrm().await;
    let Some(app) = spawn_api(backend, &server, &[]).await else {
        return;
    };
    app.post_form(fixture("lead_status.form")).await;
    app.wait_idle(IDLE).await;
    let before = app.store.get_deal("31840021").await.unwrap().unwrap();
    assert_eq!(before.main_contact_id.as_deref(), Some("32840021"));

    // The main contact's phone changes in amoCRM: its event is confirmed by fetching the contact.
    let mut changed = api_contact(32840021);
    changed["custom_fields_values"][0]["values"][0]["value"] = json!("+7 (900) 000-11-22");
    Mock::given(method("GET"))
        .and(path("/api/v4/contacts"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"_page": 1, "_embedded": {"contacts": [changed]}})),
        )
        .with_priority(1)
        .mount(&server)
        .await;
    let body = fixture("contact_update.form")
        .replace("52110077", "32840021")
        .replace("%2B7+%28999%29+123-45-67", "%2B7+%28900%29+000-11-22");
    assert_eq!(app.post_form(body).await.status(), 200);
    app.wait_idle(IDLE).await;
    let after = app.store.get_deal("31840021").await.unwrap().unwrap();
    let fields = after.contact_custom_fields.expect("contact fields");
    assert_eq!(fields[0]["field_code"], "PHONE");
    assert_eq!(fields[0]["values"][0]["value"], "+7 (900) 000-11-22");
    assert_eq!(
        after.updated_at, before.updated_at,
        "the deal itself did not change"
    );
    assert_eq!(requests_to(&server, "/api/v4/leads").await.len(), 1);
    assert_eq!(requests_to(&server, "/api/v4/contacts").await.len(), 2);
    app.stop().await;
}

/// PostgreSQL text cannot hold a NUL character: such a body is refused as bad input (400, kept for
/// audit), never answered 503 forever. SQLite stores it.
async fn a_value_the_database_refuses_is_bad_input_not_an_outage(backend: Backend) {
    let Some(app) = TestApp::spawn(backend, &[]).await else {
        return;
    };
    let body = fixture("lead_add.form").replace("RP-48213", "RP%0048213");
    let response = app.post_form(body.clone()).await;
    match backend {
        Backend::Postgres => {
            assert_eq!(response.status(), 400);
            let rejected = app.store.list_rejected(10).await.unwrap();
            assert_eq!(rejected.len(), 1);
            assert_eq!(rejected[0].rejected.body, body.as_bytes());
        }
        Backend::Sqlite => assert_eq!(response.status(), 200),
    }
    // The service goes on as usual.
    assert_eq!(
        app.post_form(fixture("lead_status.form")).await.status(),
        200
    );
    app.wait_idle(IDLE).await;
    assert_eq!(app.store.stats().await.unwrap().dead, 0);
    app.stop().await;
}

/// Answers the given statuses in turn, then like [`Leads`].
struct Statuses {
    statuses: Vec<u16>,
    calls: AtomicUsize,
}
impl Respond for Statuses {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        match self.statuses.get(self.calls.fetch_add(1, Ordering::SeqCst)) {
            Some(status) => ResponseTemplate::new(*status),
            None => Leads.respond(req),
        }
    }
}

/// Two outage answers, then one refusal: with two attempts allowed, the refusal is the first counted
/// failure, so the event lives to succeed (outages only ever delay).
async fn outages_do_not_count_towards_dead(backend: Backend) {
    let server = MockServer::start().await;
    let statuses = Statuses {
        statuses: vec![503, 503, 400],
        calls: AtomicUsize::new(0),
    };
    Mock::given(method("GET"))
        .and(path("/api/v4/leads"))
        .respond_with(statuses)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v4/contacts"))
        .respond_with(Contacts)
        .mount(&server)
        .await;
    let extra = [("JARVIS_MAX_ATTEMPTS", "2"), ("AMOCRM_MAX_RETRIES", "0")];
    let Some(app) = spawn_api(backend, &server, &extra).await else {
        return;
    };
    app.post_form(fixture("lead_status.form")).await;
    app.wait_idle(Duration::from_secs(60)).await;
    let stats = app.store.stats().await.unwrap();
    assert_eq!((stats.processed, stats.dead), (1, 0));
    assert_eq!(requests_to(&server, "/api/v4/leads").await.len(), 4);
    assert!(app.store.get_deal("31840021").await.unwrap().is_some());
    app.stop().await;
}
