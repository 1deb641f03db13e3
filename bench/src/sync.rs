//! `bench sync`: a burst of events over a few hundred leads and contacts, the service in API mode
//! against the fake amoCRM (7 requests/s enforced there). Counts the API requests spent and the 429s,
//! and measures how long a lead change takes from the webhook's `200` to the deal row.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use fake_amocrm::{FakeAmo, FakeConfig, contact_event_body, lead_event_body};
use sqlx::Row;

use crate::db;
use crate::percentile;
use crate::service::Service;

const TOKEN: &str = "bench-long-lived-token";
/// Requests in flight at most while sending.
const SENDERS: usize = 32;

pub struct SyncOptions {
    pub events: usize,
    pub leads: usize,
    pub contacts: usize,
    pub seconds: u64,
    /// Share of lead events (the rest are contact updates).
    pub lead_share: f64,
    /// The service's `AMOCRM_RATE_PER_SECOND` (the fake always allows 7).
    pub service_rate: u32,
    /// Lead changes of the light-load phase (0: none), and their rate a second.
    pub latency_events: usize,
    pub latency_rate: f64,
}

/// A lead change acknowledged by the service: which lead, its new `updated_at`, and when.
struct LeadChange {
    lead: u64,
    updated_at: i64,
    acked_at: DateTime<Utc>,
}

