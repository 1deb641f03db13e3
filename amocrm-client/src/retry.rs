//! When and how long to wait before trying a request again.
//!
//! amoCRM has no idempotency keys: a POST repeated after a lost answer can create a duplicate.
//! So reads and PATCH (the same body sets the same values again) are retried on 429, 5xx and
//! transport errors, while other writes are retried only when the request provably did nothing:
//! a 429, or a connection that was never established. A POST that fails after being sent ends in
//! [`Error::MaybeApplied`](crate::Error::MaybeApplied).

use std::time::Duration;

use http::{HeaderMap, Method};
use rand::Rng;

/// Retry bounds. Delays grow as `base_delay * 2^attempt`, capped at `max_delay`, with jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt; 0 disables retrying.
    pub max_retries: u32,
    /// Delay before the first retry; doubled for each further one.
    pub base_delay: Duration,
    /// Cap of one backoff delay. A `Retry-After` longer than this is not waited out: the call
    /// fails with [`Error::RateLimited`](crate::Error::RateLimited) so the caller can reschedule.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Never retry.
    pub fn none() -> Self {
        RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        }
    }

    /// Backoff before retry number `attempt` (0-based): "equal jitter", half fixed and half
    /// random, so concurrent callers spread out yet each still waits a meaningful minimum.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exponential = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(attempt.min(16)));
        let capped = exponential.min(self.max_delay);
        let half = capped / 2;
        let jitter_nanos = rand::rng().random_range(0..=half.as_nanos() as u64);
        half + Duration::from_nanos(jitter_nanos)
    }

    /// How long to wait after a 429: the server's `Retry-After` when given, else the backoff.
    /// `None` means do not wait: the server asks for longer than `max_delay`.
    pub(crate) fn rate_limited_delay(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        match retry_after {
            Some(delay) if delay > self.max_delay => None,
            Some(delay) => Some(delay),
            None => Some(self.backoff(attempt)),
        }
    }
}

/// Methods whose repetition cannot change state twice. PATCH counts: amoCRM's PATCH sets
/// fields to the values sent, so sending the same body again ends in the same state.
pub(crate) fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PATCH | Method::PUT
    )
}

/// Parses `Retry-After` as delta-seconds or an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let delta = date.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let policy = RetryPolicy {
            max_retries: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
        };
        for _ in 0..100 {
            let first = policy.backoff(0);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = policy.backoff(2);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            let late = policy.backoff(30);
            assert!(late >= Duration::from_millis(500) && late <= Duration::from_millis(1000));
        }
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
        headers.insert(
            http::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
        headers.insert(http::header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn long_retry_after_is_not_waited_out() {
        let policy = RetryPolicy::default();
        assert_eq!(
            policy.rate_limited_delay(0, Some(Duration::from_secs(2))),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            policy.rate_limited_delay(0, Some(Duration::from_secs(3600))),
            None
        );
    }

    #[test]
    fn reads_and_patch_are_idempotent() {
        assert!(is_idempotent(&Method::GET));
        assert!(is_idempotent(&Method::PATCH));
        assert!(!is_idempotent(&Method::POST));
        assert!(!is_idempotent(&Method::DELETE));
    }
}
