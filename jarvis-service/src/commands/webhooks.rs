//! `jarvis webhooks ...`: the offline parser, and this service's subscription in amoCRM
//! (`register`, `list`, `remove`).

use std::future::Future;
use std::io::Read;

use amocrm_client::{Client, WebhookSetting};
use anyhow::{Context, bail};
use jarvis_store::DynStore;

use crate::amo;
use crate::config::Settings;

/// Reads a webhook body on stdin and prints its events as JSON lines; needs no settings.
pub fn parse() -> anyhow::Result<()> {
    let mut body = Vec::new();
    std::io::stdin()
        .read_to_end(&mut body)
        .context("reading stdin")?;
    // No content type: JSON when the body starts with `{`, else a form.
    let batch = amocrm_webhook::Parser::default().parse(None, &body)?;
    for event in &batch.events {
        println!("{}", event.summary());
    }
    Ok(())
}

fn api_client(settings: &Settings, store: &DynStore) -> anyhow::Result<Client> {
    amo::build_client(&settings.amocrm, store)?.ok_or_else(|| {
        anyhow::anyhow!(
            "no amoCRM credentials: set AMOCRM_LONG_LIVED_TOKEN or the AMOCRM_CLIENT_* settings"
        )
    })
}

fn default_destination(settings: &Settings) -> anyhow::Result<String> {
    if settings.public_url.is_none() {
        bail!("set JARVIS_PUBLIC_URL (the service's public base URL) or pass --destination");
    }
    crate::subscription::destination(settings)
        .ok_or_else(|| anyhow::anyhow!("set AMOCRM_WEBHOOK_SECRET or pass --destination"))
}

/// A destination for printing: the secret path segment hidden.
fn shown(destination: &str, settings: &Settings) -> String {
    match &settings.webhook_secret {
        Some(secret) if !secret.expose().is_empty() => {
            destination.replace(secret.expose(), "<secret>")
        }
        _ => destination.to_string(),
    }
}

fn join(settings: &[WebhookSetting]) -> String {
    settings
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// Runs `command` with the API client, then saves a token pair refreshed meanwhile: a refresh during
/// the command whose pair could not be saved must not end with the process.
async fn with_client<F, Fut>(settings: &Settings, command: F) -> anyhow::Result<()>
where
    F: FnOnce(Client) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let store = jarvis_store::connect(&settings.database_url).await?;
    let client = api_client(settings, &store)?;
    let outcome = command(client.clone()).await;
    amo::save_pending_tokens(&client).await?;
    outcome
}

/// Subscribes `destination` (default: this service's URL) to `events` (default:
/// `JARVIS_WEBHOOK_SETTINGS`).
pub async fn register(
    settings: &Settings,
    destination: Option<String>,
    events: Vec<String>,
) -> anyhow::Result<()> {
    with_client(settings, |client| async move {
        let destination = match destination {
            Some(d) => d,
            None => default_destination(settings)?,
        };
        let events = if events.is_empty() {
            settings.webhook_settings.clone()
        } else {
            events
        };
        let events = crate::subscription::webhook_settings(&events);
        let hook = client.webhooks().subscribe(&destination, &events).await?;
        println!(
            "subscribed {} to: {}",
            shown(&destination, settings),
            join(&hook.settings)
        );
        Ok(())
    })
    .await
}

/// Lists the account's webhooks, the secret of this service's URL hidden.
pub async fn list(settings: &Settings) -> anyhow::Result<()> {
    with_client(settings, |client| async move {
        for hook in client.webhooks().list().await? {
            let state = if hook.disabled { "disabled" } else { "active" };
            println!(
                "{}\t{state}\t{}",
                shown(&hook.destination, settings),
                join(&hook.settings)
            );
        }
        Ok(())
    })
    .await
}

/// Unsubscribes `destination` (default: this service's URL).
pub async fn remove(settings: &Settings, destination: Option<String>) -> anyhow::Result<()> {
    with_client(settings, |client| async move {
        let destination = match destination {
            Some(d) => d,
            None => default_destination(settings)?,
        };
        client.webhooks().unsubscribe(&destination).await?;
        println!("removed {}", shown(&destination, settings));
        Ok(())
    })
    .await
}
