//! Fetches a lead with its contacts and prints the lead's full JSON.
//!
//! ```text
//! AMOCRM_SUBDOMAIN=geodrive AMOCRM_LONG_LIVED_TOKEN=... cargo run -p jarvis-examples --example fetch_lead -- 17657
//! ```
//! `AMOCRM_BASE_URL` (e.g. a mock server) may replace `AMOCRM_SUBDOMAIN`; `AMOCRM_DOMAIN`
//! (amocrm.ru, amocrm.com, kommo.com) picks the domain.

use amocrm_client::{Client, Domain, LeadId, LeadWith};
use anyhow::{Context, bail};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let lead_id: u64 = std::env::args()
        .nth(1)
        .context("usage: fetch_lead <lead id>")?
        .parse()
        .context("the lead id must be a number")?;
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
    let client = builder.build()?;

    let lead = client
        .leads()
        .get(LeadId(lead_id), &[LeadWith::Contacts])
        .await?;
    let contacts = client.contacts().get_many(&lead.contact_ids(), &[]).await?;

    println!(
        "lead {} {:?}: status {:?} in pipeline {:?}, price {:?}",
        lead.id, lead.name, lead.status_id, lead.pipeline_id, lead.price
    );
    for contact in &contacts {
        let main = lead.main_contact_id() == Some(contact.id);
        println!(
            "  contact {} {:?}{} phones {:?} emails {:?}",
            contact.id,
            contact.name,
            if main { " (main)" } else { "" },
            contact.phones(),
            contact.emails()
        );
    }
    println!("{}", serde_json::to_string_pretty(lead.raw())?);

    let usage = client.usage();
    eprintln!("requests made: {}", usage.total_requests());
    for ((endpoint, status), count) in &usage.requests {
        eprintln!("  {endpoint} -> {status}: {count}");
    }
    Ok(())
}
