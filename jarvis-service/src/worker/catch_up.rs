//! The catch-up task that runs beside the worker: keeps the webhook subscription alive and
//! catches up the gaps it or the service recorded, queueing their entities for the worker.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::catch_up::CatchUp;
use crate::config::Settings;
use crate::state::AppState;
use crate::subscription;

/// How soon a round that failed (amoCRM or the database unavailable) is tried again.
const RETRY_AFTER_ERROR: Duration = Duration::from_secs(10);

/// The catch-up task of an API-mode worker process: checks the webhook subscription at start and
/// every `settings.webhook_check`, and catches up open gaps whenever one is recorded. One instance
/// per account does it at a time (a store-wide exclusive right), so gaps are read once.
pub async fn run(state: AppState, settings: Settings, mut stop: watch::Receiver<bool>) {
    let Some(client) = state.client.clone() else {
        return;
    };
    let destination = subscription::destination(&settings);
    if destination.is_none() {
        tracing::info!("JARVIS_PUBLIC_URL is not set: the webhook subscription is not watched");
    }
    let catch_up = CatchUp {
        store: state.store.clone(),
        client: client.clone(),
        account_id: state.account_id,
        wake: state.wake.clone(),
    };
    let key = format!("{}:catch-up", state.account_key);
    let mut next_check = tokio::time::Instant::now();
    let mut last_active: Option<DateTime<Utc>> = None;
    while !*stop.borrow() {
        let mut failed = false;
        let check_due = destination.is_some() && tokio::time::Instant::now() >= next_check;
        let gaps_open = match state.store.open_gaps().await {
            Ok(gaps) => !gaps.is_empty(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the gaps; retrying");
                failed = true;
                false
            }
        };
        if check_due || gaps_open {
            match state.store.try_exclusive(&key).await {
                Ok(Some(_guard)) => {
                    if check_due && let Some(destination) = &destination {
                        next_check = tokio::time::Instant::now() + settings.webhook_check;
                        match subscription::check(
                            &client,
                            &state.store,
                            &state.gaps,
                            destination,
                            &settings.webhook_settings,
                            last_active,
                        )
                        .await
                        {
                            Ok(subscription::CheckOutcome::Active) => {
                                last_active = Some(Utc::now())
                            }
                            Ok(subscription::CheckOutcome::Resubscribed { .. }) => {
                                last_active = Some(Utc::now())
                            }
                            Err(e) => {
                                tracing::warn!(error = %format!("{e:#}"), "checking the webhook subscription failed");
                                failed = true;
                            }
                        }
                    }
                    if let Err(e) = catch_up.run_open_gaps().await {
                        tracing::warn!(error = %e, "catch-up stopped; it goes on from where it was");
                        failed = true;
                    }
                }
                Ok(None) => {
                    // Another instance does it; look again later.
                    next_check = tokio::time::Instant::now() + settings.webhook_check;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot take the catch-up right; retrying");
                    failed = true;
                }
            }
        }
        let now = tokio::time::Instant::now();
        let wake_at = match (failed, destination.is_some()) {
            (true, true) => next_check.max(now).min(now + RETRY_AFTER_ERROR),
            (true, false) => now + RETRY_AFTER_ERROR,
            (false, true) => next_check.max(now),
            // Nothing to check on a schedule: only a recorded gap wakes the task.
            (false, false) => now + settings.webhook_check,
        };
        tokio::select! {
            _ = tokio::time::sleep_until(wake_at) => {}
            _ = state.gaps.wake.notified() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
