//! `jarvis auth url` / `jarvis auth exchange <code>`: granting the integration access to the account.

use std::sync::Arc;

use amocrm_client::OAuthConfig;
use anyhow::bail;

use crate::amo::{self, DbTokenStore};
use crate::config::Settings;

fn oauth_config(settings: &Settings) -> anyhow::Result<OAuthConfig> {
    let Some(oauth) = amo::oauth_config(&settings.amocrm) else {
        bail!("OAuth needs AMOCRM_CLIENT_ID, AMOCRM_CLIENT_SECRET and AMOCRM_REDIRECT_URI");
    };
    Ok(oauth)
}

/// Prints the page where an account administrator grants access; `state` comes back with the code.
pub fn url(settings: &Settings, state: &str) -> anyhow::Result<()> {
    let oauth = oauth_config(settings)?;
    // The authorization page needs no account: build a client without a store round trip.
    let tokens = Arc::new(amocrm_client::InMemoryTokenStore::new(None));
    let client = amo::builder(&settings.amocrm)
        .oauth(oauth, tokens)
        .build()?;
    println!("{}", client.oauth()?.authorization_url(state));
    Ok(())
}

/// Exchanges an authorization code for tokens and stores them in the database.
pub async fn exchange(settings: &Settings, code: String) -> anyhow::Result<()> {
    let oauth = oauth_config(settings)?;
    if settings.amocrm.subdomain.is_none() && settings.amocrm.base_url.is_none() {
        bail!("set AMOCRM_SUBDOMAIN (or AMOCRM_BASE_URL) to exchange a code");
    }
    let store = jarvis_store::connect(&settings.database_url).await?;
    store.migrate().await?;
    let tokens = Arc::new(DbTokenStore::new(store, settings.amocrm.account_key()));
    let client = amo::builder(&settings.amocrm)
        .oauth(oauth, tokens)
        .build()?;
    let pair = client.oauth()?.exchange_code(code).await?;
    println!(
        "tokens stored for account `{}`; the access token expires at {}",
        settings.amocrm.account_key(),
        pair.expires_at
    );
    Ok(())
}
