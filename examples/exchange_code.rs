//! Exchanges an OAuth authorization code for tokens and saves them to a JSON file.
//!
//! ```text
//! AMOCRM_SUBDOMAIN=geodrive AMOCRM_CLIENT_ID=... AMOCRM_CLIENT_SECRET=... \
//! AMOCRM_REDIRECT_URI=https://example.com/amocrm/oauth \
//! cargo run -p jarvis-examples --example exchange_code -- <code>
//! ```
//! Without a code it prints the authorization URL to open. `AMOCRM_TOKEN_FILE` sets the file
//! (default `amocrm-tokens.json`); `AMOCRM_BASE_URL` may replace `AMOCRM_SUBDOMAIN`.
//! No token or secret is printed.

use std::sync::Arc;

use amocrm_client::{Client, JsonFileTokenStore, OAuthConfig};
use anyhow::{Context, bail};

fn env(name: &str) -> anyhow::Result<String> {
    std::env::var(name).with_context(|| format!("set {name}"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = OAuthConfig {
        client_id: env("AMOCRM_CLIENT_ID")?,
        client_secret: env("AMOCRM_CLIENT_SECRET")?.into(),
        redirect_uri: env("AMOCRM_REDIRECT_URI")?,
    };
    let file = std::env::var("AMOCRM_TOKEN_FILE").unwrap_or_else(|_| "amocrm-tokens.json".into());
    let store = Arc::new(JsonFileTokenStore::new(&file));

    let mut builder = Client::builder().oauth(config, store);
    if let Ok(url) = std::env::var("AMOCRM_BASE_URL") {
        builder = builder.base_url(url);
    } else if let Ok(subdomain) = std::env::var("AMOCRM_SUBDOMAIN") {
        builder = builder.subdomain(subdomain);
    } else {
        bail!("set AMOCRM_SUBDOMAIN or AMOCRM_BASE_URL");
    }
    let client = builder.build()?;
    let oauth = client.oauth()?;

    let Some(code) = std::env::args().nth(1) else {
        // Only needs to be unguessable for this one round trip.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos();
        let state = format!("{:x}{:x}", std::process::id(), nanos);
        println!("Open this URL, grant access, then run again with the code:");
        println!("{}", oauth.authorization_url(&state));
        return Ok(());
    };

    let tokens = oauth.exchange_code(code).await?;
    println!(
        "Tokens saved to {file}; the access token expires at {} (type {}).",
        tokens.expires_at, tokens.token_type
    );
    Ok(())
}
