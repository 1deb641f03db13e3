//! Gaps, their catch-up state and named instants on PostgreSQL.

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgPool, PgRow};
use sqlx::{Postgres, QueryBuilder, Row};

use crate::{Gap, GapEntity, GapEntityType, GapKind, Result};

const GAP_COLUMNS: &str =
    "id, kind, from_at, to_at, detected_at, pages_done, events_read, read_done_at, caught_up_at";

fn gap_from_row(row: &PgRow) -> Result<Gap> {
    let kind: String = row.try_get("kind")?;
    Ok(Gap {
        id: row.try_get("id")?,
        kind: kind.parse().unwrap_or_else(|never| match never {}),
        from: row.try_get("from_at")?,
        to: row.try_get("to_at")?,
        detected_at: row.try_get("detected_at")?,
        pages_done: row.try_get::<i32, _>("pages_done")?.max(0) as u32,
        events_read: row.try_get::<i64, _>("events_read")?.max(0) as u64,
        read_done_at: row.try_get("read_done_at")?,
        caught_up_at: row.try_get("caught_up_at")?,
    })
}

pub(super) async fn open_gap(
    pool: &PgPool,
    kind: &GapKind,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "INSERT INTO jarvis_gaps (kind, from_at, to_at, detected_at) VALUES ($1, $2, $3, now())
         RETURNING id",
    )
    .bind(kind.as_str())
    .bind(from)
    .bind(to)
    .fetch_one(pool)
    .await?)
}

pub(super) async fn open_gaps(pool: &PgPool) -> Result<Vec<Gap>> {
    let rows = sqlx::query(&format!(
        "SELECT {GAP_COLUMNS} FROM jarvis_gaps WHERE caught_up_at IS NULL ORDER BY id"
    ))
    .fetch_all(pool)
    .await?;
    rows.iter().map(gap_from_row).collect()
}

pub(super) async fn record_gap_page(
    pool: &PgPool,
    gap_id: i64,
    page: u32,
    events: u64,
    entities: &[GapEntity],
    last: bool,
) -> Result<()> {
    let mut tx = pool.begin().await?;
    for chunk in entities.chunks(1000) {
        let mut query = QueryBuilder::<Postgres>::new(
            "INSERT INTO jarvis_gap_entities (gap_id, entity_type, entity_id, deleted, last_event_at) ",
        );
        query.push_values(chunk, |mut values, entity| {
            values
                .push_bind(gap_id)
                .push_bind(entity.entity_type.as_str())
                .push_bind(entity.entity_id as i64)
                .push_bind(entity.deleted)
                .push_bind(entity.last_event_at);
        });
        // Pages come newest first, so a later page's event only wins when strictly newer.
        query.push(
            " ON CONFLICT (gap_id, entity_type, entity_id) DO UPDATE SET
                deleted = CASE WHEN EXCLUDED.last_event_at > jarvis_gap_entities.last_event_at
                    THEN EXCLUDED.deleted ELSE jarvis_gap_entities.deleted END,
                last_event_at = GREATEST(EXCLUDED.last_event_at, jarvis_gap_entities.last_event_at)",
        );
        query.build().execute(&mut *tx).await?;
    }
    sqlx::query(
        "UPDATE jarvis_gaps SET pages_done = GREATEST(pages_done, $2), events_read = events_read + $3,
            read_done_at = CASE WHEN $4 THEN COALESCE(read_done_at, now()) ELSE read_done_at END
         WHERE id = $1",
    )
    .bind(gap_id)
    .bind(page as i32)
    .bind(events as i64)
    .bind(last)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn gap_entities(pool: &PgPool, gap_id: i64) -> Result<Vec<GapEntity>> {
    let rows = sqlx::query(
        "SELECT entity_type, entity_id, deleted, last_event_at FROM jarvis_gap_entities
         WHERE gap_id = $1 ORDER BY entity_type DESC, entity_id",
    )
    .bind(gap_id)
    .fetch_all(pool)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let entity_type: String = row.try_get("entity_type")?;
        let Some(entity_type) = GapEntityType::parse(&entity_type) else {
            continue;
        };
        out.push(GapEntity {
            entity_type,
            entity_id: row.try_get::<i64, _>("entity_id")?.max(0) as u64,
            deleted: row.try_get("deleted")?,
            last_event_at: row.try_get("last_event_at")?,
        });
    }
    Ok(out)
}

pub(super) async fn close_gap(pool: &PgPool, gap_id: i64) -> Result<()> {
    sqlx::query(
        "UPDATE jarvis_gaps SET caught_up_at = COALESCE(caught_up_at, now()) WHERE id = $1",
    )
    .bind(gap_id)
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn advance_mark(
    pool: &PgPool,
    name: &str,
    at: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>> {
    // The old value comes from the row as it was before this statement (a self-join in one
    // statement sees the same snapshot).
    let before: Option<Option<DateTime<Utc>>> = sqlx::query_scalar(
        "WITH old AS (SELECT at FROM jarvis_marks WHERE name = $1),
              up AS (INSERT INTO jarvis_marks (name, at) VALUES ($1, $2)
                     ON CONFLICT (name) DO UPDATE SET at = GREATEST(jarvis_marks.at, EXCLUDED.at))
         SELECT (SELECT at FROM old)",
    )
    .bind(name)
    .bind(at)
    .fetch_optional(pool)
    .await?;
    Ok(before.flatten())
}

pub(super) async fn get_mark(pool: &PgPool, name: &str) -> Result<Option<DateTime<Utc>>> {
    Ok(
        sqlx::query_scalar("SELECT at FROM jarvis_marks WHERE name = $1")
            .bind(name)
            .fetch_optional(pool)
            .await?,
    )
}
