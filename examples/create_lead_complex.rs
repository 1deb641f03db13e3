//! Creates a lead with a new contact (phone and e-mail) and custom field values in one
//! request (`POST /api/v4/leads/complex`), then reads it back.
//!
//! ```text
//! AMOCRM_SUBDOMAIN=geodrive AMOCRM_LONG_LIVED_TOKEN=... \
//!   cargo run -p jarvis-examples --example create_lead_complex -- "Ivan Petrov" +79990001122 [field_id=text ...]
//! ```
//! Each `field_id=text` sets a text custom field of the lead. `AMOCRM_BASE_URL` may replace
//! `AMOCRM_SUBDOMAIN` (a `fake-amocrm --long-lived-token ...` works).

use amocrm_client::{
    ComplexLead, ContactInput, CustomFieldId, CustomFieldInput, CustomFieldValue, LeadInput,
    LeadWith,
};
use anyhow::{Context, bail};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let name = args
        .next()
        .context("usage: create_lead_complex <contact name> <phone> [field_id=text ...]")?;
    let phone = args.next().context("a phone number is needed")?;
    let mut lead = LeadInput::new()
        .name(format!("Request from {name}"))
        .add_tag("api");
    for arg in args {
        let Some((id, text)) = arg.split_once('=') else {
            bail!("custom fields are given as field_id=text, got {arg:?}");
        };
        let id: u64 = id
            .parse()
            .with_context(|| format!("{id:?} is not a field id"))?;
        lead = lead.custom_field(CustomFieldInput::new(
            CustomFieldId(id),
            [CustomFieldValue::text(text)],
        ));
    }
    let contact = ContactInput::new()
        .name(&name)
        .custom_field(CustomFieldInput::new(
            "PHONE",
            [CustomFieldValue::multitext("MOB", &phone)],
        ));
    let client = jarvis_examples::client_from_env()?;

    // A complex add is a POST: retried only on 429. On `MaybeApplied` the lead may exist:
    // look before trying again.
    let created = client
        .leads()
        .create_complex([ComplexLead::new(lead).contact(contact)])
        .send()
        .await?;
    let item = created.first().context("amoCRM answered no lead")?;
    println!(
        "lead {} with contact {:?}{}",
        item.lead_id,
        item.contact_id,
        if item.merged {
            " (merged into an existing lead by duplicate control)"
        } else {
            ""
        }
    );

    let lead = client
        .leads()
        .get(item.lead_id, &[LeadWith::Contacts])
        .await?;
    println!("{}", serde_json::to_string_pretty(lead.raw())?);
    Ok(())
}
