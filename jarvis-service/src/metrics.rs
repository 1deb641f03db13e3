//! Every Prometheus metric of the service, in one place: name, type, help and the known values of its
//! labels. [`install`] registers them all at zero when the process starts, so a fresh `/metrics`
//! already lists every series an alert or a dashboard uses and `rate()` sees the first increment.
//!
//! One prefix (`jarvis_`), units in the names (`_seconds`, `_bytes`, `_total` for counters).

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Metric names.
pub mod names {
    pub const BUILD_INFO: &str = "jarvis_build_info";
    pub const WEBHOOK_REQUESTS: &str = "jarvis_webhook_requests_total";
    pub const WEBHOOK_DURATION: &str = "jarvis_webhook_duration_seconds";
    pub const WEBHOOK_LAST_ACCEPTED: &str = "jarvis_webhook_last_accepted_timestamp_seconds";
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
    pub const WORKER_BATCH_DURATION: &str = "jarvis_worker_batch_duration_seconds";
    pub const WORKER_RESTARTS: &str = "jarvis_worker_restarts_total";
    pub const WORKER_LOCK_HELD: &str = "jarvis_worker_lock_held";
    pub const WORKER_LOCK_LOST: &str = "jarvis_worker_lock_lost_total";
    pub const API_MODE: &str = "jarvis_amocrm_api_mode";
    pub const API_REQUESTS: &str = "jarvis_amocrm_api_requests_total";
    pub const API_BUDGET_PER_MINUTE: &str = "jarvis_amocrm_api_budget_per_minute";
    pub const API_BUDGET_PER_HOUR: &str = "jarvis_amocrm_api_budget_per_hour";
    pub const RATE_LIMIT_WAITS: &str = "jarvis_amocrm_rate_limit_waits_total";
    pub const RATE_LIMIT_WAIT_SECONDS: &str = "jarvis_amocrm_rate_limit_wait_seconds_total";
    pub const API_RETRIES: &str = "jarvis_amocrm_api_retries_total";
    pub const TOKEN_REFRESHES: &str = "jarvis_amocrm_token_refreshes_total";
    pub const AUTH_ERRORS: &str = "jarvis_amocrm_auth_errors_total";
    pub const TOKEN_EXPIRY: &str = "jarvis_amocrm_token_expiry_timestamp_seconds";
    pub const API_ACCESS_BROKEN: &str = "jarvis_api_access_broken";
    pub const API_ACCESS_ERRORS: &str = "jarvis_api_access_errors_total";
    pub const BATCHES_ABANDONED: &str = "jarvis_batches_abandoned_total";
    pub const REJECTED_PRUNED: &str = "jarvis_rejected_pruned_total";
    pub const WEBHOOK_RESUBSCRIBED: &str = "jarvis_webhook_resubscribed_total";
    pub const OPEN_GAPS: &str = "jarvis_open_gaps";
    pub const OPEN_GAP_SECONDS: &str = "jarvis_open_gap_seconds";
    pub const CATCH_UP_EVENTS_READ: &str = "jarvis_catch_up_events_read_total";
    pub const CATCH_UP_ENTITIES: &str = "jarvis_catch_up_entities_total";
    pub const LINK_FAILURES: &str = "jarvis_link_failures_total";
    pub const LINKS: &str = "jarvis_links_total";
    pub const SPOOL_BYTES: &str = "jarvis_spool_bytes";
    pub const SPOOL_BODIES: &str = "jarvis_spool_bodies";
    pub const SPOOLED: &str = "jarvis_spooled_total";
    pub const SPOOL_DRAINED: &str = "jarvis_spool_drained_total";
    pub const SPOOL_REFUSED: &str = "jarvis_spool_refused_total";
    pub const BODY_READ_TIMEOUTS: &str = "jarvis_http_body_read_timeouts_total";
    pub const HTTP_CONNECTIONS: &str = "jarvis_http_connections";
    pub const HTTP_IDLE_CLOSED: &str = "jarvis_http_idle_closed_total";
}

/// The type of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

/// One metric: what it is and the label values it is registered with at start.
#[derive(Debug, Clone, Copy)]
pub struct MetricDef {
    pub name: &'static str,
    pub kind: MetricKind,
    pub help: &'static str,
    /// Label names with their known values; every combination is registered at zero.
    pub labels: &'static [(&'static str, &'static [&'static str])],
}

