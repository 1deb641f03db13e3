//! Batch preparation shared by both backends, so that both apply the same rules.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, DurationRound, TimeDelta, Utc};

use crate::model::{ApiUsage, NewEvent};

/// `Ok` when every embedded migration is among the `applied` versions, else [`crate::Error::NotMigrated`].
pub(crate) fn require_migrated(
    migrator: &sqlx::migrate::Migrator,
    applied: &[i64],
) -> crate::Result<()> {
    if migrator
        .iter()
        .all(|migration| applied.contains(&migration.version))
    {
        Ok(())
    } else {
        Err(crate::Error::NotMigrated)
    }
}

/// The events of a batch whose hash was not seen earlier in the same batch.
pub(crate) fn distinct_events(events: &[NewEvent]) -> Vec<&NewEvent> {
    let mut seen = HashSet::with_capacity(events.len());
    events
        .iter()
        .filter(|event| seen.insert(event.event_hash.as_str()))
        .collect()
}

/// Splits a batch into rounds in which each key appears at most once, keeping the order of repeats.
///
/// One `INSERT ... ON CONFLICT DO UPDATE` cannot touch a row twice; applying the rounds one after the
/// other gives the same result as applying the rows one by one.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn rounds<T>(items: &[T], key: impl Fn(&T) -> &str) -> Vec<Vec<&T>> {
    let mut rounds: Vec<Vec<&T>> = Vec::new();
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(items.len());
    for item in items {
        let count = seen.entry(key(item)).or_insert(0);
        if rounds.len() <= *count {
            rounds.push(Vec::new());
        }
        rounds[*count].push(item);
        *count += 1;
    }
    rounds
}

/// One row of the usage table: counts added up per (minute, endpoint, status).
pub(crate) struct UsageRow {
    pub minute: DateTime<Utc>,
    pub endpoint: String,
    pub status: i32,
    pub count: i64,
}

/// Truncates minutes and adds up repeats: an upsert statement cannot touch the same row twice.
pub(crate) fn usage_rows(usage: &[ApiUsage]) -> Vec<UsageRow> {
    let mut rows: Vec<UsageRow> = Vec::new();
    let mut index: HashMap<(DateTime<Utc>, &str, u16), usize> = HashMap::new();
    for item in usage {
        let minute = start_of_minute(item.minute);
        let count = i64::try_from(item.count).unwrap_or(i64::MAX);
        match index.get(&(minute, item.endpoint.as_str(), item.status)) {
            Some(&at) => rows[at].count = rows[at].count.saturating_add(count),
            None => {
                index.insert((minute, item.endpoint.as_str(), item.status), rows.len());
                rows.push(UsageRow {
                    minute,
                    endpoint: item.endpoint.clone(),
                    status: i32::from(item.status),
                    count,
                });
            }
        }
    }
    rows
}

pub(crate) fn start_of_minute(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(TimeDelta::minutes(1)).unwrap_or(at)
}

/// Clamps a limit given as `usize` to what SQL `LIMIT` takes.
pub(crate) fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_keep_repeats_in_order() {
        let items = ["a1", "b1", "a2", "c1", "a3", "b2"];
        let rounds = rounds(&items, |item| &item[..1]);
        assert_eq!(
            rounds,
            vec![vec![&"a1", &"b1", &"c1"], vec![&"a2", &"b2"], vec![&"a3"]]
        );
    }

    #[test]
    fn usage_rows_add_up_within_a_minute() {
        let at = DateTime::parse_from_rfc3339("2024-05-01T10:20:30Z")
            .unwrap()
            .with_timezone(&Utc);
        let usage = |seconds: i64, status: u16, count: u64| ApiUsage {
            minute: at + TimeDelta::seconds(seconds),
            endpoint: "GET /api/v4/leads".into(),
            status,
            count,
        };
        let rows = usage_rows(&[
            usage(0, 200, 2),
            usage(10, 200, 3),
            usage(40, 200, 1),
            usage(0, 429, 1),
        ]);
        let summary: Vec<_> = rows
            .iter()
            .map(|row| (row.minute.to_rfc3339(), row.status, row.count))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("2024-05-01T10:20:00+00:00".to_string(), 200, 5),
                ("2024-05-01T10:21:00+00:00".to_string(), 200, 1),
                ("2024-05-01T10:20:00+00:00".to_string(), 429, 1),
            ]
        );
    }
}
