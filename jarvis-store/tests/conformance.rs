//! One behaviour, two backends: every test here runs against PostgreSQL and against SQLite, each on a
//! fresh schema or file of its own.

mod common;

use std::time::Duration;

use chrono::TimeDelta;
use jarvis_store::{
    ApiUsage, BatchWrites, ContactUpsert, DealUpsert, DeletionRecord, Error, EventState,
    EventWrites, FailOutcome, InsertOutcome, Known, MirrorEntity, QueueStats, RejectedWebhook,
    Requeue, SettleOutcome, SettledEvent, Store, StoredTokens, UpsertOutcome,
};
use serde_json::json;

use common::{at, contact, deal, event, full_deal, map, now, typed_event};

/// Generates, for each listed test function, one `#[tokio::test]` per backend: `migrated` ones get a
/// migrated store, `unmigrated` ones a store opened on an empty database.
macro_rules! conformance {
    (migrated: [$($migrated:ident),* $(,)?], unmigrated: [$($unmigrated:ident),* $(,)?] $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $migrated() {
                    let Some(store) = jarvis_store::testing::postgres_store().await else { return };
                    super::$migrated(&store).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $unmigrated() {
                    let Some(url) = jarvis_store::testing::fresh_postgres_url().await else { return };
                    let store = jarvis_store::PgStore::connect(&url).await.unwrap();
                    super::$unmigrated(&store).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $migrated() {
                    let (store, _dir) = jarvis_store::testing::sqlite_store().await;
                    super::$migrated(&store).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $unmigrated() {
                    let (url, _dir) = jarvis_store::testing::fresh_sqlite_url();
                    let store = jarvis_store::SqliteStore::connect(&url).await.unwrap();
                    super::$unmigrated(&store).await;
                }
            )*
        }
    };
}

conformance!(
    migrated: [
        insert_settled_stores_every_event_once,
        ping_answers,
        a_free_exclusive_key_is_granted,
        contact_fields_follow_the_main_contact,
        postponed_events_wait_without_counting_attempts,
        migrate_twice_keeps_data,
        insert_dedups_within_and_across_batches,
        insert_empty_batch_is_a_no_op,
        event_round_trips_every_column,
        account_id_out_of_range_refuses_the_whole_batch,
        claim_returns_due_events_oldest_first_and_leases_them,
        claim_respects_limit_zero,
        complete_marks_processed,
        fail_retries_then_dies_and_requeue_revives,
        fail_with_future_time_delays_the_next_claim,
        fail_of_unknown_event_is_an_error,
        requeue_chosen_ids_reprocesses_them,
        expired_lease_makes_event_claimable_again,
        release_returns_events_without_an_attempt,
        rejected_bodies_keep_raw_bytes,
        deal_upsert_inserts_every_field,
        deal_upsert_never_overwrites_a_newer_row,
        deal_without_updated_at_applies_as_the_newest,
        deal_unknown_fields_keep_and_null_fields_clear,
        deal_metadata_merges_shallowly,
        deal_batch_with_repeats_applies_in_order,
        deal_delete_and_restore,
        deletes_and_restores_count_in_any_order,
        contact_upsert_rules,
        contact_delete_restore_and_metadata,
        tokens_round_trip_and_rotate,
        stats_count_every_state,
        api_usage_adds_up,
        rejected_bodies_are_cut_with_length_and_digest,
        rejected_bodies_expire_and_are_capped,
        state_values_round_trip,
        leases_are_extended_only_while_held,
        a_direct_connection_keeps_its_session,
        settle_batch_writes_rows_and_completes_events,
        claim_and_settle_completes_what_the_plan_settles,
        contact_fields_follow_stored_contacts_in_one_call,
    ],
    unmigrated: [unmigrated_database_is_reported],
);

async fn ping_answers(store: &dyn Store) {
    store.ping().await.unwrap();
    store.check_migrated().await.unwrap();
}

async fn migrate_twice_keeps_data(store: &dyn Store) {
    store.insert_events(&[event("keep")]).await.unwrap();
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    store.check_migrated().await.unwrap();
    assert_eq!(store.stats().await.unwrap().backlog, 1);
}

async fn unmigrated_database_is_reported(store: &dyn Store) {
    store.ping().await.unwrap();
    assert!(matches!(
        store.check_migrated().await,
        Err(Error::NotMigrated)
    ));
    assert!(matches!(
        store.insert_events(&[event("a")]).await,
        Err(Error::NotMigrated)
    ));
    assert!(matches!(
        store.claim_events(10, Duration::from_secs(30)).await,
        Err(Error::NotMigrated)
    ));
    assert!(matches!(store.stats().await, Err(Error::NotMigrated)));
    assert!(matches!(store.queue_stats().await, Err(Error::NotMigrated)));
    assert!(matches!(store.get_deal("1").await, Err(Error::NotMigrated)));
    let message = store.stats().await.unwrap_err().to_string();
    assert!(message.contains("migrat"), "{message}");

    store.migrate().await.unwrap();
    store.check_migrated().await.unwrap();
    let outcome = store.insert_events(&[event("a")]).await.unwrap();
    assert_eq!(outcome.stored, 1);
}

async fn insert_dedups_within_and_across_batches(store: &dyn Store) {
    let outcome = store
        .insert_events(&[event("a"), event("b"), event("a")])
        .await
        .unwrap();
    assert_eq!(
        outcome,
        InsertOutcome {
            stored: 2,
            duplicates: 1,
            settled: 0,
        }
    );

    let outcome = store
        .insert_events(&[event("b"), event("c")])
        .await
        .unwrap();
    assert_eq!(
        outcome,
        InsertOutcome {
            stored: 1,
            duplicates: 1,
            settled: 0,
        }
    );

    let outcome = store.insert_events(&[event("c")]).await.unwrap();
    assert_eq!(
        outcome,
        InsertOutcome {
            stored: 0,
            duplicates: 1,
            settled: 0,
        }
    );

    assert_eq!(store.stats().await.unwrap().backlog, 3);
}

async fn insert_empty_batch_is_a_no_op(store: &dyn Store) {
    let outcome = store.insert_events(&[]).await.unwrap();
    assert_eq!(outcome, InsertOutcome::default());
}

async fn event_round_trips_every_column(store: &dyn Store) {
    let mut new = event("full");
    new.payload = json!({ "text": "Привет", "nested": { "list": [1, 2.5, null, true] } }).into();
    new.account_id = Some(i64::from(i32::MAX));
    let mut bare = event("bare");
    bare.amocrm_entity_id = None;
    bare.account_id = None;
    store
        .insert_events(&[new.clone(), bare.clone()])
        .await
        .unwrap();

    let claimed = store
        .claim_events(10, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    let stored = store.get_event(claimed[0].id).await.unwrap().unwrap();
    assert_eq!(stored.event_hash, "full");
    assert_eq!(stored.event_type, new.event_type);
    assert_eq!(stored.entity_type, new.entity_type);
    assert_eq!(stored.amocrm_entity_id, new.amocrm_entity_id);
    assert_eq!(stored.payload.to_value(), new.payload.to_value());
    assert_eq!(stored.account_id, new.account_id);
    assert_eq!(stored.received_at, new.received_at);
    assert!(!stored.processed);
    assert_eq!(stored.attempts, 0);
    assert_eq!(stored.last_error, None);
    assert_eq!(stored.processed_at, None);
    assert_eq!(stored.dead_at, None);

    let stored = store.get_event(claimed[1].id).await.unwrap().unwrap();
    assert_eq!(stored.event_hash, "bare");
    assert_eq!(stored.amocrm_entity_id, None);
    assert_eq!(stored.account_id, None);

    assert_eq!(store.get_event(claimed[1].id + 1000).await.unwrap(), None);
}

async fn account_id_out_of_range_refuses_the_whole_batch(store: &dyn Store) {
    let mut bad = event("bad");
    bad.account_id = Some(i64::from(i32::MAX) + 1);
    let result = store.insert_events(&[event("good"), bad]).await;
    assert!(
        matches!(result, Err(Error::AccountIdOutOfRange(id)) if id == i64::from(i32::MAX) + 1),
        "{result:?}"
    );
    assert_eq!(store.stats().await.unwrap().backlog, 0);
}

async fn claim_returns_due_events_oldest_first_and_leases_them(store: &dyn Store) {
    for hash in ["e1", "e2", "e3", "e4", "e5"] {
        store.insert_events(&[event(hash)]).await.unwrap();
    }
    let lease = Duration::from_secs(60);
    let first = store.claim_events(3, lease).await.unwrap();
    let hashes: Vec<_> = first.iter().map(|e| e.event_hash.as_str()).collect();
    assert_eq!(hashes, ["e1", "e2", "e3"]);
    let now = now();
    for claimed in &first {
        assert_eq!(claimed.state(now), EventState::Leased);
        let until = claimed.locked_until.unwrap();
        assert!(until > now + TimeDelta::seconds(50) && until < now + TimeDelta::seconds(70));
    }

    let second = store.claim_events(10, lease).await.unwrap();
    let hashes: Vec<_> = second.iter().map(|e| e.event_hash.as_str()).collect();
    assert_eq!(hashes, ["e4", "e5"]);

    assert!(store.claim_events(10, lease).await.unwrap().is_empty());
}

async fn claim_respects_limit_zero(store: &dyn Store) {
    store.insert_events(&[event("a")]).await.unwrap();
    assert!(
        store
            .claim_events(0, Duration::from_secs(1))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .claim_events(5, Duration::from_secs(1))
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn complete_marks_processed(store: &dyn Store) {
    store
        .insert_events(&[event("a"), event("b")])
        .await
        .unwrap();
    let claimed = store
        .claim_events(10, Duration::from_secs(60))
        .await
        .unwrap();
    let ids: Vec<i64> = claimed.iter().map(|e| e.id).collect();
    store.complete_events(&ids).await.unwrap();
    store.complete_events(&[]).await.unwrap();

    for id in ids {
        let stored = store.get_event(id).await.unwrap().unwrap();
        assert!(stored.processed);
        assert!(stored.processed_at.is_some());
        assert_eq!(stored.locked_until, None);
        assert_eq!(stored.state(now()), EventState::Processed);
    }
    assert!(
        store
            .claim_events(10, Duration::from_millis(1))
            .await
            .unwrap()
            .is_empty()
    );
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.backlog, stats.processed), (0, 2));
}

async fn fail_retries_then_dies_and_requeue_revives(store: &dyn Store) {
    store.insert_events(&[event("flaky")]).await.unwrap();
    let lease = Duration::from_secs(60);
    let due_now = now() - TimeDelta::seconds(1);
    let id = store.claim_events(1, lease).await.unwrap()[0].id;

    for attempt in 1..=2 {
        let outcome = store
            .fail_event(id, &format!("HTTP 500 #{attempt}"), due_now, 3)
            .await
            .unwrap();
        assert_eq!(outcome, FailOutcome::Retrying);
        let stored = store.get_event(id).await.unwrap().unwrap();
        assert_eq!(stored.attempts, attempt);
        assert_eq!(
            stored.last_error.as_deref(),
            Some(&*format!("HTTP 500 #{attempt}"))
        );
        assert_eq!(stored.locked_until, None);
        assert_eq!(stored.next_attempt_at, due_now);
        assert_eq!(stored.state(now()), EventState::Pending);
        assert_eq!(store.stats().await.unwrap().retrying, 1);
        assert_eq!(store.claim_events(5, lease).await.unwrap()[0].id, id);
    }

    let outcome = store
        .fail_event(id, "HTTP 500 #3", due_now, 3)
        .await
        .unwrap();
    assert_eq!(outcome, FailOutcome::Dead);
    let stored = store.get_event(id).await.unwrap().unwrap();
    assert_eq!(stored.attempts, 3);
    assert!(stored.dead_at.is_some());
    assert_eq!(stored.state(now()), EventState::Dead);
    assert!(store.claim_events(5, lease).await.unwrap().is_empty());
    let dead = store.dead_events(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].last_error.as_deref(), Some("HTTP 500 #3"));
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.backlog, stats.dead, stats.retrying), (0, 1, 0));

    assert_eq!(store.requeue(Requeue::Dead).await.unwrap(), 1);
    assert_eq!(store.requeue(Requeue::Dead).await.unwrap(), 0);
    let stored = store.get_event(id).await.unwrap().unwrap();
    assert_eq!((stored.attempts, stored.dead_at), (0, None));
    assert_eq!(stored.state(now()), EventState::Pending);
    assert!(store.dead_events(10).await.unwrap().is_empty());
    assert_eq!(store.claim_events(5, lease).await.unwrap()[0].id, id);
}

