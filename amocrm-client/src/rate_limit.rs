//! A rate limiter shared by every request of one account.
//!
//! amoCRM states its limits as "no more than N requests per second" and the old design budgeted
//! "250 a minute, 7,000 an hour", so each budget here is a sliding window: at most `limit` requests
//! start in any interval of `period`. A GCRA quota can only promise that with a burst of one,
//! which would spread a per-minute budget evenly and waste it; a window of timestamps is exact.
//!
//! Callers reserve a slot under a short lock and then sleep until it, so waiters go in arrival
//! order and nobody polls. Time is `tokio::time::Instant`, so tests drive it with paused time.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Request budgets for one account. `per_second` is required; the others are optional extras.
///
/// amoCRM allows 7 requests a second per integration (and about 50 per account across all
/// integrations): exceeding it answers 429 and persistent abuse gets the IP blocked (403).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests a second.
    pub per_second: u32,
    /// Optional requests a minute.
    pub per_minute: Option<u32>,
    /// Optional requests an hour.
    pub per_hour: Option<u32>,
    /// Added to every window. amoCRM counts requests as they arrive, so requests started exactly a
    /// window apart can land inside one window after network and scheduling jitter and draw a 429.
    /// Default 100 ms (7 a second then means 7 in any 1.1 s).
    pub guard: Duration,
}

/// The default [`RateLimit::guard`].
pub const DEFAULT_GUARD: Duration = Duration::from_millis(100);

impl Default for RateLimit {
    /// 7 requests a second, no minute or hour budget.
    fn default() -> Self {
        RateLimit {
            per_second: 7,
            per_minute: None,
            per_hour: None,
            guard: DEFAULT_GUARD,
        }
    }
}

impl RateLimit {
    /// The budgets of the previous design: 7/s, 250/min, 7,000/h.
    pub fn with_budgets() -> Self {
        RateLimit {
            per_second: 7,
            per_minute: Some(250),
            per_hour: Some(7_000),
            guard: DEFAULT_GUARD,
        }
    }
}

#[derive(Debug)]
struct Window {
    limit: usize,
    period: Duration,
    /// Start times of the most recent requests (at most `limit`), oldest first; may hold
    /// reserved times in the future.
    starts: VecDeque<Instant>,
}

/// The wait a call to [`RateLimiter::acquire`] imposed, for usage reporting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acquired {
    /// How long the request waited.
    pub waited: Duration,
}

/// Sliding-window limiter over one or more budgets. Share it with an `Arc`; every clone of a
/// [`Client`](crate::Client) already does.
#[derive(Debug)]
pub struct RateLimiter {
    windows: Mutex<Vec<Window>>,
}

impl RateLimiter {
    /// Fails when a budget is zero, which would block every request forever.
    pub fn new(limit: RateLimit) -> Result<Self, crate::Error> {
        let mut windows = Vec::new();
        for (budget, period, name) in [
            (Some(limit.per_second), Duration::from_secs(1), "per_second"),
            (limit.per_minute, Duration::from_secs(60), "per_minute"),
            (limit.per_hour, Duration::from_secs(3600), "per_hour"),
        ] {
            match budget {
                None => {}
                Some(0) => {
                    return Err(crate::Error::Config(format!(
                        "rate limit {name} must be at least 1"
                    )));
                }
                Some(n) => windows.push(Window {
                    limit: n as usize,
                    period: period + limit.guard,
                    starts: VecDeque::with_capacity((n as usize).min(1024)),
                }),
            }
        }
        Ok(RateLimiter {
            windows: Mutex::new(windows),
        })
    }

    /// Waits until a request may start under every budget, and counts it. The slot is booked
    /// on the first poll, so a wait that is cancelled still uses it (erring on the safe side).
    pub async fn acquire(&self) -> Acquired {
        let now = Instant::now();
        let at = self.reserve(now);
        if at > now {
            tokio::time::sleep_until(at).await;
        }
        Acquired {
            waited: at.saturating_duration_since(now),
        }
    }

    /// When a request asking now would start, without booking it: now when the budgets have room,
    /// later when they are spent. A caller that batches work can gather until then, so the wait the
    /// limiter would impose anyway collects more work into the next request.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use amocrm_client::{RateLimit, RateLimiter};
    /// let limiter = RateLimiter::new(RateLimit { per_second: 1, ..RateLimit::default() }).unwrap();
    /// assert!(limiter.ready_at() <= tokio::time::Instant::now());
    /// limiter.acquire().await;
    /// assert!(limiter.ready_at() > tokio::time::Instant::now());
    /// # }
    /// ```
    pub fn ready_at(&self) -> Instant {
        let windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        earliest_start(&windows, Instant::now())
    }

