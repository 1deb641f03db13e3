//! Event inserts on PostgreSQL: concurrent webhooks share one `INSERT ... SELECT FROM UNNEST(...)`
//! statement and one commit (see [`crate::group_commit`]), one group at a time. One webhook alone
//! would be one small transaction whose round trip, planning and WAL flush dominate under many
//! concurrent callers.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::pool::PoolConnection;
use sqlx::{Executor, PgPool, Row};

use super::PgQuery;
use crate::error::account_id_to_i32;
use crate::group_commit::{GroupCommit, GroupWrite};
use crate::{BatchWrites, DealUpsert, EventWrites, NewEvent, Result};

/// One event ready for its INSERT.
pub(super) struct EventRow {
    pub received_at: DateTime<Utc>,
    pub event_type: String,
    pub entity_type: String,
    pub amocrm_entity_id: Option<String>,
    pub event_hash: String,
    pub payload: crate::Payload,
    pub account_id: Option<i32>,
    /// What settles the event as it is stored ([`crate::Store::insert_settled`]).
    pub writes: Option<EventWrites>,
}

impl EventRow {
    pub fn new(event: NewEvent, writes: Option<EventWrites>) -> Result<Self> {
        Ok(Self {
            account_id: account_id_to_i32(event.account_id)?,
            received_at: event.received_at,
            event_type: event.event_type,
            entity_type: event.entity_type,
            amocrm_entity_id: event.amocrm_entity_id,
            event_hash: event.event_hash,
            payload: event.payload,
            writes,
        })
    }
}

/// The INSERT of a group's events: those flagged (`$8`) are stored processed. Returns the hashes
/// of the events stored (not stored before).
pub(super) const INSERT_EVENTS: &str = "INSERT INTO amocrm_webhook_events (ts, event_type,
        entity_type, amocrm_entity_id, event_hash, payload, account_id, processed, processed_at)
    SELECT ts, event_type, entity_type, entity_id, event_hash, payload, account_id, done,
        CASE WHEN done THEN now() END
    FROM UNNEST($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[],
        $6::jsonb[], $7::int4[], $8::bool[])
        AS u(ts, event_type, entity_type, entity_id, event_hash, payload, account_id, done)
    ON CONFLICT (event_hash) DO NOTHING
    RETURNING event_hash";

/// A group's rows as the INSERT binds them, each event once.
struct Columns<'a> {
    received_at: Vec<DateTime<Utc>>,
    event_types: Vec<&'a str>,
    entity_types: Vec<&'a str>,
    entity_ids: Vec<Option<&'a str>>,
    hashes: Vec<&'a str>,
    payloads: Vec<sqlx::types::Json<&'a serde_json::value::RawValue>>,
    account_ids: Vec<Option<i32>>,
    /// The rows themselves, in the same order.
    rows: Vec<&'a EventRow>,
    /// Whether each row is stored processed, its writes made, when the group settles.
    settle: Vec<bool>,
    /// When one statement can store the group and make its writes (they hold nothing but deals):
    /// the deal states to write, each deal once, with their events' hashes. A deal's later states
    /// in the group are left to the worker (their events stored pending), which applies them
    /// after the first by the same rule.
    deals: Option<DealStates<'a>>,
}

/// Deal states a group writes with its insert, each with its event's hash.
#[derive(Default)]
struct DealStates<'a> {
    states: Vec<(&'a DealUpsert, u64)>,
    hashes: Vec<&'a str>,
}

