//! The amoCRM side of the service: building the client, keeping OAuth tokens in the database,
//! fetching in bulk, recording API usage, and the `auth` / `webhooks` commands.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use amocrm_client::{
    AccessToken, Client, ClientSecret, ContactId, Domain, LeadId, LeadWith, OAuthConfig, RateLimit,
    RetryPolicy, WebhookSetting,
};
use anyhow::{Context, bail};
use chrono::{DateTime, Timelike, Utc};
use jarvis_store::{ApiUsage, DynStore};
use serde_json::Value;

use crate::cli::{AuthCommand, WebhooksCommand};
use crate::config::{AmoAuth, AmoSettings, Settings};
use crate::telemetry::names;

/// OAuth tokens kept in `amocrm_oauth_tokens`, so every instance shares the rotated pair.
pub use jarvis_store::mirror::DbTokenStore;

fn oauth_config(settings: &AmoSettings) -> Option<OAuthConfig> {
    settings
        .oauth_client
        .as_ref()
        .map(|(id, secret, uri)| OAuthConfig {
            client_id: id.clone(),
            client_secret: ClientSecret::new(secret.expose()),
            redirect_uri: uri.clone(),
        })
}

fn domain(name: &str) -> Domain {
    match name.trim().trim_start_matches('.') {
        "amocrm.ru" => Domain::AmocrmRu,
        "amocrm.com" => Domain::AmocrmCom,
        "kommo.com" => Domain::KommoCom,
        other => Domain::Other(other.to_string()),
    }
}

fn builder(settings: &AmoSettings) -> amocrm_client::ClientBuilder {
    let mut builder = Client::builder()
        .rate_limit(RateLimit {
            per_second: settings.rate_per_second,
            per_minute: settings.rate_per_minute,
            per_hour: settings.rate_per_hour,
            ..RateLimit::default()
        })
        .retry(RetryPolicy {
            max_retries: settings.max_retries,
            ..RetryPolicy::default()
        });
    if let Some(base) = &settings.base_url {
        builder = builder.base_url(base.clone());
    } else if let Some(subdomain) = &settings.subdomain {
        builder = builder
            .subdomain(subdomain.clone())
            .domain(domain(&settings.domain));
    }
    builder
}

/// The API client, or `None` in webhook-only mode (no credentials).
pub fn build_client(settings: &AmoSettings, store: &DynStore) -> anyhow::Result<Option<Client>> {
    let Some(auth) = &settings.auth else {
        return Ok(None);
    };
    let builder = builder(settings);
    let builder = match auth {
        AmoAuth::LongLived(token) => builder.long_lived_token(AccessToken::new(token.expose())),
        AmoAuth::OAuth { .. } => {
            let tokens = Arc::new(DbTokenStore::new(store.clone(), settings.account_key()));
            builder.oauth(
                oauth_config(settings).expect("OAuth auth implies an OAuth client"),
                tokens,
            )
        }
    };
    Ok(Some(builder.build().context("building the amoCRM client")?))
}

/// A failed fetch, classified for the queue.
#[derive(Debug)]
pub struct FetchError {
    /// 429, 5xx, transport and database errors: retry without counting towards dead.
    pub transient: bool,
    pub message: String,
    pub not_before: Option<DateTime<Utc>>,
    /// amoCRM refuses access in a way only a person can fix.
    pub access: Option<AccessProblem>,
}

impl FetchError {
    pub fn store(err: jarvis_store::Error) -> Self {
        FetchError {
            // Data the database refuses will be refused again.
            transient: !err.is_bad_data(),
            message: format!("database: {err}"),
            not_before: None,
            access: None,
        }
    }

