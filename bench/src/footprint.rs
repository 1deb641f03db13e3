//! `bench footprint`: start-to-ready time, RSS idle and under ingest load.

use std::path::Path;
use std::time::Duration;

use crate::db::{self, Backend};
use crate::ingest;
use crate::service::Service;

pub struct FootprintOptions {
    pub backends: Vec<Backend>,
    pub starts: usize,
    pub senders: usize,
    pub seconds: u64,
}

pub async fn run(binary: &Path, options: &FootprintOptions) -> anyhow::Result<()> {
    let fake = ingest::body_source();
    let bodies = std::sync::Arc::new(crate::lean::Bodies::from_fake(&fake, ingest::TEMPLATES)?);
    println!(
        "## Footprint: release binary, webhook-only mode; load = {} closed-loop senders for {} s",
        options.senders, options.seconds
    );
    println!();
    println!(
        "| backend | start → /readyz, fresh database (migrations) ms | start → /readyz, migrated, median of {} ms | RSS idle MB | RSS under load MB (peak sample) | VmHWM after load MB | requests/s during load |",
        options.starts
    );
    println!("|---|--:|--:|--:|--:|--:|--:|");
    for &backend in &options.backends {
        let (url, _dir) = db::fresh(backend).await?;
        let env = [("DATABASE_URL", url.clone())];
        let first = Service::start(binary, &env).await?;
        let cold = first.start_to_ready;
        first.stop();
        let mut warm = Vec::new();
        for _ in 0..options.starts {
            let service = Service::start(binary, &env).await?;
            warm.push(service.start_to_ready.as_secs_f64() * 1e3);
            service.stop();
        }
        warm.sort_by(f64::total_cmp);
        let service = Service::start(binary, &env).await?;
        // Idle: after start-up settles and the worker has polled a few times.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let idle = service.memory();
        let (report, _, peak, _) =
            ingest::load(&service, &bodies, options.senders, options.seconds).await?;
        let after = service.memory();
        service.stop();
        println!(
            "| {} | {:.0} | {:.0} | {:.1} | {:.1} | {:.1} | {:.0} |",
            backend.name(),
            cold.as_secs_f64() * 1e3,
            crate::percentile(&warm, 0.5),
            idle.rss_kib as f64 / 1024.0,
            peak as f64 / 1024.0,
            after.hwm_kib as f64 / 1024.0,
            report.acknowledged as f64 / report.elapsed_secs,
        );
    }
    println!();
    Ok(())
}
