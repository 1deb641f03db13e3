//! `bench ingest`: N concurrent senders post webhook bodies to the release service for T seconds.

use std::path::Path;
use std::time::Duration;

use std::sync::Arc;

use fake_amocrm::{FakeAmo, FakeConfig, SendReport, lead_event_body};

use crate::db::{self, Backend};
use crate::lean::{self, Bodies};
use crate::pgbench;
use crate::service::{RssSampler, Service, cpu_time, postgres_cpu_time};

pub struct IngestOptions {
    pub senders: Vec<usize>,
    pub seconds: u64,
    pub backends: Vec<Backend>,
    /// Size of pgbench's JSON payload; 0 = exactly the JSON the service stores for one event.
    pub pgbench_payload_bytes: usize,
    /// `serve --http-only`: no worker in the measured process.
    pub receiver_only: bool,
    /// Measurements per cell; with more than one, their medians follow.
    pub rounds: usize,
}

pub struct Cell {
    pub backend: Backend,
    pub senders: usize,
    pub report: SendReport,
    pub stored: u64,
    pub acknowledged: u64,
    pub rss_peak_kib: u64,
    /// Share of the machine's CPU the service and the load generator used during the measurement.
    pub service_cpu: f64,
    pub sender_cpu: f64,
    /// The service's CPU time (user + system, `/proc/<pid>/stat`) per acknowledged request, µs.
    pub service_cpu_us_per_request: f64,
    /// The local PostgreSQL server's CPU time per acknowledged request, µs (0 on SQLite).
    pub postgres_cpu_us_per_request: f64,
    /// Acknowledged requests per committed transaction of the service (PostgreSQL; warm-up included).
    pub requests_per_commit: Option<f64>,
    /// pgbench with as many clients as senders.
    pub pgbench: Option<pgbench::PgbenchResult>,
}

/// One lead status body of the fake, and the JSON the service stores for its event.
pub fn sample(fake: &FakeAmo) -> (String, String) {
    let id = fake.lead_ids()[0];
    let lead = fake.lead(id).unwrap_or_default();
    let config = fake.config();
    let body = lead_event_body(&lead, "status", config.account_id, &config.subdomain);
    let batch = amocrm_webhook::parse_form(body.as_bytes()).expect("the fake's body parses");
    let payload = serde_json::to_string(&batch.events[0]).expect("an event serializes");
    (body, payload)
}

/// The stored payload padded with a filler key up to `bytes` (when larger).
fn padded(payload: &str, bytes: usize) -> String {
    let mut value: serde_json::Value = serde_json::from_str(payload).expect("JSON");
    let overhead = ",\"_pad\":\"\"".len();
    let room = bytes.saturating_sub(payload.len() + overhead);
    if room > 0 {
        value["_pad"] = "x".repeat(room).into();
    }
    value.to_string()
}

/// Body templates per run: enough that consecutive requests rarely touch one lead.
pub const TEMPLATES: usize = 2_000;

/// A generator of realistic bodies (the fake is not served: webhook-only mode needs no API).
pub fn body_source() -> FakeAmo {
    let fake = FakeAmo::new(FakeConfig::default());
    fake.seed(300, 300, 1);
    fake
}

