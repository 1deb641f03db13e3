//! Gaps, their catch-up state and named instants on SQLite (times in Unix microseconds).

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::sqlite::{SqlitePool, SqliteRow};

use super::{BEGIN_WRITE, micros, optional_time, time};
use crate::{Gap, GapEntity, GapEntityType, GapKind, Result};

const GAP_COLUMNS: &str =
    "id, kind, from_at, to_at, detected_at, pages_done, events_read, read_done_at, caught_up_at";

fn gap_from_row(row: &SqliteRow) -> Result<Gap> {
    let kind: String = row.try_get("kind")?;
    Ok(Gap {
        id: row.try_get("id")?,
        kind: kind.parse().unwrap_or_else(|never| match never {}),
        from: time(row, "from_at")?,
        to: time(row, "to_at")?,
        detected_at: time(row, "detected_at")?,
        pages_done: row.try_get::<i64, _>("pages_done")?.max(0) as u32,
        events_read: row.try_get::<i64, _>("events_read")?.max(0) as u64,
        read_done_at: optional_time(row, "read_done_at")?,
        caught_up_at: optional_time(row, "caught_up_at")?,
    })
}

pub(super) async fn open_gap(
    writer: &SqlitePool,
    kind: &GapKind,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "INSERT INTO jarvis_gaps (kind, from_at, to_at, detected_at) VALUES (?, ?, ?, ?)
         RETURNING id",
    )
    .bind(kind.as_str())
    .bind(micros(from))
    .bind(micros(to))
    .bind(micros(Utc::now()))
    .fetch_one(writer)
    .await?)
}

pub(super) async fn open_gaps(reader: &SqlitePool) -> Result<Vec<Gap>> {
    let rows = sqlx::query(&format!(
        "SELECT {GAP_COLUMNS} FROM jarvis_gaps WHERE caught_up_at IS NULL ORDER BY id"
    ))
    .fetch_all(reader)
    .await?;
    rows.iter().map(gap_from_row).collect()
}

pub(super) async fn record_gap_page(
    writer: &SqlitePool,
    gap_id: i64,
    page: u32,
    events: u64,
    entities: &[GapEntity],
    last: bool,
) -> Result<()> {
    let mut tx = writer.begin_with(BEGIN_WRITE).await?;
    for entity in entities {
        // Pages come newest first, so a later page's event only wins when strictly newer.
        sqlx::query(
            "INSERT INTO jarvis_gap_entities (gap_id, entity_type, entity_id, deleted, last_event_at)
             VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (gap_id, entity_type, entity_id) DO UPDATE SET
                deleted = CASE WHEN excluded.last_event_at > last_event_at
                    THEN excluded.deleted ELSE deleted END,
                last_event_at = max(excluded.last_event_at, last_event_at)",
        )
        .bind(gap_id)
        .bind(entity.entity_type.as_str())
        .bind(entity.entity_id as i64)
        .bind(entity.deleted)
        .bind(entity.last_event_at)
        .execute(&mut *tx)
        .await?;
    }
    let done = last.then(|| micros(Utc::now()));
    sqlx::query(
        "UPDATE jarvis_gaps SET pages_done = max(pages_done, ?), events_read = events_read + ?,
            read_done_at = COALESCE(read_done_at, ?)
         WHERE id = ?",
    )
    .bind(page as i64)
    .bind(events as i64)
    .bind(done)
    .bind(gap_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn gap_entities(reader: &SqlitePool, gap_id: i64) -> Result<Vec<GapEntity>> {
    let rows = sqlx::query(
        "SELECT entity_type, entity_id, deleted, last_event_at FROM jarvis_gap_entities
         WHERE gap_id = ? ORDER BY entity_type DESC, entity_id",
    )
    .bind(gap_id)
    .fetch_all(reader)
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

pub(super) async fn close_gap(writer: &SqlitePool, gap_id: i64) -> Result<()> {
    sqlx::query("UPDATE jarvis_gaps SET caught_up_at = COALESCE(caught_up_at, ?) WHERE id = ?")
        .bind(micros(Utc::now()))
        .bind(gap_id)
        .execute(writer)
        .await?;
    Ok(())
}

pub(super) async fn advance_mark(
    writer: &SqlitePool,
    name: &str,
    at: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>> {
    let mut tx = writer.begin_with(BEGIN_WRITE).await?;
    let before: Option<i64> = sqlx::query_scalar("SELECT at FROM jarvis_marks WHERE name = ?")
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO jarvis_marks (name, at) VALUES (?, ?)
         ON CONFLICT (name) DO UPDATE SET at = max(at, excluded.at)",
    )
    .bind(name)
    .bind(micros(at))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(before.and_then(DateTime::from_timestamp_micros))
}

pub(super) async fn get_mark(reader: &SqlitePool, name: &str) -> Result<Option<DateTime<Utc>>> {
    let at: Option<i64> = sqlx::query_scalar("SELECT at FROM jarvis_marks WHERE name = ?")
        .bind(name)
        .fetch_optional(reader)
        .await?;
    Ok(at.and_then(DateTime::from_timestamp_micros))
}
