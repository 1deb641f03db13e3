//! Never missing a change: the service against a stateful fake amoCRM whose events feed records every
//! change and whose webhook registry can switch a webhook off.
//!
//! 1. The service is stopped while 300 changes happen over 120 leads, then started: the downtime is a
//!    gap, caught up through the events feed within ⌈events/100⌉ + ⌈leads/250⌉ + ⌈contacts/250⌉
//!    requests, and every changed row reaches amoCRM's state (PostgreSQL and SQLite).
//! 2. amoCRM switches the webhook off: the service subscribes it again within one check and catches
//!    up what was not delivered (PostgreSQL and SQLite).
//! 3. A catch-up stopped in the middle (the process gone during a page) goes on from the last page
//!    done, and queuing a gap again stores nothing twice (PostgreSQL and SQLite).
//! 4. The database down for a while (webhooks answered 503) is a gap that is caught up (PostgreSQL,
//!    through a TCP switch in front of it).

use std::collections::BTreeMap;
use std::net::TcpListener as StdTcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fake_amocrm::{FakeAmo, FakeConfig, contact_event_body, lead_event_body};
use jarvis_service::catch_up::{CatchUp, FEED_TYPES, LEAD_CATCH_UP};
use jarvis_service::{Application, RunParts, Settings};
use jarvis_store::{DynStore, GapKind};
use serde_json::json;
use sqlx::Row;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const SECRET: &str = "catch-up-webhook-secret-0123456789";
const TOKEN: &str = "catch-up-long-lived-token";

#[derive(Debug, Clone, Copy)]
enum Backend {
    Postgres,
    Sqlite,
}

struct Database {
    url: String,
    _dir: Option<tempfile::TempDir>,
}

async fn database(backend: Backend) -> Option<Database> {
    match backend {
        Backend::Postgres => jarvis_store::testing::fresh_postgres_url()
            .await
            .map(|url| Database { url, _dir: None }),
        Backend::Sqlite => {
            let (url, dir) = jarvis_store::testing::fresh_sqlite_url();
            Some(Database {
                url,
                _dir: Some(dir),
            })
        }
    }
}

fn free_port() -> u16 {
    StdTcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn fake_amo(leads: usize, contacts: usize) -> FakeAmo {
    let fake = FakeAmo::new(FakeConfig {
        long_lived_token: Some(TOKEN.into()),
        ..FakeConfig::default()
    });
    fake.seed(leads, contacts, 16);
    fake.start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    fake
}

/// The service in this process, on a fixed port so a restart keeps the URL amoCRM posts to.
struct Service {
    env: BTreeMap<String, String>,
    store: Option<DynStore>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Service {
    fn new(database_url: &str, fake: &FakeAmo, extra: &[(&str, &str)]) -> Service {
        let port = free_port();
        let mut env = BTreeMap::new();
        for (k, v) in [
            ("DATABASE_URL", database_url.to_string()),
            ("JARVIS_LISTEN", format!("127.0.0.1:{port}")),
            ("JARVIS_PUBLIC_URL", format!("http://127.0.0.1:{port}")),
            ("AMOCRM_WEBHOOK_SECRET", SECRET.into()),
            ("AMOCRM_BASE_URL", fake.base_url().unwrap()),
            ("AMOCRM_LONG_LIVED_TOKEN", TOKEN.into()),
            ("AMOCRM_ACCOUNT_ID", fake.config().account_id.to_string()),
            ("JARVIS_BATCH_WINDOW_MS", "50".into()),
            (
                "JARVIS_WEBHOOK_SETTINGS",
                "add_lead,update_lead,status_lead,delete_lead,update_contact".into(),
            ),
        ] {
            env.insert(k.to_string(), v);
        }
        for (k, v) in extra {
            env.insert(k.to_string(), v.to_string());
        }
        Service {
            env,
            store: None,
            stop: None,
            task: None,
        }
    }

    fn settings(&self) -> Settings {
        Settings::from_sources(None, &self.env).expect("test settings")
    }

    fn destination(&self) -> String {
        format!("{}/amocrm/webhook/{SECRET}", self.env["JARVIS_PUBLIC_URL"])
    }

    async fn start(&mut self) {
        let app = Application::build(self.settings(), RunParts::default())
            .await
            .expect("service builds");
        self.store = Some(app.state().store.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        self.stop = Some(stop);
        self.task = Some(tokio::spawn(app.run(async move {
            let _ = stopped.await;
        })));
    }

    async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("service task").expect("service run");
        }
    }

    fn store(&self) -> &DynStore {
        self.store.as_ref().expect("started")
    }

    /// Waits until every gap is caught up and the queue is empty.
    async fn wait_caught_up(&self, timeout: Duration) {
        let started = Instant::now();
        loop {
            let gaps = self.store().open_gaps().await.expect("gaps");
            let backlog = self.store().queue_stats().await.expect("stats").backlog;
            if gaps.is_empty() && backlog == 0 {
                return;
            }
            assert!(
                started.elapsed() < timeout,
                "not caught up after {timeout:?}: {} open gap(s), backlog {backlog}",
                gaps.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

async fn subscribe(fake: &FakeAmo, destination: &str) {
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v4/webhooks", fake.base_url().unwrap()))
        .bearer_auth(TOKEN)
        .json(&json!({"destination": destination, "settings": ["update_lead"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
}

async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < timeout,
            "{what}: not within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// API requests other than the subscription check (and the fake's control endpoints).
fn catch_up_requests(fake: &FakeAmo) -> (u64, u64, u64, u64) {
    let log = fake.requests();
    let events = log.route("GET /api/v4/events");
    let leads = log.route("GET /api/v4/leads");
    let contacts = log.route("GET /api/v4/contacts");
    let checks = log.route("GET /api/v4/webhooks") + log.route("POST /api/v4/webhooks");
    assert_eq!(
        log.total,
        events + leads + contacts + checks,
        "no other request: {:?}",
        log.by_route
    );
    (events, leads, contacts, checks)
}

fn ceil_div(n: u64, d: u64) -> u64 {
    n.div_ceil(d)
}

/// The stored deal equals the fake's lead in what the mirror keeps.
async fn assert_deal_matches(store: &DynStore, fake: &FakeAmo, id: u64) {
    let lead = fake.lead(id).expect("lead exists");
    let deal = store
        .get_deal(&id.to_string())
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("deal {id} is mirrored"));
    assert_eq!(deal.status_id, lead["status_id"].as_i64(), "status of {id}");
    assert_eq!(deal.price, lead["price"].as_i64(), "price of {id}");
    assert_eq!(
        deal.updated_at.map(|t| t.timestamp()),
        lead["updated_at"].as_i64(),
        "updated_at of {id}"
    );
    assert!(!deal.is_deleted, "{id} is not deleted");
}

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Backend::Postgres).await } )*
        }
        mod sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Backend::Sqlite).await } )*
        }
    };
}

