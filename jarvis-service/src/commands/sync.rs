//! `jarvis sync lead|contact <id>...`: fetching entities from amoCRM and upserting them now.

use anyhow::Context;
use tokio::sync::watch;

use crate::amo;
use crate::config::Settings;
use crate::startup::{Application, RunParts};
use crate::worker::Worker;

/// `jarvis sync lead|contact <id>...`: fetches and upserts now, as the worker does.
pub async fn run(settings: Settings, leads: &[u64], contacts: &[u64]) -> anyhow::Result<()> {
    let worker_settings = settings.worker.clone();
    let parts = RunParts {
        http: false,
        worker: false,
    };
    let app = Application::build(settings, parts).await?;
    let state = app.state().clone();
    let client = state.client.clone().context(
        "sync fetches from amoCRM: set AMOCRM_LONG_LIVED_TOKEN or the AMOCRM_CLIENT_* settings",
    )?;
    let (_stop_tx, stop_rx) = watch::channel(false);
    let worker = Worker::new(state, worker_settings, stop_rx);
    let outcome = worker.sync_now(leads, contacts).await;
    amo::save_pending_tokens(&client).await?;
    if let Err(e) = outcome {
        anyhow::bail!("sync failed: {}", e.message);
    }
    println!(
        "synced {} lead(s) and {} contact(s) in {} request(s)",
        leads.len(),
        contacts.len(),
        client.usage().total_requests()
    );
    Ok(())
}