    fn api(err: amocrm_client::Error) -> Self {
        use amocrm_client::Error as E;
        let auth_trouble = match &err {
            E::NoToken => Some("no_token"),
            E::TokenRequest { .. } => Some("token_request"),
            E::TokenStore(_) => Some("token_store"),
            E::Unauthorized { .. } => Some("unauthorized"),
            _ => None,
        };
        if let Some(kind) = auth_trouble {
            metrics::counter!(names::AUTH_ERRORS, "kind" => kind).increment(1);
        }
        let (transient, not_before) = match &err {
            E::RateLimited { retry_after, .. } => (
                true,
                // Bounded: an absurd Retry-After must neither overflow nor park events for years.
                retry_after.map(|d| {
                    Utc::now()
                        + chrono::Duration::from_std(d.min(std::time::Duration::from_secs(3600)))
                            .unwrap_or_default()
                }),
            ),
            // Outages, an account-wide block after abuse (403), and credentials that need an operator
            // (no token yet, revoked, unpaid account): the events wait rather than die.
            E::Server { .. }
            | E::Transport { .. }
            | E::Forbidden { .. }
            | E::Unauthorized { .. }
            | E::PaymentRequired { .. }
            | E::NoToken
            | E::TokenRequest { .. }
            | E::TokenStore(_) => (true, None),
            // A request amoCRM refuses as such (400, an unexpected answer) will not get better by itself.
            _ => (false, None),
        };
        FetchError {
            transient,
            message: err.to_string(),
            not_before,
            access: AccessProblem::of(&err),
        }
    }
}

/// amoCRM refusing this service's API access in a way that does not pass by itself: someone has to
/// issue a token, pay the account or lift a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AccessProblem {
    /// 401: the token is revoked, wrong or of another account.
    Unauthorized,
    /// 402: the account is not paid.
    PaymentRequired,
    /// 403: the account, the integration or the address is blocked.
    Forbidden,
    /// The OAuth token endpoint refused the refresh token.
    RefreshRefused,
    /// OAuth is configured but no tokens were ever stored.
    NoToken,
}

impl AccessProblem {
    pub const ALL: [AccessProblem; 5] = [
        AccessProblem::Unauthorized,
        AccessProblem::PaymentRequired,
        AccessProblem::Forbidden,
        AccessProblem::RefreshRefused,
        AccessProblem::NoToken,
    ];

    /// What an API error says about access, if anything (outages and bad requests say nothing).
    pub fn of(error: &amocrm_client::Error) -> Option<Self> {
        use amocrm_client::Error as E;
        match error {
            E::Unauthorized { .. } => Some(AccessProblem::Unauthorized),
            E::PaymentRequired { .. } => Some(AccessProblem::PaymentRequired),
            E::Forbidden { .. } => Some(AccessProblem::Forbidden),
            // A token endpoint that is down is an outage; one that answers "no" is not.
            E::TokenRequest { status, .. } if (400..500).contains(status) && *status != 429 => {
                Some(AccessProblem::RefreshRefused)
            }
            E::NoToken => Some(AccessProblem::NoToken),
            _ => None,
        }
    }

    /// The `reason` label of the metrics and the stored state.
    pub fn label(self) -> &'static str {
        match self {
            AccessProblem::Unauthorized => "unauthorized",
            AccessProblem::PaymentRequired => "payment_required",
            AccessProblem::Forbidden => "forbidden",
            AccessProblem::RefreshRefused => "token_refresh_refused",
            AccessProblem::NoToken => "no_token",
        }
    }

    /// What happened and what to do, for the log and `jarvis status`.
    pub fn advice(self) -> &'static str {
        match self {
            AccessProblem::Unauthorized => {
                "amoCRM answers 401 Unauthorized: the token is revoked or wrong; issue a new \
                 long-lived token, or run `jarvis auth url` and `jarvis auth exchange <code>`"
            }
            AccessProblem::PaymentRequired => {
                "amoCRM answers 402 Payment Required: the account is not paid"
            }
            AccessProblem::Forbidden => {
                "amoCRM answers 403 Forbidden: the account, the integration or this address is \
                 blocked; ask amoCRM support"
            }
            AccessProblem::RefreshRefused => {
                "amoCRM refused to refresh the OAuth token: run `jarvis auth url` and \
                 `jarvis auth exchange <code>` again"
            }
            AccessProblem::NoToken => {
                "no OAuth tokens are stored: run `jarvis auth url` and `jarvis auth exchange <code>`"
            }
        }
    }
}

