//! Gaps, their catch-up cursor and named instants: the same behaviour on PostgreSQL and SQLite.

use chrono::{DateTime, TimeDelta, Utc};
use jarvis_store::{GapEntity, GapEntityType, GapKind, Store};

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(store) = jarvis_store::testing::postgres_store().await else { return };
                super::$name(&store).await;
            } )*
        }
        mod sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (store, _dir) = jarvis_store::testing::sqlite_store().await;
                super::$name(&store).await;
            } )*
        }
    };
}

on_both!(
    gaps_are_open_until_closed_oldest_first,
    pages_merge_entities_and_move_the_cursor,
    marks_only_move_forward,
);

fn second(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(at.timestamp(), 0).unwrap()
}

fn lead(id: u64, deleted: bool, at: i64) -> GapEntity {
    GapEntity {
        entity_type: GapEntityType::Lead,
        entity_id: id,
        deleted,
        last_event_at: at,
    }
}

async fn gaps_are_open_until_closed_oldest_first(store: &impl Store) {
    store.migrate().await.unwrap();
    assert!(store.open_gaps().await.unwrap().is_empty());
    let now = second(Utc::now());
    let first = store
        .open_gap(&GapKind::Downtime, now - TimeDelta::hours(1), now)
        .await
        .unwrap();
    let second_gap = store
        .open_gap(&GapKind::WebhookDisabled, now - TimeDelta::minutes(5), now)
        .await
        .unwrap();
    let gaps = store.open_gaps().await.unwrap();
    assert_eq!(
        gaps.iter().map(|g| g.id).collect::<Vec<_>>(),
        [first, second_gap]
    );
    assert_eq!(gaps[0].kind, GapKind::Downtime);
    assert_eq!(gaps[0].from, now - TimeDelta::hours(1));
    assert_eq!(gaps[0].to, now);
    assert_eq!((gaps[0].pages_done, gaps[0].events_read), (0, 0));
    assert!(gaps[0].read_done_at.is_none() && gaps[0].caught_up_at.is_none());
    store.close_gap(first).await.unwrap();
    store.close_gap(first).await.unwrap();
    let gaps = store.open_gaps().await.unwrap();
    assert_eq!(gaps.len(), 1);
    assert_eq!(gaps[0].kind, GapKind::WebhookDisabled);
}

async fn pages_merge_entities_and_move_the_cursor(store: &impl Store) {
    store.migrate().await.unwrap();
    let now = Utc::now();
    let gap = store
        .open_gap(&GapKind::Manual, now - TimeDelta::hours(1), now)
        .await
        .unwrap();
    // Page 1 (newest events): lead 1 deleted at 50, lead 2 changed at 40, contact 7 at 45.
    let contact = GapEntity {
        entity_type: GapEntityType::Contact,
        entity_id: 7,
        deleted: false,
        last_event_at: 45,
    };
    store
        .record_gap_page(
            gap,
            1,
            100,
            &[lead(1, true, 50), lead(2, false, 40), contact.clone()],
            false,
        )
        .await
        .unwrap();
    let open = &store.open_gaps().await.unwrap()[0];
    assert_eq!((open.pages_done, open.events_read), (1, 100));
    assert!(open.read_done_at.is_none());
    // Page 2 (older events): lead 1 changed at 10 must not undo its delete; lead 2 deleted at 40 (the
    // same second) does not win either; lead 3 is new.
    store
        .record_gap_page(
            gap,
            2,
            30,
            &[lead(1, false, 10), lead(2, true, 40), lead(3, false, 5)],
            true,
        )
        .await
        .unwrap();
    let open = &store.open_gaps().await.unwrap()[0];
    assert_eq!((open.pages_done, open.events_read), (2, 130));
    assert!(open.read_done_at.is_some());
    let entities = store.gap_entities(gap).await.unwrap();
    assert_eq!(
        entities,
        vec![
            lead(1, true, 50),
            lead(2, false, 40),
            lead(3, false, 5),
            contact
        ]
    );
    // A newer event on a later page (clock skew in the feed) wins.
    store
        .record_gap_page(gap, 2, 0, &[lead(3, true, 60)], true)
        .await
        .unwrap();
    assert_eq!(store.gap_entities(gap).await.unwrap()[2], lead(3, true, 60));
    assert_eq!(store.open_gaps().await.unwrap()[0].pages_done, 2);
}

async fn marks_only_move_forward(store: &impl Store) {
    store.migrate().await.unwrap();
    let t = DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap();
    assert_eq!(store.get_mark("heartbeat").await.unwrap(), None);
    assert_eq!(store.advance_mark("heartbeat", t).await.unwrap(), None);
    let later = t + TimeDelta::seconds(5);
    assert_eq!(
        store.advance_mark("heartbeat", later).await.unwrap(),
        Some(t)
    );
    assert_eq!(
        store.advance_mark("heartbeat", t).await.unwrap(),
        Some(later),
        "an older instant is not taken"
    );
    assert_eq!(store.get_mark("heartbeat").await.unwrap(), Some(later));
    assert_eq!(store.get_mark("stopped").await.unwrap(), None);
}
