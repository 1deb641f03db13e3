//! What this process has seen lately, for the status page: the last webhook deliveries, events per
//! minute over the last hour and the worker's lock. Kept in memory (the database holds the queue, not
//! the history of deliveries), so it covers this instance since it started.

use std::collections::VecDeque;
use std::sync::Mutex;

use chrono::{DateTime, Utc};

/// How many deliveries the status page lists.
pub const KEPT_DELIVERIES: usize = 20;
/// How many minutes of counts are kept (the chart's width).
pub const KEPT_MINUTES: usize = 60;

/// One webhook request and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub at: DateTime<Utc>,
    pub request_id: String,
    pub status: u16,
    /// Events newly stored, and already stored (accepted bodies only).
    pub stored: u64,
    pub duplicates: u64,
    pub duration_ms: u64,
    /// Why it was refused (refused bodies only).
    pub error: Option<String>,
}

/// Events stored from webhooks and processed by the worker in one minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MinuteCount {
    /// Minutes since the Unix epoch.
    pub minute: i64,
    pub received: u64,
    pub processed: u64,
}

/// The worker of this process, as far as the account's lock goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerLock {
    /// No worker runs in this process (`serve --http-only`, or not started yet).
    NotRunning,
    /// Webhook-only mode: no API budget to share, so no lock is needed.
    NotNeeded,
    /// This instance works for the account.
    Held { since: DateTime<Utc> },
    /// Another instance holds the lock (or it could not be taken); this one stands by.
    Standby { since: DateTime<Utc> },
}

/// A copy of everything recorded, for one page.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub started_at: DateTime<Utc>,
    /// Newest first.
    pub deliveries: Vec<Delivery>,
    /// The last [`KEPT_MINUTES`] minutes, oldest first, one entry per minute (zeros included).
    pub minutes: Vec<MinuteCount>,
    pub worker: WorkerLock,
}

#[derive(Debug)]
struct Inner {
    deliveries: VecDeque<Delivery>,
    minutes: VecDeque<MinuteCount>,
    worker: WorkerLock,
}

/// The recorder, shared by the routes and the worker.
#[derive(Debug)]
pub struct Activity {
    started_at: DateTime<Utc>,
    inner: Mutex<Inner>,
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

fn minute_of(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(60)
}

impl Activity {
    pub fn new() -> Self {
        Self {
            started_at: Utc::now(),
            inner: Mutex::new(Inner {
                deliveries: VecDeque::with_capacity(KEPT_DELIVERIES),
                minutes: VecDeque::with_capacity(KEPT_MINUTES + 1),
                worker: WorkerLock::NotRunning,
            }),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        // A panic while holding the lock leaves plain counters behind: still usable.
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    /// Records a webhook request.
    pub fn record_delivery(&self, delivery: Delivery) {
        let stored = delivery.stored;
        let at = delivery.at;
        self.with(|inner| {
            if inner.deliveries.len() == KEPT_DELIVERIES {
                inner.deliveries.pop_back();
            }
            inner.deliveries.push_front(delivery);
            bump(&mut inner.minutes, at, |m| m.received += stored);
        });
    }

    /// Records events the worker finished.
    pub fn record_processed(&self, count: u64, at: DateTime<Utc>) {
        self.with(|inner| bump(&mut inner.minutes, at, |m| m.processed += count));
    }

    /// Records the worker's relation to the account's lock.
    pub fn set_worker(&self, lock: WorkerLock) {
        self.with(|inner| inner.worker = lock);
    }

    /// The worker's relation to the lock.
    pub fn worker(&self) -> WorkerLock {
        self.with(|inner| inner.worker)
    }

    /// Everything recorded, as of `now`.
    pub fn snapshot(&self, now: DateTime<Utc>) -> Snapshot {
        self.with(|inner| {
            let last = minute_of(now);
            let first = last - KEPT_MINUTES as i64 + 1;
            let minutes = (first..=last)
                .map(|minute| {
                    inner
                        .minutes
                        .iter()
                        .find(|m| m.minute == minute)
                        .copied()
                        .unwrap_or(MinuteCount {
                            minute,
                            ..MinuteCount::default()
                        })
                })
                .collect();
            Snapshot {
                started_at: self.started_at,
                deliveries: inner.deliveries.iter().cloned().collect(),
                minutes,
                worker: inner.worker,
            }
        })
    }
}

/// Adds to the count of `at`'s minute, dropping minutes older than the kept window.
fn bump(
    minutes: &mut VecDeque<MinuteCount>,
    at: DateTime<Utc>,
    add: impl FnOnce(&mut MinuteCount),
) {
    let minute = minute_of(at);
    match minutes.iter_mut().find(|m| m.minute == minute) {
        Some(entry) => add(entry),
        None => {
            let mut entry = MinuteCount {
                minute,
                ..MinuteCount::default()
            };
            add(&mut entry);
            // Kept sorted: the clock may step back a little between two records.
            let at = minutes.partition_point(|m| m.minute < minute);
            minutes.insert(at, entry);
        }
    }
    let newest = minutes.back().map(|m| m.minute).unwrap_or(minute);
    while minutes
        .front()
        .is_some_and(|m| m.minute <= newest - KEPT_MINUTES as i64)
    {
        minutes.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(at: DateTime<Utc>, stored: u64) -> Delivery {
        Delivery {
            at,
            request_id: "r".into(),
            status: 200,
            stored,
            duplicates: 0,
            duration_ms: 1,
            error: None,
        }
    }

    #[test]
    fn counts_per_minute_over_the_last_hour() {
        let activity = Activity::new();
        let now = DateTime::from_timestamp(1_800_000_000 / 60 * 60 + 30, 0).unwrap();
        activity.record_delivery(delivery(now, 3));
        activity.record_delivery(delivery(now - chrono::Duration::minutes(2), 2));
        activity.record_delivery(delivery(now - chrono::Duration::minutes(90), 50));
        activity.record_processed(4, now);
        let snap = activity.snapshot(now);
        assert_eq!(snap.minutes.len(), KEPT_MINUTES);
        assert_eq!(snap.minutes.last().unwrap().received, 3);
        assert_eq!(snap.minutes.last().unwrap().processed, 4);
        assert_eq!(snap.minutes[KEPT_MINUTES - 3].received, 2);
        let total: u64 = snap.minutes.iter().map(|m| m.received).sum();
        assert_eq!(total, 5, "the delivery 90 minutes ago is outside the hour");
    }

    #[test]
    fn keeps_the_newest_deliveries_first() {
        let activity = Activity::new();
        let now = Utc::now();
        for i in 0..(KEPT_DELIVERIES as u64 + 5) {
            activity.record_delivery(delivery(now, i));
        }
        let snap = activity.snapshot(now);
        assert_eq!(snap.deliveries.len(), KEPT_DELIVERIES);
        assert_eq!(snap.deliveries[0].stored, KEPT_DELIVERIES as u64 + 4);
    }
}
