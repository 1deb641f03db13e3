//! [`Store`] on an embedded SQLite file: the zero-setup default.
//!
//! Times are stored as INTEGER microseconds since the Unix epoch (UTC), JSON as TEXT, UUIDs as
//! hyphenated TEXT. Writes go through one connection: SQLite has a single writer anyway, and queueing
//! writers in the pool is fairer and faster than having them spin on the file lock. Reads use a pool
//! of their own, which WAL mode lets run beside the writer. Event inserts from concurrent callers
//! share commits (see `ingest`).

mod checkpoint;
mod gaps;
mod ingest;
mod link;

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, SqliteConnection};

use crate::batch::{collapse, distinct_events, require_migrated, sql_limit, usage_rows};
use crate::error::account_id_to_i32;
use crate::{
    ApiUsage, BatchWrites, Contact, ContactUpsert, Deal, DealUpsert, Error, FailOutcome,
    InsertOutcome, Known, MirrorEntity, NewEvent, PoolSettings, QueueStats, RejectedWebhook,
    Requeue, Result, SettleOutcome, StateEntry, Stats, Store, StoredEvent, StoredRejected,
    StoredTokens, UpsertOutcome, cut_rejected_body,
};
use ingest::{EventRow, EventWriter, Ingest};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

const EVENT_COLUMNS: &str = "id, ts, event_type, entity_type, amocrm_entity_id, event_hash, payload, \
     account_id, processed, attempts, next_attempt_at, locked_until, last_error, processed_at, dead_at";

const DEAL_COLUMNS: &str = "id, client_id, conversation_id, amocrm_deal_id, pipeline_id, status_id, \
     price, name, responsible_user_id, custom_fields, deal_full_data, contact_custom_fields, \
     main_contact_id, metadata, created_at, updated_at, closed_at, is_deleted, synced_at";

const CONTACT_COLUMNS: &str = "id, amocrm_contact_id, name, first_name, last_name, \
     responsible_user_id, custom_fields, contact_full_data, metadata, created_at, updated_at, \
     is_deleted, synced_at";

/// Write transactions take the write lock up front, so they never fail half-way on a lock upgrade
/// when another process (the CLI, say) writes too.
const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

/// Most events one `claim_and_settle` takes on SQLite: a write transaction of this many states holds
/// the writer for a few milliseconds on a small machine.
const SETTLE_BATCH: usize = 200;

/// The SQLite store. Cloning shares the pools.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    ingest: Ingest,
    /// Where the business's link queries run.
    query_only: link::QueryOnly,
    /// Checkpoints the WAL beside the writer (a file database opened by `connect`).
    checkpointer: Option<checkpoint::Checkpointer>,
}