const fn def(name: &'static str, kind: MetricKind, help: &'static str) -> MetricDef {
    MetricDef {
        name,
        kind,
        help,
        labels: &[],
    }
}

const fn labelled(
    name: &'static str,
    kind: MetricKind,
    help: &'static str,
    labels: &'static [(&'static str, &'static [&'static str])],
) -> MetricDef {
    MetricDef {
        name,
        kind,
        help,
        labels,
    }
}

use MetricKind::{Counter, Gauge, Histogram};
use names::*;

/// Statuses the webhook endpoint answers with.
pub const WEBHOOK_STATUSES: &[&str] = &["200", "400", "404", "408", "413", "415", "503"];
/// Reasons a webhook body is refused (the `reason` label of `jarvis_webhooks_rejected_total`).
pub const REJECT_REASONS: &[&str] = &[
    "too_large",
    "content_type",
    "malformed",
    "account",
    "unstorable",
];
/// The endpoints the worker calls, as the client names them.
pub const API_ENDPOINTS: &[&str] = &["GET /api/v4/leads", "GET /api/v4/contacts"];
/// Kinds of authorization trouble with amoCRM (`jarvis_amocrm_auth_errors_total`).
pub const AUTH_ERROR_KINDS: &[&str] = &["no_token", "token_request", "token_store", "unauthorized"];

/// Why amoCRM refuses API access (`reason` of `jarvis_api_access_broken` and
/// `jarvis_api_access_errors_total`); the labels of [`crate::amo::AccessProblem`].
pub const ACCESS_PROBLEMS: &[&str] = &[
    "unauthorized",
    "payment_required",
    "forbidden",
    "token_refresh_refused",
    "no_token",
];
/// The link columns of a deal (the `link` label of the linker's metrics).
pub const LINK_COLUMNS: &[&str] = &["client", "conversation"];
/// Why a link query failed (`jarvis_link_failures_total`).
pub const LINK_FAILURE_KINDS: &[&str] = &["timeout", "query", "value", "unavailable", "store"];
/// What a link query's answer did to the column (`jarvis_links_total`).
pub const LINK_OUTCOMES: &[&str] = &["linked", "cleared", "kept_other"];

