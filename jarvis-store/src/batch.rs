//! Batch preparation shared by both backends, so that both apply the same rules.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, DurationRound, TimeDelta, Utc};

use serde_json::{Map, Value};

use crate::model::{ApiUsage, ContactUpsert, DealUpsert, NewEvent};

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

/// Whether the recorded migrations (`version`, `checksum`, `success` rows of `_sqlx_migrations`)
/// are exactly the embedded ones, all applied and unchanged: then running the migrator would do
/// nothing. Anything else (a failed or missing migration, a changed checksum, a version this build
/// does not know) is left to the migrator, which applies or reports it.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn migrations_current(
    migrator: &sqlx::migrate::Migrator,
    recorded: &[(i64, Vec<u8>, bool)],
) -> bool {
    let embedded: HashMap<i64, &[u8]> = migrator
        .iter()
        .map(|migration| (migration.version, migration.checksum.as_ref()))
        .collect();
    recorded.len() == embedded.len()
        && recorded.iter().all(|(version, checksum, success)| {
            *success && embedded.get(version) == Some(&checksum.as_slice())
        })
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

/// A state of a mirrored entity, as the mirror rule sees it (see the crate docs).
pub(crate) trait MirrorState {
    /// The entity's amoCRM id.
    fn key(&self) -> &str;
    fn updated_at(&self) -> Option<DateTime<Utc>>;
    /// One bit per [`Known`](crate::Known) column, set when the state writes it.
    fn known(&self) -> u32;
    fn metadata_keys(&self) -> &[String];
    fn metadata(&self) -> &Map<String, Value>;
    fn is_deleted(&self) -> Option<bool>;
}

macro_rules! known_bits {
    ($state:expr, $($column:ident),+) => {{
        let mut bits = 0u32;
        let mut bit = 1u32;
        $(
            if $state.$column.is_known() {
                bits |= bit;
            }
            bit <<= 1;
        )+
        let _ = bit;
        bits
    }};
}

impl MirrorState for DealUpsert {
    fn key(&self) -> &str {
        &self.amocrm_deal_id
    }
    fn updated_at(&self) -> Option<DateTime<Utc>> {
        self.updated_at
    }
    fn known(&self) -> u32 {
        known_bits!(
            self,
            pipeline_id,
            status_id,
            price,
            name,
            responsible_user_id,
            custom_fields,
            deal_full_data,
            contact_custom_fields,
            main_contact_id,
            created_at,
            closed_at
        )
    }
    fn metadata_keys(&self) -> &[String] {
        &self.metadata_keys
    }
    fn metadata(&self) -> &Map<String, Value> {
        &self.metadata
    }
    fn is_deleted(&self) -> Option<bool> {
        self.is_deleted
    }
}

impl MirrorState for ContactUpsert {
    fn key(&self) -> &str {
        &self.amocrm_contact_id
    }
    fn updated_at(&self) -> Option<DateTime<Utc>> {
        self.updated_at
    }
    fn known(&self) -> u32 {
        known_bits!(
            self,
            name,
            first_name,
            last_name,
            responsible_user_id,
            custom_fields,
            contact_full_data,
            created_at
        )
    }
    fn metadata_keys(&self) -> &[String] {
        &self.metadata_keys
    }
    fn metadata(&self) -> &Map<String, Value> {
        &self.metadata
    }
    fn is_deleted(&self) -> Option<bool> {
        self.is_deleted
    }
}

/// Whether `later`, applied after `earlier`, can never apply: both are timed and `later` is older, so
/// the row is newer than `later` whether `earlier` applied or not.
fn never_applies_after<S: MirrorState>(earlier: &S, later: &S) -> bool {
    matches!((earlier.updated_at(), later.updated_at()), (Some(a), Some(b)) if b < a)
}

/// Whether applying `later` alone leaves any row exactly as applying `earlier` and then `later` does:
/// `later` applies whenever `earlier` does, and overwrites everything `earlier` writes.
fn supersedes<S: MirrorState>(earlier: &S, later: &S) -> bool {
    let applies_whenever = match (earlier.updated_at(), later.updated_at()) {
        (Some(a), Some(b)) => b >= a,
        // Both untimed: both always apply and keep the stored time.
        (None, None) => true,
        // An untimed state always applies (a timed one may not); a timed one after an untimed one
        // sets the time the untimed one kept.
        _ => false,
    };
    applies_whenever
        && later.known() & earlier.known() == earlier.known()
        && (earlier.is_deleted().is_none() || later.is_deleted().is_some())
        && earlier
            .metadata_keys()
            .iter()
            .chain(earlier.metadata().keys())
            .all(|key| later.metadata_keys().contains(key))
}

/// The states of a batch that still matter, in order, each with how many of the batch's states it
/// stands for (itself and those it superseded).
pub(crate) struct Collapsed<'a, S> {
    pub states: Vec<(&'a S, u64)>,
}

/// Reduces a batch's states to those whose application changes the result, by the mirror rule:
/// a state older than the one before it for the same entity never applies, and a state superseded
/// by the next one (see [`supersedes`]) is left out. Applying what is left, in order, gives the same
/// rows as applying every state one by one; usually one state per entity is left, so the batch is
/// one statement.
pub(crate) fn collapse<S: MirrorState>(states: &[S]) -> Collapsed<'_, S> {
    let mut order: Vec<&str> = Vec::new();
    let mut by_key: HashMap<&str, Vec<(&S, u64)>> = HashMap::with_capacity(states.len());
    for state in states {
        let pending = by_key.entry(state.key()).or_insert_with(|| {
            order.push(state.key());
            Vec::new()
        });
        if pending
            .last()
            .is_some_and(|(last, _)| never_applies_after(*last, state))
        {
            // Counted as stale by the caller: it stands for no applied state.
            continue;
        }
        let mut weight = 1;
        while let Some((last, absorbed)) = pending.last() {
            if !supersedes(*last, state) {
                break;
            }
            weight += absorbed;
            pending.pop();
        }
        pending.push((state, weight));
    }
    let states = order
        .into_iter()
        .flat_map(|key| by_key.remove(key).unwrap_or_default())
        .collect();
    Collapsed { states }
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
    fn migrations_are_current_only_when_the_record_matches_every_embedded_one() {
        let migrator = sqlx::migrate!("./migrations/sqlite");
        let record: Vec<(i64, Vec<u8>, bool)> = migrator
            .iter()
            .map(|m| (m.version, m.checksum.to_vec(), true))
            .collect();
        assert!(migrations_current(&migrator, &record));
        assert!(!migrations_current(&migrator, &record[1..]));
        let mut failed = record.clone();
        failed[0].2 = false;
        assert!(!migrations_current(&migrator, &failed));
        let mut edited = record.clone();
        edited[0].1 = vec![0];
        assert!(!migrations_current(&migrator, &edited));
        let mut newer = record.clone();
        newer.push((i64::MAX, Vec::new(), true));
        assert!(!migrations_current(&migrator, &newer));
    }

    fn deal(id: &str, updated_at: Option<i64>, status: Option<i64>) -> DealUpsert {
        DealUpsert {
            amocrm_deal_id: id.into(),
            updated_at: updated_at.map(|s| DateTime::from_timestamp(s, 0).unwrap()),
            status_id: status.map_or(crate::Known::Unknown, crate::Known::Value),
            price: crate::Known::Value(1),
            ..Default::default()
        }
    }

    fn kept(collapsed: &Collapsed<'_, DealUpsert>) -> Vec<(String, Option<i64>, u64)> {
        collapsed
            .states
            .iter()
            .map(|(d, w)| {
                (
                    d.amocrm_deal_id.clone(),
                    d.updated_at.map(|t| t.timestamp()),
                    *w,
                )
            })
            .collect()
    }

    #[test]
    fn collapse_keeps_the_newest_full_state_of_each_entity() {
        let states = [
            deal("1", Some(10), Some(1)),
            deal("2", Some(10), Some(1)),
            deal("1", Some(12), Some(2)),
            deal("1", Some(11), Some(3)),
            deal("1", Some(12), Some(4)),
        ];
        let collapsed = collapse(&states);
        // 11 can never apply after 12; the last 12 supersedes the first 12, which superseded 10.
        assert_eq!(
            kept(&collapsed),
            vec![("1".into(), Some(12), 3), ("2".into(), Some(10), 1)]
        );
    }

    #[test]
    fn collapse_keeps_states_a_later_one_does_not_cover() {
        // The later state does not write status: if the row is between the two times, only the
        // later one applies, so the earlier status must not be written.
        let states = [deal("1", Some(10), Some(1)), deal("1", Some(12), None)];
        assert_eq!(
            kept(&collapse(&states)),
            vec![("1".into(), Some(10), 1), ("1".into(), Some(12), 1)]
        );
        // An untimed state always applies; a timed one after it may not.
        let states = [deal("1", None, Some(1)), deal("1", Some(12), Some(2))];
        assert_eq!(collapse(&states).states.len(), 2);
        // A timed state, then an untimed one: the untimed one keeps the time the first set.
        let states = [deal("1", Some(12), Some(1)), deal("1", None, Some(2))];
        assert_eq!(collapse(&states).states.len(), 2);
        // Two untimed states: both always apply.
        let states = [deal("1", None, Some(1)), deal("1", None, Some(2))];
        assert_eq!(kept(&collapse(&states)), vec![("1".into(), None, 2)]);
        // Metadata the earlier state sets and the later one does not recompute stays.
        let mut earlier = deal("1", Some(10), Some(1));
        earlier.metadata.insert("a".into(), Value::from(1));
        let states = [earlier, deal("1", Some(12), Some(2))];
        assert_eq!(collapse(&states).states.len(), 2);
        // A delete flag the later state does not carry stays.
        let mut earlier = deal("1", Some(10), Some(1));
        earlier.is_deleted = Some(true);
        let states = [earlier, deal("1", Some(12), Some(2))];
        assert_eq!(collapse(&states).states.len(), 2);
    }

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
