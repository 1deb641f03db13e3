//! The command line: `jarvis <command>`.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, bail};
use chrono::Utc;
use clap::{Args, Parser, Subcommand};
use jarvis_store::Requeue;
use serde_json::json;

use crate::amo;
use crate::config::Settings;
use crate::startup::{Application, RunParts, shutdown_signal};
use crate::telemetry;

/// Receives amoCRM webhooks, stores them durably and mirrors deals and contacts into PostgreSQL.
///
/// Settings come from environment variables (see the README's table) and an optional TOML file.
#[derive(Debug, Parser)]
#[command(name = "jarvis", version, propagate_version = true)]
pub struct Cli {
    /// TOML configuration file (same keys as the environment variables, in lower case).
    #[arg(long, global = true, env = "JARVIS_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server and the worker (both by default).
    Serve(ServeArgs),
    /// Create or upgrade the database schema (idempotent).
    Migrate,
    /// OAuth2: authorization URL and code exchange.
    #[command(subcommand)]
    Auth(AuthCommand),
    /// Manage this service's webhook subscription in amoCRM.
    #[command(subcommand)]
    Webhooks(WebhooksCommand),
    /// Operate on stored events.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Backlog, failures, last event and API budget use.
    Status(StatusArgs),
    /// Offline tools for webhook bodies.
    #[command(subcommand)]
    Webhook(WebhookCommand),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Run only the HTTP server (another process runs the worker).
    #[arg(long, conflicts_with = "worker_only")]
    pub http_only: bool,
    /// Run only the worker (another process receives webhooks).
    #[arg(long)]
    pub worker_only: bool,
}

#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Print the URL where an account administrator grants access to the integration.
    Url {
        /// Opaque value echoed back to the redirect URI.
        #[arg(long, default_value = "jarvis")]
        state: String,
    },
    /// Exchange an authorization code for tokens and store them in the database.
    Exchange {
        /// The `code` amoCRM passed to the redirect URI (valid for 20 minutes, usable once).
        code: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// Subscribe this service's webhook URL to the configured events.
    Register {
        /// Destination URL; default `JARVIS_PUBLIC_URL` + `/amocrm/webhook/<AMOCRM_WEBHOOK_SECRET>`.
        #[arg(long)]
        destination: Option<String>,
        /// Comma-separated settings (`add_lead,status_lead,...`); default `JARVIS_WEBHOOK_SETTINGS`.
        #[arg(long, value_delimiter = ',')]
        settings: Vec<String>,
    },
    /// List the account's webhooks.
    List,
    /// Remove a webhook by destination (default: this service's URL).
    Remove {
        #[arg(long)]
        destination: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Put dead or chosen events back in the queue.
    Replay {
        /// Every dead event.
        #[arg(long, conflicts_with = "id", required_unless_present = "id")]
        dead: bool,
        /// Chosen events by id (repeat or comma-separate).
        #[arg(long, value_delimiter = ',')]
        id: Vec<i64>,
    },
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Read a webhook body on stdin and print its events as JSON lines.
    Parse,
}

impl Cli {
    pub async fn run(self) -> anyhow::Result<()> {
        if let Command::Webhook(WebhookCommand::Parse) = self.command {
            return parse_stdin();
        }
        let settings = Settings::load(self.config.as_deref())?;
        telemetry::init_logging(settings.log_json);
        match self.command {
            Command::Serve(args) => {
                let parts = RunParts {
                    http: !args.worker_only,
                    worker: !args.http_only,
                };
                if parts.http && settings.webhook_secret.is_none() {
                    bail!(
                        "AMOCRM_WEBHOOK_SECRET is not set: it is the secret part of the webhook URL \
                         (/amocrm/webhook/<secret>); set it to a long random string"
                    );
                }
                let app = Application::build(settings, parts).await?;
                app.run(shutdown_signal()).await
            }
            Command::Migrate => {
                let store = jarvis_store::connect(&settings.database_url).await?;
                store.migrate().await?;
                println!("database is up to date");
                Ok(())
            }
            Command::Auth(cmd) => amo::auth_command(&settings, cmd).await,
            Command::Webhooks(cmd) => amo::webhooks_command(&settings, cmd).await,
            Command::Events(EventsCommand::Replay { dead, id }) => {
                let store = jarvis_store::connect(&settings.database_url).await?;
                let which = if dead {
                    Requeue::Dead
                } else {
                    Requeue::Ids(id)
                };
                let n = store.requeue(which).await?;
                println!("requeued {n} event(s)");
                Ok(())
            }
            Command::Status(args) => status(&settings, args.json).await,
            Command::Webhook(_) => unreachable!("handled above"),
        }
    }
}

fn parse_stdin() -> anyhow::Result<()> {
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

async fn status(settings: &Settings, as_json: bool) -> anyhow::Result<()> {
    let store = jarvis_store::connect(&settings.database_url).await?;
    let stats = store.stats().await?;
    let now = Utc::now();
    let minute = store
        .api_usage_since(now - chrono::Duration::minutes(1))
        .await?;
    let hour = store
        .api_usage_since(now - chrono::Duration::hours(1))
        .await?;
    let oldest_age = stats.oldest_pending_at.map(|t| (now - t).num_seconds());
    let mode = if settings.amocrm.auth.is_some() {
        "api"
    } else {
        "webhook-only"
    };
    if as_json {
        let out = json!({
            "mode": mode,
            "backlog": stats.backlog,
            "retrying": stats.retrying,
            "oldest_pending_age_seconds": oldest_age,
            "dead": stats.dead,
            "processed": stats.processed,
            "rejected": stats.rejected,
            "last_event_at": stats.last_event_at,
            "deals": stats.deals,
            "contacts": stats.contacts,
            "api_requests_last_minute": minute,
            "api_budget_per_minute": settings.amocrm.rate_per_minute,
            "api_requests_last_hour": hour,
            "api_budget_per_hour": settings.amocrm.rate_per_hour,
            "by_type": stats.by_type.iter().map(|(t, n)| json!({"event_type": t, "count": n})).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let budget = |b: Option<u32>| b.map(|b| format!(" of {b}")).unwrap_or_default();
    println!("mode:            {mode}");
    println!(
        "backlog:         {} ({} retrying{})",
        stats.backlog,
        stats.retrying,
        oldest_age
            .map(|a| format!(", oldest {a}s"))
            .unwrap_or_default()
    );
    println!("dead:            {}", stats.dead);
    println!("processed:       {}", stats.processed);
    println!("rejected bodies: {}", stats.rejected);
    println!(
        "last event:      {}",
        stats
            .last_event_at
            .map(|t| t.to_rfc3339())
            .unwrap_or_else(|| "none".into())
    );
    println!("deals/contacts:  {}/{}", stats.deals, stats.contacts);
    println!(
        "API requests:    {minute}{} this minute, {hour}{} this hour",
        budget(settings.amocrm.rate_per_minute),
        budget(settings.amocrm.rate_per_hour)
    );
    if !stats.by_type.is_empty() {
        println!("events by type:");
        for (event_type, count) in &stats.by_type {
            println!("  {event_type:<22} {count}");
        }
    }
    Ok(())
}