on_both!(
    downtime_is_caught_up_within_the_request_bound,
    a_disabled_webhook_is_resubscribed_and_caught_up,
    a_stopped_catch_up_resumes_from_the_last_page_without_double_work,
);

async fn downtime_is_caught_up_within_the_request_bound(backend: Backend) {
    let Some(db) = database(backend).await else {
        return;
    };
    let fake = fake_amo(120, 40).await;
    let mut service = Service::new(&db.url, &fake, &[]);
    subscribe(&fake, &service.destination()).await;
    // The mirror before the gap: every lead and contact, through `jarvis sync`'s path.
    let leads = fake.lead_ids();
    let contacts = fake.contact_ids();
    jarvis_service::commands::sync::run(service.settings(), &[], &contacts)
        .await
        .expect("sync contacts");
    jarvis_service::commands::sync::run(service.settings(), &leads, &[])
        .await
        .expect("sync leads");
    service.start().await;
    for id in &leads {
        assert_deal_matches(service.store(), &fake, *id).await;
    }
    let store = service.store().clone();
    wait_for("the subscription check", Duration::from_secs(10), || {
        let fake = fake.clone();
        async move { fake.requests().route("GET /api/v4/webhooks") >= 1 }
    })
    .await;
    service.stop().await;
    assert!(store.open_gaps().await.unwrap().is_empty());

    // Down: 300 changes over 120 leads, 10 contacts renamed, 2 leads deleted, 3 created.
    for n in 0..300 {
        fake.touch_lead(leads[n % leads.len()]);
    }
    for (n, id) in contacts.iter().take(10).enumerate() {
        fake.rename_contact(*id, &format!("Переименован {n}"));
    }
    let deleted = [leads[0], leads[1]];
    for id in deleted {
        fake.delete_lead(id);
    }
    let created: Vec<u64> = (0..3)
        .map(|_| fake.create_lead()["id"].as_u64().unwrap())
        .collect();
    let feed_events = fake.feed_events().len() as u64;
    assert!(feed_events >= 305, "{feed_events}");
    fake.reset_counters();

    service.start().await;
    service.wait_caught_up(Duration::from_secs(60)).await;

    let (events, lead_requests, contact_requests, checks) = catch_up_requests(&fake);
    // Deleted leads are fetched too: the API not returning them is what marks them deleted.
    let changed_leads = (leads.len() + created.len()) as u64;
    let bound = ceil_div(feed_events, 100) + ceil_div(changed_leads, 250) + ceil_div(10, 250);
    assert_eq!(events, ceil_div(feed_events, 100), "feed pages");
    assert!(
        events + lead_requests + contact_requests <= bound,
        "{events} + {lead_requests} + {contact_requests} requests, bound {bound}"
    );
    assert_eq!(checks, 1, "one subscription check at start");
    for id in leads.iter().skip(2).chain(&created) {
        assert_deal_matches(service.store(), &fake, *id).await;
    }
    for id in deleted {
        let deal = service
            .store()
            .get_deal(&id.to_string())
            .await
            .unwrap()
            .unwrap();
        assert!(deal.is_deleted, "deleted lead {id}");
    }
    for id in contacts.iter().take(10) {
        let contact = service
            .store()
            .get_contact(&id.to_string())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            contact.name,
            fake.contact(*id).unwrap()["name"]
                .as_str()
                .map(String::from)
        );
    }
    service.stop().await;
}