/// Every metric the service exports.
pub const METRICS: &[MetricDef] = &[
    labelled(
        BUILD_INFO,
        Gauge,
        "Always 1; the labels say which build runs",
        &[],
    ),
    labelled(
        WEBHOOK_REQUESTS,
        Counter,
        "Webhook requests by HTTP status",
        &[("status", WEBHOOK_STATUSES)],
    ),
    def(
        WEBHOOK_DURATION,
        Histogram,
        "Time to read, parse and commit a webhook body (webhook latency)",
    ),
    def(
        WEBHOOK_LAST_ACCEPTED,
        Gauge,
        "Unix time of the last accepted webhook body (the process start until one arrives)",
    ),
    def(
        EVENTS_RECEIVED,
        Counter,
        "Events parsed from accepted webhook bodies",
    ),
    def(EVENTS_STORED, Counter, "Events newly stored"),
    def(
        EVENTS_DUPLICATE,
        Counter,
        "Events already stored (same event_hash)",
    ),
    labelled(
        WEBHOOKS_REJECTED,
        Counter,
        "Webhook bodies refused and kept, by reason",
        &[("reason", REJECT_REASONS)],
    ),
    def(EVENTS_PROCESSED, Counter, "Events processed by the worker"),
    labelled(
        EVENTS_FAILED,
        Counter,
        "Failed processing attempts (transient: postponed; permanent: counted towards dead)",
        &[("kind", &["transient", "permanent"])],
    ),
    def(
        EVENTS_DEAD,
        Counter,
        "Events that gave up after the maximum attempts",
    ),
    def(
        BACKLOG,
        Gauge,
        "Events waiting to be processed (read from the database at scrape)",
    ),
    def(
        DEAD,
        Gauge,
        "Dead events waiting for a replay (read from the database at scrape)",
    ),
    def(
        OLDEST_PENDING_AGE,
        Gauge,
        "Age of the oldest waiting event (0 when none)",
    ),
    def(
        PROCESSING_LAG,
        Histogram,
        "From webhook receipt to the mirror row written (webhook-to-row lag)",
    ),
    def(
        WORKER_BATCH_DURATION,
        Histogram,
        "Time the worker spends on one claimed batch",
    ),
    def(
        WORKER_RESTARTS,
        Counter,
        "Times the worker stopped on a panic and was started again",
    ),
    def(
        WORKER_LOCK_HELD,
        Gauge,
        "1 while this instance's worker holds the account's lock (API mode)",
    ),
    def(
        WORKER_LOCK_LOST,
        Counter,
        "Times this instance's worker found it had lost the account's lock",
    ),
    def(
        API_MODE,
        Gauge,
        "1 when amoCRM credentials are configured (API mode), 0 in webhook-only mode",
    ),
    labelled(
        API_REQUESTS,
        Counter,
        "amoCRM API requests by endpoint and status (0: no answer)",
        &[("endpoint", API_ENDPOINTS), ("status", &["200", "429"])],
    ),
    def(
        API_BUDGET_PER_MINUTE,
        Gauge,
        "AMOCRM_RATE_PER_MINUTE (0: no per-minute budget)",
    ),
    def(
        API_BUDGET_PER_HOUR,
        Gauge,
        "AMOCRM_RATE_PER_HOUR (0: no per-hour budget)",
    ),
    def(
        RATE_LIMIT_WAITS,
        Counter,
        "Requests that waited for the amoCRM rate limiter",
    ),
    def(
        RATE_LIMIT_WAIT_SECONDS,
        Counter,
        "Time spent waiting for the amoCRM rate limiter",
    ),
    def(
        API_RETRIES,
        Counter,
        "Retries of amoCRM requests after 429, 5xx or transport errors",
    ),
    def(TOKEN_REFRESHES, Counter, "OAuth token refreshes made"),
    labelled(
        AUTH_ERRORS,
        Counter,
        "Fetches that failed for want of a working amoCRM token, by kind",
        &[("kind", AUTH_ERROR_KINDS)],
    ),
    def(
        TOKEN_EXPIRY,
        Gauge,
        "Unix time the stored OAuth access token expires (0: no OAuth token)",
    ),
    labelled(
        API_ACCESS_BROKEN,
        Gauge,
        "1 while amoCRM refuses API access for this reason (401, 402, 403, refused refresh): needs a person",
        &[("reason", ACCESS_PROBLEMS)],
    ),
    labelled(
        API_ACCESS_ERRORS,
        Counter,
        "amoCRM answers that need a person (401, 402, 403, refused token refresh), by reason",
        &[("reason", ACCESS_PROBLEMS)],
    ),
    def(
        BATCHES_ABANDONED,
        Counter,
        "Batches dropped because the account lock or the events' leases could not be kept",
    ),
    def(
        REJECTED_PRUNED,
        Counter,
        "Refused bodies deleted by retention or the size cap",
    ),
    def(
        WEBHOOK_RESUBSCRIBED,
        Counter,
        "Times the webhook was found missing or disabled in amoCRM and subscribed again",
    ),
    def(
        OPEN_GAPS,
        Gauge,
        "Gaps (spans that may hold missed changes) not caught up yet",
    ),
    def(
        OPEN_GAP_SECONDS,
        Gauge,
        "From the start of the oldest open gap to now; 0 when none is open",
    ),
    def(
        CATCH_UP_EVENTS_READ,
        Counter,
        "amoCRM events-feed events read to catch up gaps",
    ),
    labelled(
        CATCH_UP_ENTITIES,
        Counter,
        "Leads and contacts queued for a refresh by catch-up, by entity",
        &[("entity", &["lead", "contact"])],
    ),
    labelled(
        LINK_FAILURES,
        Counter,
        "Link queries (JARVIS_LINK_*_SQL) that failed, by link column and kind",
        &[("link", LINK_COLUMNS), ("kind", LINK_FAILURE_KINDS)],
    ),
    labelled(
        LINKS,
        Counter,
        "Link columns written from the link queries' answers, by link column and outcome",
        &[("link", LINK_COLUMNS), ("outcome", LINK_OUTCOMES)],
    ),
    def(
        SPOOL_BYTES,
        Gauge,
        "Bytes of webhook bodies waiting in the local spool",
    ),
    def(
        SPOOL_BODIES,
        Gauge,
        "Webhook bodies waiting in the local spool",
    ),
    def(
        SPOOLED,
        Counter,
        "Webhook bodies spooled because the database could not commit them in time",
    ),
    def(
        SPOOL_DRAINED,
        Counter,
        "Spooled bodies moved into the database",
    ),
    labelled(
        SPOOL_REFUSED,
        Counter,
        "Bodies the spool could not take, by reason (full, error: not writable)",
        &[("reason", &["full", "error"])],
    ),
    def(
        BODY_READ_TIMEOUTS,
        Counter,
        "Webhook requests answered 408 because the body came too slowly",
    ),
    def(HTTP_CONNECTIONS, Gauge, "Open HTTP connections"),
    def(
        HTTP_IDLE_CLOSED,
        Counter,
        "Keep-alive connections closed after the idle timeout",
    ),
];