impl<'a> Columns<'a> {
    /// The rows of `batches`, an event repeated across batches taken once, from its first batch.
    fn of(batches: &'a [Vec<EventRow>]) -> Self {
        let capacity: usize = batches.iter().map(Vec::len).sum();
        let mut seen = HashSet::with_capacity(capacity);
        let mut columns = Columns {
            received_at: Vec::with_capacity(capacity),
            event_types: Vec::with_capacity(capacity),
            entity_types: Vec::with_capacity(capacity),
            entity_ids: Vec::with_capacity(capacity),
            hashes: Vec::with_capacity(capacity),
            payloads: Vec::with_capacity(capacity),
            account_ids: Vec::with_capacity(capacity),
            rows: Vec::with_capacity(capacity),
            settle: Vec::with_capacity(capacity),
            deals: None,
        };
        for row in batches.iter().flatten() {
            if !seen.insert(row.event_hash.as_str()) {
                continue;
            }
            columns.received_at.push(row.received_at);
            columns.event_types.push(row.event_type.as_str());
            columns.entity_types.push(row.entity_type.as_str());
            columns.entity_ids.push(row.amocrm_entity_id.as_deref());
            columns.hashes.push(row.event_hash.as_str());
            columns.payloads.push(sqlx::types::Json(row.payload.raw()));
            columns.account_ids.push(row.account_id);
            columns.rows.push(row);
        }
        columns.plan_settling();
        columns
    }

    /// Decides which rows are settled and how (see [`Columns::deals`]).
    fn plan_settling(&mut self) {
        let general = self.rows.iter().any(|row| {
            row.writes
                .as_ref()
                .is_some_and(|w| w.contact.is_some() || w.deletion.is_some())
        });
        if general {
            self.settle = self.rows.iter().map(|row| row.writes.is_some()).collect();
            return;
        }
        let mut deals = DealStates::default();
        let mut seen = HashSet::new();
        for row in &self.rows {
            let settle = match row.writes.as_ref().map(|w| &w.deal) {
                None => false,
                Some(None) => true,
                Some(Some(deal)) => {
                    let first = seen.insert(deal.amocrm_deal_id.as_str());
                    if first {
                        deals.states.push((deal, 1));
                        deals.hashes.push(row.event_hash.as_str());
                    }
                    first
                }
            };
            self.settle.push(settle);
        }
        self.deals = Some(deals);
    }

    /// Whether any row is to be settled.
    fn settling(&self) -> bool {
        self.settle.contains(&true)
    }

    /// The hashes of the rows settled when the group settles.
    fn settled_hashes(&self) -> HashSet<&'a str> {
        self.rows
            .iter()
            .zip(&self.settle)
            .filter(|(_, settle)| **settle)
            .map(|(row, _)| row.event_hash.as_str())
            .collect()
    }

    /// Stores the rows, those with writes processed, and writes the deal states of the events it
    /// stored, in one statement (no transaction of several round trips holds the next group up).
    async fn insert_with_deals(
        &self,
        conn: &mut sqlx::PgConnection,
        deals: &DealStates<'_>,
    ) -> Result<Vec<String>> {
        if deals.states.is_empty() {
            return self.insert(conn, true).await;
        }
        let round: Vec<&(&DealUpsert, u64)> = deals.states.iter().collect();
        let query = self.bind_events(sqlx::query(super::insert_with_deals_sql()), &self.settle);
        let query = super::bind_deals(query, &round).bind(&deals.hashes);
        hashes_of(query, conn).await
    }

    /// Inserts the rows (those to settle stored processed when `settle`); returns the hashes of the
    /// new ones.
    async fn insert(&self, conn: &mut sqlx::PgConnection, settle: bool) -> Result<Vec<String>> {
        let processed: Vec<bool> = self.settle.iter().map(|flag| settle && *flag).collect();
        hashes_of(
            self.bind_events(sqlx::query(INSERT_EVENTS), &processed),
            conn,
        )
        .await
    }

    /// Binds the events' columns as [`INSERT_EVENTS`] numbers them (`$1` to `$8`), `processed`
    /// flagging those stored processed.
    fn bind_events<'q>(&'q self, query: PgQuery<'q>, processed: &'q [bool]) -> PgQuery<'q> {
        query
            .bind(&self.received_at)
            .bind(&self.event_types)
            .bind(&self.entity_types)
            .bind(&self.entity_ids)
            .bind(&self.hashes)
            .bind(&self.payloads)
            .bind(&self.account_ids)
            .bind(processed)
    }

    /// The insert and the writes of the new events that come with them, in one transaction.
    async fn insert_settled(&self, conn: &mut sqlx::PgConnection) -> Result<Vec<String>> {
        conn.execute("BEGIN").await?;
        let inserted = self.insert(conn, true).await?;
        let new: HashSet<&str> = inserted.iter().map(String::as_str).collect();
        let writes = BatchWrites::gather(
            self.rows
                .iter()
                .zip(&self.settle)
                .filter(|(row, settle)| **settle && new.contains(row.event_hash.as_str()))
                .filter_map(|(row, _)| row.writes.as_ref()),
        );
        if !writes.is_empty() {
            super::PgStore::settle_in(conn, &writes, true).await?;
        }
        conn.execute("COMMIT").await?;
        Ok(inserted)
    }
}

