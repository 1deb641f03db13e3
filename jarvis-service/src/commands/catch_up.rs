//! `jarvis catch-up --since <time>`: catching up a span through amoCRM's events feed.

use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Utc};
use jarvis_store::GapKind;
use tokio::sync::Notify;

use crate::amo;
use crate::catch_up::CatchUp;
use crate::config::Settings;

/// `jarvis catch-up --since <time>`: records the span as a gap and catches up every open gap now;
/// the service's worker then fetches the queued entities.
pub async fn run(settings: &Settings, since: DateTime<Utc>) -> anyhow::Result<()> {
    let store = jarvis_store::connect(&settings.database_url).await?;
    store.migrate().await?;
    let client = amo::build_client(&settings.amocrm, &store)?.context(
        "catch-up reads amoCRM's events feed: set AMOCRM_LONG_LIVED_TOKEN or the AMOCRM_CLIENT_* settings",
    )?;
    let now = Utc::now();
    if since >= now {
        anyhow::bail!("--since must be in the past");
    }
    let key = format!("{}:catch-up", settings.amocrm.account_key());
    let Some(_guard) = store.try_exclusive(&key).await? else {
        anyhow::bail!("another process is catching up this account; try again when it is done");
    };
    let gap = store.open_gap(&GapKind::Manual, since, now).await?;
    println!("gap {gap}: {} to {}", since.to_rfc3339(), now.to_rfc3339());
    let catch_up = CatchUp {
        store: store.clone(),
        client: client.clone(),
        account_id: settings.account_id,
        wake: Arc::new(Notify::new()),
    };
    let outcome = catch_up.run_open_gaps().await;
    amo::save_pending_tokens(&client).await?;
    for report in outcome? {
        println!(
            "gap {}: {} page(s), {} event(s) read; {} lead(s) and {} contact(s), {} queued",
            report.gap_id,
            report.pages_read,
            report.events_read,
            report.leads,
            report.contacts,
            report.queued
        );
    }
    println!(
        "the service's worker fetches the queued entities ({} requests used)",
        client.usage().total_requests()
    );
    Ok(())
}
