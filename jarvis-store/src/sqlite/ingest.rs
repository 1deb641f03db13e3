//! Event inserts on SQLite through [`crate::group_commit`].
//!
//! With `synchronous = FULL` every commit waits for the disk, so one commit per webhook caps ingest
//! at the disk's sync rate whatever the number of callers; sharing the commit lifts that cap.

use sqlx::SqlitePool;

use crate::group_commit::{GroupCommit, GroupWrite, Written};
use crate::{BatchWrites, Result};

/// One event ready for its INSERT: converted in the caller's task, off the writer's path.
pub(super) struct EventRow {
    pub received_at: i64,
    pub event_type: String,
    pub entity_type: String,
    pub amocrm_entity_id: Option<String>,
    pub event_hash: String,
    pub payload: String,
    pub account_id: Option<i32>,
    /// What settles the event as it is stored ([`crate::Store::insert_settled`]).
    pub writes: Option<crate::EventWrites>,
}

/// Writes groups of event batches through the single writer connection.
#[derive(Clone)]
pub(super) struct EventWriter(pub SqlitePool);

pub(super) type Ingest = GroupCommit<EventWriter>;

impl GroupWrite for EventWriter {
    type Row = EventRow;
    type Outcome = Written;
    /// SQLite has one writer.
    const WRITERS: usize = 1;

    async fn write(&self, batches: &[Vec<EventRow>]) -> Result<Vec<Written>> {
        if batches.iter().flatten().any(|row| row.writes.is_some()) {
            match settle_group(&self.0, batches).await {
                Ok(written) => return Ok(written),
                Err(error) if error.is_connection_lost() => return Err(error),
                // A value a mirror table refuses: the events are stored all the same, pending,
                // for the worker.
                Err(error) => {
                    tracing::warn!(%error, "settling events as they are stored failed; storing them for the worker")
                }
            }
        }
        let stored = write_group(&self.0, batches).await?;
        Ok(stored
            .into_iter()
            .map(|stored| Written { stored, settled: 0 })
            .collect())
    }
}

/// Rows one INSERT carries at most: 10 parameters each, 5,120 in all, far below SQLite's limit of
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
        inserted = insert_chunk(&rows, now, false)
            .fetch_all(&mut *conn)
            .await?;
    } else {
        let mut tx = pool.begin_with(super::BEGIN_WRITE).await?;
        for chunk in rows.chunks(CHUNK_ROWS) {
            inserted.extend(insert_chunk(chunk, now, false).fetch_all(&mut *tx).await?);
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

/// A group with events to settle, in one write transaction: the events (those with writes stored
/// processed), then the writes of those that were new, as [`crate::Store::settle_batch`] applies
/// them.
async fn settle_group(pool: &SqlitePool, batches: &[Vec<EventRow>]) -> Result<Vec<Written>> {
    let now = chrono::Utc::now().timestamp_micros();
    let mut seen = std::collections::HashSet::new();
    let rows: Vec<&EventRow> = batches
        .iter()
        .flatten()
        .filter(|row| seen.insert(row.event_hash.as_str()))
        .collect();
    let mut tx = pool.begin_with(super::BEGIN_WRITE).await?;
    let mut inserted: Vec<String> = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(CHUNK_ROWS) {
        inserted.extend(insert_chunk(chunk, now, true).fetch_all(&mut *tx).await?);
    }
    let mut new: std::collections::HashSet<String> = inserted.into_iter().collect();
    let writes = BatchWrites::gather(
        rows.iter()
            .filter(|row| new.contains(&row.event_hash))
            .filter_map(|row| row.writes.as_ref()),
    );
    if !writes.is_empty() {
        super::SqliteStore::settle_in(&mut tx, &writes).await?;
    }
    tx.commit().await?;
    Ok(batches
        .iter()
        .map(|batch| {
            let mut written = Written::default();
            for row in batch {
                if new.remove(&row.event_hash) {
                    written.stored += 1;
                    written.settled += u64::from(row.writes.is_some());
                }
            }
            written
        })
        .collect())
}

type InsertChunk<'q> =
    sqlx::query::QueryScalar<'q, sqlx::Sqlite, String, sqlx::sqlite::SqliteArguments<'q>>;

/// The INSERT of one chunk (never empty), padded to a power of two rows with its last row; with
/// `settle`, the rows that come with writes are stored processed.
fn insert_chunk<'q>(chunk: &[&'q EventRow], now: i64, settle: bool) -> InsertChunk<'q> {
    let size = chunk.len().next_power_of_two();
    let last = chunk.last().expect("a chunk is never empty");
    let padding = std::iter::repeat_n(last, size - chunk.len());
    let mut query = sqlx::query_scalar(insert_sql(size));
    for row in chunk.iter().chain(padding) {
        let processed = settle && row.writes.is_some();
        query = query
            .bind(row.received_at)
            .bind(&row.event_type)
            .bind(&row.entity_type)
            .bind(&row.amocrm_entity_id)
            .bind(&row.event_hash)
            .bind(&row.payload)
            .bind(row.account_id)
            .bind(now)
            .bind(processed)
            .bind(processed.then_some(now));
    }
    query
}

/// The INSERT text for a power of two rows up to [`CHUNK_ROWS`], built once.
fn insert_sql(rows: usize) -> &'static str {
    static TEXTS: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
        (0..=CHUNK_ROWS.ilog2())
            .map(|power| {
                let values = vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; 1 << power].join(",");
                format!(
                    "INSERT INTO amocrm_webhook_events (ts, event_type, entity_type, \
                     amocrm_entity_id, event_hash, payload, account_id, next_attempt_at, \
                     processed, processed_at) \
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
            writes: None,
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
        assert_eq!(insert_sql(1).matches('?').count(), 10);
        assert_eq!(insert_sql(16).matches('?').count(), 16 * 10);
        assert_eq!(insert_sql(CHUNK_ROWS).matches('?').count(), CHUNK_ROWS * 10);
    }
}
