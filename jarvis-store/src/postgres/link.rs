//! [`LinkStore`] on PostgreSQL.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{Postgres, QueryBuilder, Row};
use uuid::Uuid;

use super::PgStore;
use crate::link::{DealLinks, LinkBind, LinkColumn, LinkFailure, LinkOutcome, LinkScan, decide};
use crate::{Error, LinkStore, Result};

const LINK_COLUMNS: &str = "amocrm_deal_id, main_contact_id, contact_custom_fields, metadata, \
     client_id, linked_client_id, client_linked_for, conversation_id, linked_conversation_id, \
     conversation_linked_for, link_failed_at, is_deleted";

fn links_from_row(row: &PgRow) -> Result<DealLinks> {
    Ok(DealLinks {
        amocrm_deal_id: row.try_get("amocrm_deal_id")?,
        main_contact_id: row.try_get("main_contact_id")?,
        contact_custom_fields: row.try_get("contact_custom_fields")?,
        metadata: row.try_get("metadata")?,
        client_id: row.try_get("client_id")?,
        linked_client_id: row.try_get("linked_client_id")?,
        client_linked_for: row.try_get("client_linked_for")?,
        conversation_id: row.try_get("conversation_id")?,
        linked_conversation_id: row.try_get("linked_conversation_id")?,
        conversation_linked_for: row.try_get("conversation_linked_for")?,
        link_failed_at: row.try_get("link_failed_at")?,
        is_deleted: row.try_get("is_deleted")?,
    })
}

/// An operator query's error, kept apart from the store's own: a missing table there is the
/// operator's mistake, not an unmigrated store.
fn query_error(error: sqlx::Error) -> Error {
    let failure = match &error {
        // query_canceled: what statement_timeout raises.
        sqlx::Error::Database(db) if db.code().as_deref() == Some("57014") => LinkFailure::Timeout,
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
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

/// The first column of a row as a UUID: a `uuid` column, or text holding one.
fn first_uuid(row: &PgRow) -> Result<Option<Uuid>> {
    if let Ok(value) = row.try_get::<Option<Uuid>, _>(0) {
        return Ok(value);
    }
    match row.try_get::<Option<String>, _>(0) {
        Ok(None) => Ok(None),
        Ok(Some(text)) => Uuid::parse_str(text.trim())
            .map(Some)
            .map_err(|_| Error::LinkQuery {
                failure: LinkFailure::Value,
                message: format!("the query answered `{text}`, which is not a UUID"),
            }),
        Err(_) => Err(Error::LinkQuery {
            failure: LinkFailure::Value,
            message: "the query's first column is neither uuid nor text".into(),
        }),
    }
}

#[async_trait::async_trait]
impl LinkStore for PgStore {
    async fn run_link_query(
        &self,
        sql: &str,
        binds: &[LinkBind],
        timeout: Duration,
    ) -> Result<Option<Uuid>> {
        let millis = timeout.as_millis().clamp(1, i32::MAX as u128);
        let mut tx = self.pool.begin().await.map_err(query_error)?;
        // Local settings end with the transaction, so the pooled connection keeps its own. Read-only
        // may be set at any point of a transaction (only the way back is refused).
        sqlx::query(
            "SELECT set_config('transaction_read_only', 'on', true),
                set_config('statement_timeout', $1, true)",
        )
        .bind(millis.to_string())
        .execute(&mut *tx)
        .await
        .map_err(query_error)?;
        let mut query = sqlx::query(sql);
        for bind in binds {
            query = match bind {
                LinkBind::Text(text) => query.bind(text.clone()),
                LinkBind::TextList(list) => query.bind(list.clone()),
            };
        }
        let row = query.fetch_optional(&mut *tx).await.map_err(query_error)?;
        let found = row.as_ref().map(first_uuid).transpose()?.flatten();
        // Nothing to keep: the transaction was read-only.
        tx.rollback().await.map_err(query_error)?;
        Ok(found)
    }

    async fn deal_links(&self, amocrm_deal_id: &str) -> Result<Option<DealLinks>> {
        let row = sqlx::query(&format!(
            "SELECT {LINK_COLUMNS} FROM amocrm_deals WHERE amocrm_deal_id = $1"
        ))
        .bind(amocrm_deal_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(links_from_row).transpose()
    }

    async fn deal_links_by_main_contact(&self, amocrm_contact_id: &str) -> Result<Vec<DealLinks>> {
        let rows = sqlx::query(&format!(
            "SELECT {LINK_COLUMNS} FROM amocrm_deals WHERE main_contact_id = $1
            ORDER BY amocrm_deal_id"
        ))
        .bind(amocrm_contact_id)
        .fetch_all(&self.pool)
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
        let mut tx = self.pool.begin().await?;
        // The row lock orders this against other writers of the column (another service, another
        // instance's linker) between the read and the write.
        let current = sqlx::query(&format!(
            "SELECT {value} AS value, {ours} AS ours FROM amocrm_deals
            WHERE amocrm_deal_id = $1 FOR UPDATE"
        ))
        .bind(amocrm_deal_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(current) = current else {
            return Ok(LinkOutcome::NoDeal);
        };
        let (new_value, new_ours, outcome) = decide(
            current.try_get("value")?,
            current.try_get("ours")?,
            found,
            overwrite,
        );
        sqlx::query(&format!(
            "UPDATE amocrm_deals SET {value} = $2, {ours} = $3, {for_} = $4
            WHERE amocrm_deal_id = $1"
        ))
        .bind(amocrm_deal_id)
        .bind(new_value)
        .bind(new_ours)
        .bind(linked_for)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(outcome)
    }

    async fn set_link_failed(&self, amocrm_deal_id: &str, failed: bool) -> Result<()> {
        sqlx::query(
            "UPDATE amocrm_deals
            SET link_failed_at = CASE WHEN $2 THEN now() ELSE NULL END
            WHERE amocrm_deal_id = $1",
        )
        .bind(amocrm_deal_id)
        .bind(failed)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn deals_to_link(&self, scan: &LinkScan) -> Result<Vec<DealLinks>> {
        let mut query = QueryBuilder::<Postgres>::new(format!(
            "SELECT {LINK_COLUMNS} FROM amocrm_deals WHERE NOT is_deleted AND ("
        ));
        // A failed attempt is always worth another.
        query.push("link_failed_at IS NOT NULL");
        if scan.client {
            query.push(
                " OR client_id IS NULL
                OR main_contact_id IS DISTINCT FROM client_linked_for",
            );
        }
        if scan.conversation {
            query.push(" OR conversation_id IS NULL");
        }
        query.push(")");
        if let Some(since) = scan.since {
            query
                .push(" AND COALESCE(updated_at, synced_at) >= ")
                .push_bind(since);
        }
        if let Some(before) = scan.failed_before {
            query
                .push(" AND link_failed_at < ")
                .push_bind::<DateTime<Utc>>(before);
        }
        if let Some(after) = &scan.after {
            query
                .push(" AND amocrm_deal_id > ")
                .push_bind(after.clone());
        }
        query
            .push(" ORDER BY amocrm_deal_id LIMIT ")
            .push_bind(crate::batch::sql_limit(scan.limit));
        let rows = query.build().fetch_all(&self.pool).await?;
        rows.iter().map(links_from_row).collect()
    }
}
