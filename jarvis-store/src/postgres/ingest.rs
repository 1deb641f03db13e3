//! Group commit for PostgreSQL event inserts.
//!
//! One webhook is one small transaction; under many concurrent webhooks the per-statement and
//! per-commit costs (round trip, planning, WAL flush) dominate. Callers instead hand their batch to a
//! few writer tasks; each writer takes every batch waiting at that moment and stores them with one
//! `INSERT ... SELECT FROM UNNEST(...)` statement (one transaction), then answers each caller after the
//! commit. An acknowledgement still follows a durable commit; concurrent webhooks share it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};

use crate::{Error, Result};

/// Events written in one statement at most (a larger single batch still goes in whole).
const MAX_GROUP_EVENTS: usize = 512;
const QUEUE_DEPTH: usize = 4096;
/// Writers working at once: enough to keep the server busy while one group commits, few enough that
/// groups form under load.
const WRITERS: usize = 4;

/// One event ready for its INSERT.
pub(super) struct EventRow {
    pub received_at: DateTime<Utc>,
    pub event_type: String,
    pub entity_type: String,
    pub amocrm_entity_id: Option<String>,
    pub event_hash: String,
    pub payload: Value,
    pub account_id: Option<i32>,
}

struct Job {
    rows: Vec<EventRow>,
    reply: oneshot::Sender<Result<u64>>,
}

type Jobs = Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>;

/// The handle callers send batches through; the writers start on first use, in the caller's runtime,
/// and again if that runtime has gone.
#[derive(Debug, Clone, Default)]
pub(super) struct Ingest {
    sender: Arc<Mutex<Option<mpsc::Sender<Job>>>>,
}

impl Ingest {
    /// Stores the rows (in one transaction, possibly shared with other callers' rows); returns how
    /// many were new.
    pub async fn insert(&self, pool: &PgPool, rows: Vec<EventRow>) -> Result<u64> {
        let (reply, answer) = oneshot::channel();
        self.sender(pool)
            .send(Job { rows, reply })
            .await
            .map_err(|_| Error::Database(sqlx::Error::WorkerCrashed))?;
        answer
            .await
            .map_err(|_| Error::Database(sqlx::Error::WorkerCrashed))?
    }

    fn sender(&self, pool: &PgPool) -> mpsc::Sender<Job> {
        let mut sender = self
            .sender
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        match sender.as_ref() {
            Some(live) if !live.is_closed() => live.clone(),
            _ => {
                let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
                let jobs: Jobs = Arc::new(tokio::sync::Mutex::new(rx));
                for _ in 0..WRITERS {
                    tokio::spawn(write_loop(pool.clone(), jobs.clone()));
                }
                *sender = Some(tx.clone());
                tx
            }
        }
    }
}

/// Takes the next job and every job already waiting behind it (up to the group limit).
async fn next_group(jobs: &Jobs) -> Option<Vec<Job>> {
    let mut jobs = jobs.lock().await;
    let first = jobs.recv().await?;
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
    Some(group)
}

async fn write_loop(pool: PgPool, jobs: Jobs) {
    while let Some(mut group) = next_group(&jobs).await {
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

/// Stores a group in one statement; returns each job's count of new events. An event repeated across
/// jobs of the group counts for the first job that carries it.
async fn write_group(pool: &PgPool, group: &[Job]) -> Result<Vec<u64>> {
    let capacity: usize = group.iter().map(|job| job.rows.len()).sum();
    let mut seen = HashSet::with_capacity(capacity);
    let mut received_at = Vec::with_capacity(capacity);
    let mut event_types = Vec::with_capacity(capacity);
    let mut entity_types = Vec::with_capacity(capacity);
    let mut entity_ids = Vec::with_capacity(capacity);
    let mut hashes = Vec::with_capacity(capacity);
    let mut payloads = Vec::with_capacity(capacity);
    let mut account_ids = Vec::with_capacity(capacity);
    for row in group.iter().flat_map(|job| &job.rows) {
        if !seen.insert(row.event_hash.as_str()) {
            continue;
        }
        received_at.push(row.received_at);
        event_types.push(row.event_type.as_str());
        entity_types.push(row.entity_type.as_str());
        entity_ids.push(row.amocrm_entity_id.as_deref());
        hashes.push(row.event_hash.as_str());
        payloads.push(&row.payload);
        account_ids.push(row.account_id);
    }
    let inserted: Vec<String> = sqlx::query_scalar(
        "INSERT INTO amocrm_webhook_events
            (ts, event_type, entity_type, amocrm_entity_id, event_hash, payload, account_id)
        SELECT * FROM UNNEST($1::timestamptz[], $2::text[], $3::text[], $4::text[],
            $5::text[], $6::jsonb[], $7::int4[])
        ON CONFLICT (event_hash) DO NOTHING
        RETURNING event_hash",
    )
    .bind(received_at)
    .bind(event_types)
    .bind(entity_types)
    .bind(entity_ids)
    .bind(hashes)
    .bind(payloads)
    .bind(account_ids)
    .fetch_all(pool)
    .await?;
    let mut new: HashSet<String> = inserted.into_iter().collect();
    Ok(group
        .iter()
        .map(|job| {
            job.rows
                .iter()
                .filter(|row| new.remove(&row.event_hash))
                .count() as u64
        })
        .collect())
}