/// Buckets of the webhook latency histogram (seconds).
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
/// Buckets of the lag and batch duration histograms (seconds).
const LAG_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
];

/// The process-wide Prometheus recorder, installed once with every metric registered at zero.
/// `metrics` has one global recorder, so every app in the process (several in tests) shares it.
pub fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(WEBHOOK_DURATION.into()), LATENCY_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(PROCESSING_LAG.into()), LAG_BUCKETS)
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(WORKER_BATCH_DURATION.into()),
                        LAG_BUCKETS,
                    )
                })
                .expect("static buckets are valid")
                .build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is installed; then our handle simply renders nothing.
            let _ = metrics::set_global_recorder(recorder);
            register_all();
            handle
        })
        .clone()
}

/// Every combination of a metric's known label values.
fn label_sets(def: &MetricDef) -> Vec<Vec<metrics::Label>> {
    let mut sets: Vec<Vec<metrics::Label>> = vec![Vec::new()];
    for (name, values) in def.labels {
        sets = sets
            .into_iter()
            .flat_map(|set| {
                values.iter().map(move |value| {
                    let mut next = set.clone();
                    next.push(metrics::Label::new(*name, *value));
                    next
                })
            })
            .collect();
    }
    sets
}

fn register_all() {
    for def in METRICS {
        match def.kind {
            Counter => metrics::describe_counter!(def.name, def.help),
            Gauge => metrics::describe_gauge!(def.name, def.help),
            Histogram => metrics::describe_histogram!(def.name, def.help),
        }
        if def.name == BUILD_INFO {
            continue;
        }
        for labels in label_sets(def) {
            match def.kind {
                Counter => metrics::counter!(def.name, labels).increment(0),
                Gauge => metrics::gauge!(def.name, labels).increment(0.0),
                Histogram => {
                    // Registered with no observation: the series exists with zero counts.
                    let _ = metrics::histogram!(def.name, labels);
                }
            }
        }
    }
    metrics::gauge!(
        BUILD_INFO,
        "version" => env!("CARGO_PKG_VERSION"),
        "profile" => if cfg!(debug_assertions) { "debug" } else { "release" },
        "os" => std::env::consts::OS,
        "arch" => std::env::consts::ARCH,
    )
    .set(1.0);
    // Until a webhook arrives, the silence is counted from the start.
    metrics::gauge!(WEBHOOK_LAST_ACCEPTED).set(unix_now());
}

/// Seconds since the Unix epoch, as Prometheus timestamps are.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Names of every series a fresh `/metrics` shows, histogram parts included (`_bucket`, `_sum`,
/// `_count`): what alert rules and dashboards may use.
pub fn exported_series() -> Vec<String> {
    let mut out = Vec::new();
    for def in METRICS {
        match def.kind {
            Histogram => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    out.push(format!("{}{suffix}", def.name));
                }
            }
            _ => out.push(def.name.to_owned()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_have_one_prefix_and_counters_end_in_total() {
        let mut seen = std::collections::BTreeSet::new();
        for def in METRICS {
            assert!(def.name.starts_with("jarvis_"), "{}", def.name);
            assert!(seen.insert(def.name), "{} twice", def.name);
            assert_eq!(
                def.kind == Counter,
                def.name.ends_with("_total"),
                "{}: counters and only counters end in _total",
                def.name
            );
        }
    }

    #[test]
    fn label_combinations_are_all_registered() {
        let api = METRICS.iter().find(|d| d.name == API_REQUESTS).unwrap();
        assert_eq!(label_sets(api).len(), API_ENDPOINTS.len() * 2);
        let plain = METRICS.iter().find(|d| d.name == EVENTS_DEAD).unwrap();
        assert_eq!(label_sets(plain), vec![Vec::new()]);
    }

    #[test]
    fn the_readme_lists_every_metric() {
        let readme = include_str!("../../README.md");
        for def in METRICS {
            assert!(
                readme.contains(&format!("`{}`", def.name)),
                "{} is missing from the README",
                def.name
            );
        }
    }
}
