//! A minimal in-process mirror built from the libraries alone (no `jarvis` binary): receive a
//! webhook body, store it in the queue, process it into a deal row.
//!
//! ```sh
//! cargo run -p jarvis-examples --example in_process_mirror
//! ```
//!
//! It opens a SQLite store in a temporary directory, enqueues the events of a recorded "lead status
//! changed" body, then works the queue as a worker would in webhook-only mode (no API calls): claim,
//! build the deal row from the body with `jarvis_store::mirror`, upsert it, complete the event. The
//! resulting `amocrm_deals` row is printed as JSON.

use std::time::Duration;

use amocrm_webhook::types::CustomFieldId;
use amocrm_webhook::{Action, Entity, Parser};
use anyhow::Context;
use jarvis_store::mirror::{FieldRef, MetadataField, deal_from_webhook};
use jarvis_store::{Deal, DynStore, MirrorEntity, NewEvent};

/// A body as amoCRM posts it when a lead moves to another stage.
const BODY: &[u8] = include_bytes!("../amocrm-webhook/tests/fixtures/lead_status.form");
const CONTENT_TYPE: &str = "application/x-www-form-urlencoded";
/// How long a claimed event stays leased to this worker.
const LEASE: Duration = Duration::from_secs(60);

/// The custom fields copied into each deal's `metadata`: the field 771001 as `rentprog_id`.
fn metadata_fields() -> Vec<MetadataField> {
    vec![MetadataField::new(
        "rentprog_id",
        FieldRef::Id(CustomFieldId(771001)),
    )]
}

/// The receiving side: parses a body and enqueues its events; returns how many were new.
async fn receive(store: &DynStore, content_type: &str, body: &[u8]) -> anyhow::Result<u64> {
    let batch = Parser::default()
        .parse(Some(content_type), body)
        .context("parsing the webhook body")?;
    let now = chrono::Utc::now();
    // `from_webhook` writes the payload the worker reads back with `webhook_event`.
    let rows: Vec<NewEvent> = batch
        .events
        .iter()
        .map(|event| NewEvent::from_webhook(event, now))
        .collect();
    let outcome = store.insert_events(&rows).await?;
    Ok(outcome.stored)
}

/// The worker side, one round: claims due events and turns lead events into deal rows. Returns the
/// ids of the deals it wrote.
async fn process(store: &DynStore, mapping: &[MetadataField]) -> anyhow::Result<Vec<String>> {
    let claimed = store.claim_events(100, LEASE).await?;
    let mut deals = Vec::new();
    for stored in &claimed {
        let event = stored.webhook_event()?;
        if event.entity != Entity::Lead {
            continue;
        }
        let Some(id) = event.entity_id() else {
            continue;
        };
        // A delete body has no timestamp to order it by: the store counts deletes and restores.
        if matches!(event.action, Action::Delete | Action::Restore) {
            let deleted = event.action == Action::Delete;
            store
                .record_deletion(MirrorEntity::Deal, id, &stored.event_hash, deleted)
                .await?;
            if deleted {
                continue;
            }
        }
        deals.extend(deal_from_webhook(&event, mapping));
    }
    store.upsert_deals(&deals).await?;
    // Events this mirror has no table for are done too: they are not retried.
    let ids: Vec<i64> = claimed.iter().map(|e| e.id).collect();
    store.complete_events(&ids).await?;
    Ok(deals.into_iter().map(|d| d.amocrm_deal_id).collect())
}

/// Runs the whole flow against a fresh SQLite file in `dir` and returns the deal rows written.
async fn run(dir: &std::path::Path) -> anyhow::Result<Vec<Deal>> {
    let url = format!("sqlite://{}", dir.join("mirror.db").display());
    let store = jarvis_store::connect(&url).await?;
    store.migrate().await?;

    receive(&store, CONTENT_TYPE, BODY).await?;
    let mut rows = Vec::new();
    for id in process(&store, &metadata_fields()).await? {
        rows.push(
            store
                .get_deal(&id)
                .await?
                .with_context(|| format!("deal {id} was just written"))?,
        );
    }
    Ok(rows)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    for deal in run(dir.path()).await? {
        println!("{}", serde_json::to_string_pretty(&deal)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_body_becomes_a_deal_row_and_leaves_no_backlog() {
        let dir = tempfile::tempdir().unwrap();
        let deals = run(dir.path()).await.unwrap();
        assert_eq!(deals.len(), 1);
        let deal = &deals[0];
        assert_eq!(deal.amocrm_deal_id, "31840021");
        assert_eq!(deal.status_id, Some(142));
        assert_eq!(deal.pipeline_id, Some(7401234));
        assert_eq!(deal.price, Some(10500));
        assert_eq!(deal.name.as_deref(), Some("Аренда Kia Rio 12.12–15.12"));
        assert_eq!(deal.updated_at.unwrap().timestamp(), 1764000150);
        assert_eq!(deal.metadata["rentprog_id"], "RP-48213");
        let fields = deal.custom_fields.as_ref().unwrap();
        assert_eq!(fields[1]["field_id"], 771002);
        assert!(!deal.is_deleted);

        // The queue is drained, and the same body again is a duplicate that writes nothing.
        let store = jarvis_store::connect(&format!(
            "sqlite://{}",
            dir.path().join("mirror.db").display()
        ))
        .await
        .unwrap();
        assert_eq!(store.stats().await.unwrap().backlog, 0);
        assert_eq!(receive(&store, CONTENT_TYPE, BODY).await.unwrap(), 0);
        assert!(
            process(&store, &metadata_fields())
                .await
                .unwrap()
                .is_empty()
        );
    }
}
