//! Ingest throughput: events stored per second through the `Store`, one `insert_events` call per
//! webhook (one event of about 1.5 KB, unique hash), at several numbers of concurrent callers, next
//! to what `pgbench` does for a single-row insert into a table with a unique text column on the same
//! server in the same run.
//!
//! ```text
//! CARGO_TARGET_DIR=/work/target-store cargo bench -p jarvis-store --bench store_ingest
//! ```
//!
//! Environment: `JARVIS_BENCH_SECS` (seconds per cell, default 5), `JARVIS_BENCH_CALLERS` (default
//! `1,8,32`), `JARVIS_TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`). Each cell
//! uses a fresh schema or file. Run without `--bench` (as `cargo test --benches` does) it only
//! smoke-tests for a fraction of a second.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use jarvis_store::{NewEvent, PgStore, PoolSettings, SqliteStore, Store, testing};
use serde_json::{Value, json};

struct Cell {
    events_per_second: f64,
    p50: Duration,
    p99: Duration,
}

struct PgbenchResult {
    tps: f64,
    latency_ms: Option<f64>,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let full_run = std::env::args().any(|arg| arg == "--bench");
    let seconds: f64 = std::env::var("JARVIS_BENCH_SECS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(if full_run { 5.0 } else { 0.2 });
    let callers: Vec<usize> = std::env::var("JARVIS_BENCH_CALLERS")
        .ok()
        .map(|value| {
            value
                .split(',')
                .filter_map(|n| n.trim().parse().ok())
                .collect()
        })
        .unwrap_or_else(|| if full_run { vec![1, 8, 32] } else { vec![1, 4] });
    let duration = Duration::from_secs_f64(seconds);
    let payload_size = webhook_payload(0).to_string().len();

    println!(
        "store_ingest: {seconds} s per cell, 1 event per insert_events call, payload {payload_size} bytes"
    );
    println!();
    println!(
        "| backend    | callers | pool | events/s | p50 ms | p99 ms | pgbench tps | store / pgbench |"
    );
    println!(
        "|------------|--------:|-----:|---------:|-------:|-------:|------------:|----------------:|"
    );

    let postgres_reachable = testing::fresh_postgres_schema().await.is_some();
    for &count in &callers {
        if postgres_reachable {
            let url = testing::fresh_postgres_url()
                .await
                .expect("PostgreSQL answered before");
            let pool = count.max(1) as u32;
            let store = PgStore::connect_with(&url, PoolSettings::default().max_connections(pool))
                .await
                .expect("connect");
            store.migrate().await.expect("migrate");
            let cell = run(Arc::new(store.clone()), count, duration).await;
            store.close().await;
            let pgbench = pgbench(count, seconds).await;
            let (tps, ratio) = match &pgbench {
                Ok(result) => (
                    format!("{:.0}", result.tps),
                    format!("{:.2}", cell.events_per_second / result.tps),
                ),
                Err(reason) => {
                    eprintln!("pgbench: {reason}");
                    ("n/a".into(), "n/a".into())
                }
            };
            print_row("PostgreSQL", count, pool, &cell, &tps, &ratio);
            if let Ok(PgbenchResult {
                latency_ms: Some(latency),
                ..
            }) = pgbench
            {
                eprintln!("pgbench -c {count}: average latency {latency:.3} ms");
            }
        }
        let (url, _dir) = testing::fresh_sqlite_url();
        let store = SqliteStore::connect(&url).await.expect("open SQLite");
        store.migrate().await.expect("migrate");
        let cell = run(Arc::new(store.clone()), count, duration).await;
        store.close().await;
        print_row("SQLite", count, 1, &cell, "", "");
    }
    if !postgres_reachable {
        println!("(PostgreSQL unreachable: its rows were skipped)");
    }
}

fn print_row(backend: &str, callers: usize, pool: u32, cell: &Cell, tps: &str, ratio: &str) {
    println!(
        "| {backend:<10} | {callers:>7} | {pool:>4} | {:>8.0} | {:>6.2} | {:>6.2} | {tps:>11} | {ratio:>15} |",
        cell.events_per_second,
        cell.p50.as_secs_f64() * 1e3,
        cell.p99.as_secs_f64() * 1e3,
    );
}

/// `callers` tasks each send one-event batches back to back for `duration`.
async fn run(store: Arc<dyn Store>, callers: usize, duration: Duration) -> Cell {
    // Warm the pool and the statement caches outside the measurement.
    for i in 0..callers.max(4) {
        store
            .insert_events(&[new_event(&format!("warm-{i}"), 0)])
            .await
            .expect("warm-up insert");
    }
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..callers)
        .map(|caller| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut sequence = 0u64;
                while Instant::now() < deadline {
                    let event = new_event(&format!("{caller}-{sequence}"), sequence);
                    let sent = Instant::now();
                    let outcome = store.insert_events(&[event]).await.expect("insert");
                    latencies.push(sent.elapsed());
                    assert_eq!(outcome.stored, 1);
                    sequence += 1;
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("caller"));
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let percentile = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Cell {
        events_per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: percentile(0.50),
        p99: percentile(0.99),
    }
}

/// pgbench inserting single rows (the same payload, a SHA-256-sized unique text key) into a scratch
/// table with a unique index, with as many clients as the store had callers.
async fn pgbench(clients: usize, seconds: f64) -> Result<PgbenchResult, String> {
    let schema = testing::fresh_postgres_schema()
        .await
        .ok_or("PostgreSQL unreachable")?;
    let url = testing::test_database_url();
    let setup = format!(
        "CREATE TABLE {schema}.pgbench_ingest (
            id BIGSERIAL PRIMARY KEY,
            event_hash TEXT NOT NULL UNIQUE,
            payload JSONB NOT NULL
        )"
    );
    let pool = sqlx::PgPool::connect(&url)
        .await
        .map_err(|e| e.to_string())?;
    sqlx::query(&setup)
        .execute(&pool)
        .await
        .map_err(|e| e.to_string())?;
    pool.close().await;