pub async fn run(binary: &Path, options: &IngestOptions) -> anyhow::Result<Vec<Cell>> {
    let fake = body_source();
    let (body, stored) = sample(&fake);
    let bodies = Arc::new(Bodies::from_fake(&fake, TEMPLATES)?);
    let payload = padded(&stored, options.pgbench_payload_bytes);
    println!(
        "## Service ingest: webhook-only mode{}, {} s per cell, 1 event per body \
         (mix lead_status 4 : lead_update 4 : lead_add 1 : contact_update 1); \
         a status body is {} bytes, its stored payload {} bytes; pgbench inserts {} bytes",
        if options.receiver_only {
            " (receiver only: serve --http-only)"
        } else {
            " (receiver and worker)"
        },
        options.seconds,
        body.len(),
        stored.len(),
        payload.len()
    );
    println!();
    println!(
        "| backend | senders | requests/s | p50 ms | p99 ms | max ms | errors | acknowledged | stored | RSS peak MB | CPU jarvis / sender % | jarvis CPU µs/req | PostgreSQL CPU µs/req | requests per commit | pgbench tps | pgbench avg ms | pgbench: PostgreSQL CPU µs/tx | ours / pgbench |"
    );
    println!("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    let mut cells = Vec::new();
    let mut medians = Vec::new();
    for &backend in &options.backends {
        for &senders in &options.senders {
            let mut rounds = Vec::with_capacity(options.rounds);
            for _ in 0..options.rounds {
                let cell = cell(binary, &bodies, backend, senders, options, &payload).await?;
                print_row(&cell);
                rounds.push(cell);
            }
            if rounds.len() > 1 {
                medians.push(Medians::of(&rounds));
            }
            cells.extend(rounds);
        }
    }
    println!();
    if !medians.is_empty() {
        println!(
            "Medians over {} rounds per cell (each column's own median):",
            options.rounds
        );
        println!();
        println!(
            "| backend | senders | requests/s | p99 ms | jarvis CPU µs/req | PostgreSQL CPU µs/req | requests per commit | pgbench tps | ours / pgbench |"
        );
        println!("|---|--:|--:|--:|--:|--:|--:|--:|--:|");
        for m in &medians {
            m.print();
        }
        println!();
    }
    let mismatched: Vec<_> = cells
        .iter()
        .filter(|c| c.stored != c.acknowledged)
        .collect();
    if mismatched.is_empty() {
        println!("stored == acknowledged in every cell");
    } else {
        for c in mismatched {
            println!(
                "MISMATCH {} x{}: stored {} acknowledged {}",
                c.backend.name(),
                c.senders,
                c.stored,
                c.acknowledged
            );
        }
    }
    Ok(cells)
}

/// The median of each figure over a cell's rounds.
struct Medians {
    backend: Backend,
    senders: usize,
    requests_per_sec: f64,
    p99_ms: f64,
    service_cpu_us: f64,
    postgres_cpu_us: Option<f64>,
    requests_per_commit: Option<f64>,
    pgbench_tps: Option<f64>,
    ratio: Option<f64>,
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    })
}

impl Medians {
    fn of(rounds: &[Cell]) -> Medians {
        let of = |figure: &dyn Fn(&Cell) -> Option<f64>| {
            median(rounds.iter().filter_map(figure).collect())
        };
        let rps = |c: &Cell| c.report.acknowledged as f64 / c.report.elapsed_secs;
        Medians {
            backend: rounds[0].backend,
            senders: rounds[0].senders,
            requests_per_sec: of(&|c| Some(rps(c))).unwrap_or_default(),
            p99_ms: of(&|c| Some(c.report.latency.p99_ms)).unwrap_or_default(),
            service_cpu_us: of(&|c| Some(c.service_cpu_us_per_request)).unwrap_or_default(),
            postgres_cpu_us: of(&|c| {
                (c.postgres_cpu_us_per_request > 0.0).then_some(c.postgres_cpu_us_per_request)
            }),
            requests_per_commit: of(&|c| c.requests_per_commit),
            pgbench_tps: of(&|c| c.pgbench.as_ref().map(|r| r.tps)),
            // The ratio of each round (service and pgbench measured one after the other), not the
            // ratio of the medians.
            ratio: of(&|c| c.pgbench.as_ref().map(|r| rps(c) / r.tps)),
        }
    }

    fn print(&self) {
        let or_blank =
            |v: Option<f64>, digits: usize| v.map(|v| format!("{v:.digits$}")).unwrap_or_default();
        println!(
            "| {} | {} | {:.0} | {:.2} | {:.0} | {} | {} | {} | {} |",
            self.backend.name(),
            self.senders,
            self.requests_per_sec,
            self.p99_ms,
            self.service_cpu_us,
            or_blank(self.postgres_cpu_us, 0),
            or_blank(self.requests_per_commit, 1),
            or_blank(self.pgbench_tps, 0),
            or_blank(self.ratio, 2),
        );
    }
}

