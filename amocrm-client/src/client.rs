//! The [`Client`]: one per amoCRM account, cheap to clone, shared by every task.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::de::DeserializeOwned;
use url::Url;

use crate::auth::{
    AccessToken, AuthorizationCode, AuthorizationMode, Credentials, OAuthConfig, OAuthState,
    TOKEN_ENDPOINT, TOKEN_PATH, TokenAnswer, TokenPair, TokenStore, TokenTransport,
};
use crate::error::{Error, ProblemBody, Result};
use crate::rate_limit::{RateLimit, RateLimiter};
use crate::retry::{self, RetryPolicy};
use crate::usage::{RequestEvent, RequestObserver, Usage, UsageSnapshot};

/// The amoCRM (or Kommo) domain an account lives on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Domain {
    /// `amocrm.ru`
    #[default]
    AmocrmRu,
    /// `amocrm.com`
    AmocrmCom,
    /// `kommo.com`
    KommoCom,
    /// Another host suffix, e.g. `amocrm.com.ua`.
    Other(String),
}

impl Domain {
    /// The host suffix, e.g. `amocrm.ru`.
    pub fn as_str(&self) -> &str {
        match self {
            Domain::AmocrmRu => "amocrm.ru",
            Domain::AmocrmCom => "amocrm.com",
            Domain::KommoCom => "kommo.com",
            Domain::Other(domain) => domain,
        }
    }
}

/// A typed amoCRM API v4 client for one account.
///
/// Clones share the connection pool, the credentials (and so one refresh), the rate limiter
/// and the usage counters.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) transport: Transport,
    pub(crate) credentials: Credentials,
    pub(crate) retry: RetryPolicy,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.inner.transport.base.as_str())
            .field("retry", &self.inner.retry)
            .finish_non_exhaustive()
    }
}

/// The HTTP side: connection pool, base URL, rate limiter and counters.
pub(crate) struct Transport {
    pub(crate) http: reqwest::Client,
    pub(crate) base: Url,
    pub(crate) limiter: Arc<RateLimiter>,
    pub(crate) usage: Arc<Usage>,
    pub(crate) observer: Option<Arc<dyn RequestObserver>>,
}

impl Transport {
    pub(crate) fn url(&self, path: &str, query: Option<&Query>) -> Result<Url> {
        let mut url = self
            .base
            .join(path.trim_start_matches('/'))
            .map_err(|e| Error::Config(format!("bad request path {path:?}: {e}")))?;
        if let Some(query) = query.filter(|q| !q.is_empty()) {
            url.set_query(Some(&query.encode()));
        }
        Ok(url)
    }

    /// Sends one attempt after waiting for the rate limiter, and counts it.
    pub(crate) async fn execute(
        &self,
        endpoint: &str,
        attempt: u32,
        request: reqwest::RequestBuilder,
    ) -> std::result::Result<reqwest::Response, reqwest::Error> {
        let acquired = self.limiter.acquire().await;
        if !acquired.waited.is_zero() {
            self.usage.record_wait(acquired.waited);
            if let Some(observer) = &self.observer {
                observer.on_rate_limit_wait(acquired.waited);
            }
        }
        let started = Instant::now();
        let result = request.send().await;
        let elapsed = started.elapsed();
        let status = result.as_ref().map_or(0, |r| r.status().as_u16());
        self.usage.record_request(endpoint, status);
        if let Some(observer) = &self.observer {
            observer.on_request(&RequestEvent {
                endpoint,
                status,
                elapsed,
                attempt,
            });
        }
        tracing::debug!(
            endpoint,
            status,
            attempt,
            elapsed_ms = elapsed.as_millis() as u64,
            "amoCRM request"
        );
        result
    }
}

/// Token requests go through the same limiter and counters as every other request.
#[async_trait::async_trait]
impl TokenTransport for Transport {
    async fn post_token_request(&self, body: &serde_json::Value) -> Result<TokenAnswer> {
        let url = self.url(TOKEN_PATH, None)?;
        let request = self.http.request(Method::POST, url).json(body);
        let response = self
            .execute(TOKEN_ENDPOINT, 0, request)
            .await
            .map_err(|e| Error::transport(TOKEN_ENDPOINT, e))?;
        let status = response.status().as_u16();
        let received_at = chrono::Utc::now();
        let body = response
            .bytes()
            .await
            .map_err(|e| Error::transport(TOKEN_ENDPOINT, e))?;
        Ok(TokenAnswer {
            status,
            received_at,
            body,
        })
    }

    fn record_refresh(&self) {
        self.usage.record_refresh();
    }
}