impl SqliteStore {
    /// Opens (creating if missing) the file named by a `sqlite:` URL, in WAL mode with a busy timeout.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, PoolSettings::default()).await
    }

    /// Opens with the given pool settings; `max_connections` sizes the readers (at most 8 are useful).
    pub async fn connect_with(url: &str, settings: PoolSettings) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|error| match error {
                sqlx::Error::Configuration(reason) => Error::InvalidUrl(reason.to_string()),
                _ => Error::InvalidUrl("cannot parse the SQLite URL".into()),
            })?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: an acknowledged webhook must survive a power cut, not only a crash.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        // An in-memory database lives in its connections: readers must share the writer's.
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            // A check before each use is a round trip to the connection's thread, as long as a
            // small write; a file's connection does not go stale the way a network one does.
            .test_before_acquire(false)
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(
                options
                    .clone()
                    .pragma("wal_autocheckpoint", checkpoint::WRITER_AUTOCHECKPOINT),
            )
            .await?;
        let checkpointer = (!in_memory).then(|| checkpoint::Checkpointer::spawn(options.clone()));
        let query_only = if in_memory {
            link::QueryOnly::Shared
        } else {
            link::QueryOnly::dedicated(&options, &settings)
        };
        let reader = if in_memory {
            writer.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(settings.max_connections.clamp(1, 8))
                .acquire_timeout(settings.acquire_timeout)
                .connect_lazy_with(options)
        };
        Ok(Self {
            writer,
            reader,
            ingest: Ingest::new(settings.ingest_timeout),
            query_only,
            checkpointer,
        })
    }

    /// Wraps a pool built elsewhere; it serves both reads and writes.
    pub fn from_pool(pool: SqlitePool) -> Self {
        Self {
            writer: pool.clone(),
            reader: pool,
            ingest: Ingest::new(PoolSettings::default().ingest_timeout),
            query_only: link::QueryOnly::Shared,
            checkpointer: None,
        }
    }

    /// Asks for a WAL checkpoint soon, beside the writer (see `checkpoint`).
    fn after_write(&self) {
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.nudge();
        }
    }

    /// The pool that writes go through.
    pub fn pool(&self) -> &SqlitePool {
        &self.writer
    }

    /// Closes both pools, waiting for connections in use to be returned, and the connection that
    /// checkpoints the WAL.
    pub async fn close(&self) {
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.stop().await;
        }
        self.writer.close().await;
        self.reader.close().await;
        if let link::QueryOnly::Dedicated(pool) = &self.query_only {
            pool.close().await;
        }
    }

    async fn upsert_deal(&self, conn: &mut SqliteConnection, deal: &DealUpsert) -> Result<bool> {
        let columns = [
            ("pipeline_id", Cell::int(&deal.pipeline_id)),
            ("status_id", Cell::int(&deal.status_id)),
            ("price", Cell::int(&deal.price)),
            ("name", Cell::text(&deal.name)),
            ("responsible_user_id", Cell::int(&deal.responsible_user_id)),
            ("custom_fields", Cell::json(&deal.custom_fields)),
            ("deal_full_data", Cell::json(&deal.deal_full_data)),
            (
                "contact_custom_fields",
                Cell::json(&deal.contact_custom_fields),
            ),
            ("main_contact_id", Cell::text(&deal.main_contact_id)),
            ("created_at", Cell::time(&deal.created_at)),
            ("closed_at", Cell::time(&deal.closed_at)),
        ];
        let state = CommonState {
            updated_at: deal.updated_at,
            metadata_keys: &deal.metadata_keys,
            metadata: &deal.metadata,
            is_deleted: deal.is_deleted,
        };
        apply_state(
            conn,
            "amocrm_deals",
            "amocrm_deal_id",
            &deal.amocrm_deal_id,
            &columns,
            state,
        )
        .await
    }

    async fn upsert_contact(
        &self,
        conn: &mut SqliteConnection,
        contact: &ContactUpsert,
    ) -> Result<bool> {
        let columns = [
            ("name", Cell::text(&contact.name)),
            ("first_name", Cell::text(&contact.first_name)),
            ("last_name", Cell::text(&contact.last_name)),
            (
                "responsible_user_id",
                Cell::int(&contact.responsible_user_id),
            ),
            ("custom_fields", Cell::json(&contact.custom_fields)),
            ("contact_full_data", Cell::json(&contact.contact_full_data)),
            ("created_at", Cell::time(&contact.created_at)),
        ];
        let state = CommonState {
            updated_at: contact.updated_at,
            metadata_keys: &contact.metadata_keys,
            metadata: &contact.metadata,
            is_deleted: contact.is_deleted,
        };
        apply_state(
            conn,
            "amocrm_contacts",
            "amocrm_contact_id",
            &contact.amocrm_contact_id,
            &columns,
            state,
        )
        .await
    }

    async fn set_metadata(
        &self,
        table: &str,
        key_column: &str,
        key: &str,
        metadata: &Map<String, Value>,
    ) -> Result<bool> {
        let mut tx = self.writer.begin_with(BEGIN_WRITE).await?;
        let stored: Option<String> = sqlx::query_scalar(&format!(
            "SELECT metadata FROM {table} WHERE {key_column} = ?"
        ))
        .bind(key)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(stored) = stored else {
            return Ok(false);
        };
        sqlx::query(&format!(
            "UPDATE {table} SET metadata = ? WHERE {key_column} = ?"
        ))
        .bind(merge_metadata(&stored, &[], metadata))
        .bind(key)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn record_deletion_in(
        &self,
        entity: MirrorEntity,
        amocrm_id: &str,
        event_hash: &str,
        deleted: bool,
    ) -> Result<bool> {
        // One write transaction: records of one entity cannot interleave.
        let mut tx = self.writer.begin_with(BEGIN_WRITE).await?;
        let flag = record_deletion_on(&mut tx, entity, amocrm_id, event_hash, deleted).await?;
        tx.commit().await?;
        Ok(flag)
    }

    /// The statements of [`Store::settle_batch`], inside the caller's write transaction.
    async fn settle_in(
        &self,
        tx: &mut SqliteConnection,
        writes: &BatchWrites,
    ) -> Result<SettleOutcome> {
        let now = micros(Utc::now());
        let contacts = self.apply_contacts(tx, &writes.contacts).await?;
        follow_contact_fields(tx, &writes.followed_contacts()).await?;
        let deals = self.apply_deals(tx, &writes.deals).await?;
        for deletion in &writes.deletions {
            record_deletion_on(
                &mut *tx,
                deletion.entity,
                &deletion.amocrm_id,
                &deletion.event_hash,
                deletion.deleted,
            )
            .await?;
        }
        if !writes.completed.is_empty() {
            sqlx::query(
                "UPDATE amocrm_webhook_events SET processed = 1, processed_at = ?, locked_until = NULL
                WHERE id IN (SELECT value FROM json_each(?))",
            )
            .bind(now)
            .bind(id_list(&writes.completed))
            .execute(&mut *tx)
            .await?;
        }
        Ok(SettleOutcome::of(writes, contacts, deals))
    }

    /// Applies states by the mirror rule on `conn`, collapsed first (see `batch::collapse`);
    /// returns how many of them applied.
    async fn apply_deals(&self, conn: &mut SqliteConnection, deals: &[DealUpsert]) -> Result<u64> {
        let mut applied = 0;
        for (deal, weight) in collapse(deals).states {
            if self.upsert_deal(conn, deal).await? {
                applied += weight;
            }
        }
        Ok(applied)
    }

    /// As [`apply_deals`](Self::apply_deals), for contacts.
    async fn apply_contacts(
        &self,
        conn: &mut SqliteConnection,
        contacts: &[ContactUpsert],
    ) -> Result<u64> {
        let mut applied = 0;
        for (contact, weight) in collapse(contacts).states {
            if self.upsert_contact(conn, contact).await? {
                applied += weight;
            }
        }
        Ok(applied)
    }

    async fn mark_deleted(
        &self,
        table: &str,
        key_column: &str,
        key: &str,
        deleted: bool,
    ) -> Result<()> {
        sqlx::query(&format!(
            "INSERT INTO {table} (id, {key_column}, is_deleted, synced_at) VALUES (?, ?, ?, ?)
            ON CONFLICT ({key_column}) DO UPDATE
            SET is_deleted = excluded.is_deleted, synced_at = excluded.synced_at"
        ))
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(key)
        .bind(deleted)
        .bind(micros(Utc::now()))
        .execute(&self.writer)
        .await?;
        Ok(())
    }
}

