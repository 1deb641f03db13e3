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
