//! [`LinkStore`] on SQLite.
//!
//! The operator's queries run on connections of their own opened with `PRAGMA query_only`, so no
//! query can change the file, and a progress handler interrupts one that outlives its timeout. An
//! in-memory database (or a pool given to [`SqliteStore::from_pool`]) has no other connections to
//! open: there the pragma is switched on for the query and off again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteRow};
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};
use uuid::Uuid;

use super::{BEGIN_WRITE, SqliteStore, json, micros, optional_json, optional_time, uuid_column};
use crate::batch::sql_limit;
use crate::link::{DealLinks, LinkBind, LinkColumn, LinkFailure, LinkOutcome, LinkScan, decide};
use crate::{Error, LinkStore, PoolSettings, Result};

const LINK_COLUMNS: &str = "amocrm_deal_id, main_contact_id, contact_custom_fields, metadata, \
     client_id, linked_client_id, client_linked_for, conversation_id, linked_conversation_id, \
     conversation_linked_for, link_failed_at, is_deleted";

/// How many SQLite virtual machine steps run between two looks at the clock.
const PROGRESS_STEPS: i32 = 1_000;

/// Where the operator's queries run.
#[derive(Debug, Clone)]
pub(super) enum QueryOnly {
    /// Connections of their own, opened with `PRAGMA query_only = ON`.
    Dedicated(SqlitePool),
    /// The store's reader pool, with the pragma switched on around each query.
    Shared,
}

impl QueryOnly {
    /// Query-only connections to the file `options` open, made when first needed.
    pub(super) fn dedicated(options: &SqliteConnectOptions, settings: &PoolSettings) -> Self {
        let options = options.clone().pragma("query_only", "ON");
        QueryOnly::Dedicated(
            SqlitePoolOptions::new()
                .max_connections(2)
                .acquire_timeout(settings.acquire_timeout)
                .connect_lazy_with(options),
        )
    }
}

fn links_from_row(row: &SqliteRow) -> Result<DealLinks> {
    Ok(DealLinks {
        amocrm_deal_id: row.try_get("amocrm_deal_id")?,
        main_contact_id: row.try_get("main_contact_id")?,
        contact_custom_fields: optional_json(row, "contact_custom_fields")?,
        metadata: json(row, "metadata")?,
        client_id: uuid_column(row, "client_id")?,
        linked_client_id: uuid_column(row, "linked_client_id")?,
        client_linked_for: row.try_get("client_linked_for")?,
        conversation_id: uuid_column(row, "conversation_id")?,
        linked_conversation_id: uuid_column(row, "linked_conversation_id")?,
        conversation_linked_for: row.try_get("conversation_linked_for")?,
        link_failed_at: optional_time(row, "link_failed_at")?,
        is_deleted: row.try_get("is_deleted")?,
    })
}

/// An operator query's error, kept apart from the store's own: a missing table there is the
/// operator's mistake, not an unmigrated store.
fn query_error(error: sqlx::Error, timed_out: bool) -> Error {
    let failure = match &error {
        _ if timed_out => LinkFailure::Timeout,
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => LinkFailure::Unavailable,
        _ => LinkFailure::Query,
    };
    let message = match &error {
        sqlx::Error::Database(db) => db.message().to_owned(),
        other => other.to_string(),
    };
    Error::LinkQuery { failure, message }
}

/// The first column of a row as a UUID: hyphenated text, or 16 bytes.
fn first_uuid(row: &SqliteRow) -> Result<Option<Uuid>> {
    if let Ok(text) = row.try_get::<Option<String>, _>(0) {
        return match text {
            None => Ok(None),
            Some(text) => Uuid::parse_str(text.trim())
                .map(Some)
                .map_err(|_| Error::LinkQuery {
                    failure: LinkFailure::Value,
                    message: format!("the query answered `{text}`, which is not a UUID"),
                }),
        };
    }
    match row.try_get::<Option<Vec<u8>>, _>(0) {
        Ok(None) => Ok(None),
        Ok(Some(bytes)) => Uuid::from_slice(&bytes)
            .map(Some)
            .map_err(|_| Error::LinkQuery {
                failure: LinkFailure::Value,
                message: format!("the query answered {} bytes, not a UUID", bytes.len()),
            }),
        Err(_) => Err(Error::LinkQuery {
            failure: LinkFailure::Value,
            message: "the query's first column is neither text nor a blob".into(),
        }),
    }
}

/// Runs the query on `conn` with a progress handler that interrupts it at `deadline`.
async fn fetch_first(
    conn: &mut SqliteConnection,
    sql: &str,
    binds: &[LinkBind],
    deadline: Instant,
) -> Result<Option<Uuid>> {
    let timed_out = Arc::new(AtomicBool::new(false));
    {
        let flag = timed_out.clone();
        let mut handle = conn
            .lock_handle()
            .await
            .map_err(|e| query_error(e, false))?;
        handle.set_progress_handler(PROGRESS_STEPS, move || {
            let go_on = Instant::now() < deadline;
            if !go_on {
                flag.store(true, Ordering::Relaxed);
            }
            go_on
        });
    }
    let mut query = sqlx::query(sql);
    for bind in binds {
        query = match bind {
            LinkBind::Text(text) => query.bind(text.clone()),
            // SQLite has no arrays: a JSON array, which the query reads with json_each.
            LinkBind::TextList(list) => query.bind(Value::from(list.clone()).to_string()),
        };
    }
    let row = query.fetch_optional(&mut *conn).await;
    if let Ok(mut handle) = conn.lock_handle().await {
        handle.remove_progress_handler();
    }
    let row = row.map_err(|e| query_error(e, timed_out.load(Ordering::Relaxed)))?;
    Ok(row.as_ref().map(first_uuid).transpose()?.flatten())
}

