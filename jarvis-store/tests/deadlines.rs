//! The ingest path's bounds on PostgreSQL: a table lock or a statement that runs long turns into a
//! quick error within the ingest timeout, never a hang; the settings reach every connection.

mod common;

use std::time::{Duration, Instant};

use jarvis_store::{PgStore, PoolSettings, Store};

async fn store_with(settings: PoolSettings) -> Option<(PgStore, String)> {
    let url = jarvis_store::testing::fresh_postgres_url().await?;
    let store = PgStore::connect_with(&url, settings).await.unwrap();
    store.migrate().await.unwrap();
    Some((store, url))
}

#[tokio::test]
async fn a_locked_table_fails_the_insert_within_the_ingest_timeout() {
    let settings = PoolSettings::default().ingest_timeout(Duration::from_millis(300));
    let Some((store, url)) = store_with(settings).await else {
        return;
    };
    let locker = sqlx::PgPool::connect(&url).await.unwrap();
    let mut lock = locker.begin().await.unwrap();
    sqlx::query("LOCK TABLE amocrm_webhook_events IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();

    let started = Instant::now();
    let error = store
        .insert_events(&[common::event("locked")])
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(error.is_unavailable(), "{error}");
    assert!(
        took < Duration::from_millis(800),
        "the insert waited {took:?} for the lock"
    );

    // Once the lock is gone the same event goes in, once.
    lock.rollback().await.unwrap();
    let outcome = store
        .insert_events(&[common::event("locked")])
        .await
        .unwrap();
    assert_eq!(outcome.stored, 1, "the timed-out insert stored nothing");
    let again = store
        .insert_events(&[common::event("locked")])
        .await
        .unwrap();
    assert_eq!((again.stored, again.duplicates), (0, 1));
}

#[tokio::test]
async fn every_connection_carries_the_statement_and_lock_timeouts() {
    let settings = PoolSettings::default()
        .statement_timeout(Duration::from_millis(1234))
        .ingest_timeout(Duration::from_millis(300));
    let Some((store, _url)) = store_with(settings).await else {
        return;
    };
    let (statement, lock): (String, String) = sqlx::query_as(
        "SELECT current_setting('statement_timeout'), current_setting('lock_timeout')",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!((statement.as_str(), lock.as_str()), ("1234ms", "1234ms"));

    // The worker's statements are cut by the server at the statement timeout.
    let started = Instant::now();
    let error = sqlx::query("SELECT pg_sleep(5)")
        .execute(store.pool())
        .await
        .unwrap_err();
    assert!(
        jarvis_store::Error::from(error).is_unavailable(),
        "a statement timeout is the database being slow"
    );
    assert!(started.elapsed() < Duration::from_secs(3));

    // Migrations are not bound by it (they may rewrite large tables): they ran above, and run again.
    store.migrate().await.unwrap();
}
