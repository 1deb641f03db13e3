//! The command line: `jarvis <command>`. The arguments are defined here and each command runs in
//! its own module under [`commands`].

use std::path::PathBuf;

use chrono::Utc;
use clap::{Args, Parser, Subcommand};

use crate::commands;
use crate::config::{self, Settings};
use crate::startup::RunParts;
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
            return commands::webhooks::parse();
        }
        if let Command::Config(ConfigCommand::Check) = self.command {
            return commands::config::check(self.config.as_deref());
        }
        let settings = Settings::load(self.config.as_deref())?;
        telemetry::init_logging(settings.log_json);
        match self.command {
            Command::Serve(args) => {
                let parts = RunParts {
                    http: !args.worker_only,
                    worker: !args.http_only,
                };
                commands::serve::run(settings, parts).await
            }
            Command::Migrate => commands::migrate::run(&settings).await,
            Command::Auth(AuthCommand::Url { state }) => commands::auth::url(&settings, &state),
            Command::Auth(AuthCommand::Exchange { code }) => {
                commands::auth::exchange(&settings, code).await
            }
            Command::Webhooks(WebhooksCli::Subscription(cmd)) => match cmd {
                WebhooksCommand::Register {
                    destination,
                    settings: events,
                } => commands::webhooks::register(&settings, destination, events).await,
                WebhooksCommand::List => commands::webhooks::list(&settings).await,
                WebhooksCommand::Remove { destination } => {
                    commands::webhooks::remove(&settings, destination).await
                }
            },
            Command::Events(EventsCommand::Replay { dead, id }) => {
                commands::events::replay(&settings, dead, id).await
            }
            Command::Status(args) => commands::status::run(&settings, args.json).await,
            Command::Link(args) => {
                commands::link::backfill(&settings, args.since.as_deref(), args.batch).await
            }
            Command::CatchUp(args) => commands::catch_up::run(&settings, args.since).await,
            Command::Sync(cmd) => {
                let (leads, contacts) = match cmd {
                    SyncCommand::Lead { ids } => (ids, Vec::new()),
                    SyncCommand::Contact { ids } => (Vec::new(), ids),
                };
                commands::sync::run(settings, &leads, &contacts).await
            }
            Command::Webhooks(WebhooksCli::Parse) | Command::Config(_) => {
                unreachable!("handled above")
            }
        }
    }
}