/// One [`Known`] column as SQLite stores it: whether the state knows it, and the value.
struct Cell {
    known: bool,
    value: CellValue,
}

enum CellValue {
    Int(Option<i64>),
    Text(Option<String>),
}

impl Cell {
    fn int(column: &Known<i64>) -> Cell {
        Cell {
            known: column.is_known(),
            value: CellValue::Int(column.value().copied()),
        }
    }

    fn text(column: &Known<String>) -> Cell {
        Cell {
            known: column.is_known(),
            value: CellValue::Text(column.value().cloned()),
        }
    }

    fn json(column: &Known<Value>) -> Cell {
        Cell {
            known: column.is_known(),
            value: CellValue::Text(column.value().map(Value::to_string)),
        }
    }

    fn time(column: &Known<DateTime<Utc>>) -> Cell {
        Cell {
            known: column.is_known(),
            value: CellValue::Int(column.value().copied().map(micros)),
        }
    }
}

type SqliteQuery<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>;

fn bind_cell<'q>(query: SqliteQuery<'q>, cell: &'q Cell) -> SqliteQuery<'q> {
    match &cell.value {
        CellValue::Int(value) => query.bind(*value),
        CellValue::Text(value) => query.bind(value.as_deref()),
    }
}

/// What every mirror table's state carries besides its [`Known`] columns.
struct CommonState<'a> {
    updated_at: Option<DateTime<Utc>>,
    metadata_keys: &'a [String],
    metadata: &'a Map<String, Value>,
    is_deleted: Option<bool>,
}

/// Copies the contacts' stored fields into the deals they are the main contact of, in one
/// statement (see [`Store::follow_contact_fields`]).
async fn follow_contact_fields(conn: &mut SqliteConnection, ids: &[&str]) -> Result<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    // A stored state of the contact (a bare deleted marker has no time) is what its deals show.
    let changed = sqlx::query(
        "UPDATE amocrm_deals AS d SET contact_custom_fields = c.custom_fields, synced_at = ?
        FROM amocrm_contacts AS c
        WHERE c.amocrm_contact_id IN (SELECT value FROM json_each(?))
          AND c.updated_at IS NOT NULL
          AND d.main_contact_id = c.amocrm_contact_id
          AND d.contact_custom_fields IS NOT c.custom_fields",
    )
    .bind(micros(Utc::now()))
    .bind(serde_json::to_string(ids).unwrap_or_else(|_| "[]".into()))
    .execute(conn)
    .await?
    .rows_affected();
    Ok(changed)
}

/// Records a delete or restore on `conn` (inside the caller's write transaction) and sets the row's
/// flag from all the entity's records.
async fn record_deletion_on(
    conn: &mut SqliteConnection,
    entity: MirrorEntity,
    amocrm_id: &str,
    event_hash: &str,
    deleted: bool,
) -> Result<bool> {
    let (table, key) = match entity {
        MirrorEntity::Deal => ("amocrm_deals", "amocrm_deal_id"),
        MirrorEntity::Contact => ("amocrm_contacts", "amocrm_contact_id"),
    };
    let now = micros(Utc::now());
    sqlx::query(
        "INSERT INTO amocrm_deletions (entity_type, amocrm_id, event_hash, deleted, recorded_at)
        VALUES (?, ?, ?, ?, ?)
        ON CONFLICT DO NOTHING",
    )
    .bind(entity.as_str())
    .bind(amocrm_id)
    .bind(event_hash)
    .bind(deleted)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    let flag: bool = sqlx::query_scalar(
        "SELECT COALESCE(sum(deleted), 0) > COALESCE(sum(NOT deleted), 0)
        FROM amocrm_deletions WHERE entity_type = ? AND amocrm_id = ?",
    )
    .bind(entity.as_str())
    .bind(amocrm_id)
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query(&format!(
        "INSERT INTO {table} (id, {key}, is_deleted, synced_at) VALUES (?, ?, ?, ?)
        ON CONFLICT ({key}) DO UPDATE
        SET is_deleted = excluded.is_deleted, synced_at = excluded.synced_at"
    ))
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(amocrm_id)
    .bind(flag)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(flag)
}