async fn fail_with_future_time_delays_the_next_claim(store: &dyn Store) {
    store.insert_events(&[event("later")]).await.unwrap();
    let lease = Duration::from_secs(60);
    let id = store.claim_events(1, lease).await.unwrap()[0].id;
    let retry_at = now() + TimeDelta::milliseconds(300);
    let outcome = store.fail_event(id, "429", retry_at, 10).await.unwrap();
    assert_eq!(outcome, FailOutcome::Retrying);
    assert!(store.claim_events(5, lease).await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(store.claim_events(5, lease).await.unwrap()[0].id, id);
}

async fn fail_of_unknown_event_is_an_error(store: &dyn Store) {
    let result = store.fail_event(424242, "x", now(), 3).await;
    assert!(
        matches!(result, Err(Error::EventNotFound(424242))),
        "{result:?}"
    );
}

async fn requeue_chosen_ids_reprocesses_them(store: &dyn Store) {
    store
        .insert_events(&[event("a"), event("b"), event("c")])
        .await
        .unwrap();
    let claimed = store
        .claim_events(3, Duration::from_secs(60))
        .await
        .unwrap();
    let ids: Vec<i64> = claimed.iter().map(|e| e.id).collect();
    store.complete_events(&ids).await.unwrap();

    assert_eq!(
        store
            .requeue(Requeue::Ids(vec![ids[0], ids[2]]))
            .await
            .unwrap(),
        2
    );
    let stored = store.get_event(ids[0]).await.unwrap().unwrap();
    assert!(!stored.processed);
    assert_eq!(stored.processed_at, None);
    let again = store
        .claim_events(10, Duration::from_secs(60))
        .await
        .unwrap();
    let again: Vec<i64> = again.iter().map(|e| e.id).collect();
    assert_eq!(again, [ids[0], ids[2]]);
    assert_eq!(store.requeue(Requeue::Ids(vec![])).await.unwrap(), 0);
}

async fn expired_lease_makes_event_claimable_again(store: &dyn Store) {
    store.insert_events(&[event("slow")]).await.unwrap();
    let lease = Duration::from_millis(200);
    let first = store.claim_events(1, lease).await.unwrap();
    assert_eq!(first.len(), 1);
    assert!(store.claim_events(1, lease).await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stored = store.get_event(first[0].id).await.unwrap().unwrap();
    assert_eq!(stored.state(now()), EventState::Pending);
    let second = store.claim_events(1, lease).await.unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].id, first[0].id);
    assert_eq!(second[0].attempts, 0);
}

