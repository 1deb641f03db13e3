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
    /// SQLite has one writer.
    const WRITERS: usize = 1;

    async fn write(&self, batches: &[Vec<EventRow>]) -> Result<Vec<u64>> {
        write_group(&self.0, batches).await
    }
}

async fn write_group(pool: &SqlitePool, batches: &[Vec<EventRow>]) -> Result<Vec<u64>> {
    let now = chrono::Utc::now().timestamp_micros();
    let mut tx = pool.begin_with(super::BEGIN_WRITE).await?;
    let mut counts = Vec::with_capacity(batches.len());
    for batch in batches {
        let mut stored = 0;
        for row in batch {
            stored += sqlx::query(
                "INSERT INTO amocrm_webhook_events (ts, event_type, entity_type, amocrm_entity_id,
                    event_hash, payload, account_id, next_attempt_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (event_hash) DO NOTHING",
            )
            .bind(row.received_at)
            .bind(&row.event_type)
            .bind(&row.entity_type)
            .bind(&row.amocrm_entity_id)
            .bind(&row.event_hash)
            .bind(&row.payload)
            .bind(row.account_id)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        counts.push(stored);
    }
    tx.commit().await?;
    Ok(counts)
}