/// Query parameters in amoCRM's PHP style. Brackets and commas stay literal
/// (`filter[id][]=1&with=contacts,companies`), everything else is percent-encoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

const QUERY_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'[')
    .remove(b']')
    .remove(b',');

impl Query {
    /// No parameters.
    pub fn new() -> Self {
        Query::default()
    }

    /// Adds `key=value`.
    pub fn push(&mut self, key: impl Into<String>, value: impl ToString) -> &mut Self {
        self.pairs.push((key.into(), value.to_string()));
        self
    }

    /// `key[]=v1&key[]=v2...`
    pub fn push_all<V: ToString>(
        &mut self,
        key: &str,
        values: impl IntoIterator<Item = V>,
    ) -> &mut Self {
        for value in values {
            self.push(format!("{key}[]"), value);
        }
        self
    }

    /// `with=a,b` when `values` is not empty.
    pub fn push_joined<V: AsRef<str>>(&mut self, key: &str, values: &[V]) -> &mut Self {
        if !values.is_empty() {
            let joined = values
                .iter()
                .map(AsRef::as_ref)
                .collect::<Vec<_>>()
                .join(",");
            self.push(key, joined);
        }
        self
    }

    /// Whether no parameter is set.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The parameters in order.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// The query string, without `?`.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        for (i, (key, value)) in self.pairs.iter().enumerate() {
            if i > 0 {
                out.push('&');
            }
            out.extend(utf8_percent_encode(key, QUERY_SET));
            out.push('=');
            out.extend(utf8_percent_encode(value, QUERY_SET));
        }
        out
    }
}

/// One API call: what to send and the endpoint template it is counted under.
#[derive(Debug, Clone)]
pub(crate) struct ApiRequest {
    pub method: Method,
    /// `GET /api/v4/leads/{id}`: for counters, logs and errors; never holds ids.
    pub endpoint: String,
    /// `api/v4/leads/17657`
    pub path: String,
    pub query: Query,
    pub body: Option<serde_json::Value>,
    /// Whether repeating the request cannot change state twice, so it may be retried on
    /// 5xx and transport errors; by default from the method.
    pub idempotent: bool,
}

impl ApiRequest {
    pub(crate) fn get(template: &str, path: impl Into<String>) -> Self {
        ApiRequest {
            method: Method::GET,
            endpoint: format!("GET {template}"),
            path: path.into(),
            query: Query::new(),
            body: None,
            idempotent: true,
        }
    }

    pub(crate) fn with_body(
        method: Method,
        template: &str,
        path: impl Into<String>,
        body: serde_json::Value,
    ) -> Self {
        ApiRequest {
            endpoint: format!("{method} {template}"),
            idempotent: retry::is_idempotent(&method),
            method,
            path: path.into(),
            query: Query::new(),
            body: Some(body),
        }
    }

    pub(crate) fn query(mut self, query: Query) -> Self {
        self.query = query;
        self
    }
}

impl Client {
    /// Starts building a client.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// Counters of requests made so far by this client and its clones.
    pub fn usage(&self) -> UsageSnapshot {
        self.inner.transport.usage.snapshot()
    }

    /// The base URL requests go to, e.g. `https://geodrive.amocrm.ru/`.
    pub fn base_url(&self) -> &Url {
        &self.inner.transport.base
    }

    /// The rate limiter this client shares; hand it to another client of the same account.
    pub fn rate_limiter(&self) -> Arc<RateLimiter> {
        self.inner.transport.limiter.clone()
    }

