//! Event inserts on SQLite through [`crate::group_commit`].
//!
//! With `synchronous = FULL` every commit waits for the disk, so one commit per webhook caps ingest
//! at the disk's sync rate whatever the number of callers; sharing the commit lifts that cap.

use sqlx::SqlitePool;

use crate::Result;
use crate::group_commit::{GroupCommit, GroupWrite};

/// One event ready for its INSERT: converted in the caller's task, off the writer's path.
pub(super) struct EventRow {
    pub received_at: i64,
    pub event_type: String,
    pub entity_type: String,
    pub amocrm_entity_id: Option<String>,
    pub event_hash: String,
    pub payload: String,
    pub account_id: Option<i32>,
}

/// Writes groups of event batches through the single writer connection.
#[derive(Clone)]
pub(super) struct EventWriter(pub SqlitePool);

pub(super) type Ingest = GroupCommit<EventWriter>;

impl GroupWrite for EventWriter {
    type Row = EventRow;
    type Outcome = u64;
    /// SQLite has one writer.
    const WRITERS: usize = 1;

    async fn write(&self, batches: &[Vec<EventRow>]) -> Result<Vec<u64>> {
        write_group(&self.0, batches).await
    }
}

/// Rows one INSERT carries at most: 8 parameters each, 4,096 in all, far below SQLite's limit of
/// 32,766. A group is at most this many rows unless a single batch is larger.
const CHUNK_ROWS: usize = 512;

/// A group is one multi-row INSERT, on its own (SQLite makes a single statement atomic: no BEGIN and
/// COMMIT round trips) or, for a batch larger than a chunk, chunks in one transaction. Each statement
/// is a round trip to the connection's thread, two context switches that cost more than the insert
/// itself. To keep the statement texts few (they are prepared once and cached), a chunk's row count
/// is rounded up to a power of two by repeating its last row: the copies conflict with it on
/// `event_hash` and insert nothing.
async fn write_group(pool: &SqlitePool, batches: &[Vec<EventRow>]) -> Result<Vec<u64>> {
    let now = chrono::Utc::now().timestamp_micros();
    let rows: Vec<&EventRow> = batches.iter().flatten().collect();
    let mut inserted: Vec<String> = Vec::with_capacity(rows.len());
    if rows.len() <= CHUNK_ROWS {
        let mut conn = pool.acquire().await?;
        inserted = insert_chunk(&rows, now).fetch_all(&mut *conn).await?;
    } else {
        let mut tx = pool.begin_with(super::BEGIN_WRITE).await?;
        for chunk in rows.chunks(CHUNK_ROWS) {
            inserted.extend(insert_chunk(chunk, now).fetch_all(&mut *tx).await?);
        }
        tx.commit().await?;
    }
    // An event repeated across batches was inserted once, and counts for the first batch carrying it.
    let mut new: std::collections::HashSet<String> = inserted.into_iter().collect();
    Ok(batches
        .iter()
        .map(|batch| {
            batch
                .iter()
                .filter(|row| new.remove(&row.event_hash))
                .count() as u64
        })
        .collect())
}

type InsertChunk<'q> =
    sqlx::query::QueryScalar<'q, sqlx::Sqlite, String, sqlx::sqlite::SqliteArguments<'q>>;

/// The INSERT of one chunk (never empty), padded to a power of two rows with its last row.
fn insert_chunk<'q>(chunk: &[&'q EventRow], now: i64) -> InsertChunk<'q> {
    let size = chunk.len().next_power_of_two();
    let last = chunk.last().expect("a chunk is never empty");
    let padding = std::iter::repeat_n(last, size - chunk.len());
    let mut query = sqlx::query_scalar(insert_sql(size));
    for row in chunk.iter().chain(padding) {
        query = query
            .bind(row.received_at)
            .bind(&row.event_type)
            .bind(&row.entity_type)
            .bind(&row.amocrm_entity_id)
            .bind(&row.event_hash)
            .bind(&row.payload)
            .bind(row.account_id)
            .bind(now);
    }
    query
}

/// The INSERT text for a power of two rows up to [`CHUNK_ROWS`], built once.
fn insert_sql(rows: usize) -> &'static str {
    static TEXTS: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
        (0..=CHUNK_ROWS.ilog2())
            .map(|power| {
                let values = vec!["(?, ?, ?, ?, ?, ?, ?, ?)"; 1 << power].join(",");
                format!(
                    "INSERT INTO amocrm_webhook_events (ts, event_type, entity_type, \
                     amocrm_entity_id, event_hash, payload, account_id, next_attempt_at) \
                     VALUES {values} ON CONFLICT (event_hash) DO NOTHING RETURNING event_hash"
                )
            })
            .collect()
    });
    debug_assert!(rows.is_power_of_two() && rows <= CHUNK_ROWS);
    &TEXTS[rows.ilog2() as usize]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;

    fn row(hash: &str) -> EventRow {
        EventRow {
            received_at: 1,
            event_type: "lead_status".into(),
            entity_type: "lead".into(),
            amocrm_entity_id: Some("7".into()),
            event_hash: hash.into(),
            payload: "{}".into(),
            account_id: None,
        }
    }

    fn rows(hashes: &[&str]) -> Vec<EventRow> {
        hashes.iter().map(|hash| row(hash)).collect()
    }

    async fn stored(pool: &SqlitePool) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM amocrm_webhook_events")
            .fetch_one(pool)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_repeated_event_counts_for_the_first_batch_and_padding_inserts_nothing() {
        let store = super::super::SqliteStore::connect("sqlite::memory:")
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let pool = store.pool();
        // Five rows: padded to eight with copies of "d".
        let batches = [rows(&["a", "b"]), rows(&["b", "c"]), rows(&["a", "d"])];
        assert_eq!(write_group(pool, &batches).await.unwrap(), [2, 1, 1]);
        assert_eq!(stored(pool).await, 4);
        let again = [rows(&["a"]), rows(&["e"])];
        assert_eq!(write_group(pool, &again).await.unwrap(), [0, 1]);
        assert_eq!(stored(pool).await, 5);
    }

    #[tokio::test]
    async fn a_batch_larger_than_a_chunk_goes_in_whole() {
        let store = super::super::SqliteStore::connect("sqlite::memory:")
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let hashes: Vec<String> = (0..CHUNK_ROWS + 90)
            .map(|i| format!("h{}", i % 600))
            .collect();
        let big: Vec<EventRow> = hashes.iter().map(|hash| row(hash)).collect();
        assert_eq!(write_group(store.pool(), &[big]).await.unwrap(), [600]);
        assert_eq!(stored(store.pool()).await, 600);
    }

    #[test]
    fn one_text_per_power_of_two() {
        assert_eq!(insert_sql(1).matches('?').count(), 8);
        assert_eq!(insert_sql(16).matches('?').count(), 16 * 8);
        assert_eq!(insert_sql(CHUNK_ROWS).matches('?').count(), CHUNK_ROWS * 8);
    }
}
