//! Set-up shared by the integration tests: a mock amoCRM, clients pointed at it, fixtures.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use amocrm_client::{
    Client, ClientBuilder, OAuthConfig, RateLimit, RetryPolicy, TokenPair, TokenStore,
};
use async_trait::async_trait;
use chrono::Utc;
use wiremock::{Match, MockServer, Request, ResponseTemplate};

pub const TOKEN: &str = "long-lived-test-token";

pub fn fixture(name: &str) -> serde_json::Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn json(name: &str) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .insert_header("content-type", "application/hal+json")
        .set_body_json(fixture(name))
}

/// Fast retries and a generous rate so tests run in milliseconds.
pub fn fast_retry(max_retries: u32) -> RetryPolicy {
    RetryPolicy {
        max_retries,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(20),
    }
}

pub fn fast_rate() -> RateLimit {
    RateLimit {
        per_second: 10_000,
        per_minute: None,
        per_hour: None,
        guard: std::time::Duration::ZERO,
    }
}

pub fn builder(server: &MockServer) -> ClientBuilder {
    Client::builder()
        .base_url(server.uri())
        .rate_limit(fast_rate())
        .retry(fast_retry(3))
}

pub fn client(server: &MockServer) -> Client {
    builder(server).long_lived_token(TOKEN).build().unwrap()
}

pub fn oauth_config() -> OAuthConfig {
    OAuthConfig {
        client_id: "client-id-123".into(),
        client_secret: "client-secret-456".into(),
        redirect_uri: "https://jarvis.example.com/amocrm/oauth".into(),
    }
}

pub fn pair(access: &str, refresh: &str, expires_in_secs: i64) -> TokenPair {
    TokenPair {
        access_token: access.into(),
        refresh_token: refresh.into(),
        token_type: "Bearer".into(),
        expires_at: Utc::now() + chrono::Duration::seconds(expires_in_secs),
        expires_in: 86_400,
    }
}

/// A store that logs every save into a shared journal, so tests can check ordering against
/// requests the mock server saw.
#[derive(Default)]
pub struct JournalStore {
    pub tokens: Mutex<Option<TokenPair>>,
    pub journal: Arc<Mutex<Vec<String>>>,
    pub loads: Mutex<u32>,
    /// How many saves fail (the database is down) before they work again.
    pub failing_saves: Mutex<u32>,
}

impl JournalStore {
    pub fn new(tokens: Option<TokenPair>) -> Self {
        JournalStore {
            tokens: Mutex::new(tokens),
            ..JournalStore::default()
        }
    }

    pub fn current(&self) -> Option<TokenPair> {
        self.tokens.lock().unwrap().clone()
    }

    pub fn set(&self, tokens: TokenPair) {
        *self.tokens.lock().unwrap() = Some(tokens);
    }
}

#[async_trait]
impl TokenStore for JournalStore {
    async fn load(&self) -> amocrm_client::Result<Option<TokenPair>> {
        *self.loads.lock().unwrap() += 1;
        Ok(self.current())
    }

    async fn save(&self, tokens: &TokenPair) -> amocrm_client::Result<()> {
        {
            let mut failing = self.failing_saves.lock().unwrap();
            if *failing > 0 {
                *failing -= 1;
                self.journal
                    .lock()
                    .unwrap()
                    .push(format!("failed save {}", tokens.refresh_token.secret()));
                return Err(amocrm_client::Error::token_store("database unavailable"));
            }
        }
        self.journal
            .lock()
            .unwrap()
            .push(format!("save {}", tokens.refresh_token.secret()));
        self.set(tokens.clone());
        Ok(())
    }
}

/// Matches the raw query string exactly (order, brackets and encoding included).
pub struct QueryIs(pub String);

pub fn query_is(query: &str) -> QueryIs {
    QueryIs(query.to_owned())
}

impl Match for QueryIs {
    fn matches(&self, request: &Request) -> bool {
        request.url.query().unwrap_or("") == self.0
    }
}

/// Matches a query with this many `filter[id][]` parameters.
pub struct IdCount(pub usize);

impl Match for IdCount {
    fn matches(&self, request: &Request) -> bool {
        request
            .url
            .query_pairs()
            .filter(|(key, _)| key == "filter[id][]")
            .count()
            == self.0
    }
}

/// A list page of generated leads with the given ids.
pub fn leads_page(ids: impl IntoIterator<Item = u64>) -> serde_json::Value {
    let template = fixture("lead.json");
    let leads: Vec<_> = ids
        .into_iter()
        .map(|id| {
            let mut lead = template.clone();
            lead["id"] = id.into();
            lead
        })
        .collect();
    serde_json::json!({ "_page": 1, "_links": {}, "_embedded": { "leads": leads } })
}