    /// OAuth operations; fails with [`Error::Config`] for a client with a long-lived token.
    pub fn oauth(&self) -> Result<OAuth<'_>> {
        match &self.inner.credentials {
            Credentials::OAuth(state) => Ok(OAuth {
                state,
                transport: &self.inner.transport,
            }),
            Credentials::LongLived(_) => Err(Error::Config(
                "this client uses a long-lived token, not OAuth".into(),
            )),
        }
    }

    /// Sends with auth, retries and refresh-on-401. `None` for 204 No Content.
    pub(crate) async fn send(&self, request: &ApiRequest) -> Result<Option<Bytes>> {
        let inner = &*self.inner;
        let transport = &inner.transport;
        let endpoint = request.endpoint.as_str();
        let idempotent = request.idempotent;
        let url = transport.url(&request.path, Some(&request.query))?;
        let mut attempt = 0u32;
        let mut refreshed = false;
        loop {
            let token = inner.credentials.access_token(transport).await?;
            let mut builder = transport
                .http
                .request(request.method.clone(), url.clone())
                .bearer_auth(token.secret());
            if let Some(body) = &request.body {
                builder = builder.json(body);
            }
            let can_retry = attempt < inner.retry.max_retries;
            let response = match transport.execute(endpoint, attempt, builder).await {
                Ok(response) => response,
                Err(e) => {
                    // A connection never made cannot have changed anything, even for a write.
                    let is_connect = e.is_connect();
                    if can_retry && (idempotent || is_connect) {
                        let delay = inner.retry.backoff(attempt);
                        self.before_retry(endpoint, attempt, delay, "transport error")
                            .await;
                        attempt += 1;
                        continue;
                    }
                    let error = Error::transport(endpoint, e);
                    return Err(if idempotent || is_connect {
                        error
                    } else {
                        maybe_applied(endpoint, error)
                    });
                }
            };
            let status = response.status();
            if status == StatusCode::NO_CONTENT {
                return Ok(None);
            }
            if status.is_success() {
                let body = response.bytes().await.map_err(|e| {
                    let error = Error::transport(endpoint, e);
                    if idempotent {
                        error
                    } else {
                        maybe_applied(endpoint, error)
                    }
                })?;
                return Ok(Some(body));
            }
            let retry_after = retry::retry_after(response.headers());
            match status.as_u16() {
                401 if !refreshed => {
                    if let Credentials::OAuth(state) = &inner.credentials {
                        state.refresh_after_unauthorized(transport, &token).await?;
                        refreshed = true;
                        continue;
                    }
                }
                429 => {
                    let delay = inner.retry.rate_limited_delay(attempt, retry_after);
                    if let (true, Some(delay)) = (can_retry, delay) {
                        self.before_retry(endpoint, attempt, delay, "429").await;
                        attempt += 1;
                        continue;
                    }
                }
                500..=599 if can_retry && idempotent => {
                    let backoff = inner.retry.backoff(attempt);
                    let delay = match retry_after {
                        Some(wanted) if wanted <= inner.retry.max_delay => wanted.max(backoff),
                        _ => backoff,
                    };
                    self.before_retry(endpoint, attempt, delay, "server error")
                        .await;
                    attempt += 1;
                    continue;
                }
                _ => {}
            }
            let body = response.bytes().await.unwrap_or_default();
            let error = status_error(endpoint, status, retry_after, &body);
            // A 5xx to a POST says nothing about what was done before it failed.
            return Err(if !idempotent && status.is_server_error() {
                maybe_applied(endpoint, error)
            } else {
                error
            });
        }
    }

    async fn before_retry(&self, endpoint: &str, attempt: u32, delay: Duration, reason: &str) {
        tracing::warn!(
            endpoint,
            attempt,
            delay_ms = delay.as_millis() as u64,
            reason,
            "retrying amoCRM request"
        );
        self.inner.transport.usage.record_retry();
        tokio::time::sleep(delay).await;
    }

    /// Sends and decodes JSON; `None` for 204 No Content.
    pub(crate) async fn send_json<T: DeserializeOwned>(
        &self,
        request: &ApiRequest,
    ) -> Result<Option<T>> {
        match self.send(request).await? {
            None => Ok(None),
            Some(body) if body.iter().all(u8::is_ascii_whitespace) => Ok(None),
            Some(body) => serde_json::from_slice(&body)
                .map(Some)
                .map_err(|e| Error::decode(&request.endpoint, e)),
        }
    }
}

fn maybe_applied(endpoint: &str, source: Error) -> Error {
    Error::MaybeApplied {
        endpoint: endpoint.to_owned(),
        source: Box::new(source),
    }
}

fn status_error(
    endpoint: &str,
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &[u8],
) -> Error {
    let endpoint = endpoint.to_owned();
    let problem = ProblemBody::parse(body);
    match status.as_u16() {
        400 => {
            let detail = problem.summary(body);
            Error::Validation {
                endpoint,
                detail,
                errors: problem.into_validation_errors(),
            }
        }
        401 => Error::Unauthorized { endpoint },
        402 => Error::PaymentRequired { endpoint },
        403 => Error::Forbidden {
            endpoint,
            detail: problem.summary(body),
        },
        404 => Error::NotFound { endpoint },
        429 => Error::RateLimited {
            endpoint,
            retry_after,
        },
        500..=599 => Error::Server {
            endpoint,
            status: status.as_u16(),
        },
        other => Error::UnexpectedStatus {
            endpoint,
            status: other,
            detail: problem.summary(body),
        },
    }
}

/// OAuth operations of a client: see [`Client::oauth`].
pub struct OAuth<'a> {
    state: &'a OAuthState,
    transport: &'a Transport,
}

