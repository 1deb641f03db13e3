//! Group commit for SQLite event inserts.
//!
//! With `synchronous = FULL` every commit waits for the disk, so one commit per webhook caps ingest
//! at the disk's sync rate whatever the number of callers. Callers instead hand their batch to one
//! task that writes every batch waiting at that moment in a single transaction and answers each
//! caller after the commit: the acknowledgement still follows a durable commit, and concurrent
//! webhooks share the sync.

use std::sync::{Arc, Mutex};

use sqlx::SqlitePool;
use tokio::sync::{mpsc, oneshot};

use crate::{Error, Result};

/// Events written in one transaction at most (a larger single batch still goes in whole).
const MAX_GROUP_EVENTS: usize = 512;
const QUEUE_DEPTH: usize = 1024;

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

struct Job {
    rows: Vec<EventRow>,
    reply: oneshot::Sender<Result<u64>>,
}

/// The handle callers send batches through; the writing task starts on first use, in the caller's
/// runtime, and again if that runtime has gone.
#[derive(Debug, Clone, Default)]
pub(super) struct Ingest {
    sender: Arc<Mutex<Option<mpsc::Sender<Job>>>>,
}

impl Ingest {
    /// Stores the rows (one transaction, shared with other callers' rows); returns how many were new.
    pub async fn insert(&self, pool: &SqlitePool, rows: Vec<EventRow>) -> Result<u64> {
        let (reply, answer) = oneshot::channel();
        let sender = self.sender(pool);
        sender
            .send(Job { rows, reply })
            .await
            .map_err(|_| Error::Database(sqlx::Error::WorkerCrashed))?;
        answer
            .await
            .map_err(|_| Error::Database(sqlx::Error::WorkerCrashed))?
    }

    fn sender(&self, pool: &SqlitePool) -> mpsc::Sender<Job> {
        let mut sender = self
            .sender
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        match sender.as_ref() {
            Some(live) if !live.is_closed() => live.clone(),
            _ => {
                let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
                tokio::spawn(write_loop(pool.clone(), rx));
                *sender = Some(tx.clone());
                tx
            }
        }
    }
}

async fn write_loop(pool: SqlitePool, mut jobs: mpsc::Receiver<Job>) {
    while let Some(first) = jobs.recv().await {
        let mut events = first.rows.len();
        let mut group = vec![first];
        while events < MAX_GROUP_EVENTS {
            match jobs.try_recv() {
                Ok(job) => {
                    events += job.rows.len();
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        match write_group(&pool, &group).await {
            Ok(counts) => {
                for (job, stored) in group.into_iter().zip(counts) {
                    let _ = job.reply.send(Ok(stored));
                }
            }
            Err(error) if group.len() == 1 => {
                let _ = group.pop().map(|job| job.reply.send(Err(error)));
            }
            // Nothing of the group was stored; retry each batch alone so every caller gets its own
            // outcome and one bad batch cannot fail the others.
            Err(_) => {
                for job in group {
                    let result = write_group(&pool, std::slice::from_ref(&job))
                        .await
                        .map(|counts| counts[0]);
                    let _ = job.reply.send(result);
                }
            }
        }
    }
}

async fn write_group(pool: &SqlitePool, group: &[Job]) -> Result<Vec<u64>> {
    let now = chrono::Utc::now().timestamp_micros();
    let mut tx = pool.begin_with(super::BEGIN_WRITE).await?;
    let mut counts = Vec::with_capacity(group.len());
    for job in group {
        let mut stored = 0;
        for row in &job.rows {
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
