//! Runnable examples live beside this file; see `cargo run --example <name>`.
//!
//! [`client_from_env`] builds the `amocrm-client` the API examples share.

use amocrm_client::{Client, Domain};
use anyhow::{Context, bail};

/// A client from `AMOCRM_LONG_LIVED_TOKEN` and `AMOCRM_SUBDOMAIN` (or `AMOCRM_BASE_URL`, e.g.
/// a `fake-amocrm` started with `--long-lived-token`), with `AMOCRM_DOMAIN` (amocrm.ru,
/// amocrm.com, kommo.com) picking the domain.
pub fn client_from_env() -> anyhow::Result<Client> {
    let token = std::env::var("AMOCRM_LONG_LIVED_TOKEN").context("set AMOCRM_LONG_LIVED_TOKEN")?;
    let mut builder = Client::builder().long_lived_token(token);
    if let Ok(url) = std::env::var("AMOCRM_BASE_URL") {
        builder = builder.base_url(url);
    } else if let Ok(subdomain) = std::env::var("AMOCRM_SUBDOMAIN") {
        builder = builder.subdomain(subdomain);
    } else {
        bail!("set AMOCRM_SUBDOMAIN or AMOCRM_BASE_URL");
    }
    if let Ok(domain) = std::env::var("AMOCRM_DOMAIN") {
        builder = builder.domain(match domain.as_str() {
            "amocrm.ru" => Domain::AmocrmRu,
            "amocrm.com" => Domain::AmocrmCom,
            "kommo.com" => Domain::KommoCom,
            other => Domain::Other(other.to_owned()),
        });
    }
    Ok(builder.build()?)
}
