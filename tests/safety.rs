//! End-to-end: what keeps the service safe when something around it breaks. amoCRM refusing access is
//! reported and cleared; a batch that fails during an outage comes back as one batch; a worker that
//! loses its account lock mid-batch stops before another takes over, so no lead is fetched twice.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use jarvis_service::RunParts;
use jarvis_service::amo::access_broken;
use jarvis_tests::{Backend, Switch, TestApp, fixture, fresh_database};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const IDLE: Duration = Duration::from_secs(30);

fn filter_ids(req: &Request) -> Vec<u64> {
    req.url
        .query_pairs()
        .filter(|(k, _)| k.starts_with("filter[id]"))
        .filter_map(|(_, v)| v.parse().ok())
        .collect()
}

fn api_lead(id: u64) -> Value {
    json!({
        "id": id, "name": format!("Lead #{id}"), "price": 10500, "responsible_user_id": 8215487,
        "status_id": 142, "pipeline_id": 7401234, "created_at": 1763990000,
        "updated_at": 1764000150, "closed_at": null, "is_deleted": false,
        "custom_fields_values": null, "account_id": 29071803,
        "_embedded": {"tags": [], "companies": [], "contacts": []}
    })
}

/// amoCRM's leads endpoint: the asked leads, or `failure` while `down` is set.
struct Leads {
    down: Arc<AtomicBool>,
    failure: u16,
}

impl Respond for Leads {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        if self.down.load(Ordering::SeqCst) {
            return ResponseTemplate::new(self.failure)
                .set_body_json(json!({"title": "failure", "status": self.failure}));
        }
        let leads: Vec<Value> = filter_ids(req).into_iter().map(api_lead).collect();
        ResponseTemplate::new(200).set_body_json(json!({
            "_page": 1, "_links": {}, "_embedded": {"leads": leads}
        }))
    }
}

async fn amocrm(down: Arc<AtomicBool>, failure: u16, delay: Duration) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v4/leads"))
        .respond_with(LeadsWithDelay {
            leads: Leads { down, failure },
            delay,
        })
        .mount(&server)
        .await;
    server
}

struct LeadsWithDelay {
    leads: Leads,
    delay: Duration,
}

impl Respond for LeadsWithDelay {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        self.leads.respond(req).set_delay(self.delay)
    }
}

async fn lead_requests(server: &MockServer) -> Vec<Request> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.url.path() == "/api/v4/leads")
        .collect()
}

/// A lead status-change body for lead `id`.
fn status_body(id: u64) -> String {
    fixture("lead_status.form").replace("31840021", &id.to_string())
}

fn api_env(server: &MockServer, token: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AMOCRM_BASE_URL", server.uri()),
        ("AMOCRM_SUBDOMAIN", "geodrive".to_string()),
        ("AMOCRM_LONG_LIVED_TOKEN", token.to_string()),
        ("AMOCRM_MAX_RETRIES", "0".to_string()),
    ]
}

fn borrowed<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// Stores `leads` status events through an HTTP-only instance, so a worker started afterwards
/// finds them all at once.
async fn receive(url: &str, leads: impl Iterator<Item = u64>) {
    let receiver = TestApp::spawn_parts(
        url,
        None,
        &[],
        RunParts {
            http: true,
            worker: false,
        },
    )
    .await;
    for id in leads {
        let response = receiver.post_form(status_body(id)).await;
        assert_eq!(response.status(), 200);
    }
    receiver.stop().await;
}

async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < timeout, "{what} within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
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
    refused_api_access_is_reported_until_it_works_again,
    unpaid_or_blocked_accounts_are_reported_and_events_wait,
    a_batch_failed_by_an_outage_is_retried_as_one_batch,
);