/// Applies one state by the mirror rule (the same as PostgreSQL's statement): a new row takes the
/// values as given; a stored row, unless newer, takes each known column and keeps the others.
async fn apply_state(
    conn: &mut SqliteConnection,
    table: &str,
    key: &str,
    id: &str,
    columns: &[(&str, Cell)],
    state: CommonState<'_>,
) -> Result<bool> {
    let now = micros(Utc::now());
    let stored = sqlx::query(&format!(
        "SELECT metadata, updated_at FROM {table} WHERE {key} = ?"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(stored) = stored else {
        let names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
        let placeholders = vec!["?"; columns.len() + 6].join(", ");
        let sql = format!(
            "INSERT INTO {table} (id, {key}, {}, updated_at, metadata, is_deleted, synced_at)
            VALUES ({placeholders})",
            names.join(", ")
        );
        let mut query = sqlx::query(&sql)
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(id);
        for (_, cell) in columns {
            query = bind_cell(query, cell);
        }
        query
            .bind(state.updated_at.map(micros))
            .bind(merge_metadata("{}", state.metadata_keys, state.metadata))
            .bind(state.is_deleted.unwrap_or(false))
            .bind(now)
            .execute(&mut *conn)
            .await?;
        return Ok(true);
    };
    if !applies(stored.try_get("updated_at")?, state.updated_at) {
        return Ok(false);
    }
    let metadata = merge_metadata(
        &stored.try_get::<String, _>("metadata")?,
        state.metadata_keys,
        state.metadata,
    );
    let sets: Vec<String> = columns
        .iter()
        .map(|(name, _)| format!("{name} = CASE WHEN ? THEN ? ELSE {name} END"))
        .collect();
    let sql = format!(
        "UPDATE {table} SET {},
            updated_at = COALESCE(?, updated_at), metadata = ?,
            is_deleted = COALESCE(?, is_deleted), synced_at = ?
        WHERE {key} = ?",
        sets.join(", ")
    );
    let mut query = sqlx::query(&sql);
    for (_, cell) in columns {
        query = bind_cell(query.bind(cell.known), cell);
    }
    query
        .bind(state.updated_at.map(micros))
        .bind(metadata)
        .bind(state.is_deleted)
        .bind(now)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(true)
}

/// The ordering rule shared with PostgreSQL: apply unless the stored row is newer. A state without
/// a time is applied as the newest.
fn applies(stored_updated_at: Option<i64>, incoming: Option<DateTime<Utc>>) -> bool {
    match (stored_updated_at, incoming) {
        (None, _) | (_, None) => true,
        (Some(stored), Some(incoming)) => micros(incoming) >= stored,
    }
}

/// Like PostgreSQL's `(stored - removed) || given`: the `removed` keys go, given keys replace stored
/// ones, others stay. (SQLite's json_patch would merge nested objects and drop null values.)
fn merge_metadata(stored: &str, removed: &[String], given: &Map<String, Value>) -> String {
    let mut merged = match serde_json::from_str::<Value>(stored) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    for key in removed {
        merged.remove(key);
    }
    for (key, value) in given {
        merged.insert(key.clone(), value.clone());
    }
    Value::Object(merged).to_string()
}

fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

fn time(row: &SqliteRow, column: &'static str) -> Result<DateTime<Utc>> {
    let value: i64 = row.try_get(column)?;
    DateTime::from_timestamp_micros(value).ok_or_else(|| Error::Decode {
        column,
        reason: format!("{value} is not a valid time"),
    })
}

fn optional_time(row: &SqliteRow, column: &'static str) -> Result<Option<DateTime<Utc>>> {
    match row.try_get::<Option<i64>, _>(column)? {
        None => Ok(None),
        Some(_) => time(row, column).map(Some),
    }
}

fn json(row: &SqliteRow, column: &'static str) -> Result<Value> {
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text).map_err(|error| Error::Decode {
        column,
        reason: error.to_string(),
    })
}

fn optional_json(row: &SqliteRow, column: &'static str) -> Result<Option<Value>> {
    match row.try_get::<Option<String>, _>(column)? {
        None => Ok(None),
        Some(_) => json(row, column).map(Some),
    }
}

fn uuid_column(row: &SqliteRow, column: &'static str) -> Result<Option<uuid::Uuid>> {
    row.try_get::<Option<String>, _>(column)?
        .map(|text| {
            uuid::Uuid::parse_str(&text).map_err(|error| Error::Decode {
                column,
                reason: error.to_string(),
            })
        })
        .transpose()
}

fn required_uuid(row: &SqliteRow, column: &'static str) -> Result<uuid::Uuid> {
    uuid_column(row, column)?.ok_or(Error::Decode {
        column,
        reason: "missing".into(),
    })
}

fn event_from_row(row: &SqliteRow) -> Result<StoredEvent> {
    Ok(StoredEvent {
        id: row.try_get("id")?,
        received_at: time(row, "ts")?,
        event_type: row.try_get("event_type")?,
        entity_type: row.try_get("entity_type")?,
        amocrm_entity_id: row.try_get("amocrm_entity_id")?,
        event_hash: row.try_get("event_hash")?,
        payload: crate::Payload::from_text(row.try_get("payload")?).map_err(|error| {
            Error::Decode {
                column: "payload",
                reason: error.to_string(),
            }
        })?,
        account_id: row.try_get("account_id")?,
        processed: row.try_get("processed")?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: time(row, "next_attempt_at")?,
        locked_until: optional_time(row, "locked_until")?,
        last_error: row.try_get("last_error")?,
        processed_at: optional_time(row, "processed_at")?,
        dead_at: optional_time(row, "dead_at")?,
    })
}

fn deal_from_row(row: &SqliteRow) -> Result<Deal> {
    Ok(Deal {
        id: required_uuid(row, "id")?,
        client_id: uuid_column(row, "client_id")?,
        conversation_id: uuid_column(row, "conversation_id")?,
        amocrm_deal_id: row.try_get("amocrm_deal_id")?,
        pipeline_id: row.try_get("pipeline_id")?,
        status_id: row.try_get("status_id")?,
        price: row.try_get("price")?,
        name: row.try_get("name")?,
        responsible_user_id: row.try_get("responsible_user_id")?,
        custom_fields: optional_json(row, "custom_fields")?,
        deal_full_data: optional_json(row, "deal_full_data")?,
        contact_custom_fields: optional_json(row, "contact_custom_fields")?,
        main_contact_id: row.try_get("main_contact_id")?,
        metadata: json(row, "metadata")?,
        created_at: optional_time(row, "created_at")?,
        updated_at: optional_time(row, "updated_at")?,
        closed_at: optional_time(row, "closed_at")?,
        is_deleted: row.try_get("is_deleted")?,
        synced_at: time(row, "synced_at")?,
    })
}

fn contact_from_row(row: &SqliteRow) -> Result<Contact> {
    Ok(Contact {
        id: required_uuid(row, "id")?,
        amocrm_contact_id: row.try_get("amocrm_contact_id")?,
        name: row.try_get("name")?,
        first_name: row.try_get("first_name")?,
        last_name: row.try_get("last_name")?,
        responsible_user_id: row.try_get("responsible_user_id")?,
        custom_fields: optional_json(row, "custom_fields")?,
        contact_full_data: optional_json(row, "contact_full_data")?,
        metadata: json(row, "metadata")?,
        created_at: optional_time(row, "created_at")?,
        updated_at: optional_time(row, "updated_at")?,
        is_deleted: row.try_get("is_deleted")?,
        synced_at: time(row, "synced_at")?,
    })
}

fn count(row: &SqliteRow, column: &str) -> Result<u64> {
    Ok(row.try_get::<i64, _>(column)?.max(0) as u64)
}

/// SQLite has no arrays: id lists travel as one JSON array, read back with `json_each`.
fn id_list(ids: &[i64]) -> String {
    Value::from(ids.to_vec()).to_string()
}

/// SQLite's exclusive right: the file has one host, so it is always granted.
struct Granted;

#[async_trait::async_trait]
impl crate::ExclusiveHold for Granted {
    async fn is_held(&mut self) -> bool {
        true
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn open_gap(
        &self,
        kind: &crate::GapKind,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<i64> {
        gaps::open_gap(&self.writer, kind, from, to).await
    }

    async fn open_gaps(&self) -> Result<Vec<crate::Gap>> {
        gaps::open_gaps(&self.reader).await
    }

    async fn record_gap_page(
        &self,
        gap_id: i64,
        page: u32,
        events: u64,
        entities: &[crate::GapEntity],
        last: bool,
    ) -> Result<()> {
        gaps::record_gap_page(&self.writer, gap_id, page, events, entities, last).await
    }

    async fn gap_entities(&self, gap_id: i64) -> Result<Vec<crate::GapEntity>> {
        gaps::gap_entities(&self.reader, gap_id).await
    }

    async fn close_gap(&self, gap_id: i64) -> Result<()> {
        gaps::close_gap(&self.writer, gap_id).await
    }

    async fn advance_mark(&self, name: &str, at: DateTime<Utc>) -> Result<Option<DateTime<Utc>>> {
        gaps::advance_mark(&self.writer, name, at).await
    }

    async fn get_mark(&self, name: &str) -> Result<Option<DateTime<Utc>>> {
        gaps::get_mark(&self.reader, name).await
    }

    fn links(&self) -> &dyn crate::LinkStore {
        self
    }

    async fn try_exclusive(&self, _key: &str) -> Result<Option<crate::ExclusiveGuard>> {
        Ok(Some(crate::ExclusiveGuard::new(Granted)))
    }

    async fn check_session(&self) -> Result<()> {
        Ok(())
    }

    async fn extend_leases(&self, ids: &[i64], lease: Duration) -> Result<Vec<i64>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let now = Utc::now();
        let until =
            micros(now).saturating_add(i64::try_from(lease.as_micros()).unwrap_or(i64::MAX));
        let mut held: Vec<i64> = sqlx::query_scalar(
            "UPDATE amocrm_webhook_events SET locked_until = ?1, next_attempt_at = ?1
            WHERE id IN (SELECT value FROM json_each(?2)) AND processed = 0 AND locked_until > ?3
            RETURNING id",
        )
        .bind(until)
        .bind(id_list(ids))
        .bind(micros(now))
        .fetch_all(&self.writer)
        .await?;
        held.sort_unstable();
        Ok(held)
    }

    async fn prune_rejected(&self, older_than: DateTime<Utc>, max_total_bytes: u64) -> Result<u64> {
        let old = sqlx::query("DELETE FROM amocrm_rejected_webhooks WHERE received_at < ?")
            .bind(micros(older_than))
            .execute(&self.writer)
            .await?
            .rows_affected();
        // Newest first: a body goes once the newer ones and itself exceed the cap.
        let over = sqlx::query(
            "DELETE FROM amocrm_rejected_webhooks WHERE id IN (
                SELECT id FROM (
                    SELECT id, sum(length(body)) OVER (ORDER BY received_at DESC, id DESC)
                        AS running
                    FROM amocrm_rejected_webhooks
                )
                WHERE running > ?
            )",
        )
        .bind(i64::try_from(max_total_bytes).unwrap_or(i64::MAX))
        .execute(&self.writer)
        .await?
        .rows_affected();
        Ok(old + over)
    }

    async fn set_state(&self, key: &str, value: &Value) -> Result<()> {
        sqlx::query(
            "INSERT INTO jarvis_state (key, value, updated_at) VALUES (?, ?, ?)
            ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )
        .bind(key)
        .bind(value.to_string())
        .bind(micros(Utc::now()))
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn get_state(&self, key: &str) -> Result<Option<StateEntry>> {
        let row = sqlx::query("SELECT value, updated_at FROM jarvis_state WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.reader)
            .await?;
        row.map(|row| {
            Ok(StateEntry {
                value: json(&row, "value")?,
                updated_at: time(&row, "updated_at")?,
            })
        })
        .transpose()
    }

    async fn clear_state(&self, key: &str) -> Result<bool> {
        let deleted = sqlx::query("DELETE FROM jarvis_state WHERE key = ?")
            .bind(key)
            .execute(&self.writer)
            .await?
            .rows_affected();
        Ok(deleted > 0)
    }

    async fn migrate(&self) -> Result<()> {
        MIGRATOR.run(&self.writer).await?;
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn check_migrated(&self) -> Result<()> {
        let applied: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&self.reader)
                .await?;
        require_migrated(&MIGRATOR, &applied)
    }

    async fn insert_events(&self, events: &[NewEvent]) -> Result<InsertOutcome> {
        let distinct = distinct_events(events);
        if distinct.is_empty() {
            return Ok(InsertOutcome::default());
        }
        // Every row is checked before anything is written: the batch is all or nothing.
        let rows = distinct
            .iter()
            .map(|event| {
                Ok(EventRow {
                    received_at: micros(event.received_at),
                    event_type: event.event_type.clone(),
                    entity_type: event.entity_type.clone(),
                    amocrm_entity_id: event.amocrm_entity_id.clone(),
                    event_hash: event.event_hash.clone(),
                    payload: event.payload.get().to_owned(),
                    account_id: account_id_to_i32(event.account_id)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let stored = self
            .ingest
            .insert(&EventWriter(self.writer.clone()), rows)
            .await?;
        self.after_write();
        Ok(InsertOutcome {
            stored,
            duplicates: events.len() as u64 - stored,
            settled: 0,
        })
    }

    async fn claim_events(&self, limit: usize, lease: Duration) -> Result<Vec<StoredEvent>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let now = Utc::now();
        let until =
            micros(now).saturating_add(i64::try_from(lease.as_micros()).unwrap_or(i64::MAX));
        // One statement on the one writer connection: no two claims can interleave.
        let rows = sqlx::query(&format!(
            "UPDATE amocrm_webhook_events SET locked_until = ?1, next_attempt_at = ?1
            WHERE id IN (
                SELECT id FROM amocrm_webhook_events
                WHERE processed = 0 AND dead_at IS NULL AND next_attempt_at <= ?2
                  AND (locked_until IS NULL OR locked_until <= ?2)
                ORDER BY next_attempt_at, id
                LIMIT ?3
            )
            RETURNING {EVENT_COLUMNS}"
        ))
        .bind(until)
        .bind(micros(now))
        .bind(sql_limit(limit))
        .fetch_all(&self.writer)
        .await?;
        let mut events = rows
            .iter()
            .map(event_from_row)
            .collect::<Result<Vec<_>>>()?;
        events.sort_by_key(|event| event.id);
        Ok(events)
    }

    async fn complete_events(&self, ids: &[i64]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "UPDATE amocrm_webhook_events SET processed = 1, processed_at = ?, locked_until = NULL
            WHERE id IN (SELECT value FROM json_each(?))",
        )
        .bind(micros(Utc::now()))
        .bind(id_list(ids))
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn fail_event(
        &self,
        id: i64,
        error: &str,
        next_attempt_at: DateTime<Utc>,
        max_attempts: u32,
    ) -> Result<FailOutcome> {
        let dead: Option<bool> = sqlx::query_scalar(
            "UPDATE amocrm_webhook_events
            SET attempts = attempts + 1, last_error = ?, locked_until = NULL, next_attempt_at = ?,
                dead_at = CASE WHEN attempts + 1 >= ? THEN ? ELSE NULL END
            WHERE id = ?
            RETURNING dead_at IS NOT NULL",
        )
        .bind(error)
        .bind(micros(next_attempt_at))
        .bind(i64::from(max_attempts))
        .bind(micros(Utc::now()))
        .bind(id)
        .fetch_optional(&self.writer)
        .await?;
        match dead {
            None => Err(Error::EventNotFound(id)),
            Some(true) => Ok(FailOutcome::Dead),
            Some(false) => Ok(FailOutcome::Retrying),
        }
    }

    async fn postpone_event(
        &self,
        id: i64,
        error: &str,
        next_attempt_at: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE amocrm_webhook_events
            SET last_error = ?, next_attempt_at = ?, locked_until = NULL
            WHERE id = ? AND processed = 0",
        )
        .bind(error)
        .bind(micros(next_attempt_at))
        .bind(id)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn release_events(&self, ids: &[i64]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "UPDATE amocrm_webhook_events SET locked_until = NULL, next_attempt_at = ?
            WHERE id IN (SELECT value FROM json_each(?)) AND processed = 0
              AND locked_until IS NOT NULL",
        )
        .bind(micros(Utc::now()))
        .bind(id_list(ids))
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn requeue(&self, which: Requeue) -> Result<u64> {
        let now = micros(Utc::now());
        let result = match which {
            Requeue::Dead => {
                sqlx::query(
                    "UPDATE amocrm_webhook_events
                    SET dead_at = NULL, attempts = 0, next_attempt_at = ?, locked_until = NULL
                    WHERE dead_at IS NOT NULL AND processed = 0",
                )
                .bind(now)
                .execute(&self.writer)
                .await?
            }
            Requeue::Ids(ids) => {
                sqlx::query(
                    "UPDATE amocrm_webhook_events
                    SET processed = 0, processed_at = NULL, dead_at = NULL, attempts = 0,
                        next_attempt_at = ?, locked_until = NULL
                    WHERE id IN (SELECT value FROM json_each(?))",
                )
                .bind(now)
                .bind(id_list(&ids))
                .execute(&self.writer)
                .await?
            }
        };
        Ok(result.rows_affected())
    }

    async fn get_event(&self, id: i64) -> Result<Option<StoredEvent>> {
        let row = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM amocrm_webhook_events WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(event_from_row).transpose()
    }

    async fn dead_events(&self, limit: usize) -> Result<Vec<StoredEvent>> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM amocrm_webhook_events
            WHERE dead_at IS NOT NULL AND processed = 0
            ORDER BY dead_at DESC, id DESC
            LIMIT ?"
        ))
        .bind(sql_limit(limit))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn insert_rejected(&self, rejected: &RejectedWebhook) -> Result<i64> {
        let (kept, length, sha256) = cut_rejected_body(&rejected.body);
        let id = sqlx::query_scalar(
            "INSERT INTO amocrm_rejected_webhooks
                (body, content_type, reason, received_at, body_length, body_sha256)
            VALUES (?, ?, ?, ?, ?, ?)
            RETURNING id",
        )
        .bind(kept)
        .bind(&rejected.content_type)
        .bind(&rejected.reason)
        .bind(micros(rejected.received_at))
        .bind(length)
        .bind(sha256)
        .fetch_one(&self.writer)
        .await?;
        Ok(id)
    }

    async fn list_rejected(&self, limit: usize) -> Result<Vec<StoredRejected>> {
        let rows = sqlx::query(
            "SELECT id, body, content_type, reason, received_at, body_length, body_sha256
            FROM amocrm_rejected_webhooks
            ORDER BY received_at DESC, id DESC
            LIMIT ?",
        )
        .bind(sql_limit(limit))
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(StoredRejected {
                    id: row.try_get("id")?,
                    rejected: RejectedWebhook {
                        body: row.try_get("body")?,
                        content_type: row.try_get("content_type")?,
                        reason: row.try_get("reason")?,
                        received_at: time(row, "received_at")?,
                    },
                    body_length: row
                        .try_get::<Option<i64>, _>("body_length")?
                        .map(|length| length.max(0) as u64),
                    body_sha256: row.try_get("body_sha256")?,
                })
            })
            .collect()
    }

    async fn upsert_deals(&self, deals: &[DealUpsert]) -> Result<UpsertOutcome> {
        if deals.is_empty() {
            return Ok(UpsertOutcome::default());
        }
        let mut tx = self.writer.begin_with(BEGIN_WRITE).await?;
        let applied = self.apply_deals(&mut tx, deals).await?;
        tx.commit().await?;
        Ok(UpsertOutcome {
            applied,
            stale: deals.len() as u64 - applied,
        })
    }

    async fn settle_batch(&self, writes: &BatchWrites) -> Result<SettleOutcome> {
        if writes.is_empty() {
            return Ok(SettleOutcome::default());
        }
        let mut tx = self.writer.begin_with(BEGIN_WRITE).await?;
        let outcome = self.settle_in(&mut tx, writes).await?;
        tx.commit().await?;
        self.after_write();
        Ok(outcome)
    }

    /// In two transactions (see [`Store::claim_and_settle`]) and at most [`SETTLE_BATCH`] events at a
    /// time: SQLite's one writer is shared with every receiver, so a long settle transaction would be
    /// their wait.
    async fn claim_and_settle(
        &self,
        limit: usize,
        lease: Duration,
        plan: &mut crate::SettlePlan<'_>,
    ) -> Result<crate::ClaimSettled> {
        crate::settle::claim_then_settle(self, limit.min(SETTLE_BATCH), lease, plan).await
    }

    async fn mark_deal_deleted(&self, amocrm_deal_id: &str, deleted: bool) -> Result<()> {
        self.mark_deleted("amocrm_deals", "amocrm_deal_id", amocrm_deal_id, deleted)
            .await
    }

    async fn record_deletion(
        &self,
        entity: MirrorEntity,
        amocrm_id: &str,
        event_hash: &str,
        deleted: bool,
    ) -> Result<bool> {
        self.record_deletion_in(entity, amocrm_id, event_hash, deleted)
            .await
    }

    async fn set_deal_metadata(
        &self,
        amocrm_deal_id: &str,
        metadata: &Map<String, Value>,
    ) -> Result<bool> {
        self.set_metadata("amocrm_deals", "amocrm_deal_id", amocrm_deal_id, metadata)
            .await
    }

    async fn set_main_contact_fields(
        &self,
        amocrm_contact_id: &str,
        custom_fields: Option<&Value>,
    ) -> Result<u64> {
        let fields = custom_fields.map(Value::to_string);
        let changed = sqlx::query(
            "UPDATE amocrm_deals SET contact_custom_fields = ?, synced_at = ?
            WHERE main_contact_id = ? AND contact_custom_fields IS NOT ?",
        )
        .bind(&fields)
        .bind(micros(Utc::now()))
        .bind(amocrm_contact_id)
        .bind(&fields)
        .execute(&self.writer)
        .await?
        .rows_affected();
        Ok(changed)
    }

    async fn follow_contact_fields(&self, amocrm_contact_ids: &[&str]) -> Result<u64> {
        if amocrm_contact_ids.is_empty() {
            return Ok(0);
        }
        let mut conn = self.writer.acquire().await?;
        follow_contact_fields(&mut conn, amocrm_contact_ids).await
    }

    async fn get_deal(&self, amocrm_deal_id: &str) -> Result<Option<Deal>> {
        let row = sqlx::query(&format!(
            "SELECT {DEAL_COLUMNS} FROM amocrm_deals WHERE amocrm_deal_id = ?"
        ))
        .bind(amocrm_deal_id)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(deal_from_row).transpose()
    }

    async fn upsert_contacts(&self, contacts: &[ContactUpsert]) -> Result<UpsertOutcome> {
        if contacts.is_empty() {
            return Ok(UpsertOutcome::default());
        }
        let mut tx = self.writer.begin_with(BEGIN_WRITE).await?;
        let applied = self.apply_contacts(&mut tx, contacts).await?;
        tx.commit().await?;
        Ok(UpsertOutcome {
            applied,
            stale: contacts.len() as u64 - applied,
        })
    }

    async fn mark_contact_deleted(&self, amocrm_contact_id: &str, deleted: bool) -> Result<()> {
        self.mark_deleted(
            "amocrm_contacts",
            "amocrm_contact_id",
            amocrm_contact_id,
            deleted,
        )
        .await
    }

    async fn set_contact_metadata(
        &self,
        amocrm_contact_id: &str,
        metadata: &Map<String, Value>,
    ) -> Result<bool> {
        self.set_metadata(
            "amocrm_contacts",
            "amocrm_contact_id",
            amocrm_contact_id,
            metadata,
        )
        .await
    }

    async fn get_contact(&self, amocrm_contact_id: &str) -> Result<Option<Contact>> {
        let row = sqlx::query(&format!(
            "SELECT {CONTACT_COLUMNS} FROM amocrm_contacts WHERE amocrm_contact_id = ?"
        ))
        .bind(amocrm_contact_id)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(contact_from_row).transpose()
    }

    async fn load_tokens(&self, account: &str) -> Result<Option<StoredTokens>> {
        let row = sqlx::query(
            "SELECT access_token, refresh_token, token_type, expires_at, updated_at
            FROM amocrm_oauth_tokens WHERE account = ?",
        )
        .bind(account)
        .fetch_optional(&self.reader)
        .await?;
        row.map(|row| {
            Ok(StoredTokens {
                access_token: row.try_get("access_token")?,
                refresh_token: row.try_get("refresh_token")?,
                token_type: row.try_get("token_type")?,
                expires_at: time(&row, "expires_at")?,
                updated_at: time(&row, "updated_at")?,
            })
        })
        .transpose()
    }

    async fn save_tokens(&self, account: &str, tokens: &StoredTokens) -> Result<()> {
        sqlx::query(
            "INSERT INTO amocrm_oauth_tokens
                (account, access_token, refresh_token, token_type, expires_at, updated_at)
            VALUES (?, ?, ?, ?, ?, ?)
            ON CONFLICT (account) DO UPDATE SET
                access_token = excluded.access_token,
                refresh_token = excluded.refresh_token,
                token_type = excluded.token_type,
                expires_at = excluded.expires_at,
                updated_at = excluded.updated_at",
        )
        .bind(account)
        .bind(&tokens.access_token)
        .bind(&tokens.refresh_token)
        .bind(&tokens.token_type)
        .bind(micros(tokens.expires_at))
        .bind(micros(tokens.updated_at))
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn record_api_usage(&self, usage: &[ApiUsage]) -> Result<()> {
        let rows = usage_rows(usage);
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.writer.begin_with(BEGIN_WRITE).await?;
        for row in &rows {
            sqlx::query(
                "INSERT INTO amocrm_api_usage (minute, endpoint, status, count) VALUES (?, ?, ?, ?)
                ON CONFLICT (minute, endpoint, status) DO UPDATE SET count = count + excluded.count",
            )
            .bind(micros(row.minute))
            .bind(&row.endpoint)
            .bind(row.status)
            .bind(row.count)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn api_usage_since(&self, since: DateTime<Utc>) -> Result<u64> {
        let total: i64 = sqlx::query_scalar(
            "SELECT COALESCE(sum(count), 0) FROM amocrm_api_usage WHERE minute >= ?",
        )
        .bind(micros(since))
        .fetch_one(&self.reader)
        .await?;
        Ok(total.max(0) as u64)
    }

    async fn queue_stats(&self) -> Result<QueueStats> {
        // Each subquery repeats a partial index's predicate, so it reads that index only.
        let row = sqlx::query(
            "SELECT
                (SELECT count(*) FROM amocrm_webhook_events
                    WHERE processed = 0 AND dead_at IS NULL) AS backlog,
                (SELECT min(ts) FROM amocrm_webhook_events
                    WHERE processed = 0 AND dead_at IS NULL) AS oldest_pending_at,
                (SELECT count(*) FROM amocrm_webhook_events
                    WHERE dead_at IS NOT NULL AND processed = 0) AS dead",
        )
        .fetch_one(&self.reader)
        .await?;
        Ok(QueueStats {
            backlog: count(&row, "backlog")?,
            oldest_pending_at: optional_time(&row, "oldest_pending_at")?,
            dead: count(&row, "dead")?,
        })
    }

    async fn stats(&self) -> Result<Stats> {
        let row = sqlx::query(
            "SELECT
                count(*) FILTER (WHERE processed = 0 AND dead_at IS NULL) AS backlog,
                min(ts) FILTER (WHERE processed = 0 AND dead_at IS NULL) AS oldest_pending_at,
                count(*) FILTER (WHERE processed = 0 AND dead_at IS NOT NULL) AS dead,
                count(*) FILTER (WHERE processed <> 0) AS processed,
                count(*) FILTER (WHERE processed = 0 AND dead_at IS NULL
                    AND (attempts > 0 OR last_error IS NOT NULL)) AS retrying,
                max(ts) AS last_event_at,
                (SELECT count(*) FROM amocrm_rejected_webhooks) AS rejected,
                (SELECT count(*) FROM amocrm_deals) AS deals,
                (SELECT count(*) FROM amocrm_contacts) AS contacts
            FROM amocrm_webhook_events",
        )
        .fetch_one(&self.reader)
        .await?;
        let by_type = sqlx::query(
            "SELECT event_type, count(*) AS events FROM amocrm_webhook_events
            GROUP BY event_type ORDER BY event_type",
        )
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(|row| Ok((row.try_get("event_type")?, count(row, "events")?)))
        .collect::<Result<Vec<_>>>()?;
        Ok(Stats {
            backlog: count(&row, "backlog")?,
            oldest_pending_at: optional_time(&row, "oldest_pending_at")?,
            dead: count(&row, "dead")?,
            processed: count(&row, "processed")?,
            retrying: count(&row, "retrying")?,
            rejected: count(&row, "rejected")?,
            last_event_at: optional_time(&row, "last_event_at")?,
            deals: count(&row, "deals")?,
            contacts: count(&row, "contacts")?,
            by_type,
        })
    }
}