    let payload = webhook_payload(1).to_string().replace('\'', "''");
    let script = format!(
        "INSERT INTO {schema}.pgbench_ingest (event_hash, payload) VALUES \
         (encode(sha256((random()::text || clock_timestamp()::text)::bytea), 'hex'), '{payload}'::jsonb);\n"
    );
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let script_path = dir.path().join("ingest.sql");
    std::fs::write(&script_path, script).map_err(|e| e.to_string())?;
    let seconds = seconds.ceil().max(1.0) as u64;
    let output = tokio::task::spawn_blocking(move || {
        Command::new("pgbench")
            .args(["-n", "-f"])
            .arg(&script_path)
            .args(["-c", &clients.to_string(), "-j", &clients.to_string()])
            .args(["-T", &seconds.to_string()])
            .arg(&url)
            .output()
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("cannot run pgbench: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "pgbench failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let number_after = |prefix: &str| {
        stdout
            .lines()
            .find_map(|line| line.trim().strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|number| number.parse::<f64>().ok())
    };
    Ok(PgbenchResult {
        tps: number_after("tps = ").ok_or_else(|| format!("no tps in: {stdout}"))?,
        latency_ms: number_after("latency average = "),
    })
}

fn new_event(key: &str, sequence: u64) -> NewEvent {
    let hash = format!(
        "{:032x}{:032x}",
        uuid::Uuid::new_v4().as_u128(),
        uuid::Uuid::new_v4().as_u128()
    );
    let mut payload = webhook_payload(sequence);
    // Payloads differ from one event to the next, as real ones do.
    payload["leads"]["status"][0]["request_id"] = Value::from(key);
    NewEvent {
        event_type: "lead.status".into(),
        entity_type: "leads".into(),
        amocrm_entity_id: Some(format!("3{sequence:08}")),
        event_hash: hash,
        payload: payload.into(),
        account_id: Some(29_000_001),
        received_at: Utc::now(),
    }
}

/// A lead status change as amoCRM sends it (decoded from its form body), about 1.5 KB of JSON.
fn webhook_payload(sequence: u64) -> Value {
    json!({
        "account": {
            "id": "29000001",
            "subdomain": "geodrive",
            "_links": { "self": "https://geodrive.amocrm.ru" }
        },
        "leads": {
            "status": [{
                "id": format!("3{sequence:08}"),
                "name": "Аренда: Toyota Camry 2.5, 3 суток, доставка в аэропорт",
                "status_id": "142",
                "old_status_id": "61234567",
                "price": "45000",
                "responsible_user_id": "9000002",
                "last_modified": "1717171717",
                "modified_user_id": "9000002",
                "created_user_id": "9000001",
                "date_create": "1717000000",
                "pipeline_id": "7000001",
                "account_id": "29000001",
                "created_at": "1717000000",
                "updated_at": "1717171717",
                "request_id": "",
                "custom_fields": [
                    { "id": "1001", "name": "Бронь RentProg", "values": [{ "value": "RP-184467" }] },
                    { "id": "1002", "name": "Дата начала", "values": [{ "value": "1717200000" }] },
                    { "id": "1003", "name": "Дата окончания", "values": [{ "value": "1717459200" }] },
                    { "id": "1004", "name": "Автомобиль", "values": [{ "value": "Toyota Camry", "enum": "5001" }] },
                    { "id": "1005", "name": "Место выдачи", "values": [{ "value": "Аэропорт Пулково, терминал 1" }] },
                    { "id": "1006", "name": "Источник", "values": [{ "value": "Сайт", "enum": "5002" }] },
                    { "id": "1007", "name": "Депозит", "values": [{ "value": "15000" }] },
                    { "id": "1008", "name": "Комментарий", "values": [{ "value": "Детское кресло, второй водитель" }] }
                ],
                "tags": [
                    { "id": "301", "name": "сайт" },
                    { "id": "302", "name": "аэропорт" }
                ],
                "_embedded": { "contacts": [{ "id": "41000001" }] }
            }]
        }
    })
}
