//! Building the API client from the settings; OAuth tokens live in the database.

use std::sync::Arc;

use amocrm_client::{
    AccessToken, Client, ClientSecret, Domain, OAuthConfig, RateLimit, RetryPolicy,
};
use anyhow::Context;
use jarvis_store::DynStore;

use super::DbTokenStore;
use crate::config::{AmoAuth, AmoSettings};

/// The integration's OAuth settings, when `AMOCRM_CLIENT_ID`, `AMOCRM_CLIENT_SECRET` and
/// `AMOCRM_REDIRECT_URI` are all set.
pub fn oauth_config(settings: &AmoSettings) -> Option<OAuthConfig> {
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

/// A client builder with the account, rate limits and retries of `settings`, credentials not set.
pub fn builder(settings: &AmoSettings) -> amocrm_client::ClientBuilder {
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
