//! Keeping the webhook subscription alive: amoCRM switches off a webhook that failed too often (more
//! than 100 failures in two hours) and an administrator may remove it. In API mode the service checks
//! its own subscription at start and every `JARVIS_WEBHOOK_CHECK_SECS` (one `GET /api/v4/webhooks`);
//! a missing or disabled one is subscribed again with `JARVIS_WEBHOOK_SETTINGS`, counted in
//! `jarvis_webhook_resubscribed_total`, and the span since the last accepted delivery becomes a gap.

use amocrm_client::{Client, WebhookSetting};
use chrono::{DateTime, Utc};
use jarvis_store::{DynStore, GapKind};

use crate::catch_up::{GAP_MARGIN, GapTracker, MARK_LAST_DELIVERY};
use crate::config::Settings;
use crate::telemetry::names;

/// The URL amoCRM posts to: `JARVIS_PUBLIC_URL` + `/amocrm/webhook/<secret>`, when both are set.
pub fn destination(settings: &Settings) -> Option<String> {
    let public = settings.public_url.as_deref()?;
    let secret = settings.webhook_secret.as_ref()?;
    Some(format!(
        "{}/amocrm/webhook/{}",
        public.trim_end_matches('/'),
        secret.expose()
    ))
}

/// The webhook settings (`add_lead`, ...) named in `JARVIS_WEBHOOK_SETTINGS`; any name is kept, known
/// or not.
pub fn webhook_settings(names: &[String]) -> Vec<WebhookSetting> {
    names
        .iter()
        .map(|name| name.parse().unwrap_or_else(|never| match never {}))
        .collect()
}

/// What a check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckOutcome {
    /// Subscribed and enabled.
    Active,
    /// Missing or disabled, and subscribed again; the gap recorded.
    Resubscribed { gap_id: i64 },
}

/// Checks the subscription of `destination`, subscribing it again if it is missing or disabled.
/// `last_active` is when an earlier check found it active: the gap's start when no delivery was
/// ever recorded.
pub async fn check(
    client: &Client,
    store: &DynStore,
    tracker: &GapTracker,
    destination: &str,
    settings: &[String],
    last_active: Option<DateTime<Utc>>,
) -> anyhow::Result<CheckOutcome> {
    let found = client.webhooks().find(destination).await?;
    let state = match &found {
        Some(hook) if !hook.disabled => return Ok(CheckOutcome::Active),
        Some(_) => "disabled",
        None => "missing",
    };
    client
        .webhooks()
        .subscribe(destination, &webhook_settings(settings))
        .await?;
    metrics::counter!(names::WEBHOOK_RESUBSCRIBED).increment(1);
    let now = Utc::now();
    let stored = store.get_mark(MARK_LAST_DELIVERY).await?;
    let since = [stored, tracker.last_delivery(), last_active]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(now)
        - chrono::Duration::from_std(GAP_MARGIN).unwrap_or_default();
    let gap_id = store
        .open_gap(&GapKind::WebhookDisabled, since, now)
        .await?;
    // The destination holds the secret: never logged.
    tracing::warn!(
        state,
        gap = gap_id,
        from = %since,
        "the webhook was {state} in amoCRM; subscribed it again and catching up since the last delivery"
    );
    tracker.wake.notify_one();
    Ok(CheckOutcome::Resubscribed { gap_id })
}
