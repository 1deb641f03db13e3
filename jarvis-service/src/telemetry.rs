//! Logging, request ids and the Prometheus recorder (the metrics themselves are in [`crate::metrics`]).

use std::io::IsTerminal;

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::PrometheusHandle;
use tracing_subscriber::EnvFilter;

pub use crate::metrics::names;

/// Installs the `tracing` subscriber: `RUST_LOG` filters (default `info`, without PostgreSQL's
/// notices such as the migrations' "already exists, skipping"), JSON lines when asked. Colours only
/// on a terminal (and never with `NO_COLOR` set), so log files and journald get plain text.
pub fn init_logging(json: bool) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx::postgres::notice=warn"));
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    // A second call (tests, embedded use) keeps the first subscriber.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// The process-wide Prometheus recorder, every metric registered at zero.
pub fn metrics_handle() -> PrometheusHandle {
    crate::metrics::install()
}

/// The header carrying a request's id, in and out.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The id of the request being served: the caller's `X-Request-Id` when it is sensible, else a new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// A caller's id is kept when it is short and plain (it goes into every log line of the request).
fn acceptable_request_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=".contains(&b))
}

/// A new random request id (16 hex digits).
pub fn new_request_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Middleware: puts the [`RequestId`] in the request's extensions (the HTTP span logs it) and echoes
/// it in the answer's `X-Request-Id`.
pub async fn request_id(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|id| acceptable_request_id(id))
        .map(str::to_owned)
        .unwrap_or_else(new_request_id);
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut response = next.run(req).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// `1-3,7,9-10`: event ids for a batch's span, short however long the batch.
pub fn compact_ids(ids: &[i64]) -> String {
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}-{end}"));
        }
        i += 1;
    }
    out
}

/// A connection URL fit for logs and error messages: the password, and a `password` query parameter,
/// replaced by `***`. What cannot be parsed is not shown at all (it could be anything, a password
/// included).
pub fn redact_url(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return "<a URL that cannot be parsed>".to_string();
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    if parsed.query_pairs().any(|(key, _)| key == "password") {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(key, value)| {
                let value = if key == "password" {
                    "***".to_string()
                } else {
                    value.into_owned()
                };
                (key.into_owned(), value)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

#[cfg(test)]
mod redaction_tests {
    use super::redact_url;

    #[test]
    fn passwords_never_survive_redaction() {
        let shown = redact_url("postgres://app:s3cr%40t@db.example.com:5432/app?sslmode=require");
        assert_eq!(
            shown,
            "postgres://app:***@db.example.com:5432/app?sslmode=require"
        );
        let shown = redact_url("postgres://app@db/app?password=hunter2&application_name=jarvis");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("password=***"), "{shown}");
        assert!(shown.contains("application_name=jarvis"), "{shown}");
        assert_eq!(redact_url("sqlite://jarvis.db"), "sqlite://jarvis.db");
        let shown = redact_url("postgres://app:hunter2@db:notaport/app");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_compacted_into_ranges() {
        assert_eq!(compact_ids(&[3, 1, 2, 7, 9, 10, 10]), "1-3,7,9-10");
        assert_eq!(compact_ids(&[]), "");
        assert_eq!(compact_ids(&[5]), "5");
    }

    #[test]
    fn only_plain_request_ids_are_taken() {
        assert!(acceptable_request_id("3f2a-ab_c.1"));
        assert!(!acceptable_request_id(""));
        assert!(!acceptable_request_id("a b"));
        assert!(!acceptable_request_id("x\ny"));
        assert!(!acceptable_request_id(&"a".repeat(129)));
        assert_eq!(new_request_id().len(), 16);
    }
}
