//! OAuth tokens kept in a [`Store`](crate::Store), for `amocrm-client`.

use amocrm_client::{AccessToken, RefreshToken, TokenPair, TokenStore};
use chrono::Utc;

use crate::{DynStore, StoredTokens};

/// An [`amocrm_client::TokenStore`] over a [`Store`](crate::Store): the pair lives in
/// `amocrm_oauth_tokens` under an account key, so every instance sharing the database uses (and
/// rotates) one pair, and a restart keeps it.
///
/// amoCRM spends a refresh token on use: two processes keeping their own copies would lock each
/// other out at the first refresh, which is why the pair belongs in the shared store.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
///
/// use amocrm_client::{AccessToken, Client, ClientSecret, OAuthConfig, RefreshToken, TokenPair, TokenStore};
/// use jarvis_store::mirror::DbTokenStore;
///
/// # let dir = tempfile::tempdir()?;
/// # let url = format!("sqlite://{}", dir.path().join("jarvis.db").display());
/// let store = jarvis_store::connect(&url).await?;
/// store.migrate().await?;
/// let tokens = Arc::new(DbTokenStore::new(store, "example.amocrm.ru"));
///
/// // The pair `exchange_code` obtained (here made up) is saved once...
/// tokens
///     .save(&TokenPair {
///         access_token: AccessToken::new("access"),
///         refresh_token: RefreshToken::new("refresh"),
///         token_type: "Bearer".into(),
///         expires_at: chrono::Utc::now() + chrono::Duration::hours(24),
///         expires_in: 86_400,
///     })
///     .await?;
/// assert_eq!(tokens.load().await?.unwrap().refresh_token.secret(), "refresh");
///
/// // ...and the client loads it, and saves each refreshed pair, through the store.
/// let client = Client::builder()
///     .subdomain("example")
///     .oauth(
///         OAuthConfig {
///             client_id: "integration-id".into(),
///             client_secret: ClientSecret::new("secret"),
///             redirect_uri: "https://example.com/oauth".into(),
///         },
///         tokens,
///     )
///     .build()?;
/// # drop(client);
/// # Ok(()) }
/// ```
pub struct DbTokenStore {
    store: DynStore,
    account: String,
}

impl DbTokenStore {
    /// Tokens of `account` (any stable key of the amoCRM account, e.g. its host) in `store`.
    pub fn new(store: DynStore, account: impl Into<String>) -> Self {
        Self {
            store,
            account: account.into(),
        }
    }

    /// The account key the pair is stored under.
    pub fn account(&self) -> &str {
        &self.account
    }
}

impl std::fmt::Debug for DbTokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbTokenStore")
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl TokenStore for DbTokenStore {
    async fn load(&self) -> amocrm_client::Result<Option<TokenPair>> {
        let stored = self
            .store
            .load_tokens(&self.account)
            .await
            .map_err(amocrm_client::Error::token_store)?;
        Ok(stored.map(|t| TokenPair {
            access_token: AccessToken::new(t.access_token),
            refresh_token: RefreshToken::new(t.refresh_token),
            token_type: t.token_type,
            expires_at: t.expires_at,
            // The lifetime is not stored; 0 makes the client use its default refresh margin.
            expires_in: 0,
        }))
    }

    async fn save(&self, tokens: &TokenPair) -> amocrm_client::Result<()> {
        let stored = StoredTokens {
            access_token: tokens.access_token.secret().to_string(),
            refresh_token: tokens.refresh_token.secret().to_string(),
            token_type: tokens.token_type.clone(),
            expires_at: tokens.expires_at,
            updated_at: Utc::now(),
        };
        self.store
            .save_tokens(&self.account, &stored)
            .await
            .map_err(amocrm_client::Error::token_store)
    }
}