#[async_trait::async_trait]
impl LinkStore for SqliteStore {
    async fn run_link_query(
        &self,
        sql: &str,
        binds: &[LinkBind],
        timeout: Duration,
    ) -> Result<Option<Uuid>> {
        let deadline = Instant::now() + timeout;
        match &self.query_only {
            QueryOnly::Dedicated(pool) => {
                let mut conn = pool.acquire().await.map_err(|e| query_error(e, false))?;
                fetch_first(&mut conn, sql, binds, deadline).await
            }
            QueryOnly::Shared => {
                let mut conn = self
                    .reader
                    .acquire()
                    .await
                    .map_err(|e| query_error(e, false))?;
                sqlx::query("PRAGMA query_only = ON")
                    .execute(&mut *conn)
                    .await?;
                let found = fetch_first(&mut conn, sql, binds, deadline).await;
                // This connection also writes: it must not go back to the pool query-only.
                if let Err(error) = sqlx::query("PRAGMA query_only = OFF")
                    .execute(&mut *conn)
                    .await
                {
                    conn.close_on_drop();
                    return Err(error.into());
                }
                found
            }
        }
    }

    async fn deal_links(&self, amocrm_deal_id: &str) -> Result<Option<DealLinks>> {
        let row = sqlx::query(&format!(
            "SELECT {LINK_COLUMNS} FROM amocrm_deals WHERE amocrm_deal_id = ?"
        ))
        .bind(amocrm_deal_id)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(links_from_row).transpose()
    }

    async fn deal_links_by_main_contact(&self, amocrm_contact_id: &str) -> Result<Vec<DealLinks>> {
        let rows = sqlx::query(&format!(
            "SELECT {LINK_COLUMNS} FROM amocrm_deals WHERE main_contact_id = ?
            ORDER BY amocrm_deal_id"
        ))
        .bind(amocrm_contact_id)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(links_from_row).collect()
    }

    async fn apply_link(
        &self,
        amocrm_deal_id: &str,
        column: LinkColumn,
        found: Option<Uuid>,
        linked_for: Option<&str>,
        overwrite: bool,
    ) -> Result<LinkOutcome> {
        let (value, ours, for_) = (
            column.value_column(),
            column.ours_column(),
            column.for_column(),
        );
        // BEGIN IMMEDIATE: nobody writes the row between the read and the write.
        let mut tx = self.writer.begin_with(BEGIN_WRITE).await?;
        let current = sqlx::query(&format!(
            "SELECT {value} AS value, {ours} AS ours FROM amocrm_deals WHERE amocrm_deal_id = ?"
        ))
        .bind(amocrm_deal_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(current) = current else {
            return Ok(LinkOutcome::NoDeal);
        };
        let (new_value, new_ours, outcome) = decide(
            uuid_column(&current, "value")?,
            uuid_column(&current, "ours")?,
            found,
            overwrite,
        );
        sqlx::query(&format!(
            "UPDATE amocrm_deals SET {value} = ?, {ours} = ?, {for_} = ? WHERE amocrm_deal_id = ?"
        ))
        .bind(new_value.map(|id| id.to_string()))
        .bind(new_ours.map(|id| id.to_string()))
        .bind(linked_for)
        .bind(amocrm_deal_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(outcome)
    }

    async fn set_link_failed(&self, amocrm_deal_id: &str, failed: bool) -> Result<()> {
        sqlx::query("UPDATE amocrm_deals SET link_failed_at = ? WHERE amocrm_deal_id = ?")
            .bind(failed.then(|| micros(Utc::now())))
            .bind(amocrm_deal_id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn deals_to_link(&self, scan: &LinkScan) -> Result<Vec<DealLinks>> {
        let mut query = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {LINK_COLUMNS} FROM amocrm_deals WHERE is_deleted = 0 AND ("
        ));
        // A failed attempt is always worth another.
        query.push("link_failed_at IS NOT NULL");
        if scan.client {
            query.push(
                " OR client_id IS NULL
                OR main_contact_id IS NOT client_linked_for",
            );
        }
        if scan.conversation {
            query.push(" OR conversation_id IS NULL");
        }
        query.push(")");
        if let Some(since) = scan.since {
            query
                .push(" AND COALESCE(updated_at, synced_at) >= ")
                .push_bind(micros(since));
        }
        if let Some(before) = scan.failed_before {
            query
                .push(" AND link_failed_at < ")
                .push_bind(micros(before));
        }
        if let Some(after) = &scan.after {
            query
                .push(" AND amocrm_deal_id > ")
                .push_bind(after.clone());
        }
        query
            .push(" ORDER BY amocrm_deal_id LIMIT ")
            .push_bind(sql_limit(scan.limit));
        let rows = query.build().fetch_all(&self.reader).await?;
        rows.iter().map(links_from_row).collect()
    }
}