async fn refused_api_access_is_reported_until_it_works_again(backend: Backend) {
    let down = Arc::new(AtomicBool::new(true));
    let server = amocrm(down.clone(), 401, Duration::ZERO).await;
    let env = api_env(&server, "revoked-token");
    let Some(app) = TestApp::spawn(backend, &borrowed(&env)).await else {
        return;
    };
    app.post_form(status_body(31840021)).await;
    wait_until("the broken access is stored", IDLE, || async {
        access_broken(&app.store).await.unwrap().is_some()
    })
    .await;
    let broken = access_broken(&app.store).await.unwrap().unwrap();
    assert_eq!(broken.reason, "unauthorized");
    assert!(broken.advice.contains("401"), "{}", broken.advice);
    assert!((chrono::Utc::now() - broken.since).num_seconds() < 60);
    let metrics = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // The gauge is process-wide and other tests here clear it: only its presence is certain.
    assert!(
        metrics.contains(r#"jarvis_api_access_broken{reason="unauthorized"}"#),
        "{metrics}"
    );
    assert!(metrics.contains("jarvis_api_access_errors_total{reason=\"unauthorized\"}"));
    let page = app
        .http
        .get(format!("{}/status", app.base))
        .bearer_auth(jarvis_tests::API_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("API access broken since"), "{page}");
    assert!(page.contains("unauthorized"), "{page}");
    // The database is fine: readiness is not about amoCRM.
    let ready = app
        .http
        .get(format!("{}/readyz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let stats = app.store.stats().await.unwrap();
    assert_eq!((stats.backlog, stats.dead), (1, 0));

    // Someone fixes the token: the postponed event goes through and the report is cleared.
    down.store(false, Ordering::SeqCst);
    app.wait_idle(IDLE).await;
    wait_until("the broken access is cleared", IDLE, || async {
        access_broken(&app.store).await.unwrap().is_none()
    })
    .await;
    assert!(app.store.get_deal("31840021").await.unwrap().is_some());
    let page = app
        .http
        .get(format!("{}/status", app.base))
        .bearer_auth(jarvis_tests::API_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!page.contains("API access broken"), "{page}");
    app.stop().await;
}

/// 402 and 403 need a person just as 401 does: reported with their own reason and advice, the event
/// kept pending (never dead) for when access comes back.
async fn unpaid_or_blocked_accounts_are_reported_and_events_wait(backend: Backend) {
    for (status, reason) in [(402, "payment_required"), (403, "forbidden")] {
        let server = amocrm(Arc::new(AtomicBool::new(true)), status, Duration::ZERO).await;
        let env = api_env(&server, "some-token");
        let Some(app) = TestApp::spawn(backend, &borrowed(&env)).await else {
            return;
        };
        app.post_form(status_body(31840021)).await;
        wait_until("the broken access is stored", IDLE, || async {
            access_broken(&app.store).await.unwrap().is_some()
        })
        .await;
        let broken = access_broken(&app.store).await.unwrap().unwrap();
        assert_eq!(broken.reason, reason);
        assert!(
            broken.advice.contains(&status.to_string()),
            "{}",
            broken.advice
        );
        let stats = app.store.stats().await.unwrap();
        assert_eq!((stats.backlog, stats.dead), (1, 0), "after {status}");
        app.stop().await;
    }
}

async fn a_batch_failed_by_an_outage_is_retried_as_one_batch(backend: Backend) {
    const EVENTS: u64 = 20;
    let Some((url, _dir)) = fresh_database(backend).await else {
        return;
    };
    let leads: BTreeSet<u64> = (1..=EVENTS).map(|i| 40_000_000 + i).collect();
    receive(&url, leads.iter().copied()).await;

    let down = Arc::new(AtomicBool::new(true));
    let server = amocrm(down.clone(), 500, Duration::ZERO).await;
    let env = api_env(&server, "healthy-token");
    let worker = TestApp::spawn_parts(
        &url,
        None,
        &borrowed(&env),
        RunParts {
            http: false,
            worker: true,
        },
    )
    .await;
    // Several retries into the outage (they come 2 s, then half the events' age, apart).
    wait_until("three attempts during the outage", IDLE, || async {
        lead_requests(&server).await.len() >= 3
    })
    .await;
    down.store(false, Ordering::SeqCst);
    worker.wait_idle(IDLE).await;

    let requests = lead_requests(&server).await;
    for (n, request) in requests.iter().enumerate() {
        let asked: BTreeSet<u64> = filter_ids(request).into_iter().collect();
        assert_eq!(
            asked,
            leads,
            "request {n} of {} did not carry the whole batch",
            requests.len()
        );
    }
    // Three or four failed attempts and the one that worked; one request per event per attempt
    // would be about 20 per attempt.
    assert!(requests.len() <= 5, "{} lead requests", requests.len());
    let stats = worker.store.stats().await.unwrap();
    assert_eq!((stats.processed, stats.dead), (EVENTS, 0));
    eprintln!(
        "{backend:?}: {EVENTS} events through an outage cost {} lead requests, each for all {EVENTS}",
        requests.len()
    );
    worker.stop().await;
}

/// Worker A loses its database (its account lock with it) while a lead request is in flight; worker
/// B takes over once A's leases expire. A must not send another request after the cut, and no lead
/// may be asked for twice from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_loses_its_lock_mid_batch_stops_before_another_takes_over() {
    let Some(url) = jarvis_store::testing::fresh_postgres_url().await else {
        return;
    };
    // 300 leads: two requests (250 + 50), one after the other, each answered after 2 s.
    let leads: BTreeSet<u64> = (1..=300).map(|i| 41_000_000 + i).collect();
    receive(&url, leads.iter().copied()).await;
    let server = amocrm(
        Arc::new(AtomicBool::new(false)),
        500,
        Duration::from_secs(2),
    )
    .await;

    let mut through = reqwest::Url::parse(&url).unwrap();
    let target = format!(
        "{}:{}",
        through.host_str().unwrap(),
        through.port().unwrap_or(5432)
    );
    let switch = Switch::start(&target).await;
    through.set_port(Some(switch.port)).unwrap();
    let lease = [("JARVIS_LEASE_SECS", "3".to_string())];
    let mut env_a = api_env(&server, "token-of-a");
    env_a.extend(lease.iter().cloned());
    let mut env_b = api_env(&server, "token-of-b");
    env_b.extend(lease.iter().cloned());
    let worker_only = RunParts {
        http: false,
        worker: true,
    };

    let a = TestApp::spawn_parts(through.as_str(), None, &borrowed(&env_a), worker_only).await;
    wait_until("worker A's first lead request", IDLE, || async {
        !lead_requests(&server).await.is_empty()
    })
    .await;
    switch.cut();
    let before_cut = lead_requests(&server).await.len();
    let b = TestApp::spawn_parts(&url, None, &borrowed(&env_b), worker_only).await;
    b.wait_idle(Duration::from_secs(60)).await;
    // Time for a worker A that went on to send what it would send next.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let requests = lead_requests(&server).await;
    let after: Vec<&Request> = requests[before_cut..].iter().collect();
    let from_a = after
        .iter()
        .filter(|r| r.headers["authorization"] == "Bearer token-of-a")
        .count();
    assert_eq!(
        from_a, 0,
        "worker A sent {from_a} lead request(s) after losing its lock"
    );
    let mut asked = BTreeSet::new();
    for request in &after {
        for id in filter_ids(request) {
            assert!(
                asked.insert(id),
                "lead {id} was requested twice after the cut"
            );
        }
    }
    assert_eq!(asked, leads, "worker B fetched every lead once");
    let stats = b.store.stats().await.unwrap();
    assert_eq!((stats.processed, stats.dead), (300, 0));

    switch.restore();
    b.stop().await;
    a.stop().await;
}
