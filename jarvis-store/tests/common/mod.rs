//! Builders shared by the integration tests.
#![allow(dead_code)]

use chrono::{DateTime, TimeDelta, Utc};
use jarvis_store::{ContactUpsert, DealUpsert, Known, NewEvent};
use serde_json::{Map, Value, json};

/// A fixed instant plus `seconds`: tests compare stored times exactly, so they avoid sub-microsecond
/// parts that the databases do not keep.
pub fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-03-01T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
        + TimeDelta::seconds(seconds)
}

/// Now, truncated to whole microseconds.
pub fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap()
}

pub fn event(hash: &str) -> NewEvent {
    NewEvent {
        event_type: "lead.update".into(),
        entity_type: "leads".into(),
        amocrm_entity_id: Some(format!("id-{hash}")),
        event_hash: hash.into(),
        payload: json!({ "leads": { "update": [{ "id": hash, "price": "1500" }] } }).into(),
        account_id: Some(29_000_001),
        received_at: at(0),
    }
}

pub fn typed_event(hash: &str, event_type: &str, received_at: DateTime<Utc>) -> NewEvent {
    NewEvent {
        event_type: event_type.into(),
        received_at,
        ..event(hash)
    }
}

pub fn map(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

pub fn deal(id: &str, updated_at: Option<DateTime<Utc>>) -> DealUpsert {
    DealUpsert {
        amocrm_deal_id: id.into(),
        updated_at,
        ..DealUpsert::default()
    }
}

pub fn full_deal(id: &str, updated_at: DateTime<Utc>) -> DealUpsert {
    DealUpsert {
        amocrm_deal_id: id.into(),
        pipeline_id: 7_000_001.into(),
        status_id: 142.into(),
        price: 125_000.into(),
        name: String::from("Rent: Toyota Camry").into(),
        responsible_user_id: 9_000_002.into(),
        custom_fields: json!([{ "field_id": 1, "values": [{ "value": "RP-1" }] }]).into(),
        deal_full_data: json!({ "id": id, "price": 125_000, "_embedded": {} }).into(),
        contact_custom_fields: json!([{ "field_code": "PHONE" }]).into(),
        main_contact_id: String::from("5000001").into(),
        metadata_keys: vec!["rentprog_booking_id".into()],
        metadata: map(json!({ "rentprog_booking_id": "RP-1" })),
        created_at: at(-3600).into(),
        updated_at: Some(updated_at),
        closed_at: Known::Null,
        is_deleted: Some(false),
    }
}

pub fn contact(id: &str, updated_at: Option<DateTime<Utc>>) -> ContactUpsert {
    ContactUpsert {
        amocrm_contact_id: id.into(),
        updated_at,
        ..ContactUpsert::default()
    }
}

/// 32 callers insert at once, each a batch with its own event twice and one event all share: every
/// caller must get its own counts even when the backend stores their batches in one shared commit.
pub async fn concurrent_batches_get_their_own_outcomes(
    store: std::sync::Arc<dyn jarvis_store::Store>,
) {
    const TASKS: usize = 32;
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(TASKS));
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let store = store.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let batch = [
                    event(&format!("own-{i}")),
                    event("shared"),
                    event(&format!("own-{i}")),
                ];
                store.insert_events(&batch).await.unwrap()
            })
        })
        .collect();
    let (mut stored, mut duplicates) = (0, 0);
    for task in tasks {
        let outcome = task.await.unwrap();
        assert!(outcome.stored == 1 || outcome.stored == 2, "{outcome:?}");
        stored += outcome.stored;
        duplicates += outcome.duplicates;
    }
    assert_eq!(
        (stored, duplicates),
        (TASKS as u64 + 1, 2 * TASKS as u64 - 1)
    );
    assert_eq!(store.stats().await.unwrap().backlog, TASKS as u64 + 1);
}
