//! The client's request counts: exported to Prometheus and recorded in `amocrm_api_usage`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use amocrm_client::Client;
use chrono::{Timelike, Utc};
use jarvis_store::{ApiUsage, DynStore};

use crate::telemetry::names;

/// Publishes the client's counters to Prometheus (absolute values: the client counts since start).
pub fn export_usage(client: &Client) {
    let usage = client.usage();
    for ((endpoint, status), count) in &usage.requests {
        metrics::counter!(names::API_REQUESTS, "endpoint" => endpoint.clone(), "status" => status.to_string())
            .absolute(*count);
    }
    metrics::counter!(names::RATE_LIMIT_WAITS).absolute(usage.rate_limit_waits);
    metrics::counter!(names::RATE_LIMIT_WAIT_SECONDS)
        .absolute(usage.rate_limit_wait_time.as_secs());
    metrics::counter!(names::API_RETRIES).absolute(usage.retries);
    metrics::counter!(names::TOKEN_REFRESHES).absolute(usage.token_refreshes);
}

/// Copies the client's request counts into `amocrm_api_usage` so `jarvis status` (another process) can
/// report use against the budget.
pub struct UsageRecorder {
    client: Client,
    recorded: BTreeMap<(String, u16), u64>,
    last_flush: Option<Instant>,
}

impl UsageRecorder {
    const EVERY: Duration = Duration::from_secs(5);

    pub fn new(client: Client) -> Self {
        Self {
            client,
            recorded: BTreeMap::new(),
            last_flush: None,
        }
    }

    pub async fn flush(&mut self, store: &DynStore) {
        if self.last_flush.is_some_and(|t| t.elapsed() < Self::EVERY) {
            return;
        }
        self.last_flush = Some(Instant::now());
        export_usage(&self.client);
        let now = Utc::now();
        let minute = now
            .with_second(0)
            .and_then(|t| t.with_nanosecond(0))
            .unwrap_or(now);
        let usage = self.client.usage();
        let mut rows = Vec::new();
        for (key, count) in &usage.requests {
            let before = self.recorded.get(key).copied().unwrap_or(0);
            if *count > before {
                rows.push(ApiUsage {
                    minute,
                    endpoint: key.0.clone(),
                    status: key.1,
                    count: count - before,
                });
            }
        }
        if rows.is_empty() {
            return;
        }
        match store.record_api_usage(&rows).await {
            Ok(()) => self.recorded = usage.requests.clone(),
            Err(e) => tracing::warn!(error = %e, "recording API usage failed; will retry"),
        }
    }
}