    /// Books the earliest start time at or after `now` that keeps every window within its limit.
    fn reserve(&self, now: Instant) -> Instant {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let at = earliest_start(&windows, now);
        for window in windows.iter_mut() {
            window.starts.push_back(at);
            while window.starts.len() > window.limit {
                window.starts.pop_front();
            }
        }
        at
    }
}

/// The earliest start time at or after `now` that keeps every window within its limit.
fn earliest_start(windows: &[Window], now: Instant) -> Instant {
    // Starts are booked in order, so a new one never precedes the latest booking.
    let mut at = windows
        .iter()
        .filter_map(|w| w.starts.back().copied())
        .fold(now, Instant::max);
    for window in windows {
        if window.starts.len() >= window.limit {
            let oldest_counted = window.starts[window.starts.len() - window.limit];
            at = at.max(oldest_counted + window.period);
        }
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_second: u32, per_minute: Option<u32>) -> RateLimiter {
        RateLimiter::new(RateLimit {
            per_second,
            per_minute,
            per_hour: None,
            guard: Duration::ZERO,
        })
        .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn the_guard_widens_every_window() {
        let limiter = RateLimiter::new(RateLimit::default()).unwrap();
        let start = Instant::now();
        let mut starts = Vec::new();
        for _ in 0..15 {
            limiter.acquire().await;
            starts.push(Instant::now() - start);
        }
        assert!(starts[..7].iter().all(|d| d.is_zero()));
        assert_eq!(starts[7], Duration::from_millis(1_100));
        assert_eq!(starts[14], Duration::from_millis(2_200));
    }

    #[tokio::test(start_paused = true)]
    async fn ready_at_tells_the_wait_without_booking() {
        let limiter = limiter(2, None);
        let t0 = Instant::now();
        assert_eq!(limiter.ready_at(), t0);
        limiter.acquire().await;
        // Asking does not book: still room for one more now.
        assert_eq!(limiter.ready_at(), t0);
        assert_eq!(limiter.ready_at(), t0);
        limiter.acquire().await;
        assert_eq!(limiter.ready_at(), t0 + Duration::from_secs(1));
        let third = limiter.acquire().await;
        assert_eq!(third.waited, Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn at_most_n_starts_in_any_second() {
        let limiter = limiter(7, None);
        let start = Instant::now();
        let mut starts = Vec::new();
        for _ in 0..21 {
            limiter.acquire().await;
            starts.push(Instant::now() - start);
        }
        assert!(starts[..7].iter().all(|d| d.is_zero()));
        assert_eq!(starts[7], Duration::from_secs(1));
        assert_eq!(starts[14], Duration::from_secs(2));
        for pair in starts.windows(8) {
            assert!(pair[7] - pair[0] >= Duration::from_secs(1), "{pair:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn minute_budget_holds_across_seconds() {
        let limiter = limiter(7, Some(10));
        let start = Instant::now();
        let mut waited = Duration::ZERO;
        for _ in 0..11 {
            waited += limiter.acquire().await.waited;
        }
        // 7 at once, 3 a second later, the 11th only when the first leaves the minute window.
        assert_eq!(Instant::now() - start, Duration::from_secs(60));
        assert!(waited >= Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_the_budget() {
        let limiter = std::sync::Arc::new(limiter(5, None));
        let start = Instant::now();
        let tasks: Vec<_> = (0..15)
            .map(|_| {
                let limiter = limiter.clone();
                tokio::spawn(async move {
                    limiter.acquire().await;
                    Instant::now() - start
                })
            })
            .collect();
        let mut starts = Vec::new();
        for task in tasks {
            starts.push(task.await.unwrap());
        }
        starts.sort();
        assert_eq!(starts[4], Duration::ZERO);
        assert_eq!(starts[5], Duration::from_secs(1));
        assert_eq!(starts[14], Duration::from_secs(2));
    }

    #[test]
    fn zero_budget_is_a_config_error() {
        assert!(
            RateLimiter::new(RateLimit {
                per_second: 0,
                ..RateLimit::default()
            })
            .is_err()
        );
    }
}