async fn a_disabled_webhook_is_resubscribed_and_caught_up(backend: Backend) {
    let Some(db) = database(backend).await else {
        return;
    };
    let fake = fake_amo(30, 10).await;
    let check_secs = 1;
    let mut service = Service::new(
        &db.url,
        &fake,
        &[("JARVIS_WEBHOOK_CHECK_SECS", &check_secs.to_string())],
    );
    subscribe(&fake, &service.destination()).await;
    service.start().await;
    let account = fake.config().account_id;
    let subdomain = fake.config().subdomain.clone();
    let leads = fake.lead_ids();

    // Delivered while the webhook works.
    let lead = fake.touch_lead(leads[0]);
    let outcome = fake
        .deliver(&lead_event_body(&lead, "status", account, &subdomain))
        .await;
    assert_eq!(outcome.accepted, 1);
    service.wait_caught_up(Duration::from_secs(20)).await;
    assert_deal_matches(service.store(), &fake, leads[0]).await;

    // amoCRM switches it off; changes are not delivered.
    let feed_reads = fake.requests().route("GET /api/v4/events");
    assert!(fake.disable_webhook(&service.destination()));
    let switched_off = Instant::now();
    for id in &leads[1..11] {
        let lead = fake.touch_lead(*id);
        let outcome = fake
            .deliver(&lead_event_body(&lead, "status", account, &subdomain))
            .await;
        assert_eq!(outcome.skipped, 1);
    }
    let contact = fake.contact_ids()[0];
    let renamed = fake.rename_contact(contact, "Не доставлено");
    fake.deliver(&contact_event_body(&renamed, "update", account, &subdomain))
        .await;

    wait_for(
        "subscribed again",
        Duration::from_secs(check_secs + 5),
        || {
            let fake = fake.clone();
            async move { fake.webhooks().iter().all(|w| w["disabled"] == false) }
        },
    )
    .await;
    assert!(
        switched_off.elapsed() < Duration::from_secs(check_secs + 5),
        "within one check"
    );
    wait_for("the gap read", Duration::from_secs(10), || {
        let fake = fake.clone();
        async move { fake.requests().route("GET /api/v4/events") > feed_reads }
    })
    .await;
    service.wait_caught_up(Duration::from_secs(30)).await;
    for id in &leads[..11] {
        assert_deal_matches(service.store(), &fake, *id).await;
    }
    let stored = service
        .store()
        .get_contact(&contact.to_string())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.name.as_deref(), Some("Не доставлено"));

    // Delivered again after the resubscription.
    let lead = fake.touch_lead(leads[20]);
    let outcome = fake
        .deliver(&lead_event_body(&lead, "status", account, &subdomain))
        .await;
    assert_eq!(outcome.accepted, 1);
    service.wait_caught_up(Duration::from_secs(20)).await;
    assert_deal_matches(service.store(), &fake, leads[20]).await;
    service.stop().await;
}

