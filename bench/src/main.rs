//! End-to-end benchmarks of the release `jarvis` binary, run as a subprocess:
//!
//! ```text
//! cargo run --release -p jarvis-bench -- ingest [--senders 1,8,32] [--seconds 10] [--backend postgres,sqlite]
//! cargo run --release -p jarvis-bench -- sync [--events 1000] [--seconds 10]
//! cargo run --release -p jarvis-bench -- footprint [--backend postgres,sqlite]
//! cargo run --release -p jarvis-bench -- all
//! ```
//!
//! PostgreSQL comes from `JARVIS_TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`);
//! every measurement uses a fresh schema (or SQLite file). Output is Markdown, as BENCHMARKS.md keeps it.

mod db;
mod footprint;
mod ingest;
mod lean;
mod pgbench;
mod service;
mod sync;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use db::Backend;

#[derive(Parser)]
#[command(name = "bench", about = "End-to-end benchmarks of the jarvis service")]
struct Cli {
    /// The service binary; default: build `target/release/jarvis` and use it.
    #[arg(long, global = true)]
    jarvis: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Webhook ingest throughput and latency against PostgreSQL's own single-row insert rate.
    Ingest(IngestArgs),
    /// API requests and 429s for a burst of events, and webhook-to-row latency (API mode).
    Sync(SyncArgs),
    /// Start-to-ready time, RSS idle and under load.
    Footprint(FootprintArgs),
    /// All of the above with their defaults.
    All,
}

#[derive(Args)]
struct IngestArgs {
    /// Concurrent senders, one cell each.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    senders: Vec<usize>,
    /// Seconds per cell.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[arg(long, value_delimiter = ',', default_value = "postgres,sqlite")]
    backend: Vec<Backend>,
    /// JSON payload size of pgbench's insert (the stored event padded); 0 = the stored event as is.
    #[arg(long, default_value_t = 1400)]
    pgbench_payload_bytes: usize,
    /// Run the service as a receiver only (`serve --http-only`): what the acknowledgement path alone
    /// does, the worker's mirroring left to another process.
    #[arg(long)]
    receiver_only: bool,
    /// Measurements per cell, one after the other (service, then pgbench, then again), with the
    /// medians after them: on a shared machine one run's figures move by a fifth or more.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
}

#[derive(Args)]
struct SyncArgs {
    #[arg(long, default_value_t = 1000)]
    events: usize,
    #[arg(long, default_value_t = 300)]
    leads: usize,
    #[arg(long, default_value_t = 300)]
    contacts: usize,
    /// The events are spread evenly over this many seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Share of lead events; the rest are contact updates.
    #[arg(long, default_value_t = 0.8)]
    lead_share: f64,
    /// The service's AMOCRM_RATE_PER_SECOND (the fake enforces 7).
    #[arg(long, default_value_t = 7)]
    service_rate: u32,
    /// Then, lead changes sent one at a time at `--latency-rate` a second, for webhook → row latency
    /// under a light load (0 skips this phase).
    #[arg(long, default_value_t = 60)]
    latency_events: usize,
    #[arg(long, default_value_t = 1.0)]
    latency_rate: f64,
}

#[derive(Args)]
struct FootprintArgs {
    #[arg(long, value_delimiter = ',', default_value = "postgres,sqlite")]
    backend: Vec<Backend>,
    /// Restarts on a migrated database to take the median start time of.
    #[arg(long, default_value_t = 5)]
    starts: usize,
    /// Senders of the load phase.
    #[arg(long, default_value_t = 32)]
    senders: usize,
    /// Seconds of the load phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

impl Default for IngestArgs {
    fn default() -> Self {
        IngestArgs {
            senders: vec![1, 8, 32],
            seconds: 10,
            backend: vec![Backend::Postgres, Backend::Sqlite],
            pgbench_payload_bytes: 1400,
            receiver_only: false,
            rounds: 1,
        }
    }
}

impl Default for SyncArgs {
    fn default() -> Self {
        SyncArgs {
            events: 1000,
            leads: 300,
            contacts: 300,
            seconds: 10,
            lead_share: 0.8,
            service_rate: 7,
            latency_events: 60,
            latency_rate: 1.0,
        }
    }
}

impl Default for FootprintArgs {
    fn default() -> Self {
        FootprintArgs {
            backend: vec![Backend::Postgres, Backend::Sqlite],
            starts: 5,
            senders: 32,
            seconds: 10,
        }
    }
}

/// The `q` quantile of sorted values (nearest rank).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx]
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let date = std::process::Command::new("date")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!("{cores} cores ({cpu}), {date}")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let binary = service::build_jarvis(cli.jarvis.as_deref())?;
    let pg = db::postgres_version()
        .await
        .unwrap_or_else(|| "unreachable".into());
    println!("machine: {}, PostgreSQL {pg}", machine());
    println!("binary: {}", binary.display());
    println!();
    let (ingest, sync, footprint) = match cli.command {
        Cmd::Ingest(a) => (Some(a), None, None),
        Cmd::Sync(a) => (None, Some(a), None),
        Cmd::Footprint(a) => (None, None, Some(a)),
        Cmd::All => (
            Some(IngestArgs::default()),
            Some(SyncArgs::default()),
            Some(FootprintArgs::default()),
        ),
    };
    if let Some(a) = ingest {
        ingest::run(
            &binary,
            &ingest::IngestOptions {
                senders: a.senders,
                seconds: a.seconds,
                backends: a.backend,
                pgbench_payload_bytes: a.pgbench_payload_bytes,
                receiver_only: a.receiver_only,
                rounds: a.rounds.max(1),
            },
        )
        .await?;
        println!();
    }
    if let Some(a) = sync {
        sync::run(
            &binary,
            &sync::SyncOptions {
                events: a.events,
                leads: a.leads,
                contacts: a.contacts,
                seconds: a.seconds,
                lead_share: a.lead_share,
                service_rate: a.service_rate,
                latency_events: a.latency_events,
                latency_rate: a.latency_rate,
            },
        )
        .await?;
    }
    if let Some(a) = footprint {
        footprint::run(
            &binary,
            &footprint::FootprintOptions {
                backends: a.backend,
                starts: a.starts,
                senders: a.senders,
                seconds: a.seconds,
            },
        )
        .await?;
    }
    Ok(())
}