impl OAuth<'_> {
    /// The page where an account administrator grants access, e.g.
    /// `https://www.amocrm.ru/oauth?client_id=...&state=...&mode=post_message`.
    /// Check `state` when the redirect comes back.
    pub fn authorization_url(&self, state: &str) -> Url {
        self.state
            .authorization_url(state, AuthorizationMode::PostMessage)
    }

    /// Like [`authorization_url`](Self::authorization_url), with a chosen mode.
    pub fn authorization_url_with_mode(&self, state: &str, mode: AuthorizationMode) -> Url {
        self.state.authorization_url(state, mode)
    }

    /// Exchanges a one-time code for a token pair and saves it to the store. Not retried.
    pub async fn exchange_code(&self, code: impl Into<AuthorizationCode>) -> Result<TokenPair> {
        self.state.exchange_code(self.transport, &code.into()).await
    }

    /// A valid access token, refreshing if it is about to expire.
    pub async fn access_token(&self) -> Result<AccessToken> {
        self.state.access_token(self.transport).await
    }

    /// Saves a refreshed pair that could not be saved when it was issued (the store was down),
    /// now. `Ok` when nothing is pending. Call it before a short-lived process exits: amoCRM
    /// has already spent the stored refresh token, so the pending pair is the only one left.
    pub async fn save_pending_tokens(&self) -> Result<()> {
        self.state.save_pending().await
    }

    /// The integration's id.
    pub fn client_id(&self) -> &str {
        &self.state.config.client_id
    }

    /// The redirect URI.
    pub fn redirect_uri(&self) -> &str {
        &self.state.config.redirect_uri
    }

    /// Where token pairs are kept.
    pub fn store(&self) -> &Arc<dyn TokenStore> {
        &self.state.store
    }
}

enum CredentialsConfig {
    LongLived(AccessToken),
    OAuth(OAuthConfig, Arc<dyn TokenStore>),
}

