//! Helpers shared by the integration tests.

#![allow(dead_code)]

use std::path::PathBuf;

use amocrm_webhook::{WebhookBatch, WebhookEvent};
use serde_json::{Value, json};

pub fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Every `.form` fixture as (file stem, body), sorted by name.
pub fn fixtures() -> Vec<(String, Vec<u8>)> {
    let mut fixtures: Vec<_> = std::fs::read_dir(fixture_dir())
        .expect("fixture directory")
        .map(|entry| entry.expect("fixture entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "form"))
        .map(|path| {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).expect("fixture body"))
        })
        .collect();
    fixtures.sort();
    fixtures
}

/// The body of `tests/fixtures/<name>.form`.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = fixture_dir().join(format!("{name}.form"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Percent-encodes brackets the way amoCRM does, so tests can be written readably.
pub fn amo(readable: &str) -> Vec<u8> {
    readable
        .replace('[', "%5B")
        .replace(']', "%5D")
        .into_bytes()
}

/// What the golden files record for one event: identity, typed accessors and the raw fields.
pub fn describe_event(event: &WebhookEvent) -> Value {
    json!({
        "event_type": event.event_type(),
        "section": event.section,
        "entity": event.entity,
        "action": event.action,
        "entity_id": event.entity_id(),
        "account_id": event.account_id(),
        "subdomain": event.subdomain,
        "event_hash": event.event_hash(),
        "typed": {
            "id": event.id_u64(),
            "name": event.name(),
            "status_id": event.status_id(),
            "old_status_id": event.old_status_id(),
            "pipeline_id": event.pipeline_id(),
            "old_pipeline_id": event.old_pipeline_id(),
            "price": event.price(),
            "responsible_user_id": event.responsible_user_id(),
            "created_at": event.created_at(),
            "updated_at": event.updated_at(),
            "custom_fields": event.custom_fields(),
            "tags": event.tags(),
            "linked_lead_ids": event.linked_lead_ids(),
            "linked_company_id": event.linked_company_id(),
            "element_id": event.element_id(),
            "element_type": event.element_type(),
        },
        "fields": event.fields,
    })
}

pub fn describe_batch(batch: &WebhookBatch) -> Value {
    json!({
        "account": batch.account,
        "unparsed": batch.unparsed,
        "events": batch.events.iter().map(describe_event).collect::<Vec<_>>(),
    })
}
