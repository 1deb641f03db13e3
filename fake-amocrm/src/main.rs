//! `fake-amocrm serve` runs the fake API; `fake-amocrm send` plays the webhook sender.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use fake_amocrm::{FakeAmo, FakeConfig, KindMix, SendPlan, send};

#[derive(Parser)]
#[command(
    name = "fake-amocrm",
    version,
    about = "A stateful fake amoCRM for benchmarks and demos"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the fake API v4 and OAuth endpoints (plus /__fake/* controls).
    Serve(ServeArgs),
    /// Post a stream of generated webhook bodies to a URL and print a JSON report.
    Send(SendArgs),
}

/// Data options shared by both commands: the same values give the same leads.
#[derive(Args)]
struct DataArgs {
    /// Leads to generate.
    #[arg(long, default_value_t = 300)]
    leads: usize,
    /// Contacts to generate.
    #[arg(long, default_value_t = 300)]
    contacts: usize,
    /// Seed of the generated data.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value_t = 29_071_803)]
    account_id: u64,
    #[arg(long, default_value = "geodrive")]
    subdomain: String,
}

#[derive(Args)]
struct ServeArgs {
    #[arg(long, default_value = "127.0.0.1:8090", env = "FAKE_AMOCRM_LISTEN")]
    listen: SocketAddr,
    /// Requests per second on /api/v4/* before 429 (0 = unlimited).
    #[arg(long, default_value_t = 7)]
    rate: u32,
    /// Delay added to every answer, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// `expires_in` of issued access tokens, in seconds.
    #[arg(long, default_value_t = 86_400)]
    token_lifetime: u64,
    /// Serve /api/v4/* without checking the Bearer token.
    #[arg(long)]
    no_auth: bool,
    /// A Bearer token always accepted (like a long-lived token).
    #[arg(long, env = "FAKE_AMOCRM_TOKEN", hide_env_values = true)]
    long_lived_token: Option<String>,
    /// Also play the sender from this process, so webhook bodies and the API agree
    /// on every lead's current state; the report is printed when it ends.
    #[arg(long)]
    send_url: Option<String>,
    #[arg(long, default_value_t = 10.0, requires = "send_url")]
    send_rate: f64,
    #[arg(long, requires = "send_url")]
    send_seconds: Option<f64>,
    #[arg(long, requires = "send_url")]
    send_total: Option<usize>,
    #[arg(long, default_value_t = 8, requires = "send_url")]
    send_concurrency: usize,
    #[command(flatten)]
    data: DataArgs,
}

#[derive(Args)]
struct SendArgs {
    /// Where to post, e.g. http://127.0.0.1:3000/amocrm/webhook/SECRET
    #[arg(long)]
    url: String,
    /// Bodies per second (0 = as fast as possible).
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Stop after this many seconds.
    #[arg(long)]
    seconds: Option<f64>,
    /// Stop after this many bodies (100 when neither this nor --seconds is given).
    #[arg(long)]
    total: Option<usize>,
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Event weights, e.g. lead_status=4,lead_update=4,lead_add=1,contact_update=1,lead_note=0,lead_delete=0
    #[arg(long, value_parser = KindMix::parse)]
    mix: Option<KindMix>,
    /// Lead status/update events per body.
    #[arg(long, default_value_t = 1)]
    events_per_body: usize,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 5.0)]
    timeout: f64,
    #[command(flatten)]
    data: DataArgs,
}

fn fake_from(data: &DataArgs, config: FakeConfig) -> FakeAmo {
    let fake = FakeAmo::new(FakeConfig {
        account_id: data.account_id,
        subdomain: data.subdomain.clone(),
        ..config
    });
    fake.seed(data.leads, data.contacts, data.seed);
    fake
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve(args) => serve(args).await,
        Command::Send(args) => send_cmd(args).await,
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = FakeConfig {
        rate_per_second: (args.rate > 0).then_some(args.rate),
        latency: Duration::from_millis(args.latency_ms),
        token_lifetime: Duration::from_secs(args.token_lifetime),
        require_auth: !args.no_auth,
        long_lived_token: args.long_lived_token,
        ..FakeConfig::default()
    };
    let fake = fake_from(&args.data, config);
    let addr = fake
        .start(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    println!("http://{addr}");
    tracing::info!(
        leads = args.data.leads,
        contacts = args.data.contacts,
        "fake amoCRM serving; POST /oauth2/access_token with any code for tokens, GET /__fake/stats for counters"
    );
    if let Some(url) = args.send_url {
        let plan = SendPlan {
            rate_per_second: args.send_rate.max(0.0),
            duration: args.send_seconds.map(Duration::from_secs_f64),
            total: args.send_total,
            concurrency: args.send_concurrency,
            ..SendPlan::new(url)
        };
        let sender = fake.clone();
        tokio::spawn(async move {
            match send(&plan, &sender).await {
                Ok(report) => match serde_json::to_string_pretty(&report) {
                    Ok(json) => println!("{json}"),
                    Err(e) => tracing::error!(error = %e, "printing the send report"),
                },
                Err(e) => tracing::error!(error = %e, "sending webhooks"),
            }
        });
    }
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    Ok(())
}

async fn send_cmd(args: SendArgs) -> anyhow::Result<()> {
    let fake = fake_from(&args.data, FakeConfig::default());
    let plan = SendPlan {
        url: args.url,
        rate_per_second: args.rate.max(0.0),
        duration: args.seconds.map(Duration::from_secs_f64),
        total: args.total,
        concurrency: args.concurrency,
        kind_mix: args.mix.unwrap_or_default(),
        events_per_body: args.events_per_body,
        timeout: Duration::from_secs_f64(args.timeout),
    };
    let report = send(&plan, &fake).await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
