//! Settling a batch: recording what became of every event (processed, postponed after an outage,
//! or failed towards dead), and the writes more than one step shares (a contact's fields following
//! it into its deals).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use jarvis_store::ContactUpsert;

use super::Worker;
use crate::telemetry::names;

/// What became of one event.
#[derive(Debug)]
pub(super) enum Settle {
    Done,
    /// Worth retrying soon; never turns the event dead (429, outages).
    Transient {
        error: String,
        not_before: Option<DateTime<Utc>>,
    },
    /// Counts towards the maximum attempts.
    Permanent(String),
}

/// Records what became of an event that more than one step works on: a failure is never replaced.
pub(super) fn settle_once(settled: &mut HashMap<i64, Settle>, event: i64, settle: Settle) {
    match settled.get(&event) {
        Some(Settle::Transient { .. } | Settle::Permanent(_)) => {}
        _ => {
            settled.insert(event, settle);
        }
    }
}

impl Worker {
    /// Copies the contacts' stored custom fields into the deals they are the main contact of
    /// ([`jarvis_store::Store::follow_contact_fields`]).
    pub(super) async fn follow_contact_fields(
        &self,
        contacts: &[ContactUpsert],
    ) -> jarvis_store::Result<()> {
        let ids: BTreeSet<&str> = contacts
            .iter()
            .map(|c| c.amocrm_contact_id.as_str())
            .collect();
        let ids: Vec<&str> = ids.into_iter().collect();
        self.state.store.follow_contact_fields(&ids).await?;
        Ok(())
    }

    pub(super) async fn settle(
        &self,
        settled: HashMap<i64, Settle>,
        received: &HashMap<i64, DateTime<Utc>>,
        attempts: &HashMap<i64, i32>,
    ) {
        let store = &self.state.store;
        let now = Utc::now();
        let mut done = Vec::new();
        // Outages and rate limits delay work but never count towards dead: the events are postponed
        // by half the oldest one's age (2 s to 5 min), so a long outage is retried calmly, and all to
        // one time, so the batch comes back as one batch (one request, not one per event).
        let postponed_to = transient_until(&settled, received, now);
        for (id, settle) in settled {
            match settle {
                Settle::Done => done.push(id),
                Settle::Transient { error, .. } => {
                    let next = postponed_to.unwrap_or(now);
                    metrics::counter!(names::EVENTS_FAILED, "kind" => "transient").increment(1);
                    if let Err(e) = store.postpone_event(id, &error, next).await {
                        tracing::warn!(event = id, error = %e, "recording a failure failed; the lease will expire");
                    }
                }
                Settle::Permanent(error) => {
                    let tries = attempts.get(&id).copied().unwrap_or(0);
                    let next = now + backoff(tries, Duration::from_secs(600));
                    metrics::counter!(names::EVENTS_FAILED, "kind" => "permanent").increment(1);
                    match store
                        .fail_event(id, &error, next, self.settings.max_attempts)
                        .await
                    {
                        Ok(jarvis_store::FailOutcome::Dead) => {
                            metrics::counter!(names::EVENTS_DEAD).increment(1);
                            tracing::warn!(event = id, %error, "event is dead after its last attempt");
                        }
                        Ok(_) => tracing::info!(event = id, %error, "event failed; will retry"),
                        Err(e) => {
                            tracing::warn!(event = id, error = %e, "recording a failure failed; the lease will expire")
                        }
                    }
                }
            }
        }
        if done.is_empty() {
            return;
        }
        // The work is done: keep trying to record it while the lease lasts, so a short database blip does
        // not make the events wait for their lease to expire (they would be processed again, harmlessly).
        let mut result = store.complete_events(&done).await;
        let deadline = std::time::Instant::now() + self.settings.lease / 2;
        while result.is_err() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(250)).await;
            result = store.complete_events(&done).await;
        }
        match result {
            Ok(()) => record_processed(
                &self.state,
                done.iter().filter_map(|id| received.get(id)),
                now,
            ),
            Err(e) => {
                tracing::warn!(error = %e, "completing events failed; they will be claimed again")
            }
        }
    }
}

pub(super) fn settle_store<T>(result: &jarvis_store::Result<T>) -> Settle {
    match result {
        Ok(_) => Settle::Done,
        // Data the database refuses will be refused again: count it towards dead.
        Err(e) if e.is_bad_data() => Settle::Permanent(format!("database refused the data: {e}")),
        Err(e) => Settle::Transient {
            error: format!("database: {e}"),
            not_before: None,
        },
    }
}