/// The `jarvis_state` key under which broken API access is kept for `jarvis status`.
pub const API_ACCESS_STATE: &str = "api_access";

/// Broken API access as stored under [`API_ACCESS_STATE`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AccessBroken {
    pub reason: String,
    pub since: DateTime<Utc>,
    /// What to do about it.
    pub advice: String,
    /// The last error amoCRM's answer produced.
    pub error: String,
}

/// Reads the stored broken-access state, if any (for `jarvis status`).
pub async fn access_broken(store: &DynStore) -> anyhow::Result<Option<AccessBroken>> {
    let Some(entry) = store.get_state(API_ACCESS_STATE).await? else {
        return Ok(None);
    };
    Ok(serde_json::from_value(entry.value).ok())
}

/// Makes API access problems visible: an error line (at most once a minute per reason), the
/// `jarvis_api_access_broken` gauge and `jarvis_api_access_errors_total` counter, and the stored
/// state `jarvis status` shows. The next successful request clears all of it.
pub struct AccessMonitor {
    store: DynStore,
    current: Option<(AccessProblem, DateTime<Utc>)>,
    /// Whether `current` reflects the store (read once, so a restart keeps "since").
    loaded: bool,
    logged: BTreeMap<AccessProblem, Instant>,
}

impl AccessMonitor {
    /// Shortest time between two log lines (and state writes) for one reason.
    pub const LOG_EVERY: Duration = Duration::from_secs(60);

    pub fn new(store: DynStore) -> Self {
        Self {
            store,
            current: None,
            loaded: false,
            logged: BTreeMap::new(),
        }
    }

