//! Credentials: a long-lived token, or OAuth 2.0 with refresh and a token store.
//!
//! amoCRM replaces the refresh token on every refresh and the old one stops working, so the
//! new pair is saved to the [`TokenStore`] before it is used, refreshes are single-flight within
//! a process, and the stored pair is reloaded before refreshing in case another process rotated
//! it. Token requests are never retried: a code works once, and a refresh whose answer was lost
//! has already spent the old refresh token. If saving a refreshed pair fails (the database is
//! briefly down), the pair is used from memory, preferred over the stored one whose refresh
//! token is spent, and saved again every [`SAVE_RETRY`] until it lands — unless the store holds
//! a newer pair by then (another process, `auth exchange`), which is adopted, never overwritten.
//!
//! This module decides what a token request says and what its answer means; carrying the
//! request is left to a small transport seam that the [`Client`](crate::Client) implements over
//! its own connection pool, rate limiter and counters, so this module does not depend on it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::error::{Error, ProblemBody, Result};

macro_rules! secret {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        ///
        /// `Debug` prints `[redacted]`; read the value with [`secret`](Self::secret) only where
        /// it is sent or stored.
        #[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps a secret value.
            pub fn new(value: impl Into<String>) -> Self {
                $name(value.into())
            }

            /// The secret itself; never log it.
            pub fn secret(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($name), "([redacted])"))
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                $name(value)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                $name(value.to_owned())
            }
        }
    };
}

secret!(
    /// An OAuth access token or a long-lived token.
    AccessToken
);
secret!(
    /// An OAuth refresh token (single use: amoCRM rotates it on every refresh).
    RefreshToken
);
secret!(
    /// The integration's secret key.
    ClientSecret
);
secret!(
    /// A one-time authorization code from the OAuth redirect.
    AuthorizationCode
);

/// An access and refresh token pair as stored between runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenPair {
    /// The bearer token sent with requests.
    pub access_token: AccessToken,
    /// The token that gets the next pair; spent on use.
    pub refresh_token: RefreshToken,
    /// `Bearer`.
    pub token_type: String,
    /// When the access token expires.
    pub expires_at: DateTime<Utc>,
    /// Lifetime in seconds as granted (`expires_in`); sizes the refresh margin. 0 if unknown.
    #[serde(default)]
    pub expires_in: u64,
}

impl TokenPair {
    /// Builds a pair from a token response received at `received_at`.
    pub fn from_response(response: TokenResponse, received_at: DateTime<Utc>) -> Self {
        TokenPair {
            access_token: response.access_token,
            refresh_token: response.refresh_token,
            token_type: response.token_type,
            expires_at: received_at + chrono::Duration::seconds(response.expires_in as i64),
            expires_in: response.expires_in,
        }
    }

    /// How long before expiry to refresh: the smaller of a minute and a tenth of the lifetime,
    /// so a short-lived token (test servers) is not refreshed on every call.
    pub fn refresh_margin(&self) -> Duration {
        let minute = Duration::from_secs(60);
        if self.expires_in == 0 {
            return minute;
        }
        minute.min(Duration::from_secs(self.expires_in) / 10)
    }

    /// Whether the access token should be refreshed before use at `now`.
    pub fn needs_refresh(&self, now: DateTime<Utc>) -> bool {
        let margin = chrono::Duration::from_std(self.refresh_margin())
            .unwrap_or_else(|_| chrono::Duration::seconds(60));
        now + margin >= self.expires_at
    }
}

/// The token endpoint's answer.
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct TokenResponse {
    /// `Bearer`.
    pub token_type: String,
    /// Access token lifetime in seconds.
    pub expires_in: u64,
    /// The new access token.
    pub access_token: AccessToken,
    /// The new refresh token (the old one is spent).
    pub refresh_token: RefreshToken,
    /// amoCRM's clock, Unix seconds.
    #[serde(default)]
    pub server_time: Option<i64>,
}