async fn a_stopped_catch_up_resumes_from_the_last_page_without_double_work(backend: Backend) {
    let Some(db) = database(backend).await else {
        return;
    };
    let fake = fake_amo(150, 20).await;
    let store = jarvis_store::connect(&db.url).await.unwrap();
    store.migrate().await.unwrap();
    let from = chrono::Utc::now() - chrono::Duration::seconds(5);
    let leads = fake.lead_ids();
    for id in &leads {
        fake.touch_lead(*id);
        fake.touch_lead(*id);
    }
    let events = fake.feed_events().len() as u64;
    let pages = ceil_div(events, 100);
    assert!(pages >= 3, "{events} events");
    let gap_id = store
        .open_gap(
            &GapKind::Manual,
            from,
            chrono::Utc::now() + chrono::Duration::seconds(1),
        )
        .await
        .unwrap();
    let client = amocrm_client::Client::builder()
        .base_url(fake.base_url().unwrap())
        .long_lived_token(amocrm_client::AccessToken::new(TOKEN))
        .build()
        .unwrap();
    let catch_up = Arc::new(CatchUp {
        store: store.clone(),
        client,
        account_id: None,
        wake: Arc::new(tokio::sync::Notify::new()),
    });

    // Stopped while the second page is in flight, as a crash would.
    fake.set_latency(Duration::from_millis(400));
    let gap = store.open_gaps().await.unwrap().remove(0);
    let run = {
        let catch_up = catch_up.clone();
        tokio::spawn(async move { catch_up.gap(&gap).await })
    };
    wait_for("the first page recorded", Duration::from_secs(10), || {
        let store = store.clone();
        async move { store.open_gaps().await.unwrap()[0].pages_done == 1 }
    })
    .await;
    run.abort();
    let _ = run.await;
    fake.set_latency(Duration::ZERO);
    let gap = store.open_gaps().await.unwrap().remove(0);
    assert_eq!(gap.id, gap_id);
    assert_eq!(gap.pages_done, 1);
    assert!(gap.read_done_at.is_none());
    let before = fake.requests().route("GET /api/v4/events");

    let report = catch_up.gap(&gap).await.expect("resumed");
    assert_eq!(
        report.pages_read as u64,
        pages - 1,
        "only the pages not done"
    );
    assert_eq!(
        fake.requests().route("GET /api/v4/events") - before,
        pages - 1
    );
    assert_eq!(report.leads, leads.len());
    assert_eq!(report.queued, leads.len() as u64);
    assert!(store.open_gaps().await.unwrap().is_empty());

    // Queuing it again (a crash before the gap was closed) stores nothing twice.
    let mut again = gap.clone();
    again.read_done_at = Some(chrono::Utc::now());
    let report = catch_up.gap(&again).await.unwrap();
    assert_eq!(report.queued, 0);
    assert_eq!(report.pages_read, 0);
    let queued = count_catch_up_events(&store, &db.url).await;
    assert_eq!(queued, leads.len() as u64);
}

async fn count_catch_up_events(store: &DynStore, url: &str) -> u64 {
    let stats = store.stats().await.unwrap();
    let by_type: u64 = stats
        .by_type
        .iter()
        .filter(|(t, _)| t == LEAD_CATCH_UP)
        .map(|(_, n)| *n)
        .sum();
    // Cross-checked with a direct count.
    if url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let n: i64 =
            sqlx::query("SELECT count(*) AS n FROM amocrm_webhook_events WHERE event_type = $1")
                .bind(LEAD_CATCH_UP)
                .fetch_one(&pool)
                .await
                .unwrap()
                .get("n");
        assert_eq!(n as u64, by_type);
    }
    by_type
}

#[test]
fn feed_types_are_those_the_fake_records() {
    for t in [
        "lead_added",
        "lead_deleted",
        "lead_status_changed",
        "sale_field_changed",
        "entity_responsible_changed",
        "name_field_changed",
    ] {
        assert!(FEED_TYPES.contains(&t), "{t}");
    }
}

// ---------------------------------------------------------------------------------------------------
// The database down

/// A TCP forwarder in front of PostgreSQL that the test can cut.
struct Switch {
    port: u16,
    on: Arc<std::sync::atomic::AtomicBool>,
    conns: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
}