pub async fn run(binary: &Path, options: &SyncOptions) -> anyhow::Result<()> {
    let fake = FakeAmo::new(FakeConfig {
        long_lived_token: Some(TOKEN.into()),
        ..FakeConfig::default()
    });
    fake.seed(options.leads, options.contacts, 1);
    let addr = fake.start("127.0.0.1:0".parse()?).await?;
    let (url, _dir) = db::fresh(db::Backend::Postgres).await?;
    let service = Service::start(
        binary,
        &[
            ("DATABASE_URL", url.clone()),
            ("AMOCRM_BASE_URL", format!("http://{addr}")),
            ("AMOCRM_SUBDOMAIN", "geodrive".into()),
            ("AMOCRM_LONG_LIVED_TOKEN", TOKEN.into()),
            ("AMOCRM_RATE_PER_SECOND", options.service_rate.to_string()),
        ],
    )
    .await?;
    fake.reset_counters();

    let changes: Arc<Mutex<Vec<LeadChange>>> = Arc::default();
    let sending = Arc::new(AtomicBool::new(true));
    // Polls the mirror while the events arrive: a change has arrived when its deal row's updated_at
    // reaches the change's. Polling from the start matters: a later change of the same lead rewrites
    // `synced_at`.
    let poller = {
        let (changes, sending, url) = (changes.clone(), sending.clone(), url.clone());
        tokio::spawn(async move { poll_mirror(&url, &changes, &sending).await })
    };
    let http = reqwest::Client::new();
    let leads = fake.lead_ids();
    let contacts = fake.contact_ids();
    let config = fake.config().clone();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut touched_leads = BTreeSet::new();
    let mut touched_contacts = BTreeSet::new();
    let mut failed = 0u64;
    let mut lead_changes = 0usize;
    // At most this many requests in flight, as a webhook sender keeps a few connections: a burst
    // of a thousand connections at once would queue in the listen backlog behind the service's
    // connection limit and spread over seconds.
    let in_flight = Arc::new(tokio::sync::Semaphore::new(SENDERS));
    // An open-loop, evenly paced stream; the choice of entity is a deterministic scramble.
    for i in 0..options.events {
        let at = started
            + Duration::from_secs_f64(i as f64 * options.seconds as f64 / options.events as f64);
        tokio::time::sleep_until(at.into()).await;
        let permit = in_flight.clone().acquire_owned().await?;
        let scramble = (i as u64).wrapping_mul(2_654_435_761) % 1000;
        let (body, change) = if (scramble as f64) < options.lead_share * 1000.0 {
            let id = leads[(i * 7919) % leads.len()];
            touched_leads.insert(id);
            lead_changes += 1;
            let lead = fake.touch_lead(id);
            let updated_at = lead["updated_at"].as_i64().unwrap_or(0);
            let action = if i % 2 == 0 { "status" } else { "update" };
            (
                lead_event_body(&lead, action, config.account_id, &config.subdomain),
                Some((id, updated_at)),
            )
        } else {
            let id = contacts[(i * 7907) % contacts.len()];
            touched_contacts.insert(id);
            let contact = fake.touch_contact(id);
            (
                contact_event_body(&contact, "update", config.account_id, &config.subdomain),
                None,
            )
        };
        let (http, url, changes) = (http.clone(), service.webhook_url(), changes.clone());
        tasks.spawn(async move {
            let _permit = permit;
            let resp = http
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await;
            let ok = matches!(&resp, Ok(r) if r.status().is_success());
            if ok && let Some((lead, updated_at)) = change {
                changes.lock().unwrap().push(LeadChange {
                    lead,
                    updated_at,
                    acked_at: Utc::now(),
                });
            }
            ok
        });
    }
    while let Some(done) = tasks.join_next().await {
        if !matches!(done, Ok(true)) {
            failed += 1;
        }
    }
    let sent_in = started.elapsed();
    sending.store(false, Ordering::SeqCst);
    let (mut latencies, unresolved) = poller.await??;
    let drained_in = started.elapsed();
    let log = fake.requests();
    let light = if options.latency_events > 0 {
        Some(light_load(&fake, &service, &url, options).await?)
    } else {
        None
    };
    service.stop();

    latencies.sort_by(f64::total_cmp);
    println!(
        "## Sync economy: {} events ({} lead changes over {} leads, {} contact updates over {} contacts) \
         sent in {:.1} s ({SENDERS} requests in flight at most) to the service in API mode (its rate limit {}/s); fake amoCRM seeded with {} leads / {} contacts, 7 req/s",
        options.events,
        lead_changes,
        touched_leads.len(),
        options.events - lead_changes - failed as usize,
        touched_contacts.len(),
        sent_in.as_secs_f64(),
        options.service_rate,
        options.leads,
        options.contacts,
    );
    println!();
    println!("| measure | value |");
    println!("|---|--:|");
    println!(
        "| events acknowledged | {} |",
        options.events as u64 - failed
    );
    println!("| send errors | {failed} |");
    println!("| API requests (old design: 1 per event) | {} |", log.total);
    for (route, n) in &log.by_route {
        println!("| &nbsp;&nbsp;{route} | {n} |");
    }
    println!("| 429 answers | {} |", log.rate_limited);
    println!(
        "| lead changes seen in the mirror | {} / {lead_changes} |",
        latencies.len()
    );
    println!(
        "| webhook 200 → deal row, p50 ms | {:.0} |",
        percentile(&latencies, 0.50)
    );
    println!(
        "| webhook 200 → deal row, p99 ms | {:.0} |",
        percentile(&latencies, 0.99)
    );
    println!(
        "| webhook 200 → deal row, max ms | {:.0} |",
        latencies.last().copied().unwrap_or(0.0)
    );
    println!(
        "| first body → last change mirrored, s | {:.1} |",
        drained_in.as_secs_f64()
    );
    if let Some(light) = &light {
        let rate = options.latency_rate;
        println!(
            "| light load ({rate} lead change/s, one at a time): changes seen in the mirror | {} / {} |",
            light.latencies.len(),
            options.latency_events
        );
        println!(
            "| &nbsp;&nbsp;webhook 200 → deal row, p50 ms | {:.0} |",
            percentile(&light.latencies, 0.50)
        );
        println!(
            "| &nbsp;&nbsp;webhook 200 → deal row, p99 ms | {:.0} |",
            percentile(&light.latencies, 0.99)
        );
        println!(
            "| &nbsp;&nbsp;webhook 200 → deal row, max ms | {:.0} |",
            light.latencies.last().copied().unwrap_or(0.0)
        );
        println!("| &nbsp;&nbsp;API requests | {} |", light.requests);
        println!("| &nbsp;&nbsp;429 answers | {} |", light.rate_limited);
    }
    println!();
    if unresolved > 0 {
        println!("WARNING: {unresolved} lead changes never reached the mirror");
    }
    if let Some(light) = &light
        && light.unresolved > 0
    {
        println!(
            "WARNING: {} light-load lead changes never reached the mirror",
            light.unresolved
        );
    }
    Ok(())
}