/// Builds a [`Client`]. Needs an account (subdomain or base URL) and credentials.
pub struct ClientBuilder {
    subdomain: Option<String>,
    domain: Domain,
    base_url: Option<String>,
    authorization_endpoint: Option<String>,
    credentials: Option<CredentialsConfig>,
    rate_limit: RateLimit,
    rate_limiter: Option<Arc<RateLimiter>>,
    retry: RetryPolicy,
    http: Option<reqwest::Client>,
    timeout: Duration,
    observer: Option<Arc<dyn RequestObserver>>,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            subdomain: None,
            domain: Domain::default(),
            base_url: None,
            authorization_endpoint: None,
            credentials: None,
            rate_limit: RateLimit::default(),
            rate_limiter: None,
            retry: RetryPolicy::default(),
            http: None,
            timeout: Duration::from_secs(30),
            observer: None,
        }
    }
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("subdomain", &self.subdomain)
            .field("domain", &self.domain)
            .field("base_url", &self.base_url)
            .field("rate_limit", &self.rate_limit)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// The account's subdomain: `geodrive` for `geodrive.amocrm.ru`.
    pub fn subdomain(mut self, subdomain: impl Into<String>) -> Self {
        self.subdomain = Some(subdomain.into());
        self
    }

    /// amocrm.ru (default), amocrm.com or kommo.com.
    pub fn domain(mut self, domain: Domain) -> Self {
        self.domain = domain;
        self
    }

    /// A full base URL (`https://geodrive.amocrm.ru`, or a mock server); overrides the
    /// subdomain and domain.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }

    /// Where users grant access; default `https://www.{domain}/oauth`.
    pub fn authorization_endpoint(mut self, url: impl Into<String>) -> Self {
        self.authorization_endpoint = Some(url.into());
        self
    }

    /// A private integration's long-lived token.
    pub fn long_lived_token(mut self, token: impl Into<AccessToken>) -> Self {
        self.credentials = Some(CredentialsConfig::LongLived(token.into()));
        self
    }

    /// OAuth 2.0 with tokens kept in `store`.
    pub fn oauth(mut self, config: OAuthConfig, store: Arc<dyn TokenStore>) -> Self {
        self.credentials = Some(CredentialsConfig::OAuth(config, store));
        self
    }

    /// Budgets for a new limiter; default 7 requests a second.
    pub fn rate_limit(mut self, limit: RateLimit) -> Self {
        self.rate_limit = limit;
        self
    }

    /// Shares an existing limiter, e.g. with another client of the same account.
    pub fn rate_limiter(mut self, limiter: Arc<RateLimiter>) -> Self {
        self.rate_limiter = Some(limiter);
        self
    }

    /// How often and how long to retry (see [`RetryPolicy`]).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Whole-request timeout of the default HTTP client (30 s); ignored with [`http_client`](Self::http_client).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Uses this HTTP client (its timeouts, proxy, TLS settings) instead of the default one.
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// Called for every request and rate-limiter wait, e.g. to export metrics.
    pub fn observer(mut self, observer: Arc<dyn RequestObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Checks the settings and builds the client.
    pub fn build(self) -> Result<Client> {
        let base = match (&self.base_url, &self.subdomain) {
            (Some(url), _) => parse_base_url(url)?,
            (None, Some(subdomain)) => {
                let valid = !subdomain.is_empty()
                    && subdomain
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-');
                if !valid {
                    return Err(Error::Config(format!("invalid subdomain {subdomain:?}")));
                }
                parse_base_url(&format!("https://{subdomain}.{}/", self.domain.as_str()))?
            }
            (None, None) => {
                return Err(Error::Config("set a subdomain or a base URL".into()));
            }
        };
        let credentials = match self.credentials {
            None => return Err(Error::Config("set a long-lived token or OAuth".into())),
            Some(CredentialsConfig::LongLived(token)) => Credentials::LongLived(token),
            Some(CredentialsConfig::OAuth(config, store)) => {
                let endpoint = self
                    .authorization_endpoint
                    .unwrap_or_else(|| format!("https://www.{}/oauth", self.domain.as_str()));
                let endpoint = Url::parse(&endpoint).map_err(|e| {
                    Error::Config(format!("invalid authorization endpoint {endpoint:?}: {e}"))
                })?;
                Credentials::OAuth(Box::new(OAuthState::new(config, store, endpoint)))
            }
        };
        let limiter = match self.rate_limiter {
            Some(limiter) => limiter,
            None => Arc::new(RateLimiter::new(self.rate_limit)?),
        };
        let http = match self.http {
            Some(http) => http,
            None => reqwest::Client::builder()
                .timeout(self.timeout)
                .connect_timeout(Duration::from_secs(10))
                .user_agent(concat!("amocrm-client/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))?,
        };
        Ok(Client {
            inner: Arc::new(Inner {
                transport: Transport {
                    http,
                    base,
                    limiter,
                    usage: Arc::new(Usage::default()),
                    observer: self.observer,
                },
                credentials,
                retry: self.retry,
            }),
        })
    }
}

fn parse_base_url(url: &str) -> Result<Url> {
    let mut url =
        Url::parse(url).map_err(|e| Error::Config(format!("invalid base URL {url:?}: {e}")))?;
    if url.cannot_be_a_base() || !matches!(url.scheme(), "http" | "https") {
        return Err(Error::Config(format!("invalid base URL {url}")));
    }
    // `join` replaces the last segment unless the path ends with a slash.
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url.set_query(None);
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_keeps_brackets_and_commas() {
        let mut query = Query::new();
        query
            .push_all("filter[id]", [1, 2])
            .push_joined("with", &["contacts", "companies"])
            .push("query", "Иван & Co");
        assert_eq!(
            query.encode(),
            "filter[id][]=1&filter[id][]=2&with=contacts,companies&query=%D0%98%D0%B2%D0%B0%D0%BD%20%26%20Co"
        );
    }

    #[test]
    fn base_urls() {
        let client = Client::builder()
            .subdomain("geodrive")
            .long_lived_token("t")
            .build()
            .unwrap();
        assert_eq!(client.base_url().as_str(), "https://geodrive.amocrm.ru/");
        let client = Client::builder()
            .subdomain("geodrive")
            .domain(Domain::KommoCom)
            .long_lived_token("t")
            .build()
            .unwrap();
        assert_eq!(client.base_url().as_str(), "https://geodrive.kommo.com/");
        let client = Client::builder()
            .subdomain("ignored")
            .base_url("http://127.0.0.1:1234")
            .long_lived_token("t")
            .build()
            .unwrap();
        assert_eq!(
            client
                .inner
                .transport
                .url("api/v4/leads", None)
                .unwrap()
                .as_str(),
            "http://127.0.0.1:1234/api/v4/leads"
        );
        assert!(
            Client::builder()
                .subdomain("a.b/c")
                .long_lived_token("t")
                .build()
                .is_err()
        );
        assert!(Client::builder().subdomain("x").build().is_err());
    }

    #[test]
    fn client_debug_has_no_token() {
        let client = Client::builder()
            .subdomain("geodrive")
            .long_lived_token("super-secret-token")
            .build()
            .unwrap();
        assert!(!format!("{client:?}").contains("super-secret"));
    }
}
