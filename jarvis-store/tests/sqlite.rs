//! SQLite-only behaviour: file settings, two stores (processes) on one file, in-memory databases.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use jarvis_store::{SqliteStore, Store, testing};
use tokio::sync::Barrier;

use common::event;

#[tokio::test]
async fn file_is_created_in_wal_mode() {
    let (url, dir) = testing::fresh_sqlite_url();
    let store = SqliteStore::connect(&url).await.unwrap();
    assert!(dir.path().join("jarvis.db").exists());
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let busy_timeout: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(busy_timeout >= 1_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_on_one_file_never_share_an_event() {
    const EVENTS: usize = 2_000;
    let (url, _dir) = testing::fresh_sqlite_url();
    let first = SqliteStore::connect(&url).await.unwrap();
    first.migrate().await.unwrap();
    let second = SqliteStore::connect(&url).await.unwrap();
    let events: Vec<_> = (0..EVENTS).map(|i| event(&format!("hash-{i}"))).collect();
    first.insert_events(&events).await.unwrap();

    let claimers: Vec<_> = [first.clone(), second.clone(), first, second]
        .into_iter()
        .map(|store| {
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let batch = store
                        .claim_events(25, Duration::from_secs(60))
                        .await
                        .unwrap();
                    if batch.is_empty() {
                        return mine;
                    }
                    let ids: Vec<i64> = batch.iter().map(|e| e.id).collect();
                    store.complete_events(&ids).await.unwrap();
                    mine.extend(ids);
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for claimer in claimers {
        all.extend(claimer.await.unwrap());
    }
    let distinct: HashSet<i64> = all.iter().copied().collect();
    assert_eq!((all.len(), distinct.len()), (EVENTS, EVENTS));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_event_inserted_concurrently_is_stored_once() {
    const TASKS: usize = 16;
    let (store, _dir) = testing::sqlite_store().await;
    let barrier = Arc::new(Barrier::new(TASKS));
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let store = store.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                store.insert_events(&[event("same")]).await.unwrap()
            })
        })
        .collect();
    let mut stored = 0;
    for task in tasks {
        stored += task.await.unwrap().stored;
    }
    assert_eq!(stored, 1);
    assert_eq!(store.stats().await.unwrap().backlog, 1);
}

#[tokio::test]
async fn in_memory_database_works() {
    let store = jarvis_store::connect("sqlite::memory:").await.unwrap();
    store.migrate().await.unwrap();
    store.insert_events(&[event("a")]).await.unwrap();
    assert_eq!(
        store
            .claim_events(5, Duration::from_secs(1))
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(store.stats().await.unwrap().backlog, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_batches_sharing_commits_get_their_own_outcomes() {
    let (store, _dir) = testing::sqlite_store().await;
    common::concurrent_batches_get_their_own_outcomes(Arc::new(store)).await;
}

/// SQLite claims a batch with leases and settles it in a second transaction: when settling fails,
/// nothing of it is written and the leases are released, so the events are due again at once.
#[tokio::test]
async fn a_failed_settle_releases_the_batch() {
    let (store, _dir) = testing::sqlite_store().await;
    // The database refuses this one deal, as a constraint would.
    sqlx::query(
        "CREATE TRIGGER refuse_deal BEFORE INSERT ON amocrm_deals
        WHEN NEW.amocrm_deal_id = 'refused'
        BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END",
    )
    .execute(store.pool())
    .await
    .unwrap();
    store
        .insert_events(&[event("settle-a"), event("settle-b")])
        .await
        .unwrap();
    let result = store
        .claim_and_settle(10, Duration::from_secs(600), &mut |batch| {
            jarvis_store::BatchWrites {
                deals: vec![common::deal("fine", None), common::deal("refused", None)],
                completed: batch.iter().map(|e| e.id).collect(),
                ..Default::default()
            }
        })
        .await;
    assert!(result.is_err());
    assert!(store.get_deal("fine").await.unwrap().is_none());
    // Released, not left leased for ten minutes: a claim takes both again now.
    let again = store
        .claim_events(10, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(again.len(), 2);
    assert!(again.iter().all(|e| !e.processed));
}

/// The WAL reaches the database file through a checkpoint run beside the writer soon after writes,
/// not inside the commit that crosses SQLite's threshold: the writer's own threshold is a backstop
/// far above the default 1,000 pages, yet a few hundred pages of events reach the file at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_is_checkpointed_beside_the_writer() {
    let (url, dir) = testing::fresh_sqlite_url();
    let store = SqliteStore::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    let threshold: i64 = sqlx::query_scalar("PRAGMA wal_autocheckpoint")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(threshold, 10_000);
    let file = dir.path().join("jarvis.db");
    let before = std::fs::metadata(&file).unwrap().len();

    let events: Vec<_> = (0..300).map(|i| event(&format!("hash-{i}"))).collect();
    for batch in events.chunks(50) {
        store.insert_events(batch).await.unwrap();
    }
    let wal_pages = std::fs::metadata(dir.path().join("jarvis.db-wal"))
        .unwrap()
        .len()
        / 4096;
    assert!(wal_pages < 1_000, "{wal_pages} WAL pages");
    let started = std::time::Instant::now();
    loop {
        let now = std::fs::metadata(&file).unwrap().len();
        if now > before {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the database file is still {now} bytes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Closing the store closes the checkpoints' connection too: with the last connection gone,
    // SQLite folds the WAL into the file and removes it.
    store.close().await;
    assert!(!dir.path().join("jarvis.db-wal").exists());
}