/// What the light-load phase measured.
struct LightLoad {
    /// Webhook 200 → deal row, ms, sorted.
    latencies: Vec<f64>,
    unresolved: usize,
    requests: u64,
    rate_limited: u64,
}

/// Lead changes one at a time, evenly paced, each to a lead of its own: how long a change takes to
/// reach its row when the service is otherwise idle.
async fn light_load(
    fake: &FakeAmo,
    service: &Service,
    url: &str,
    options: &SyncOptions,
) -> anyhow::Result<LightLoad> {
    let before = fake.requests();
    let changes: Arc<Mutex<Vec<LeadChange>>> = Arc::default();
    let sending = Arc::new(AtomicBool::new(true));
    let poller = {
        let (changes, sending, url) = (changes.clone(), sending.clone(), url.to_owned());
        tokio::spawn(async move { poll_mirror(&url, &changes, &sending).await })
    };
    let http = reqwest::Client::new();
    let leads = fake.lead_ids();
    let config = fake.config().clone();
    let started = Instant::now();
    // The first change comes one interval after the phase before has drained, like the others.
    for i in 0..options.latency_events {
        let at =
            started + Duration::from_secs_f64((i + 1) as f64 / options.latency_rate.max(0.001));
        tokio::time::sleep_until(at.into()).await;
        let id = leads[(i * 7919 + 13) % leads.len()];
        let lead = fake.touch_lead(id);
        let updated_at = lead["updated_at"].as_i64().unwrap_or(0);
        let body = lead_event_body(&lead, "status", config.account_id, &config.subdomain);
        let resp = http
            .post(service.webhook_url())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await;
        if matches!(&resp, Ok(r) if r.status().is_success()) {
            changes.lock().unwrap().push(LeadChange {
                lead: id,
                updated_at,
                acked_at: Utc::now(),
            });
        }
    }
    sending.store(false, Ordering::SeqCst);
    let (mut latencies, unresolved) = poller.await??;
    latencies.sort_by(f64::total_cmp);
    let after = fake.requests();
    Ok(LightLoad {
        latencies,
        unresolved,
        requests: after.total - before.total,
        rate_limited: after.rate_limited - before.rate_limited,
    })
}

/// Resolves acknowledged lead changes against the deal rows every 20 ms until the sender is done and
/// nothing is pending (or two minutes pass). Returns the latencies (ms) and how many never resolved.
async fn poll_mirror(
    url: &str,
    changes: &Mutex<Vec<LeadChange>>,
    sending: &AtomicBool,
) -> anyhow::Result<(Vec<f64>, usize)> {
    let pool = sqlx::PgPool::connect(url).await?;
    let mut pending: Vec<LeadChange> = Vec::new();
    let mut latencies = Vec::new();
    let mut deadline = None;
    loop {
        let still_sending = sending.load(Ordering::SeqCst);
        pending.append(&mut changes.lock().unwrap());
        if !still_sending && pending.is_empty() {
            break;
        }
        let deadline = *deadline.get_or_insert_with(|| Instant::now() + Duration::from_secs(180));
        if Instant::now() > deadline {
            break;
        }
        let rows = sqlx::query("SELECT amocrm_deal_id, updated_at, synced_at FROM amocrm_deals")
            .fetch_all(&pool)
            .await?;
        let seen: HashMap<u64, (DateTime<Utc>, DateTime<Utc>)> = rows
            .iter()
            .filter_map(|r| {
                let id: String = r.get(0);
                let updated: Option<DateTime<Utc>> = r.get(1);
                let synced: DateTime<Utc> = r.get(2);
                Some((id.parse().ok()?, (updated?, synced)))
            })
            .collect();
        pending.retain(|c| match seen.get(&c.lead) {
            Some((updated, synced)) if updated.timestamp() >= c.updated_at => {
                // A fetch made for an earlier change may already have seen this one: 0.
                let ms = (*synced - c.acked_at).num_microseconds().unwrap_or(0) as f64 / 1000.0;
                latencies.push(ms.max(0.0));
                false
            }
            _ => true,
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    pool.close().await;
    Ok((latencies, pending.len()))
}
