//! `jarvis serve`: the HTTP server and the worker, together or one of them.

use anyhow::bail;

use crate::config::Settings;
use crate::startup::{Application, RunParts, shutdown_signal};

/// Runs `parts` of the service until SIGINT or SIGTERM.
pub async fn run(settings: Settings, parts: RunParts) -> anyhow::Result<()> {
    if parts.http && settings.webhook_secret.is_none() {
        bail!(
            "AMOCRM_WEBHOOK_SECRET is not set: it is the secret part of the webhook URL \
             (/amocrm/webhook/<secret>); set it to a long random string"
        );
    }
    let app = Application::build(settings, parts).await?;
    app.run(shutdown_signal()).await
}