async fn release_returns_events_without_an_attempt(store: &dyn Store) {
    store
        .insert_events(&[event("a"), event("b")])
        .await
        .unwrap();
    let claimed = store
        .claim_events(2, Duration::from_secs(60))
        .await
        .unwrap();
    store.release_events(&[claimed[0].id]).await.unwrap();
    store.release_events(&[]).await.unwrap();
    let stored = store.get_event(claimed[0].id).await.unwrap().unwrap();
    assert_eq!((stored.attempts, stored.locked_until), (0, None));
    let again = store
        .claim_events(5, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, claimed[0].id);
}

async fn rejected_bodies_keep_raw_bytes(store: &dyn Store) {
    let older = RejectedWebhook {
        body: vec![0xff, 0xfe, 0x00, b'a', 0xc3],
        content_type: None,
        reason: "body is not valid form data".into(),
        received_at: at(0),
    };
    let newer = RejectedWebhook {
        body: b"leads[add][0][id]=1".to_vec(),
        content_type: Some("application/x-www-form-urlencoded".into()),
        reason: "missing account".into(),
        received_at: at(10),
    };
    let older_id = store.insert_rejected(&older).await.unwrap();
    let newer_id = store.insert_rejected(&newer).await.unwrap();
    assert_ne!(older_id, newer_id);

    let listed = store.list_rejected(10).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!((listed[0].id, &listed[0].rejected), (newer_id, &newer));
    assert_eq!((listed[1].id, &listed[1].rejected), (older_id, &older));
    assert_eq!(store.list_rejected(1).await.unwrap().len(), 1);
    assert_eq!(store.stats().await.unwrap().rejected, 2);
}

/// The value a state gives a column (tests compare it with the stored column).
fn known<T: Clone>(column: &Known<T>) -> Option<T> {
    column.value().cloned()
}

async fn deal_upsert_inserts_every_field(store: &dyn Store) {
    let before = now() - TimeDelta::seconds(1);
    let mut new = full_deal("101", at(100));
    new.closed_at = at(90).into();
    let outcome = store
        .upsert_deals(std::slice::from_ref(&new))
        .await
        .unwrap();
    assert_eq!(
        outcome,
        UpsertOutcome {
            applied: 1,
            stale: 0
        }
    );

    let stored = store.get_deal("101").await.unwrap().unwrap();
    assert!(!stored.id.is_nil());
    assert_eq!(stored.client_id, None);
    assert_eq!(stored.conversation_id, None);
    assert_eq!(stored.amocrm_deal_id, "101");
    assert_eq!(stored.pipeline_id, known(&new.pipeline_id));
    assert_eq!(stored.status_id, known(&new.status_id));
    assert_eq!(stored.price, known(&new.price));
    assert_eq!(stored.name, known(&new.name));
    assert_eq!(stored.responsible_user_id, known(&new.responsible_user_id));
    assert_eq!(stored.custom_fields, known(&new.custom_fields));
    assert_eq!(stored.deal_full_data, known(&new.deal_full_data));
    assert_eq!(
        stored.contact_custom_fields,
        known(&new.contact_custom_fields)
    );
    assert_eq!(stored.main_contact_id, known(&new.main_contact_id));
    assert_eq!(stored.metadata, json!({ "rentprog_booking_id": "RP-1" }));
    assert_eq!(stored.created_at, known(&new.created_at));
    assert_eq!(stored.updated_at, new.updated_at);
    assert_eq!(stored.closed_at, Some(at(90)));
    assert!(!stored.is_deleted);
    assert!(stored.synced_at >= before);
    assert_eq!(store.get_deal("404").await.unwrap(), None);

    let bare = deal("102", None);
    store.upsert_deals(&[bare]).await.unwrap();
    let stored = store.get_deal("102").await.unwrap().unwrap();
    assert_eq!(stored.metadata, json!({}));
    assert_eq!(stored.price, None);
    assert!(!stored.is_deleted);
}

async fn deal_upsert_never_overwrites_a_newer_row(store: &dyn Store) {
    // Newer first, then an older copy arrives late: left alone.
    store
        .upsert_deals(&[full_deal("1", at(200))])
        .await
        .unwrap();
    let first_sync = store.get_deal("1").await.unwrap().unwrap().synced_at;
    let mut older = full_deal("1", at(100));
    older.price = 1.into();
    older.closed_at = at(50).into();
    older.metadata = map(json!({ "stale": true }));
    let outcome = store.upsert_deals(&[older]).await.unwrap();
    assert_eq!(
        outcome,
        UpsertOutcome {
            applied: 0,
            stale: 1
        }
    );
    let stored = store.get_deal("1").await.unwrap().unwrap();
    assert_eq!(stored.price, Some(125_000));
    assert_eq!(stored.closed_at, None);
    assert_eq!(stored.updated_at, Some(at(200)));
    assert_eq!(stored.metadata, json!({ "rentprog_booking_id": "RP-1" }));
    assert_eq!(stored.synced_at, first_sync);

    // An equal time applies (the same second: the state applied later wins), a newer one too.
    let mut same = deal("1", Some(at(200)));
    same.price = 2.into();
    assert_eq!(store.upsert_deals(&[same]).await.unwrap().applied, 1);
    let mut newer = deal("1", Some(at(300)));
    newer.price = 3.into();
    assert_eq!(store.upsert_deals(&[newer]).await.unwrap().applied, 1);
    let stored = store.get_deal("1").await.unwrap().unwrap();
    assert_eq!(stored.price, Some(3));
    assert_eq!(stored.updated_at, Some(at(300)));
    assert!(stored.synced_at >= first_sync);
}

async fn deal_without_updated_at_applies_as_the_newest(store: &dyn Store) {
    let mut first = deal("5", None);
    first.price = 10.into();
    assert_eq!(store.upsert_deals(&[first]).await.unwrap().applied, 1);
    assert_eq!(
        store
            .upsert_deals(&[deal("5", Some(at(100)))])
            .await
            .unwrap()
            .applied,
        1
    );
    // A body without a time (a digital-pipeline hook, an old account) is not dropped: it applies and
    // keeps the stored time, so any later timed state replaces it.
    let mut untimed = deal("5", None);
    untimed.status_id = 143.into();
    assert_eq!(store.upsert_deals(&[untimed]).await.unwrap().applied, 1);
    let stored = store.get_deal("5").await.unwrap().unwrap();
    assert_eq!(
        (stored.status_id, stored.price, stored.updated_at),
        (Some(143), Some(10), Some(at(100)))
    );
    let mut later = deal("5", Some(at(100)));
    later.status_id = 142.into();
    store.upsert_deals(&[later]).await.unwrap();
    assert_eq!(
        store.get_deal("5").await.unwrap().unwrap().status_id,
        Some(142)
    );
}

