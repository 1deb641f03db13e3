//! Moves a lead to another stage and adds a note saying why.
//!
//! ```text
//! AMOCRM_SUBDOMAIN=geodrive AMOCRM_LONG_LIVED_TOKEN=... \
//!   cargo run -p jarvis-examples --example move_lead -- <lead id> <pipeline id> <status id> "why"
//! ```
//! `AMOCRM_BASE_URL` may replace `AMOCRM_SUBDOMAIN`.

use amocrm_client::{EntityType, LeadId, LeadInput, NoteContent, NoteInput, PipelineId, StatusId};
use anyhow::Context;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [lead, pipeline, status, why] = args.as_slice() else {
        anyhow::bail!("usage: move_lead <lead id> <pipeline id> <status id> <note text>");
    };
    let number = |s: &str| {
        s.parse::<u64>()
            .with_context(|| format!("{s:?} is not an id"))
    };
    let lead = LeadId(number(lead)?);
    let (pipeline, status) = (PipelineId(number(pipeline)?), StatusId(number(status)?));
    let client = jarvis_examples::client_from_env()?;

    let before = client.leads().get(lead, &[]).await?;
    // PATCH sets the same values when repeated, so it is retried like a read.
    let moved = client
        .leads()
        .update(lead, LeadInput::new().status(pipeline, status))
        .send()
        .await?;
    let note = client
        .notes(EntityType::Leads)
        .create([NoteInput::new(lead, NoteContent::common(why.as_str()))])
        .send()
        .await?;
    println!(
        "lead {lead}: status {:?} -> {status} (updated_at {:?}), note {}",
        before.status_id, moved.updated_at, note[0].id
    );
    Ok(())
}