/// Where the OAuth pair lives between runs. Implement it over a database to share tokens
/// between processes; serialise refreshes across processes with a lock the store shares
/// (e.g. a row lock) if several may refresh at once.
#[async_trait]
pub trait TokenStore: Send + Sync {
    /// The stored pair, if any.
    async fn load(&self) -> Result<Option<TokenPair>>;
    /// Must be durable when it returns: the previous refresh token no longer works.
    async fn save(&self, tokens: &TokenPair) -> Result<()>;
}

/// Keeps the pair in memory only: for tests and short-lived tools.
#[derive(Debug, Default)]
pub struct InMemoryTokenStore {
    tokens: RwLock<Option<TokenPair>>,
}

impl InMemoryTokenStore {
    /// A store holding `tokens` (or nothing).
    pub fn new(tokens: Option<TokenPair>) -> Self {
        InMemoryTokenStore {
            tokens: RwLock::new(tokens),
        }
    }

    /// The pair currently held.
    pub fn get(&self) -> Option<TokenPair> {
        self.tokens
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[async_trait]
impl TokenStore for InMemoryTokenStore {
    async fn load(&self) -> Result<Option<TokenPair>> {
        Ok(self.get())
    }

    async fn save(&self, tokens: &TokenPair) -> Result<()> {
        *self.tokens.write().unwrap_or_else(|e| e.into_inner()) = Some(tokens.clone());
        Ok(())
    }
}

/// Keeps the pair in a JSON file, replaced atomically (temp file, fsync, rename) so a crash
/// never leaves half a token behind. On Unix the file is readable by its owner only.
#[derive(Debug, Clone)]
pub struct JsonFileTokenStore {
    path: PathBuf,
}

impl JsonFileTokenStore {
    /// A store kept in the JSON file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        JsonFileTokenStore { path: path.into() }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[async_trait]
impl TokenStore for JsonFileTokenStore {
    async fn load(&self) -> Result<Option<TokenPair>> {
        let bytes = match tokio::fs::read(&self.path).await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::token_store(e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::token_store(format!("{}: {e}", self.path.display())))
    }

    async fn save(&self, tokens: &TokenPair) -> Result<()> {
        let json = serde_json::to_vec_pretty(tokens).map_err(Error::token_store)?;
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || write_atomically(&path, &json))
            .await
            .map_err(Error::token_store)?
            .map_err(Error::token_store)
    }
}

fn write_atomically(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;

    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("token file path has no file name"))?;
    let mut temp_name = file_name.to_os_string();
    temp_name.push(format!(
        ".tmp.{}.{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let temp = dir.join(temp_name);

    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let result = (|| {
        let mut file = options.open(&temp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)?;
        // Make the rename itself durable.
        #[cfg(unix)]
        std::fs::File::open(&dir)?.sync_all()?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// The integration's OAuth settings (from the amoCRM integration page).
#[derive(Debug, Clone)]
pub struct OAuthConfig {
    /// The integration's id.
    pub client_id: String,
    /// The integration's secret key.
    pub client_secret: ClientSecret,
    /// The redirect URI registered with the integration.
    pub redirect_uri: String,
}

/// How the authorization page hands the code back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthorizationMode {
    /// The page posts the result to the opener window.
    #[default]
    PostMessage,
    /// The page redirects the popup to the redirect URI.
    Popup,
}

impl AuthorizationMode {
    fn as_str(self) -> &'static str {
        match self {
            AuthorizationMode::PostMessage => "post_message",
            AuthorizationMode::Popup => "popup",
        }
    }
}

/// How requests are authenticated.
pub(crate) enum Credentials {
    LongLived(AccessToken),
    OAuth(Box<OAuthState>),
}

impl Credentials {
    pub(crate) async fn access_token(&self, transport: &dyn TokenTransport) -> Result<AccessToken> {
        match self {
            Credentials::LongLived(token) => Ok(token.clone()),
            Credentials::OAuth(state) => state.access_token(transport).await,
        }
    }
}

pub(crate) struct OAuthState {
    pub(crate) config: OAuthConfig,
    pub(crate) store: Arc<dyn TokenStore>,
    pub(crate) authorization_endpoint: Url,
    current: RwLock<Option<TokenPair>>,
    /// Set while the cached pair is not in the store (saving it failed).
    unsaved: std::sync::Mutex<Option<Unsaved>>,
    /// Held while loading, refreshing or saving, so concurrent callers wait for one refresh.
    refresh_lock: tokio::sync::Mutex<()>,
}

/// How often a refreshed pair that could not be saved is saved again.
pub const SAVE_RETRY: Duration = Duration::from_secs(5);

/// How long one attempt to save a pending pair may take before requests go on without it.
const SAVE_ATTEMPT_LIMIT: Duration = Duration::from_secs(5);

/// A refreshed pair that is only in memory.
#[derive(Clone)]
struct Unsaved {
    /// The refresh token the pair replaced: the store still holds it unless the save landed
    /// after all or someone else stored a pair since.
    spent: RefreshToken,
    /// When saving was last tried.
    tried_at: tokio::time::Instant,
}

/// The token endpoint as counted in [`UsageSnapshot`](crate::UsageSnapshot) and named in errors.
pub(crate) const TOKEN_ENDPOINT: &str = "POST /oauth2/access_token";

/// The path of the token endpoint, relative to the account's base URL.
pub(crate) const TOKEN_PATH: &str = "oauth2/access_token";

/// The token endpoint's answer as it came: status, body and when its headers arrived.
pub(crate) struct TokenAnswer {
    pub(crate) status: u16,
    pub(crate) received_at: DateTime<Utc>,
    pub(crate) body: Bytes,
}

/// How token requests (code exchange and refresh) reach amoCRM. The OAuth logic here decides
/// what to send and what an answer means; the implementation only carries one request, once
/// (token requests are never retried), and counts it. The client implements it over its own
/// transport, so token requests share the account's rate limiter and usage counters.
#[async_trait]
pub(crate) trait TokenTransport: Send + Sync {
    /// Sends `body` as JSON to [`TOKEN_PATH`] and reads the whole answer. A transport error is
    /// [`Error::Transport`] for [`TOKEN_ENDPOINT`].
    async fn post_token_request(&self, body: &serde_json::Value) -> Result<TokenAnswer>;

    /// Counts one refresh in the usage counters.
    fn record_refresh(&self);
}

impl OAuthState {
    pub(crate) fn new(
        config: OAuthConfig,
        store: Arc<dyn TokenStore>,
        authorization_endpoint: Url,
    ) -> Self {
        OAuthState {
            config,
            store,
            authorization_endpoint,
            current: RwLock::new(None),
            unsaved: std::sync::Mutex::new(None),
            refresh_lock: tokio::sync::Mutex::new(()),
        }
    }

    fn cached(&self) -> Option<TokenPair> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_cached(&self, tokens: TokenPair) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(tokens);
    }

    fn fresh_cached(&self) -> Option<AccessToken> {
        self.cached()
            .filter(|t| !t.needs_refresh(Utc::now()))
            .map(|t| t.access_token)
    }

    fn unsaved(&self) -> Option<Unsaved> {
        self.unsaved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_unsaved(&self, unsaved: Option<Unsaved>) {
        *self.unsaved.lock().unwrap_or_else(|e| e.into_inner()) = unsaved;
    }

    /// Saves the pending pair again if the last try was at least [`SAVE_RETRY`] ago and no one
    /// else holds the lock. Never waits for a refresh in flight.
    async fn retry_save_if_due(&self) {
        let due = self
            .unsaved()
            .is_some_and(|unsaved| unsaved.tried_at.elapsed() >= SAVE_RETRY);
        if !due {
            return;
        }
        if let Ok(_guard) = self.refresh_lock.try_lock() {
            let _ = self.settle_unsaved().await;
        }
    }

    /// Brings the store and the pending pair together; call with the lock held. The store is
    /// read first: if it holds the pending pair the save landed after all; if it holds neither
    /// that pair nor the spent one, another process or `auth exchange` stored a newer pair,
    /// which is adopted; only if it still holds the spent pair is the pending one saved.
    /// Bounded by [`SAVE_ATTEMPT_LIMIT`]; an error means the pair is still only in memory.
    async fn settle_unsaved(&self) -> Result<()> {
        let (Some(unsaved), Some(pair)) = (self.unsaved(), self.cached()) else {
            return Ok(());
        };
        let attempt = async {
            match self.store.load().await? {
                Some(stored) if stored.refresh_token == pair.refresh_token => {}
                Some(stored) if stored.refresh_token != unsaved.spent => {
                    tracing::info!("the stored amoCRM tokens were replaced meanwhile; using them");
                    self.set_cached(stored);
                }
                _ => self.store.save(&pair).await?,
            }
            Ok(())
        };
        let outcome = tokio::time::timeout(SAVE_ATTEMPT_LIMIT, attempt)
            .await
            .unwrap_or_else(|_| Err(Error::token_store("saving the tokens timed out")));
        match &outcome {
            Ok(()) => {
                tracing::info!("the rotated amoCRM tokens are saved");
                self.set_unsaved(None);
            }
            Err(e) => {
                tracing::error!(error = %e, "still could not save the rotated amoCRM tokens");
                self.set_unsaved(Some(Unsaved {
                    tried_at: tokio::time::Instant::now(),
                    ..unsaved
                }));
            }
        }
        outcome
    }

    /// Saves a refreshed pair that is still only in memory, now; an error if it cannot be. Call
    /// before a short-lived process exits, so a rotated refresh token is not lost with it.
    pub(crate) async fn save_pending(&self) -> Result<()> {
        let _guard = self.refresh_lock.lock().await;
        self.settle_unsaved().await
    }

    /// A token valid for a while yet: cached, reloaded from the store, or refreshed.
    pub(crate) async fn access_token(&self, transport: &dyn TokenTransport) -> Result<AccessToken> {
        if let Some(token) = self.fresh_cached() {
            self.retry_save_if_due().await;
            return Ok(token);
        }
        let _guard = self.refresh_lock.lock().await;
        // Whoever held the lock before us may have refreshed already.
        if let Some(token) = self.fresh_cached() {
            return Ok(token);
        }
        let pair = self.load_latest().await?;
        if !pair.needs_refresh(Utc::now()) {
            let token = pair.access_token.clone();
            self.set_cached(pair);
            return Ok(token);
        }
        Ok(self
            .refresh(transport, &pair.refresh_token)
            .await?
            .access_token)
    }

    /// After a 401 with `rejected`: refresh once, unless someone already replaced that token.
    pub(crate) async fn refresh_after_unauthorized(
        &self,
        transport: &dyn TokenTransport,
        rejected: &AccessToken,
    ) -> Result<AccessToken> {
        let _guard = self.refresh_lock.lock().await;
        if let Some(current) = self.cached().filter(|t| &t.access_token != rejected) {
            return Ok(current.access_token);
        }
        let pair = self.load_latest().await?;
        if &pair.access_token != rejected && !pair.needs_refresh(Utc::now()) {
            let token = pair.access_token.clone();
            self.set_cached(pair);
            return Ok(token);
        }
        Ok(self
            .refresh(transport, &pair.refresh_token)
            .await?
            .access_token)
    }

    /// The stored pair (another process may have rotated it), else the one in memory; but a
    /// pair that could not be saved is newer than the stored one, whose refresh token it spent.
    async fn load_latest(&self) -> Result<TokenPair> {
        if self.unsaved().is_some()
            && let Some(pair) = self.cached()
        {
            // Settling may adopt a newer stored pair; else the pending one is still the newest.
            let _ = self.settle_unsaved().await;
            return Ok(self.cached().unwrap_or(pair));
        }
        match self.store.load().await? {
            Some(pair) => Ok(pair),
            None => self.cached().ok_or(Error::NoToken),
        }
    }

    async fn refresh(
        &self,
        transport: &dyn TokenTransport,
        refresh_token: &RefreshToken,
    ) -> Result<TokenPair> {
        tracing::info!("refreshing the amoCRM access token");
        let body = serde_json::json!({
            "client_id": self.config.client_id,
            "client_secret": self.config.client_secret.secret(),
            "grant_type": "refresh_token",
            "refresh_token": refresh_token.secret(),
            "redirect_uri": self.config.redirect_uri,
        });
        transport.record_refresh();
        let pair = self.token_request(transport, "refresh_token", body).await?;
        match self.persist(pair.clone()).await {
            Ok(pair) => Ok(pair),
            // The old refresh token is spent: use the new pair from memory and keep saving it.
            Err(_) => {
                self.set_unsaved(Some(Unsaved {
                    spent: refresh_token.clone(),
                    tried_at: tokio::time::Instant::now(),
                }));
                Ok(pair)
            }
        }
    }

    pub(crate) async fn exchange_code(
        &self,
        transport: &dyn TokenTransport,
        code: &AuthorizationCode,
    ) -> Result<TokenPair> {
        let _guard = self.refresh_lock.lock().await;
        let body = serde_json::json!({
            "client_id": self.config.client_id,
            "client_secret": self.config.client_secret.secret(),
            "grant_type": "authorization_code",
            "code": code.secret(),
            "redirect_uri": self.config.redirect_uri,
        });
        let pair = self
            .token_request(transport, "authorization_code", body)
            .await?;
        self.persist(pair).await
    }

    /// Saves, then caches. If saving fails the pair is still kept in memory (the old refresh
    /// token is already spent, so dropping the new one would lose access) and the error is
    /// returned: a code exchange reports it, a refresh keeps the pair and saves it later.
    async fn persist(&self, pair: TokenPair) -> Result<TokenPair> {
        let saved = self.store.save(&pair).await;
        self.set_cached(pair.clone());
        if let Err(e) = saved {
            tracing::error!(error = %e, "could not save the rotated amoCRM tokens");
            return Err(e);
        }
        self.set_unsaved(None);
        Ok(pair)
    }

    async fn token_request(
        &self,
        transport: &dyn TokenTransport,
        grant: &'static str,
        body: serde_json::Value,
    ) -> Result<TokenPair> {
        let answer = transport.post_token_request(&body).await?;
        if !(200..300).contains(&answer.status) {
            return Err(Error::TokenRequest {
                grant,
                status: answer.status,
                detail: ProblemBody::parse(&answer.body).summary(b""),
            });
        }
        let response: TokenResponse =
            serde_json::from_slice(&answer.body).map_err(|e| Error::decode(TOKEN_ENDPOINT, e))?;
        Ok(TokenPair::from_response(response, answer.received_at))
    }

    pub(crate) fn authorization_url(&self, state: &str, mode: AuthorizationMode) -> Url {
        let mut url = self.authorization_endpoint.clone();
        url.query_pairs_mut()
            .append_pair("client_id", &self.config.client_id)
            .append_pair("state", state)
            .append_pair("mode", mode.as_str());
        url
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(expires_in: u64, expires_at: DateTime<Utc>) -> TokenPair {
        TokenPair {
            access_token: "access-secret".into(),
            refresh_token: "refresh-secret".into(),
            token_type: "Bearer".into(),
            expires_at,
            expires_in,
        }
    }

    #[test]
    fn debug_never_shows_secrets() {
        let text = format!("{:?}", pair(86400, Utc::now()));
        assert!(!text.contains("secret"), "{text}");
        assert!(text.contains("[redacted]"));
        let config = OAuthConfig {
            client_id: "id".into(),
            client_secret: ClientSecret::new("very-secret"),
            redirect_uri: "https://example.com".into(),
        };
        assert!(!format!("{config:?}").contains("very-secret"));
    }

    #[test]
    fn margin_scales_with_lifetime() {
        let now = Utc::now();
        // A day-long token: refresh a minute early.
        assert_eq!(pair(86400, now).refresh_margin(), Duration::from_secs(60));
        assert!(pair(86400, now + chrono::Duration::seconds(59)).needs_refresh(now));
        assert!(!pair(86400, now + chrono::Duration::seconds(61)).needs_refresh(now));
        // A 30-second token: refresh 3 s early, not on every call.
        assert_eq!(pair(30, now).refresh_margin(), Duration::from_secs(3));
        assert!(!pair(30, now + chrono::Duration::seconds(20)).needs_refresh(now));
        assert!(pair(30, now + chrono::Duration::seconds(2)).needs_refresh(now));
    }

    /// Answers every token request with `status` and a fresh pair, counting requests and refreshes.
    struct FakeEndpoint {
        status: u16,
        requests: std::sync::atomic::AtomicU32,
        refreshes: std::sync::atomic::AtomicU32,
    }

    impl FakeEndpoint {
        fn new(status: u16) -> Self {
            FakeEndpoint {
                status,
                requests: Default::default(),
                refreshes: Default::default(),
            }
        }
    }

    #[async_trait]
    impl TokenTransport for FakeEndpoint {
        async fn post_token_request(&self, body: &serde_json::Value) -> Result<TokenAnswer> {
            use std::sync::atomic::Ordering::SeqCst;
            let n = self.requests.fetch_add(1, SeqCst) + 1;
            // Let concurrent callers pile up behind the refresh in flight.
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert_eq!(body["client_secret"], "very-secret");
            let answer = serde_json::json!({
                "token_type": "Bearer",
                "expires_in": 86400,
                "access_token": format!("access-{n}"),
                "refresh_token": format!("refresh-{n}"),
            });
            Ok(TokenAnswer {
                status: self.status,
                received_at: Utc::now(),
                body: Bytes::from(answer.to_string()),
            })
        }

        fn record_refresh(&self) {
            self.refreshes
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    fn oauth(store: Arc<InMemoryTokenStore>) -> OAuthState {
        let config = OAuthConfig {
            client_id: "id".into(),
            client_secret: ClientSecret::new("very-secret"),
            redirect_uri: "https://example.com".into(),
        };
        OAuthState::new(
            config,
            store,
            Url::parse("https://www.amocrm.ru/oauth").unwrap(),
        )
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_refresh_whose_pair_is_stored() {
        use std::sync::atomic::Ordering::SeqCst;
        let expired = pair(86400, Utc::now() - chrono::Duration::seconds(1));
        let store = Arc::new(InMemoryTokenStore::new(Some(expired)));
        let state = oauth(store.clone());
        let endpoint = FakeEndpoint::new(200);
        let tokens = futures::future::join_all((0..5).map(|_| state.access_token(&endpoint))).await;
        for token in tokens {
            assert_eq!(token.unwrap().secret(), "access-1");
        }
        assert_eq!(endpoint.requests.load(SeqCst), 1);
        assert_eq!(endpoint.refreshes.load(SeqCst), 1);
        let stored = store.get().unwrap();
        assert_eq!(stored.refresh_token.secret(), "refresh-1");
    }

    #[tokio::test]
    async fn a_refused_refresh_is_a_token_request_error_and_keeps_the_stored_pair() {
        let expired = pair(86400, Utc::now() - chrono::Duration::seconds(1));
        let store = Arc::new(InMemoryTokenStore::new(Some(expired.clone())));
        let state = oauth(store.clone());
        let error = state
            .access_token(&FakeEndpoint::new(400))
            .await
            .unwrap_err();
        assert!(
            matches!(
                error,
                Error::TokenRequest {
                    grant: "refresh_token",
                    status: 400,
                    ..
                }
            ),
            "{error:?}"
        );
        assert_eq!(store.get(), Some(expired));
    }

    #[tokio::test]
    async fn file_store_round_trips_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let store = JsonFileTokenStore::new(dir.path().join("tokens.json"));
        assert_eq!(store.load().await.unwrap(), None);
        let tokens = pair(86400, Utc::now());
        store.save(&tokens).await.unwrap();
        store.save(&tokens).await.unwrap();
        assert_eq!(store.load().await.unwrap(), Some(tokens));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["tokens.json"], "no temp file left behind");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(store.path())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