async fn deal_unknown_fields_keep_and_null_fields_clear(store: &dyn Store) {
    let mut full = full_deal("7", at(100));
    full.closed_at = at(50).into();
    store
        .upsert_deals(std::slice::from_ref(&full))
        .await
        .unwrap();
    // A newer state that knows only its status (the rest unknown) keeps every other column.
    let mut partial = deal("7", Some(at(200)));
    partial.status_id = 143.into();
    store.upsert_deals(&[partial]).await.unwrap();

    let stored = store.get_deal("7").await.unwrap().unwrap();
    assert_eq!(stored.status_id, Some(143));
    assert_eq!(stored.updated_at, Some(at(200)));
    assert_eq!(stored.pipeline_id, known(&full.pipeline_id));
    assert_eq!(stored.price, known(&full.price));
    assert_eq!(stored.name, known(&full.name));
    assert_eq!(stored.responsible_user_id, known(&full.responsible_user_id));
    assert_eq!(stored.custom_fields, known(&full.custom_fields));
    assert_eq!(stored.deal_full_data, known(&full.deal_full_data));
    assert_eq!(
        stored.contact_custom_fields,
        known(&full.contact_custom_fields)
    );
    assert_eq!(stored.main_contact_id, known(&full.main_contact_id));
    assert_eq!(stored.created_at, known(&full.created_at));
    assert_eq!(stored.closed_at, Some(at(50)));
    assert_eq!(stored.metadata, json!({ "rentprog_booking_id": "RP-1" }));

    // A reopened lead without its fields and contact: every known NULL clears its column.
    let reopened = DealUpsert {
        amocrm_deal_id: "7".into(),
        pipeline_id: Known::Null,
        status_id: Known::Null,
        price: Known::Null,
        name: Known::Null,
        responsible_user_id: Known::Null,
        custom_fields: Known::Null,
        deal_full_data: Known::Null,
        contact_custom_fields: Known::Null,
        main_contact_id: Known::Null,
        metadata_keys: vec!["rentprog_booking_id".into()],
        metadata: map(json!({})),
        created_at: Known::Null,
        updated_at: Some(at(300)),
        closed_at: Known::Null,
        is_deleted: None,
    };
    store.upsert_deals(&[reopened]).await.unwrap();
    let stored = store.get_deal("7").await.unwrap().unwrap();
    assert_eq!(
        (
            stored.pipeline_id,
            stored.status_id,
            stored.price,
            stored.name.as_deref()
        ),
        (None, None, None, None)
    );
    assert_eq!(stored.responsible_user_id, None);
    assert_eq!(stored.custom_fields, None);
    assert_eq!(stored.deal_full_data, None);
    assert_eq!(stored.contact_custom_fields, None);
    assert_eq!(stored.main_contact_id, None);
    assert_eq!((stored.created_at, stored.closed_at), (None, None));
    assert_eq!(stored.updated_at, Some(at(300)));
    assert_eq!(stored.metadata, json!({}));
}

async fn deal_metadata_merges_shallowly(store: &dyn Store) {
    let mut first = deal("9", Some(at(1)));
    first.metadata = map(json!({ "a": 1, "nested": { "x": 1 }, "keep": "yes" }));
    store.upsert_deals(&[first]).await.unwrap();
    let mut second = deal("9", Some(at(2)));
    second.metadata = map(json!({ "a": 2, "nested": { "y": 2 }, "gone": null }));
    store.upsert_deals(&[second]).await.unwrap();
    let stored = store.get_deal("9").await.unwrap().unwrap();
    assert_eq!(
        stored.metadata,
        json!({ "a": 2, "nested": { "y": 2 }, "keep": "yes", "gone": null })
    );

    assert!(
        store
            .set_deal_metadata("9", &map(json!({ "rentprog_booking_id": "RP-9" })))
            .await
            .unwrap()
    );
    let stored = store.get_deal("9").await.unwrap().unwrap();
    assert_eq!(stored.metadata["rentprog_booking_id"], "RP-9");
    assert_eq!(stored.metadata["keep"], "yes");
    assert_eq!(stored.updated_at, Some(at(2)));
    assert!(
        !store
            .set_deal_metadata("missing", &map(json!({ "a": 1 })))
            .await
            .unwrap()
    );
    assert_eq!(store.get_deal("missing").await.unwrap(), None);

    // The keys a state recomputes go when it no longer gives them; the others stay.
    let mut recomputed = deal("9", Some(at(3)));
    recomputed.metadata_keys = vec!["a".into(), "rentprog_booking_id".into(), "absent".into()];
    recomputed.metadata = map(json!({ "rentprog_booking_id": "RP-10" }));
    store.upsert_deals(&[recomputed]).await.unwrap();
    assert_eq!(
        store.get_deal("9").await.unwrap().unwrap().metadata,
        json!({ "nested": { "y": 2 }, "keep": "yes", "gone": null, "rentprog_booking_id": "RP-10" })
    );
    // An older state recomputes nothing.
    let mut older = deal("9", Some(at(1)));
    older.metadata_keys = vec!["keep".into()];
    store.upsert_deals(&[older]).await.unwrap();
    assert_eq!(
        store.get_deal("9").await.unwrap().unwrap().metadata["keep"],
        "yes"
    );
}

async fn deal_batch_with_repeats_applies_in_order(store: &dyn Store) {
    let mut v1 = deal("1", Some(at(1)));
    v1.price = 1.into();
    v1.name = String::from("first").into();
    let mut v2 = deal("1", Some(at(2)));
    v2.price = 2.into();
    let other = deal("2", Some(at(1)));
    let outcome = store.upsert_deals(&[v1, v2, other]).await.unwrap();
    assert_eq!(
        outcome,
        UpsertOutcome {
            applied: 3,
            stale: 0
        }
    );
    let stored = store.get_deal("1").await.unwrap().unwrap();
    assert_eq!(
        (stored.price, stored.name.as_deref()),
        (Some(2), Some("first"))
    );

    let mut v4 = deal("1", Some(at(4)));
    v4.price = 4.into();
    let mut v3 = deal("1", Some(at(3)));
    v3.price = 3.into();
    let outcome = store.upsert_deals(&[v4, v3]).await.unwrap();
    assert_eq!(
        outcome,
        UpsertOutcome {
            applied: 1,
            stale: 1
        }
    );
    assert_eq!(store.get_deal("1").await.unwrap().unwrap().price, Some(4));
    assert_eq!(
        store.upsert_deals(&[]).await.unwrap(),
        UpsertOutcome::default()
    );
    assert_eq!(store.stats().await.unwrap().deals, 2);
}

