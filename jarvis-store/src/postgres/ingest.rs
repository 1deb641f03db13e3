//! Event inserts on PostgreSQL: concurrent webhooks share one `INSERT ... SELECT FROM UNNEST(...)`
//! statement and one commit (see [`crate::group_commit`]), one group at a time. One webhook alone
//! would be one small transaction whose round trip, planning and WAL flush dominate under many
//! concurrent callers.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use sqlx::pool::PoolConnection;

use crate::Result;
use crate::group_commit::{GroupCommit, GroupWrite};

/// One event ready for its INSERT.
pub(super) struct EventRow {
    pub received_at: DateTime<Utc>,
    pub event_type: String,
    pub entity_type: String,
    pub amocrm_entity_id: Option<String>,
    pub event_hash: String,
    pub payload: crate::Payload,
    pub account_id: Option<i32>,
}

/// A pooled connection that is dropped, not returned, unless taken out first (see `write`).
pub(super) struct Detached(pub Option<sqlx::pool::PoolConnection<sqlx::Postgres>>);

impl Drop for Detached {
    fn drop(&mut self) {
        if let Some(conn) = self.0.take() {
            drop(conn.detach());
        }
    }
}

/// How long the writer keeps one connection before handing it back to the pool, whose lifetime
/// and idle checks then apply to it again.
const KEEP_FOR: Duration = Duration::from_secs(60);

/// The connection the writer keeps from one group to the next.
///
/// sqlx pings a connection as it goes back to its pool, from a spawned task: given back after each
/// group, every commit cost a second round trip, and the next group, finding it still out, took
/// another connection (the writer went round all of them). Kept, one group follows another on the
/// same session with one round trip each.
#[derive(Clone, Default)]
pub(super) struct Kept(Arc<Mutex<KeptState>>);

#[derive(Default)]
struct KeptState {
    held: Option<(PoolConnection<sqlx::Postgres>, Instant)>,
    /// Set by [`Kept::close`] (nothing is kept from then on, so closing the pool can finish), and
    /// from the start by [`Kept::never`].
    closed: bool,
}

impl Kept {
    fn lock(&self) -> std::sync::MutexGuard<'_, KeptState> {
        self.0.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// The kept connection, if there is one still young enough.
    fn take(&self) -> Option<(PoolConnection<sqlx::Postgres>, Instant)> {
        let held = self.lock().held.take();
        // An old one goes back to the pool (dropped outside the lock).
        held.filter(|(_, since)| since.elapsed() < KEEP_FOR)
    }

    /// Keeps `conn` for the next group, unless one is kept already or the store is closing (then
    /// it goes back to the pool).
    fn keep(&self, conn: PoolConnection<sqlx::Postgres>, since: Instant) {
        let mut state = self.lock();
        if state.closed || state.held.is_some() {
            drop(state);
            drop(conn);
        } else {
            state.held = Some((conn, since));
        }
    }

    /// Keeps nothing: for inserts through a pool shared with other queries, where a kept connection
    /// would be one fewer for them (all of them, in a pool of one).
    pub fn never() -> Self {
        Self(Arc::new(Mutex::new(KeptState {
            held: None,
            closed: true,
        })))
    }

    /// Gives the kept connection back and keeps none from now on.
    pub fn close(&self) {
        let held = {
            let mut state = self.lock();
            state.closed = true;
            state.held.take()
        };
        drop(held);
    }
}

impl std::fmt::Debug for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kept")
    }
}

/// Writes groups of event batches through the pool, on the connection it keeps when it can.
#[derive(Clone)]
pub(super) struct EventWriter {
    pub pool: PgPool,
    pub kept: Kept,
}

pub(super) type Ingest = GroupCommit<EventWriter>;

impl GroupWrite for EventWriter {
    type Row = EventRow;
    /// One: what arrives while a group commits forms the next group. A commit's fixed cost (its round
    /// trip, WAL flush and wake-ups) is most of the server's work per event at a few events per
    /// commit: with 32 concurrent senders, four writers committed about 4 events each and the server
    /// spent about 190 µs of CPU per event; one writer commits about 14 and spends about 105 µs
    /// (BENCHMARKS.md). Under light load a lone event is still written at once.
    const WRITERS: usize = 1;

    /// One statement for the whole group; an event repeated across batches counts for the first
    /// batch that carries it.
    async fn write(&self, batches: &[Vec<EventRow>]) -> Result<Vec<u64>> {
        let capacity: usize = batches.iter().map(Vec::len).sum();
        let mut seen = HashSet::with_capacity(capacity);
        let mut received_at = Vec::with_capacity(capacity);
        let mut event_types = Vec::with_capacity(capacity);
        let mut entity_types = Vec::with_capacity(capacity);
        let mut entity_ids = Vec::with_capacity(capacity);
        let mut hashes = Vec::with_capacity(capacity);
        let mut payloads = Vec::with_capacity(capacity);
        let mut account_ids = Vec::with_capacity(capacity);
        for row in batches.iter().flatten() {
            if !seen.insert(row.event_hash.as_str()) {
                continue;
            }
            received_at.push(row.received_at);
            event_types.push(row.event_type.as_str());
            entity_types.push(row.entity_type.as_str());
            entity_ids.push(row.amocrm_entity_id.as_deref());
            hashes.push(row.event_hash.as_str());
            payloads.push(sqlx::types::Json(row.payload.raw()));
            account_ids.push(row.account_id);
        }
        let inserted = sqlx::query_scalar::<_, String>(
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
        .bind(account_ids);
        // Cut off by a deadline in the middle of sending the statement, a connection would hold a
        // half-written message: returned to the pool, its check would wait forever for an answer
        // the server never sends, and the pool would run dry. Such a connection is dropped instead.
        let (conn, since) = match self.kept.take() {
            Some(kept) => kept,
            None => (self.pool.acquire().await?, Instant::now()),
        };
        let mut conn = Detached(Some(conn));
        let inserted: Vec<String> = inserted
            .fetch_all(&mut **conn.0.as_mut().expect("held until the end"))
            .await?;
        if let Some(conn) = conn.0.take() {
            self.kept.keep(conn, since);
        }
        let mut new: HashSet<String> = inserted.into_iter().collect();
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
}
