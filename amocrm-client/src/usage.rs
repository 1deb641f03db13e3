//! Counting what the client spends of the account's API budget.
//!
//! Requests are keyed by an endpoint template (`GET /api/v4/leads/{id}`), never by a concrete
//! path, so the number of keys stays small enough for metrics labels.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// Endpoint template and HTTP status (0 for a transport error), e.g. `("GET /api/v4/leads", 200)`.
pub type UsageKey = (String, u16);

/// Counters since the client was built. Read with [`Client::usage`](crate::Client::usage).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct UsageSnapshot {
    /// Requests sent, by endpoint template and status (0: no answer, a transport error).
    pub requests: BTreeMap<UsageKey, u64>,
    /// Requests that had to wait for the rate limiter, and the total time they waited.
    pub rate_limit_waits: u64,
    /// Total time spent waiting for the rate limiter.
    pub rate_limit_wait_time: Duration,
    /// Retries made (after 429, 5xx or transport errors) and OAuth refreshes made.
    pub retries: u64,
    /// OAuth refreshes made.
    pub token_refreshes: u64,
}

impl UsageSnapshot {
    /// All requests sent, whatever their outcome.
    pub fn total_requests(&self) -> u64 {
        self.requests.values().sum()
    }

    /// Requests sent to one endpoint template, whatever their status.
    pub fn requests_to(&self, endpoint: &str) -> u64 {
        self.requests
            .iter()
            .filter(|((e, _), _)| e == endpoint)
            .map(|(_, n)| n)
            .sum()
    }

    /// Requests sent to one endpoint template that got `status`.
    pub fn count(&self, endpoint: &str, status: u16) -> u64 {
        self.requests
            .get(&(endpoint.to_owned(), status))
            .copied()
            .unwrap_or(0)
    }
}

/// What happened to one HTTP request, passed to a [`RequestObserver`].
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct RequestEvent<'a> {
    /// Endpoint template, e.g. `GET /api/v4/leads/{id}`.
    pub endpoint: &'a str,
    /// HTTP status, or 0 when no answer came (transport error).
    pub status: u16,
    /// Time from sending to the response headers (or the failure).
    pub elapsed: Duration,
    /// 0 for the first try, then 1, 2, ... for retries.
    pub attempt: u32,
}

/// Hook for exporting metrics as requests happen (e.g. to Prometheus). Calls are synchronous
/// and on the request path: keep them cheap.
pub trait RequestObserver: Send + Sync {
    /// Called after every attempt.
    fn on_request(&self, event: &RequestEvent<'_>);
    /// A request waited `waited` for the rate limiter.
    fn on_rate_limit_wait(&self, waited: Duration) {
        let _ = waited;
    }
}

#[derive(Debug, Default)]
pub(crate) struct Usage {
    inner: Mutex<UsageSnapshot>,
}

impl Usage {
    fn with<R>(&self, f: impl FnOnce(&mut UsageSnapshot) -> R) -> R {
        f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub(crate) fn record_request(&self, endpoint: &str, status: u16) {
        self.with(|u| *u.requests.entry((endpoint.to_owned(), status)).or_default() += 1);
    }

    pub(crate) fn record_wait(&self, waited: Duration) {
        self.with(|u| {
            u.rate_limit_waits += 1;
            u.rate_limit_wait_time += waited;
        });
    }

    pub(crate) fn record_retry(&self) {
        self.with(|u| u.retries += 1);
    }

    pub(crate) fn record_refresh(&self) {
        self.with(|u| u.token_refreshes += 1);
    }

    pub(crate) fn snapshot(&self) -> UsageSnapshot {
        self.with(|u| u.clone())
    }
}