async fn deal_delete_and_restore(store: &dyn Store) {
    // Deleting an unknown deal leaves a bare, deleted row.
    store.mark_deal_deleted("31", true).await.unwrap();
    let stored = store.get_deal("31").await.unwrap().unwrap();
    assert!(stored.is_deleted);
    assert_eq!((stored.price, stored.updated_at), (None, None));
    assert_eq!(stored.metadata, json!({}));

    // A later upsert that says nothing about deletion keeps the flag; the bare row takes any version.
    store.upsert_deals(&[full_deal("31", at(5))]).await.unwrap();
    let mut untold = deal("31", Some(at(6)));
    untold.is_deleted = None;
    store.upsert_deals(&[untold]).await.unwrap();
    let stored = store.get_deal("31").await.unwrap().unwrap();
    assert!(!stored.is_deleted, "full_deal says is_deleted = false");
    store.mark_deal_deleted("31", true).await.unwrap();
    store
        .upsert_deals(&[deal("31", Some(at(7)))])
        .await
        .unwrap();
    let stored = store.get_deal("31").await.unwrap().unwrap();
    assert!(stored.is_deleted);
    assert_eq!(stored.price, Some(125_000));

    store.mark_deal_deleted("31", false).await.unwrap();
    let stored = store.get_deal("31").await.unwrap().unwrap();
    assert!(!stored.is_deleted);
    assert_eq!(stored.updated_at, Some(at(7)));

    let deleted = DealUpsert {
        is_deleted: Some(true),
        ..deal("31", Some(at(8)))
    };
    store.upsert_deals(&[deleted]).await.unwrap();
    assert!(store.get_deal("31").await.unwrap().unwrap().is_deleted);
}

async fn deletes_and_restores_count_in_any_order(store: &dyn Store) {
    // A restore delivered before its delete: the pair leaves the deal restored.
    assert!(
        !store
            .record_deletion(MirrorEntity::Deal, "41", "restore-1", false)
            .await
            .unwrap()
    );
    store
        .upsert_deals(&[full_deal("41", at(10))])
        .await
        .unwrap();
    assert!(
        !store
            .record_deletion(MirrorEntity::Deal, "41", "delete-1", true)
            .await
            .unwrap()
    );
    let stored = store.get_deal("41").await.unwrap().unwrap();
    assert!(!stored.is_deleted);
    assert_eq!(stored.price, Some(125_000), "the flag alone changes");
    // A replayed event counts once; a second, different delete deletes.
    assert!(
        !store
            .record_deletion(MirrorEntity::Deal, "41", "delete-1", true)
            .await
            .unwrap()
    );
    assert!(
        store
            .record_deletion(MirrorEntity::Deal, "41", "delete-2", true)
            .await
            .unwrap()
    );
    assert!(store.get_deal("41").await.unwrap().unwrap().is_deleted);

    // Contacts count apart from deals, even under the same id; an unknown one gets a bare row.
    assert!(
        store
            .record_deletion(MirrorEntity::Contact, "41", "delete-1", true)
            .await
            .unwrap()
    );
    let contact = store.get_contact("41").await.unwrap().unwrap();
    assert!(contact.is_deleted);
    assert_eq!(contact.updated_at, None);
    assert!(
        !store
            .record_deletion(MirrorEntity::Contact, "41", "restore-1", false)
            .await
            .unwrap()
    );
    assert!(!store.get_contact("41").await.unwrap().unwrap().is_deleted);
    assert!(store.get_deal("41").await.unwrap().unwrap().is_deleted);
}

async fn contact_upsert_rules(store: &dyn Store) {
    let full = ContactUpsert {
        amocrm_contact_id: "501".into(),
        name: String::from("Ivan Petrov").into(),
        first_name: String::from("Ivan").into(),
        last_name: String::from("Petrov").into(),
        responsible_user_id: 9_000_002.into(),
        custom_fields: json!([{ "field_code": "PHONE", "values": [{ "value": "+7900" }] }]).into(),
        contact_full_data: json!({ "id": 501 }).into(),
        metadata_keys: Vec::new(),
        metadata: map(json!({ "source": "site" })),
        created_at: at(-10).into(),
        updated_at: Some(at(100)),
        is_deleted: None,
    };
    let outcome = store
        .upsert_contacts(std::slice::from_ref(&full))
        .await
        .unwrap();
    assert_eq!(
        outcome,
        UpsertOutcome {
            applied: 1,
            stale: 0
        }
    );
    let stored = store.get_contact("501").await.unwrap().unwrap();
    assert!(!stored.id.is_nil());
    assert_eq!(stored.name, known(&full.name));
    assert_eq!(stored.first_name, known(&full.first_name));
    assert_eq!(stored.last_name, known(&full.last_name));
    assert_eq!(stored.responsible_user_id, known(&full.responsible_user_id));
    assert_eq!(stored.custom_fields, known(&full.custom_fields));
    assert_eq!(stored.contact_full_data, known(&full.contact_full_data));
    assert_eq!(stored.metadata, json!({ "source": "site" }));
    assert_eq!(stored.created_at, known(&full.created_at));
    assert_eq!(stored.updated_at, full.updated_at);
    assert!(!stored.is_deleted);

    let mut older = contact("501", Some(at(50)));
    older.name = String::from("old").into();
    let outcome = store.upsert_contacts(&[older]).await.unwrap();
    assert_eq!(
        outcome,
        UpsertOutcome {
            applied: 0,
            stale: 1
        }
    );

    // A body knows the fields (none left) but not the first name or the full data.
    let mut newer = contact("501", Some(at(200)));
    newer.last_name = String::from("Sidorov").into();
    newer.custom_fields = Known::Null;
    newer.metadata = map(json!({ "vip": true }));
    let outcome = store
        .upsert_contacts(&[newer, contact("502", None)])
        .await
        .unwrap();
    assert_eq!(
        outcome,
        UpsertOutcome {
            applied: 2,
            stale: 0
        }
    );
    let stored = store.get_contact("501").await.unwrap().unwrap();
    assert_eq!(stored.name.as_deref(), Some("Ivan Petrov"));
    assert_eq!(stored.first_name.as_deref(), Some("Ivan"));
    assert_eq!(stored.last_name.as_deref(), Some("Sidorov"));
    assert_eq!(stored.custom_fields, None);
    assert_eq!(stored.contact_full_data, known(&full.contact_full_data));
    assert_eq!(stored.metadata, json!({ "source": "site", "vip": true }));
    assert_eq!(stored.updated_at, Some(at(200)));
    assert_eq!(store.get_contact("404").await.unwrap(), None);
    assert_eq!(store.stats().await.unwrap().contacts, 2);
}

async fn contact_delete_restore_and_metadata(store: &dyn Store) {
    store.mark_contact_deleted("77", true).await.unwrap();
    let stored = store.get_contact("77").await.unwrap().unwrap();
    assert!(stored.is_deleted);
    assert_eq!(stored.metadata, json!({}));
    store
        .upsert_contacts(&[contact("77", Some(at(1)))])
        .await
        .unwrap();
    assert!(store.get_contact("77").await.unwrap().unwrap().is_deleted);
    store.mark_contact_deleted("77", false).await.unwrap();
    assert!(!store.get_contact("77").await.unwrap().unwrap().is_deleted);

    assert!(
        store
            .set_contact_metadata("77", &map(json!({ "a": 1 })))
            .await
            .unwrap()
    );
    assert!(
        store
            .set_contact_metadata("77", &map(json!({ "b": 2 })))
            .await
            .unwrap()
    );
    assert_eq!(
        store.get_contact("77").await.unwrap().unwrap().metadata,
        json!({ "a": 1, "b": 2 })
    );
    assert!(
        !store
            .set_contact_metadata("78", &map(json!({ "a": 1 })))
            .await
            .unwrap()
    );
}