impl Switch {
    async fn start(target: String) -> Switch {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let on = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let conns: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>> = Default::default();
        let (on2, conns2) = (on.clone(), conns.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !on2.load(std::sync::atomic::Ordering::SeqCst) {
                    continue;
                }
                let target = target.clone();
                let handle = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                conns2.lock().unwrap().push(handle);
            }
        });
        Switch { port, on, conns }
    }

    fn cut(&self) {
        self.on.store(false, std::sync::atomic::Ordering::SeqCst);
        for handle in self.conns.lock().unwrap().drain(..) {
            handle.abort();
        }
    }

    fn restore(&self) {
        self.on.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_refusing_writes_is_a_gap_that_is_caught_up() {
    let Some(url) = jarvis_store::testing::fresh_postgres_url().await else {
        return;
    };
    let parsed = url::Url::parse(&url).unwrap();
    let target = format!(
        "{}:{}",
        parsed.host_str().unwrap(),
        parsed.port().unwrap_or(5432)
    );
    let switch = Switch::start(target).await;
    let mut switched = parsed.clone();
    switched.set_port(Some(switch.port)).unwrap();
    let fake = fake_amo(20, 5).await;
    let mut service = Service::new(switched.as_str(), &fake, &[]);
    subscribe(&fake, &service.destination()).await;
    service.start().await;
    let (account, subdomain) = (fake.config().account_id, fake.config().subdomain.clone());
    let leads = fake.lead_ids();

    switch.cut();
    let mut refused = 0;
    for id in &leads[..8] {
        let lead = fake.touch_lead(*id);
        let outcome = fake
            .deliver(&lead_event_body(&lead, "status", account, &subdomain))
            .await;
        refused += outcome.failed;
    }
    assert!(refused > 0, "the database being down refuses deliveries");
    switch.restore();

    // The heartbeat writes the refusals as a gap once the database is back; it is caught up.
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    wait_for(
        "the refusals recorded as a gap",
        Duration::from_secs(30),
        || {
            let pool = pool.clone();
            async move {
                let n: i64 = sqlx::query(
                    "SELECT count(*) AS n FROM jarvis_gaps WHERE kind = 'database_refused'",
                )
                .fetch_one(&pool)
                .await
                .map(|row| row.get("n"))
                .unwrap_or(0);
                n > 0
            }
        },
    )
    .await;
    service.wait_caught_up(Duration::from_secs(60)).await;
    for id in &leads[..8] {
        assert_deal_matches(service.store(), &fake, *id).await;
    }
    service.stop().await;
}

// ---------------------------------------------------------------------------------------------------
// The figure in BENCHMARKS.md

/// Requests spent to repair a 1-hour gap holding 1,000 changes over 300 leads (`jarvis catch-up
/// --since 1h`, then the worker), against the 1,000 a design calling the API once per event spends.
/// Prints the figure: `cargo test -p jarvis-service --test catch_up one_hour_gap -- --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hour_gap_with_1000_changes_over_300_leads() {
    let db = database(Backend::Sqlite).await.unwrap();
    let fake = fake_amo(300, 100).await;
    let service_env = Service::new(&db.url, &fake, &[]);
    subscribe(&fake, &service_env.destination()).await;
    let leads = fake.lead_ids();
    for n in 0..1000 {
        fake.touch_lead(leads[n % leads.len()]);
    }
    let events = fake.feed_events().len() as u64;
    fake.reset_counters();
    let started = Instant::now();
    let since = jarvis_service::catch_up::parse_since("1h").unwrap();
    jarvis_service::commands::catch_up::run(&service_env.settings(), since)
        .await
        .expect("catch-up");
    let (feed, ..) = catch_up_requests(&fake);
    // The command and the service are two processes with a rate limiter each; the fake's window is
    // forgotten between them as the time between a command and a later start would.
    fake.reset_counters();
    let mut service = service_env;
    service.start().await;
    service.wait_caught_up(Duration::from_secs(60)).await;
    let elapsed = started.elapsed();
    let (_, lead_requests, contact_requests, _checks) = catch_up_requests(&fake);
    assert_eq!(fake.requests().rate_limited, 0, "no 429");
    let total = feed + lead_requests + contact_requests;
    let distinct_contacts = {
        let mut ids: Vec<u64> = leads
            .iter()
            .filter_map(|id| {
                fake.lead(*id).and_then(|l| {
                    l["_embedded"]["contacts"]
                        .as_array()
                        .and_then(|c| c.iter().find(|c| c["is_main"] == true))
                        .and_then(|c| c["id"].as_u64())
                })
            })
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids.len() as u64
    };
    assert!(
        total <= ceil_div(events, 100) + ceil_div(300, 250) + ceil_div(distinct_contacts, 250),
        "{total} requests: {feed} events pages, {lead_requests} leads, {contact_requests} contacts \
         ({events} events, {distinct_contacts} main contacts)"
    );
    for id in &leads {
        assert_deal_matches(service.store(), &fake, *id).await;
    }
    println!(
        "one-hour gap: 1000 changes over 300 leads = {events} feed events; repaired with {total} requests \
         ({feed} events pages + {lead_requests} leads + {contact_requests} contacts) in {:.1} s; \
         a per-event design spends 1000",
        elapsed.as_secs_f64()
    );
    service.stop().await;
}
