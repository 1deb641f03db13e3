//! The command line: `jarvis <command>`.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, bail};
use chrono::Utc;
use clap::{Args, Parser, Subcommand};
use jarvis_store::Requeue;
use serde_json::json;

use crate::amo;
use crate::config::{self, Settings};
use crate::startup::{Application, RunParts, shutdown_signal};
use crate::telemetry;

/// Receives amoCRM webhooks, stores them durably and mirrors deals and contacts into PostgreSQL.
///
/// Settings come from environment variables and an optional TOML file; `--help` lists them all.
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
    /// Webhooks: parse a body offline, or manage this service's subscription in amoCRM.
    // `webhook` was once the parser's own command: the old spelling keeps working, unlisted.
    #[command(subcommand, alias = "webhook")]
    Webhooks(WebhooksCli),
    /// Operate on stored events.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Backlog, failures, last event and API budget use.
    Status(StatusArgs),
    /// Check the configuration and print the effective settings (secrets masked).
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Catch up changes since a time through amoCRM's events feed (also every open gap).
    CatchUp(CatchUpArgs),
    /// Fetch entities from amoCRM and upsert them now.
    #[command(subcommand)]
    Sync(SyncCommand),
    /// Fill deals' client_id / conversation_id with the configured link queries.
    Link(LinkArgs),
}

#[derive(Debug, Args)]
pub struct CatchUpArgs {
    /// Start of the span: RFC 3339 (`2026-11-30T08:00:00Z`) or an age (`90m`, `6h`, `2d`).
    #[arg(long, value_parser = crate::catch_up::parse_since)]
    pub since: chrono::DateTime<Utc>,
}

#[derive(Debug, Subcommand)]
pub enum SyncCommand {
    /// Leads by id (with their main contacts).
    Lead {
        #[arg(required = true, value_delimiter = ',')]
        ids: Vec<u64>,
    },
    /// Contacts by id (their fields reach the deals they are the main contact of).
    Contact {
        #[arg(required = true, value_delimiter = ',')]
        ids: Vec<u64>,
    },
}

/// `jarvis webhooks ...`: the offline parser and the subscription commands.
#[derive(Debug, Subcommand)]
pub enum WebhooksCli {
    /// Read a webhook body on stdin and print its events as JSON lines (offline: no settings needed).
    Parse,
    #[command(flatten)]
    Subscription(WebhooksCommand),
}

#[derive(Debug, Args)]
pub struct LinkArgs {
    /// Link the deals already stored, in batches, printing progress; safe to run again.
    #[arg(long, required = true)]
    pub backfill: bool,
    /// Only deals changed at or after this time: a date (2025-11-01) or RFC 3339.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Deals per batch.
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the settings and print each one's effective value and where it comes from.
    Check,
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
        /// Destination URL to unsubscribe, as `webhooks list` shows it; default this service's URL,
        /// `JARVIS_PUBLIC_URL` + `/amocrm/webhook/<AMOCRM_WEBHOOK_SECRET>`.
        #[arg(long, value_name = "URL")]
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

/// The command line with every command's `--help` listing the settings (environment variable and
/// default) after its own options.
pub fn command() -> clap::Command {
    fn with_settings(cmd: clap::Command, long: &str) -> clap::Command {
        let subcommands: Vec<String> = cmd
            .get_subcommands()
            .map(|s| s.get_name().to_owned())
            .collect();
        let mut cmd = cmd
            .after_help("Settings: `--help` lists each with its environment variable and default.")
            .after_long_help(long.to_owned());
        for name in subcommands {
            cmd = cmd.mut_subcommand(name, |sub| with_settings(sub, long));
        }
        cmd
    }
    with_settings(
        <Cli as clap::CommandFactory>::command(),
        &config::help_text(),
    )
}

impl Cli {
    /// Parses the process's arguments (exits with the usage on an error, or after `--help`).
    pub fn parse_args() -> Self {
        let matches = command().get_matches();
        <Cli as clap::FromArgMatches>::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }

    pub async fn run(self) -> anyhow::Result<()> {
        if let Command::Webhooks(WebhooksCli::Parse) = self.command {
            return parse_stdin();
        }
        if let Command::Config(ConfigCommand::Check) = self.command {
            return config_check(self.config.as_deref());
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
            Command::Webhooks(WebhooksCli::Subscription(cmd)) => {
                amo::webhooks_command(&settings, cmd).await
            }
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
            Command::Link(args) => {
                crate::link::backfill_command(&settings, args.since.as_deref(), args.batch).await
            }
            Command::CatchUp(args) => {
                crate::catch_up::catch_up_command(&settings, args.since).await
            }
            Command::Sync(cmd) => {
                let (leads, contacts) = match cmd {
                    SyncCommand::Lead { ids } => (ids, Vec::new()),
                    SyncCommand::Contact { ids } => (Vec::new(), ids),
                };
                crate::catch_up::sync_command(settings, &leads, &contacts).await
            }
            Command::Webhooks(WebhooksCli::Parse) | Command::Config(_) => {
                unreachable!("handled above")
            }
        }
    }
}

/// Prints every setting's effective value (secrets masked) and where it comes from, then validates them.
fn config_check(file: Option<&std::path::Path>) -> anyhow::Result<()> {
    let env: std::collections::BTreeMap<String, String> = std::env::vars().collect();
    let text = config::read_file(file)?;
    let sources = config::Sources::read(text.as_deref(), &env)?;
    match file {
        Some(path) => println!("configuration file: {}", path.display()),
        None => println!("configuration file: none (--config / JARVIS_CONFIG)"),
    }
    let report = sources.report();
    let width = report
        .iter()
        .map(|(s, _, _)| s.name.len())
        .max()
        .unwrap_or(0);
    for (setting, value, origin) in &report {
        println!("{:<width$}  {value}  [{origin}]", setting.name);
    }
    sources.settings()?;
    println!("settings are valid");
    Ok(())
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

/// The spool's line of `status`: what waits there is what the database has not got yet.
fn spool_status(settings: &Settings) -> (serde_json::Value, String) {
    let Some(spool) = &settings.spool else {
        return (serde_json::Value::Null, "off".into());
    };
    let dir = spool.dir.display().to_string();
    match crate::spool::inspect(&spool.dir) {
        Ok((bodies, bytes)) => (
            json!({"dir": dir, "bodies": bodies, "bytes": bytes, "max_bytes": spool.max_bytes}),
            format!("{bodies} bodies, {bytes} bytes waiting in {dir}"),
        ),
        Err(error) => (
            json!({"dir": dir, "error": error.to_string()}),
            format!("{dir} cannot be read: {error}"),
        ),
    }
}

async fn status(settings: &Settings, as_json: bool) -> anyhow::Result<()> {
    let (spool_json, spool_line) = spool_status(settings);
    let store = match jarvis_store::connect(&settings.database_url).await {
        Ok(store) => store,
        Err(error) => {
            // The spool matters most while the database is away.
            eprintln!("spool:           {spool_line}");
            return Err(error.into());
        }
    };
    let stats = store.stats().await?;
    let now = Utc::now();
    let minute = store
        .api_usage_since(now - chrono::Duration::minutes(1))
        .await?;
    let hour = store
        .api_usage_since(now - chrono::Duration::hours(1))
        .await?;
    let oldest_age = stats.oldest_pending_at.map(|t| (now - t).num_seconds());
    let access = amo::access_broken(&store).await?;
    let gaps = store.open_gaps().await?;
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
            "api_access": match &access {
                Some(broken) => json!({
                    "ok": false,
                    "broken_since": broken.since,
                    "reason": broken.reason,
                    "advice": broken.advice,
                    "error": broken.error,
                }),
                None => json!({"ok": true}),
            },
            "open_gaps": gaps.iter().map(|g| json!({
                "id": g.id, "kind": g.kind.as_str(), "from": g.from, "to": g.to,
                "pages_done": g.pages_done, "events_read": g.events_read,
            })).collect::<Vec<_>>(),
            "spool": spool_json,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let budget = |b: Option<u32>| b.map(|b| format!(" of {b}")).unwrap_or_default();
    println!("mode:            {mode}");
    if let Some(broken) = &access {
        println!(
            "API access broken since {}: {}; {}",
            broken.since.to_rfc3339(),
            broken.reason,
            broken.advice
        );
    }
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
    println!("spool:           {spool_line}");
    println!(
        "API requests:    {minute}{} this minute, {hour}{} this hour",
        budget(settings.amocrm.rate_per_minute),
        budget(settings.amocrm.rate_per_hour)
    );
    match gaps.iter().map(|g| g.from).min() {
        None => println!("open gap:        none"),
        Some(from) => println!(
            "open gap:        since {} ({}s, {} gap(s): {})",
            from.to_rfc3339(),
            (now - from).num_seconds(),
            gaps.len(),
            gaps.iter()
                .map(|g| format!("{} {} page(s) read", g.kind, g.pages_done))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
    if !stats.by_type.is_empty() {
        println!("events by type:");
        for (event_type, count) in &stats.by_type {
            println!("  {event_type:<22} {count}");
        }
    }
    Ok(())
}