/// When a batch's events that failed through no fault of their own are due again: one time for all,
/// after the latest `not_before` and half the oldest one's age. `None` if none failed so.
fn transient_until(
    settled: &HashMap<i64, Settle>,
    received: &HashMap<i64, DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let mut oldest_age: Option<chrono::Duration> = None;
    let mut not_before = now;
    for (id, settle) in settled {
        if let Settle::Transient { not_before: at, .. } = settle {
            let age = received.get(id).map(|at| now - *at).unwrap_or_default();
            oldest_age = Some(oldest_age.map_or(age, |oldest| oldest.max(age)));
            not_before = not_before.max(at.unwrap_or(now));
        }
    }
    oldest_age.map(|age| not_before.max(now + transient_delay(age)))
}

/// Delay after a failure that is not the event's fault: half the event's age, from 2 s to 5 min, with
/// ±20 % jitter so retries after an outage spread out.
pub fn transient_delay(age: chrono::Duration) -> chrono::Duration {
    let half = (age.num_milliseconds().max(0) as f64 / 2000.0).clamp(2.0, 300.0);
    let jitter = 0.8 + rand::random::<f64>() * 0.4;
    chrono::Duration::milliseconds((half * jitter * 1000.0) as i64)
}

/// Exponential backoff from 2 s, doubled per attempt, capped, with ±20 % jitter so retries spread out.
pub fn backoff(attempts: i32, cap: Duration) -> chrono::Duration {
    let base = 2f64 * 2f64.powi(attempts.clamp(0, 20));
    let capped = base.min(cap.as_secs_f64());
    let jitter = 0.8 + rand::random::<f64>() * 0.4;
    chrono::Duration::milliseconds((capped * jitter * 1000.0) as i64)
}

/// Counts events processed (by the worker, or settled as they were stored) and their lag from
/// receipt, for the metrics and the status page.
pub(crate) fn record_processed<'a>(
    state: &crate::state::AppState,
    received: impl Iterator<Item = &'a DateTime<Utc>>,
    now: DateTime<Utc>,
) {
    let mut count = 0;
    for at in received {
        count += 1;
        let lag = (now - *at).num_milliseconds().max(0) as f64 / 1000.0;
        metrics::histogram!(names::PROCESSING_LAG).record(lag);
    }
    metrics::counter!(names::EVENTS_PROCESSED).increment(count);
    state.activity.record_processed(count, now);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_delay_follows_the_age_within_bounds() {
        let ms = |d: chrono::Duration| transient_delay(d).num_milliseconds();
        assert!((1600..=2400).contains(&ms(chrono::Duration::zero())));
        assert!((48_000..=72_000).contains(&ms(chrono::Duration::minutes(2))));
        assert!((240_000..=360_000).contains(&ms(chrono::Duration::days(1))));
    }

    #[test]
    fn a_batch_that_failed_together_is_postponed_together() {
        let now = Utc::now();
        let transient = |not_before| Settle::Transient {
            error: "amoCRM: server error (500)".into(),
            not_before,
        };
        let settled: HashMap<i64, Settle> = [
            (1, transient(None)),
            (2, transient(None)),
            (3, Settle::Done),
            (4, transient(Some(now + chrono::Duration::seconds(1)))),
        ]
        .into_iter()
        .collect();
        let received: HashMap<i64, DateTime<Utc>> = [
            (1, now - chrono::Duration::seconds(10)),
            (2, now - chrono::Duration::seconds(100)),
            (3, now - chrono::Duration::seconds(1000)),
            (4, now),
        ]
        .into_iter()
        .collect();
        let until = transient_until(&settled, &received, now).unwrap();
        // Half the oldest failed event's age (100 s), with the jitter; the done one is not counted.
        let wait = (until - now).num_milliseconds();
        assert!((40_000..=60_000).contains(&wait), "{wait}");
        let none: HashMap<i64, Settle> = [(3, Settle::Done)].into_iter().collect();
        assert_eq!(transient_until(&none, &received, now), None);
        // A Retry-After later than the delay wins.
        let later = now + chrono::Duration::seconds(600);
        let settled: HashMap<i64, Settle> = [(1, transient(Some(later)))].into_iter().collect();
        assert_eq!(transient_until(&settled, &received, now), Some(later));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let cap = Duration::from_secs(300);
        let first = backoff(0, cap).num_milliseconds();
        assert!((1600..=2400).contains(&first), "{first}");
        let late = backoff(30, cap).num_milliseconds();
        assert!((240_000..=360_000).contains(&late), "{late}");
    }
}