async fn tokens_round_trip_and_rotate(store: &dyn Store) {
    assert_eq!(store.load_tokens("example").await.unwrap(), None);
    let first = StoredTokens {
        access_token: "access-1".into(),
        refresh_token: "refresh-1".into(),
        token_type: "Bearer".into(),
        expires_at: at(86_400),
        updated_at: at(0),
    };
    store.save_tokens("example", &first).await.unwrap();
    assert_eq!(
        store.load_tokens("example").await.unwrap(),
        Some(first.clone())
    );

    let rotated = StoredTokens {
        access_token: "access-2".into(),
        refresh_token: "refresh-2".into(),
        token_type: "Bearer".into(),
        expires_at: at(2 * 86_400),
        updated_at: at(86_000),
    };
    store.save_tokens("example", &rotated).await.unwrap();
    assert_eq!(
        store.load_tokens("example").await.unwrap(),
        Some(rotated.clone())
    );
    assert_eq!(store.load_tokens("other").await.unwrap(), None);
    store.save_tokens("other", &first).await.unwrap();
    assert_eq!(
        store.load_tokens("example").await.unwrap(),
        Some(rotated.clone())
    );

    let debug = format!("{rotated:?}");
    assert!(
        !debug.contains("access-2") && !debug.contains("refresh-2"),
        "{debug}"
    );
}

async fn stats_count_every_state(store: &dyn Store) {
    let empty = store.stats().await.unwrap();
    assert_eq!(empty, Default::default());
    assert_eq!(store.queue_stats().await.unwrap(), QueueStats::default());

    store
        .insert_events(&[
            typed_event("1", "lead.add", at(10)),
            typed_event("2", "lead.status", at(20)),
            typed_event("3", "lead.status", at(30)),
            typed_event("4", "contact.update", at(40)),
            typed_event("5", "lead.add", at(50)),
        ])
        .await
        .unwrap();
    let lease = Duration::from_secs(60);
    let claimed = store.claim_events(3, lease).await.unwrap();
    // 1 processed, 2 dead, 3 retrying; 4 and 5 untouched.
    store.complete_events(&[claimed[0].id]).await.unwrap();
    store
        .fail_event(claimed[1].id, "boom", now(), 1)
        .await
        .unwrap();
    store
        .fail_event(claimed[2].id, "boom", now(), 5)
        .await
        .unwrap();
    store
        .upsert_deals(&[deal("1", None), deal("2", None)])
        .await
        .unwrap();
    store.upsert_contacts(&[contact("1", None)]).await.unwrap();
    store
        .insert_rejected(&RejectedWebhook {
            body: vec![1],
            content_type: None,
            reason: "bad".into(),
            received_at: at(0),
        })
        .await
        .unwrap();

    let stats = store.stats().await.unwrap();
    assert_eq!(stats.backlog, 3);
    assert_eq!(stats.oldest_pending_at, Some(at(30)));
    assert_eq!(stats.dead, 1);
    assert_eq!(stats.processed, 1);
    assert_eq!(stats.retrying, 1);
    assert_eq!(stats.rejected, 1);
    assert_eq!(stats.last_event_at, Some(at(50)));
    assert_eq!(stats.deals, 2);
    assert_eq!(stats.contacts, 1);
    assert_eq!(
        stats.by_type,
        vec![
            ("contact.update".to_string(), 1),
            ("lead.add".to_string(), 2),
            ("lead.status".to_string(), 2),
        ]
    );
    // The scrape-time figures agree with the full count.
    assert_eq!(
        store.queue_stats().await.unwrap(),
        QueueStats {
            backlog: 3,
            oldest_pending_at: Some(at(30)),
            dead: 1,
        }
    );
}

async fn api_usage_adds_up(store: &dyn Store) {
    let minute = at(0);
    let usage = |seconds: i64, endpoint: &str, status: u16, count: u64| ApiUsage {
        minute: minute + TimeDelta::seconds(seconds),
        endpoint: endpoint.into(),
        status,
        count,
    };
    store
        .record_api_usage(&[
            usage(0, "GET /api/v4/leads", 200, 2),
            usage(15, "GET /api/v4/leads", 200, 3),
            usage(0, "GET /api/v4/contacts", 429, 1),
            usage(60, "GET /api/v4/leads", 200, 10),
        ])
        .await
        .unwrap();
    store
        .record_api_usage(&[usage(0, "GET /api/v4/leads", 200, 4)])
        .await
        .unwrap();
    store.record_api_usage(&[]).await.unwrap();

    assert_eq!(store.api_usage_since(minute).await.unwrap(), 20);
    assert_eq!(
        store
            .api_usage_since(minute - TimeDelta::hours(1))
            .await
            .unwrap(),
        20
    );
    assert_eq!(
        store
            .api_usage_since(minute + TimeDelta::seconds(60))
            .await
            .unwrap(),
        10
    );
    assert_eq!(
        store
            .api_usage_since(minute + TimeDelta::seconds(120))
            .await
            .unwrap(),
        0
    );
}

async fn a_free_exclusive_key_is_granted(store: &dyn Store) {
    let mut guard = store
        .try_exclusive("geodrive")
        .await
        .unwrap()
        .expect("granted");
    assert!(guard.is_held().await);
}

async fn contact_fields_follow_the_main_contact(store: &dyn Store) {
    let older = at(-600);
    store
        .upsert_deals(&[
            full_deal("1", older),
            full_deal("2", older),
            deal("3", Some(older)),
        ])
        .await
        .unwrap();
    assert_eq!(
        store
            .get_deal("1")
            .await
            .unwrap()
            .unwrap()
            .main_contact_id
            .as_deref(),
        Some("5000001")
    );
    let phone = json!([{ "field_code": "PHONE", "values": [{ "value": "+7 999 000-00-00" }] }]);
    // Deals 1 and 2 have the contact as their main contact; deal 3 has none. No amoCRM time is
    // compared: the deals themselves did not change.
    assert_eq!(
        store
            .set_main_contact_fields("5000001", Some(&phone))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        store
            .get_deal("2")
            .await
            .unwrap()
            .unwrap()
            .contact_custom_fields,
        Some(phone.clone())
    );
    assert_eq!(
        store
            .get_deal("3")
            .await
            .unwrap()
            .unwrap()
            .contact_custom_fields,
        None
    );
    assert_eq!(
        store.get_deal("1").await.unwrap().unwrap().updated_at,
        Some(older)
    );
    // The same fields again change nothing; another contact touches nothing.
    assert_eq!(
        store
            .set_main_contact_fields("5000001", Some(&phone))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .set_main_contact_fields("404", Some(&phone))
            .await
            .unwrap(),
        0
    );
    // The contact's fields were all emptied: its deals show none.
    assert_eq!(
        store
            .set_main_contact_fields("5000001", None)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        store
            .get_deal("2")
            .await
            .unwrap()
            .unwrap()
            .contact_custom_fields,
        None
    );
    store
        .set_main_contact_fields("5000001", Some(&phone))
        .await
        .unwrap();
    // An upsert without a main contact keeps the stored one.
    store.upsert_deals(&[deal("1", Some(at(0)))]).await.unwrap();
    assert_eq!(
        store
            .get_deal("1")
            .await
            .unwrap()
            .unwrap()
            .main_contact_id
            .as_deref(),
        Some("5000001")
    );
}