    async fn load(&mut self) {
        if self.loaded {
            return;
        }
        match access_broken(&self.store).await {
            Ok(stored) => {
                self.loaded = true;
                self.current = stored.and_then(|stored| {
                    let problem = AccessProblem::ALL
                        .into_iter()
                        .find(|problem| problem.label() == stored.reason)?;
                    Some((problem, stored.since))
                });
                if let Some((problem, _)) = self.current {
                    set_gauge(Some(problem));
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading the API access state failed"),
        }
    }

    /// amoCRM refused access for `problem`; `error` is the client's error text.
    pub async fn failed(&mut self, problem: AccessProblem, error: &str) {
        self.load().await;
        metrics::counter!(names::API_ACCESS_ERRORS, "reason" => problem.label()).increment(1);
        let since = match self.current {
            Some((current, since)) if current == problem => since,
            _ => Utc::now(),
        };
        let changed = self.current.map(|(current, _)| current) != Some(problem);
        self.current = Some((problem, since));
        if changed {
            set_gauge(Some(problem));
        }
        let due = self
            .logged
            .get(&problem)
            .is_none_or(|at| at.elapsed() >= Self::LOG_EVERY);
        if !changed && !due {
            return;
        }
        self.logged.insert(problem, Instant::now());
        tracing::error!(
            reason = problem.label(),
            since = %since.to_rfc3339(),
            %error,
            "amoCRM API access is broken and needs a person: {}; events wait until it works again",
            problem.advice()
        );
        let state = AccessBroken {
            reason: problem.label().to_string(),
            since,
            advice: problem.advice().to_string(),
            error: error.to_string(),
        };
        let value = serde_json::to_value(&state).unwrap_or(Value::Null);
        if let Err(e) = self.store.set_state(API_ACCESS_STATE, &value).await {
            tracing::warn!(error = %e, "recording the API access state failed");
        }
    }

    /// A request went through: access works (again).
    pub async fn succeeded(&mut self) {
        self.load().await;
        let Some((problem, since)) = self.current else {
            return;
        };
        match self.store.clear_state(API_ACCESS_STATE).await {
            Ok(_) => {
                self.current = None;
                self.logged.clear();
                set_gauge(None);
                tracing::info!(
                    reason = problem.label(),
                    since = %since.to_rfc3339(),
                    "amoCRM API access works again"
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "clearing the API access state failed; will retry")
            }
        }
    }
}

/// One series per reason: 1 for the current problem, 0 for the others.
fn set_gauge(current: Option<AccessProblem>) {
    for problem in AccessProblem::ALL {
        let value = if Some(problem) == current { 1.0 } else { 0.0 };
        metrics::gauge!(names::API_ACCESS_BROKEN, "reason" => problem.label()).set(value);
    }
}

/// Leads by id with their contacts embedded, as raw API JSON (`deal_full_data`).
pub async fn fetch_leads(client: &Client, ids: &[u64]) -> Result<Vec<Value>, FetchError> {
    let ids: Vec<LeadId> = ids.iter().copied().map(LeadId).collect();
    let leads = client
        .leads()
        .get_many(&ids, &[LeadWith::Contacts])
        .await
        .map_err(FetchError::api)?;
    Ok(leads.into_iter().map(|lead| lead.raw().clone()).collect())
}

/// Contacts by id, as raw API JSON.
pub async fn fetch_contacts(client: &Client, ids: &[u64]) -> Result<Vec<Value>, FetchError> {
    let ids: Vec<ContactId> = ids.iter().copied().map(ContactId).collect();
    let contacts = client
        .contacts()
        .get_many(&ids, &[])
        .await
        .map_err(FetchError::api)?;
    Ok(contacts.into_iter().map(|c| c.raw().clone()).collect())
}

/// Publishes the client's counters to Prometheus (absolute values: the client counts since start).
pub fn export_usage(client: &Client) {
    let usage = client.usage();
    for ((endpoint, status), count) in &usage.requests {
        metrics::counter!(names::API_REQUESTS, "endpoint" => endpoint.clone(), "status" => status.to_string())
            .absolute(*count);
    }
    metrics::counter!(names::RATE_LIMIT_WAITS).absolute(usage.rate_limit_waits);
    metrics::counter!(names::RATE_LIMIT_WAIT_SECONDS)
        .absolute(usage.rate_limit_wait_time.as_secs());
    metrics::counter!(names::API_RETRIES).absolute(usage.retries);
    metrics::counter!(names::TOKEN_REFRESHES).absolute(usage.token_refreshes);
}

/// Copies the client's request counts into `amocrm_api_usage` so `jarvis status` (another process) can
/// report use against the budget.
pub struct UsageRecorder {
    client: Client,
    recorded: BTreeMap<(String, u16), u64>,
    last_flush: Option<Instant>,
}

impl UsageRecorder {
    const EVERY: Duration = Duration::from_secs(5);

    pub fn new(client: Client) -> Self {
        Self {
            client,
            recorded: BTreeMap::new(),
            last_flush: None,
        }
    }

    pub async fn flush(&mut self, store: &DynStore) {
        if self.last_flush.is_some_and(|t| t.elapsed() < Self::EVERY) {
            return;
        }
        self.last_flush = Some(Instant::now());
        export_usage(&self.client);
        let now = Utc::now();
        let minute = now
            .with_second(0)
            .and_then(|t| t.with_nanosecond(0))
            .unwrap_or(now);
        let usage = self.client.usage();
        let mut rows = Vec::new();
        for (key, count) in &usage.requests {
            let before = self.recorded.get(key).copied().unwrap_or(0);
            if *count > before {
                rows.push(ApiUsage {
                    minute,
                    endpoint: key.0.clone(),
                    status: key.1,
                    count: count - before,
                });
            }
        }
        if rows.is_empty() {
            return;
        }
        match store.record_api_usage(&rows).await {
            Ok(()) => self.recorded = usage.requests.clone(),
            Err(e) => tracing::warn!(error = %e, "recording API usage failed; will retry"),
        }
    }
}

/// `jarvis auth url` / `jarvis auth exchange <code>`.
pub async fn auth_command(settings: &Settings, cmd: AuthCommand) -> anyhow::Result<()> {
    let Some(oauth) = oauth_config(&settings.amocrm) else {
        bail!("OAuth needs AMOCRM_CLIENT_ID, AMOCRM_CLIENT_SECRET and AMOCRM_REDIRECT_URI");
    };
    match cmd {
        AuthCommand::Url { state } => {
            // The authorization page needs no account: build a client without a store round trip.
            let tokens = Arc::new(amocrm_client::InMemoryTokenStore::new(None));
            let client = builder(&settings.amocrm).oauth(oauth, tokens).build()?;
            println!("{}", client.oauth()?.authorization_url(&state));
            Ok(())
        }
        AuthCommand::Exchange { code } => {
            if settings.amocrm.subdomain.is_none() && settings.amocrm.base_url.is_none() {
                bail!("set AMOCRM_SUBDOMAIN (or AMOCRM_BASE_URL) to exchange a code");
            }
            let store = jarvis_store::connect(&settings.database_url).await?;
            store.migrate().await?;
            let tokens = Arc::new(DbTokenStore::new(store, settings.amocrm.account_key()));
            let client = builder(&settings.amocrm).oauth(oauth, tokens).build()?;
            let pair = client.oauth()?.exchange_code(code).await?;
            println!(
                "tokens stored for account `{}`; the access token expires at {}",
                settings.amocrm.account_key(),
                pair.expires_at
            );
            Ok(())
        }
    }
}

fn api_client(settings: &Settings, store: &DynStore) -> anyhow::Result<Client> {
    build_client(&settings.amocrm, store)?.ok_or_else(|| {
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

/// `jarvis webhooks register|list|remove`.
pub async fn webhooks_command(settings: &Settings, cmd: WebhooksCommand) -> anyhow::Result<()> {
    let store = jarvis_store::connect(&settings.database_url).await?;
    let client = api_client(settings, &store)?;
    let outcome = run_webhooks_command(settings, &client, cmd).await;
    // A refresh during the command whose pair could not be saved must not end with the process.
    save_pending_tokens(&client).await?;
    outcome
}

/// Saves a refreshed token pair that is still only in memory; an error if it cannot be saved.
pub async fn save_pending_tokens(client: &Client) -> anyhow::Result<()> {
    if let Ok(oauth) = client.oauth() {
        oauth.save_pending_tokens().await.context(
            "the refreshed amoCRM tokens could not be saved: they are lost when this process exits; \
             run `jarvis auth url` and `jarvis auth exchange` again if later calls fail",
        )?;
    }
    Ok(())
}

async fn run_webhooks_command(
    settings: &Settings,
    client: &Client,
    cmd: WebhooksCommand,
) -> anyhow::Result<()> {
    match cmd {
        WebhooksCommand::Register {
            destination,
            settings: events,
        } => {
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
        }
        WebhooksCommand::List => {
            for hook in client.webhooks().list().await? {
                let state = if hook.disabled { "disabled" } else { "active" };
                println!(
                    "{}\t{state}\t{}",
                    shown(&hook.destination, settings),
                    join(&hook.settings)
                );
            }
        }
        WebhooksCommand::Remove { destination } => {
            let destination = match destination {
                Some(d) => d,
                None => default_destination(settings)?,
            };
            client.webhooks().unsubscribe(&destination).await?;
            println!("removed {}", shown(&destination, settings));
        }
    }
    Ok(())
}

#[cfg(test)]
mod access_tests {
    use super::AccessProblem;

    #[test]
    fn every_access_problem_is_a_registered_metric_label() {
        let labels: Vec<&str> = AccessProblem::ALL.iter().map(|p| p.label()).collect();
        assert_eq!(labels, crate::metrics::ACCESS_PROBLEMS);
    }
}
