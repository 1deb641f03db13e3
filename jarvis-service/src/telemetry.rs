//! Logging and Prometheus metrics.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

/// Installs the `tracing` subscriber: `RUST_LOG` filters (default `info`, without PostgreSQL's
/// notices such as the migrations' "already exists, skipping"), JSON lines when asked.
pub fn init_logging(json: bool) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx::postgres::notice=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second call (tests, embedded use) keeps the first subscriber.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// The process-wide Prometheus recorder. `metrics` has one global recorder, so every app in the process
/// (several in tests) shares it.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let latency = [
                0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ];
            let lag = [
                0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
            ];
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(names::WEBHOOK_DURATION.into()), &latency)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(names::PROCESSING_LAG.into()), &lag)
                })
                .expect("static buckets are valid")
                .build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is installed; then our handle simply renders nothing.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            handle
        })
        .clone()
}

/// Metric names, in one place.
pub mod names {
    pub const WEBHOOK_REQUESTS: &str = "jarvis_webhook_requests_total";
    pub const WEBHOOK_DURATION: &str = "jarvis_webhook_duration_seconds";
    pub const EVENTS_RECEIVED: &str = "jarvis_events_received_total";
    pub const EVENTS_STORED: &str = "jarvis_events_stored_total";
    pub const EVENTS_DUPLICATE: &str = "jarvis_events_duplicate_total";
    pub const WEBHOOKS_REJECTED: &str = "jarvis_webhooks_rejected_total";
    pub const EVENTS_PROCESSED: &str = "jarvis_events_processed_total";
    pub const EVENTS_FAILED: &str = "jarvis_events_failed_total";
    pub const EVENTS_DEAD: &str = "jarvis_events_dead_total";
    pub const BACKLOG: &str = "jarvis_backlog_events";
    pub const DEAD: &str = "jarvis_dead_events";
    pub const OLDEST_PENDING_AGE: &str = "jarvis_oldest_pending_age_seconds";
    pub const PROCESSING_LAG: &str = "jarvis_processing_lag_seconds";
    pub const API_REQUESTS: &str = "amocrm_api_requests_total";
    pub const RATE_LIMIT_WAITS: &str = "amocrm_rate_limit_waits_total";
    pub const RATE_LIMIT_WAIT_SECONDS: &str = "amocrm_rate_limit_wait_seconds_total";
    pub const WORKER_RESTARTS: &str = "jarvis_worker_restarts_total";
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    use names::*;
    describe_counter!(WEBHOOK_REQUESTS, "Webhook requests by HTTP status");
    describe_histogram!(WEBHOOK_DURATION, "Time to parse and commit a webhook body");
    describe_counter!(
        EVENTS_RECEIVED,
        "Events parsed from accepted webhook bodies"
    );
    describe_counter!(EVENTS_STORED, "Events newly stored");
    describe_counter!(EVENTS_DUPLICATE, "Events already stored (same event_hash)");
    describe_counter!(WEBHOOKS_REJECTED, "Webhook bodies refused, by reason");
    describe_counter!(EVENTS_PROCESSED, "Events processed by the worker");
    describe_counter!(EVENTS_FAILED, "Failed processing attempts");
    describe_counter!(
        EVENTS_DEAD,
        "Events that gave up after the maximum attempts"
    );
    describe_gauge!(BACKLOG, "Events waiting to be processed");
    describe_gauge!(DEAD, "Dead events waiting for a replay");
    describe_gauge!(OLDEST_PENDING_AGE, "Age of the oldest waiting event");
    describe_histogram!(PROCESSING_LAG, "From webhook receipt to processed");
    describe_counter!(API_REQUESTS, "amoCRM API requests by endpoint and status");
    describe_counter!(
        RATE_LIMIT_WAITS,
        "Requests that waited for the amoCRM rate limiter"
    );
    describe_counter!(
        RATE_LIMIT_WAIT_SECONDS,
        "Time spent waiting for the amoCRM rate limiter"
    );
    describe_counter!(
        WORKER_RESTARTS,
        "Times the worker stopped on a panic and was started again"
    );
}