fn print_row(c: &Cell) {
    let l = &c.report.latency;
    let rps = c.report.acknowledged as f64 / c.report.elapsed_secs;
    let (tps, avg, pg_cpu, ratio) = match &c.pgbench {
        Some(r) => (
            format!("{:.0}", r.tps),
            r.latency_ms.map(|a| format!("{a:.2}")).unwrap_or_default(),
            format!("{:.0}", r.postgres_cpu_us_per_tx),
            format!("{:.2}", rps / r.tps),
        ),
        None => (String::new(), String::new(), String::new(), String::new()),
    };
    let per_commit = c
        .requests_per_commit
        .map(|n| format!("{n:.1}"))
        .unwrap_or_default();
    let our_pg_cpu = if c.postgres_cpu_us_per_request > 0.0 {
        format!("{:.0}", c.postgres_cpu_us_per_request)
    } else {
        String::new()
    };
    println!(
        "| {} | {} | {rps:.0} | {:.2} | {:.2} | {:.1} | {} | {} | {} | {:.1} | {:.0} / {:.0} | {:.0} | {our_pg_cpu} | {per_commit} | {tps} | {avg} | {pg_cpu} | {ratio} |",
        c.backend.name(),
        c.senders,
        l.p50_ms,
        l.p99_ms,
        l.max_ms,
        c.report.failed,
        c.acknowledged,
        c.stored,
        c.rss_peak_kib as f64 / 1024.0,
        c.service_cpu,
        c.sender_cpu,
        c.service_cpu_us_per_request,
    );
}

/// One measurement: a fresh database, a fresh service, a warm-up, T seconds of load, then the count.
async fn cell(
    binary: &Path,
    bodies: &Arc<Bodies>,
    backend: Backend,
    senders: usize,
    options: &IngestOptions,
    payload: &str,
) -> anyhow::Result<Cell> {
    let seconds = options.seconds;
    let (url, _dir) = db::fresh(backend).await?;
    let args: &[&str] = if options.receiver_only {
        &["--http-only"]
    } else {
        &[]
    };
    let service = Service::start_with(binary, args, &[("DATABASE_URL", url.clone())]).await?;
    let commits_before = db::commits(&url).await?;
    let (report, warm, rss_peak_kib, (service_cpu, sender_cpu, postgres_cpu)) =
        load(&service, bodies, senders, seconds).await?;
    let stored = db::count_events(&url).await?;
    service.stop();
    // The service's backends report their last commits as they exit.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let requests_per_commit = match (commits_before, db::commits(&url).await?) {
        (Some(before), Some(after)) if after > before => {
            Some((warm.acknowledged + report.acknowledged) as f64 / (after - before) as f64)
        }
        _ => None,
    };
    let pgbench = match backend {
        Backend::Postgres => Some(pgbench::single_row_insert(senders, seconds, payload).await?),
        Backend::Sqlite => None,
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let per_request = |share: f64| {
        share / 100.0 * cores * report.elapsed_secs * 1e6 / report.acknowledged.max(1) as f64
    };
    let service_cpu_us_per_request = per_request(service_cpu);
    let postgres_cpu_us_per_request = match backend {
        Backend::Postgres => per_request(postgres_cpu),
        Backend::Sqlite => 0.0,
    };
    Ok(Cell {
        backend,
        senders,
        service_cpu_us_per_request,
        postgres_cpu_us_per_request,
        requests_per_commit,
        acknowledged: warm.acknowledged + report.acknowledged,
        report,
        stored,
        rss_peak_kib,
        service_cpu,
        sender_cpu,
        pgbench,
    })
}

/// Warms the service up (connections, caches), then sends as fast as `senders` closed-loop senders
/// can for `seconds` (the lean sender, [`crate::lean`]), sampling the service's RSS. Returns the
/// measured report, the warm-up report and the peak RSS and the CPU shares (percent of all cores) of
/// the service, of this process and of the local PostgreSQL server.
pub async fn load(
    service: &Service,
    bodies: &Arc<Bodies>,
    senders: usize,
    seconds: u64,
) -> anyhow::Result<(SendReport, SendReport, u64, (f64, f64, f64))> {
    let url = service.webhook_url();
    let warm = lean::send(&url, bodies.clone(), senders, None, Some(200)).await?;
    let sampler = RssSampler::start(service.pid());
    let pid = service.pid().to_string();
    let (service_before, self_before, postgres_before) =
        (cpu_time(&pid), cpu_time("self"), postgres_cpu_time());
    let duration = Some(Duration::from_secs(seconds));
    let report = lean::send(&url, bodies.clone(), senders, duration, None).await?;
    let peak = sampler.peak_kib().max(service.memory().rss_kib);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let share = |used: Duration| 100.0 * used.as_secs_f64() / report.elapsed_secs / cores;
    let cpu = (
        share(cpu_time(&pid).saturating_sub(service_before)),
        share(cpu_time("self").saturating_sub(self_before)),
        share(postgres_cpu_time().saturating_sub(postgres_before)),
    );
    Ok((report, warm, peak, cpu))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }
}