async fn postponed_events_wait_without_counting_attempts(store: &dyn Store) {
    store.insert_events(&[event("outage")]).await.unwrap();
    let lease = Duration::from_secs(60);
    for round in 0..3 {
        let claimed = store.claim_events(10, lease).await.unwrap();
        assert_eq!(claimed.len(), 1, "round {round}");
        // Due again at once: the outage is over.
        store
            .postpone_event(
                claimed[0].id,
                "amoCRM answered 503",
                now() - TimeDelta::seconds(1),
            )
            .await
            .unwrap();
    }
    let claimed = store.claim_events(10, lease).await.unwrap();
    let id = claimed[0].id;
    assert_eq!(claimed[0].attempts, 0, "postponing never counts an attempt");
    assert_eq!(
        claimed[0].last_error.as_deref(),
        Some("amoCRM answered 503")
    );
    // Put off into the future: not claimable, visible as retrying, lease dropped.
    store
        .postpone_event(id, "rate limited", now() + TimeDelta::hours(1))
        .await
        .unwrap();
    assert!(store.claim_events(10, lease).await.unwrap().is_empty());
    let stored = store.get_event(id).await.unwrap().unwrap();
    assert_eq!((stored.attempts, stored.locked_until), (0, None));
    assert_eq!(stored.state(now()), EventState::Pending);
    assert_eq!(store.stats().await.unwrap().retrying, 1);
    // A counted failure still starts from zero: with two allowed, one failure is not dead.
    assert_eq!(
        store
            .fail_event(id, "bad request", now() - TimeDelta::seconds(1), 2)
            .await
            .unwrap(),
        FailOutcome::Retrying
    );
}

async fn rejected_bodies_are_cut_with_length_and_digest(store: &dyn Store) {
    use sha2::Digest;
    let body: Vec<u8> = (0..200 * 1024).map(|i| (i % 251) as u8).collect();
    let rejected = RejectedWebhook {
        body: body.clone(),
        content_type: Some("application/x-www-form-urlencoded".into()),
        reason: "too large".into(),
        received_at: at(0),
    };
    store.insert_rejected(&rejected).await.unwrap();
    let listed = store.list_rejected(1).await.unwrap();
    let stored = &listed[0];
    assert_eq!(
        stored.rejected.body,
        body[..jarvis_store::REJECTED_BODY_KEEP]
    );
    assert_eq!(stored.body_length, Some(body.len() as u64));
    assert_eq!(
        stored.body_sha256.as_deref(),
        Some(hex::encode(sha2::Sha256::digest(&body)).as_str())
    );

    let small = RejectedWebhook {
        body: b"x=1".to_vec(),
        received_at: at(1),
        ..rejected
    };
    store.insert_rejected(&small).await.unwrap();
    let listed = store.list_rejected(1).await.unwrap();
    assert_eq!(listed[0].rejected, small);
    assert_eq!(listed[0].body_length, Some(3));
}

async fn rejected_bodies_expire_and_are_capped(store: &dyn Store) {
    let body = |received_at| RejectedWebhook {
        body: vec![b'a'; 10_000],
        content_type: None,
        reason: "malformed".into(),
        received_at,
    };
    let now = now();
    let mut kept = Vec::new();
    for days in [40, 35, 31] {
        store
            .insert_rejected(&body(now - TimeDelta::days(days)))
            .await
            .unwrap();
    }
    for minutes in [30, 20, 10] {
        kept.push(
            store
                .insert_rejected(&body(now - TimeDelta::minutes(minutes)))
                .await
                .unwrap(),
        );
    }
    // 30 days of retention drops the three old ones; 25,000 bytes hold the two newest of the rest.
    let deleted = store
        .prune_rejected(now - TimeDelta::days(30), 25_000)
        .await
        .unwrap();
    assert_eq!(deleted, 4);
    let ids: Vec<i64> = store
        .list_rejected(10)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, [kept[2], kept[1]]);
    assert_eq!(
        store
            .prune_rejected(now - TimeDelta::days(30), 25_000)
            .await
            .unwrap(),
        0
    );
}

async fn state_values_round_trip(store: &dyn Store) {
    assert_eq!(store.get_state("api_access").await.unwrap(), None);
    let broken = json!({"reason": "unauthorized", "since": "2026-01-01T00:00:00Z"});
    store.set_state("api_access", &broken).await.unwrap();
    let entry = store.get_state("api_access").await.unwrap().unwrap();
    assert_eq!(entry.value, broken);
    assert!((now() - entry.updated_at).num_seconds().abs() < 60);

    let other = json!({"reason": "payment_required"});
    store.set_state("api_access", &other).await.unwrap();
    assert_eq!(
        store.get_state("api_access").await.unwrap().unwrap().value,
        other
    );
    assert!(store.clear_state("api_access").await.unwrap());
    assert!(!store.clear_state("api_access").await.unwrap());
    assert_eq!(store.get_state("api_access").await.unwrap(), None);
}