/// Runs a statement that returns event hashes first in each row.
async fn hashes_of(query: PgQuery<'_>, conn: &mut sqlx::PgConnection) -> Result<Vec<String>> {
    let rows = query.fetch_all(conn).await?;
    Ok(rows
        .iter()
        .map(|row| row.try_get::<String, _>(0))
        .collect::<sqlx::Result<Vec<_>>>()?)
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

/// What the writer tells a caller of its batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Written {
    /// Events that were new.
    pub stored: u64,
    /// Of those, events stored processed with their writes made.
    pub settled: u64,
}

impl GroupWrite for EventWriter {
    type Row = EventRow;
    type Outcome = Written;
    /// One: what arrives while a group commits forms the next group. A commit's fixed cost (its round
    /// trip, WAL flush and wake-ups) is most of the server's work per event at a few events per
    /// commit: with 32 concurrent senders, four writers committed about 4 events each and the server
    /// spent about 190 µs of CPU per event; one writer commits about 14 and spends about 105 µs
    /// (BENCHMARKS.md). Under light load a lone event is still written at once.
    const WRITERS: usize = 1;

    /// One statement for the whole group; an event repeated across batches counts for the first
    /// batch that carries it. A group with deal states to write is one statement too; one with
    /// other writes a transaction: its insert, then the writes of the events that were new.
    async fn write(&self, batches: &[Vec<EventRow>]) -> Result<Vec<Written>> {
        let columns = Columns::of(batches);
        // Cut off by a deadline in the middle of sending the statement, a connection would hold a
        // half-written message: returned to the pool, its check would wait forever for an answer
        // the server never sends, and the pool would run dry. Such a connection is dropped instead
        // (and the server rolls back whatever it had begun).
        let (conn, since) = match self.kept.take() {
            Some(kept) => kept,
            None => (self.pool.acquire().await?, Instant::now()),
        };
        let mut held = Detached(Some(conn));
        let conn = &mut **held.0.as_mut().expect("held until the end");
        let (inserted, settled) = if columns.settling() {
            let attempt = match &columns.deals {
                Some(deals) => columns.insert_with_deals(conn, deals).await,
                None => columns.insert_settled(conn).await,
            };
            match attempt {
                Ok(inserted) => (inserted, true),
                Err(error) if error.is_connection_lost() => return Err(error),
                // A mirror row held past the lock bound by another writer, a deadlock, a value its
                // table refuses: the events are stored all the same, pending, for the worker.
                Err(error) => {
                    tracing::warn!(%error, "settling events as they are stored failed; storing them for the worker");
                    // Outside a transaction (the one-statement form) this only warns.
                    conn.execute("ROLLBACK").await?;
                    (columns.insert(conn, false).await?, false)
                }
            }
        } else {
            (columns.insert(conn, false).await?, false)
        };
        if let Some(conn) = held.0.take() {
            self.kept.keep(conn, since);
        }
        let settled = if settled {
            columns.settled_hashes()
        } else {
            HashSet::new()
        };
        let mut new: HashSet<String> = inserted.into_iter().collect();
        Ok(batches
            .iter()
            .map(|batch| {
                let mut written = Written::default();
                for row in batch {
                    if new.remove(&row.event_hash) {
                        written.stored += 1;
                        written.settled += u64::from(settled.contains(row.event_hash.as_str()));
                    }
                }
                written
            })
            .collect())
    }
}
