//! PostgreSQL's own ceiling on this machine: `pgbench` inserting single rows (the service's stored
//! payload, a SHA-256-sized unique text key) into a scratch table with a unique index, the same way
//! `jarvis-store/benches/store_ingest.rs` measures it for the store alone.

use std::process::Command;

pub struct PgbenchResult {
    pub tps: f64,
    pub latency_ms: Option<f64>,
    /// The local PostgreSQL server's CPU time per transaction, µs.
    pub postgres_cpu_us_per_tx: f64,
}

pub async fn single_row_insert(
    clients: usize,
    seconds: u64,
    payload: &str,
) -> anyhow::Result<PgbenchResult> {
    let schema = jarvis_store::testing::fresh_postgres_schema()
        .await
        .ok_or_else(|| anyhow::anyhow!("PostgreSQL unreachable"))?;
    let url = jarvis_store::testing::test_database_url();
    let pool = sqlx::PgPool::connect(&url).await?;
    sqlx::query(&format!(
        "CREATE TABLE {schema}.pgbench_ingest (
            id BIGSERIAL PRIMARY KEY,
            event_hash TEXT NOT NULL UNIQUE,
            payload JSONB NOT NULL
        )"
    ))
    .execute(&pool)
    .await?;
    pool.close().await;

    let script = format!(
        "INSERT INTO {schema}.pgbench_ingest (event_hash, payload) VALUES \
         (encode(sha256((random()::text || clock_timestamp()::text)::bytea), 'hex'), '{}'::jsonb);\n",
        payload.replace('\'', "''")
    );
    let dir = tempfile::tempdir()?;
    let script_path = dir.path().join("ingest.sql");
    std::fs::write(&script_path, script)?;
    let pgbench = std::env::var("PGBENCH").unwrap_or_else(|_| "/usr/bin/pgbench".into());
    let postgres_before = crate::service::postgres_cpu_time();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(pgbench)
            .args(["-n", "-f"])
            .arg(&script_path)
            .args(["-c", &clients.to_string(), "-j", &clients.to_string()])
            .args(["-T", &seconds.to_string()])
            .arg(&url)
            .output()
    })
    .await??;
    let postgres_cpu = crate::service::postgres_cpu_time().saturating_sub(postgres_before);
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        anyhow::bail!(
            "pgbench failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let number_after = |prefix: &str| {
        stdout
            .lines()
            .find_map(|line| line.trim().strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|number| number.parse::<f64>().ok())
    };
    let tps = number_after("tps = ").ok_or_else(|| anyhow::anyhow!("no tps in: {stdout}"))?;
    let transactions = number_after("number of transactions actually processed: ")
        .unwrap_or(tps * seconds as f64)
        .max(1.0);
    Ok(PgbenchResult {
        tps,
        latency_ms: number_after("latency average = "),
        postgres_cpu_us_per_tx: postgres_cpu.as_secs_f64() * 1e6 / transactions,
    })
}