async fn leases_are_extended_only_while_held(store: &dyn Store) {
    store
        .insert_events(&[event("a"), event("b"), event("c")])
        .await
        .unwrap();
    let claimed = store
        .claim_events(3, Duration::from_millis(300))
        .await
        .unwrap();
    let ids: Vec<i64> = claimed.iter().map(|e| e.id).collect();
    store.complete_events(&ids[2..]).await.unwrap();
    // Settled events are not extended; the others are, past their first lease.
    let held = store
        .extend_leases(&ids, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(held, ids[..2]);
    let stored = store.get_event(ids[0]).await.unwrap().unwrap();
    assert!(stored.locked_until.unwrap() > now() + TimeDelta::seconds(50));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        store
            .claim_events(3, Duration::from_secs(1))
            .await
            .unwrap()
            .is_empty()
    );

    // A lease that ran out is not the claimer's any more: extending it must not revive it.
    store.release_events(&ids[..1]).await.unwrap();
    let held = store
        .extend_leases(&ids, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(held, ids[1..2]);
    assert!(
        store
            .extend_leases(&[], Duration::from_secs(1))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn a_direct_connection_keeps_its_session(store: &dyn Store) {
    store.check_session().await.unwrap();
}

async fn settle_batch_writes_rows_and_completes_events(store: &dyn Store) {
    let events: Vec<_> = (0..4).map(|i| event(&format!("settle-{i}"))).collect();
    store.insert_events(&events).await.unwrap();
    let claimed = store
        .claim_events(10, Duration::from_secs(60))
        .await
        .unwrap();
    let ids: Vec<i64> = claimed.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), 4);
    // Deal 1 has contact 5000001 as its main contact (full_deal); deal 3 will be deleted.
    store
        .upsert_deals(&[full_deal("1", at(-600)), full_deal("3", at(-600))])
        .await
        .unwrap();

    let phone = json!([{ "field_code": "PHONE", "values": [{ "value": "+7 999 000-00-00" }] }]);
    let mut main_contact = contact("5000001", Some(at(1)));
    main_contact.custom_fields = phone.clone().into();
    let mut v1 = deal("2", Some(at(1)));
    v1.price = 10.into();
    let mut v2 = deal("2", Some(at(2)));
    v2.price = 20.into();
    let mut stale = deal("2", Some(at(0)));
    stale.price = 5.into();
    let writes = BatchWrites {
        contacts: vec![main_contact],
        deals: vec![v1, v2, stale],
        deletions: vec![DeletionRecord {
            entity: MirrorEntity::Deal,
            amocrm_id: "3".into(),
            event_hash: "settle-delete".into(),
            deleted: true,
        }],
        completed: ids[..3].to_vec(),
    };
    let outcome = store.settle_batch(&writes).await.unwrap();
    assert_eq!(
        outcome,
        SettleOutcome {
            contacts: UpsertOutcome {
                applied: 1,
                stale: 0
            },
            deals: UpsertOutcome {
                applied: 2,
                stale: 1
            },
            completed: 3,
        }
    );
    // The contact's fields reached the deal it is the main contact of.
    let deal_1 = store.get_deal("1").await.unwrap().unwrap();
    assert_eq!(deal_1.contact_custom_fields, Some(phone));
    assert_eq!(store.get_deal("2").await.unwrap().unwrap().price, Some(20));
    assert!(store.get_deal("3").await.unwrap().unwrap().is_deleted);
    // The same delete replayed counts once: a restore then outweighs it.
    let replay = BatchWrites {
        deletions: vec![
            writes.deletions[0].clone(),
            DeletionRecord {
                deleted: false,
                event_hash: "settle-restore".into(),
                ..writes.deletions[0].clone()
            },
        ],
        ..BatchWrites::default()
    };
    store.settle_batch(&replay).await.unwrap();
    assert!(!store.get_deal("3").await.unwrap().unwrap().is_deleted);

    for id in &ids[..3] {
        let stored = store.get_event(*id).await.unwrap().unwrap();
        assert!(stored.processed, "event {id} completed");
    }
    assert!(!store.get_event(ids[3]).await.unwrap().unwrap().processed);
    assert_eq!(
        store.settle_batch(&BatchWrites::default()).await.unwrap(),
        SettleOutcome::default()
    );
}

async fn claim_and_settle_completes_what_the_plan_settles(store: &dyn Store) {
    // Nothing due: the plan is not called.
    let mut calls = 0;
    let outcome = store
        .claim_and_settle(10, Duration::from_secs(60), &mut |_| {
            calls += 1;
            BatchWrites::default()
        })
        .await
        .unwrap();
    assert_eq!((outcome.claimed, calls), (0, 0));

    let events: Vec<_> = (0..4).map(|i| event(&format!("cs-{i}"))).collect();
    store.insert_events(&events).await.unwrap();
    // One event is leased by another claimer: it is not part of the batch.
    let taken = store
        .claim_events(1, Duration::from_secs(60))
        .await
        .unwrap();
    let mut seen = Vec::new();
    let outcome = store
        .claim_and_settle(10, Duration::from_secs(60), &mut |batch| {
            seen = batch.iter().map(|e| e.id).collect();
            let mut deal = full_deal("77", at(1));
            deal.price = 77.into();
            BatchWrites {
                deals: vec![deal],
                // The last one is left for the caller; an id outside the batch is ignored.
                completed: vec![batch[0].id, batch[1].id, taken[0].id],
                ..BatchWrites::default()
            }
        })
        .await
        .unwrap();
    assert_eq!(outcome.claimed, 3);
    assert_eq!(seen.len(), 3);
    assert!(!seen.contains(&taken[0].id));
    assert_eq!(outcome.settled.completed, 2);
    assert_eq!(outcome.settled.deals.applied, 1);
    assert_eq!(store.get_deal("77").await.unwrap().unwrap().price, Some(77));
    for id in &seen[..2] {
        assert!(store.get_event(*id).await.unwrap().unwrap().processed);
    }
    assert!(
        !store
            .get_event(taken[0].id)
            .await
            .unwrap()
            .unwrap()
            .processed
    );
    // The one left over comes back leased, and nobody else can claim it meanwhile.
    assert_eq!(outcome.leased.len(), 1);
    assert_eq!(outcome.leased[0].id, seen[2]);
    let left_over = store.get_event(seen[2]).await.unwrap().unwrap();
    assert!(!left_over.processed && left_over.processed_at.is_none());
    let lease_end = outcome.leased[0].locked_until.expect("leased");
    assert!(lease_end > now() + TimeDelta::seconds(50));
    assert!(
        store
            .claim_events(10, Duration::from_secs(60))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn contact_fields_follow_stored_contacts_in_one_call(store: &dyn Store) {
    // Deals 1 and 2 have contact 5000001 as their main contact (full_deal).
    store
        .upsert_deals(&[full_deal("1", at(-600)), full_deal("2", at(-600))])
        .await
        .unwrap();
    let phone = json!([{ "field_code": "PHONE", "values": [{ "value": "+7 999 000-00-00" }] }]);
    let mut main_contact = contact("5000001", Some(at(1)));
    main_contact.custom_fields = phone.clone().into();
    store.upsert_contacts(&[main_contact]).await.unwrap();
    // A bare deleted marker holds no state of its contact: nothing follows it.
    store.mark_contact_deleted("777", true).await.unwrap();

    let ids = ["5000001", "777", "not-stored"];
    assert_eq!(store.follow_contact_fields(&ids).await.unwrap(), 2);
    for id in ["1", "2"] {
        let deal = store.get_deal(id).await.unwrap().unwrap();
        assert_eq!(deal.contact_custom_fields, Some(phone.clone()));
        // The deals' own amoCRM time is not involved.
        assert_eq!(deal.updated_at, Some(at(-600)));
    }
    // Already following: nothing changes.
    assert_eq!(store.follow_contact_fields(&ids).await.unwrap(), 0);
    assert_eq!(store.follow_contact_fields(&[]).await.unwrap(), 0);
}

fn settled(hash: &str, writes: Option<EventWrites>) -> SettledEvent {
    SettledEvent {
        event: event(hash),
        writes,
    }
}

fn deal_writes(deal: DealUpsert) -> Option<EventWrites> {
    Some(EventWrites {
        deal: Some(deal),
        ..EventWrites::default()
    })
}

/// Whatever a backend settles as it stores, every event is stored once, and an event counted as
/// settled is processed with its row written (PostgreSQL settles; the default stores them pending).
async fn insert_settled_stores_every_event_once(store: &dyn Store) {
    store.insert_events(&[event("old")]).await.unwrap();
    let outcome = store
        .insert_settled(vec![
            settled("deal", deal_writes(full_deal("10", at(1)))),
            settled("pending", None),
            settled("old", deal_writes(full_deal("20", at(1)))),
            settled("deal", deal_writes(full_deal("10", at(1)))),
        ])
        .await
        .unwrap();
    assert_eq!((outcome.stored, outcome.duplicates), (2, 2));
    assert_eq!(outcome.settled, u64::from(store.settles_inserts()));
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.processed, outcome.settled);
    assert_eq!(stats.backlog, 3 - outcome.settled);
    assert_eq!(
        store.get_deal("10").await.unwrap().is_some(),
        store.settles_inserts()
    );
    assert!(
        store.get_deal("20").await.unwrap().is_none(),
        "a duplicate writes nothing"
    );
}
