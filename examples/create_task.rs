//! Creates a task for a lead, due in a given number of hours, and lists the lead's open tasks.
//!
//! ```text
//! AMOCRM_SUBDOMAIN=geodrive AMOCRM_LONG_LIVED_TOKEN=... \
//!   cargo run -p jarvis-examples --example create_task -- <lead id> <hours> "Call the client back"
//! ```
//! `AMOCRM_BASE_URL` may replace `AMOCRM_SUBDOMAIN`.

use amocrm_client::{EntityType, LeadId, TaskInput, TaskTypeId, TasksFilter};
use anyhow::Context;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [lead, hours, text] = args.as_slice() else {
        anyhow::bail!("usage: create_task <lead id> <hours until due> <text>");
    };
    let lead = LeadId(lead.parse().context("the lead id must be a number")?);
    let hours: i64 = hours.parse().context("hours must be a whole number")?;
    let client = jarvis_examples::client_from_env()?;

    let due = chrono::Utc::now() + chrono::Duration::hours(hours);
    let created = client
        .tasks()
        .create([TaskInput::new(text.as_str(), due)
            .task_type(TaskTypeId::CALL)
            .for_entity(lead)])
        .send()
        .await?;
    println!("task {} due {due}", created[0].id);

    let open = client
        .tasks()
        .list(TasksFilter {
            entity_type: Some(EntityType::Leads),
            entity_ids: vec![lead.0],
            is_completed: Some(false),
            ..TasksFilter::default()
        })
        .all()
        .await?;
    for task in open {
        println!(
            "  open: {} {:?} due {:?}",
            task.id,
            task.text,
            task.complete_till_utc()
        );
    }
    Ok(())
}
