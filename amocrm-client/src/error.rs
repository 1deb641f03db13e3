//! One error type for everything the client does.
//!
//! Messages name the endpoint template (`GET /api/v4/leads/{id}`) rather than the URL, so they never
//! carry a query string, and never a token: tokens travel in headers and in secret newtypes.

use std::time::Duration;

use serde::Deserialize;

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Boxed source for errors raised by a [`TokenStore`](crate::TokenStore) implementation.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong talking to amoCRM.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// 400: amoCRM refused the request; `errors` lists the offending paths.
    #[error(
        "{endpoint}: request rejected (400): {detail}{}",
        format_validation(errors)
    )]
    Validation {
        /// Endpoint template, e.g. `POST /api/v4/leads`.
        endpoint: String,
        /// amoCRM's summary (`detail` or `title` of the problem body).
        detail: String,
        /// Each refused field, with the caller's item it belongs to in a batch write.
        errors: Vec<ValidationError>,
    },
    /// 401: the token is missing, expired or revoked (after one refresh attempt, with OAuth).
    #[error("{endpoint}: unauthorized (401)")]
    Unauthorized {
        /// Endpoint template.
        endpoint: String,
    },
    /// 402: the account is not paid.
    #[error("{endpoint}: payment required (402): the amoCRM account is not paid")]
    PaymentRequired {
        /// Endpoint template.
        endpoint: String,
    },
    /// 403: access refused; amoCRM also answers this after abuse or repeated limit violations
    /// (the IP is blocked), so stop calling rather than retrying.
    #[error("{endpoint}: forbidden (403): {detail}")]
    Forbidden {
        /// Endpoint template.
        endpoint: String,
        /// amoCRM's explanation.
        detail: String,
    },
    /// 404: no such entity or endpoint.
    #[error("{endpoint}: not found (404)")]
    NotFound {
        /// Endpoint template.
        endpoint: String,
    },
    /// 429 after the retries allowed by the [`RetryPolicy`](crate::RetryPolicy).
    #[error(
        "{endpoint}: too many requests (429){}",
        format_retry_after(retry_after)
    )]
    RateLimited {
        /// Endpoint template.
        endpoint: String,
        /// The server's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// 5xx after the retries allowed.
    #[error("{endpoint}: server error ({status})")]
    Server {
        /// Endpoint template.
        endpoint: String,
        /// The 5xx status.
        status: u16,
    },
    /// Any other status amoCRM answered with.
    #[error("{endpoint}: unexpected status {status}: {detail}")]
    UnexpectedStatus {
        /// Endpoint template.
        endpoint: String,
        /// The status amoCRM answered with.
        status: u16,
        /// amoCRM's explanation, or the start of the body.
        detail: String,
    },
    /// The body did not have the shape this crate expects.
    #[error("{endpoint}: cannot decode the response: {source}")]
    Decode {
        /// Endpoint template.
        endpoint: String,
        /// What did not match.
        #[source]
        source: serde_json::Error,
    },
    /// Connection, TLS or timeout failure. The source has its URL stripped.
    #[error("{endpoint}: transport error: {source}")]
    Transport {
        /// Endpoint template.
        endpoint: String,
        /// The HTTP client's error.
        #[source]
        source: reqwest::Error,
    },
    /// The OAuth token endpoint refused a code exchange or a refresh.
    #[error("{grant}: token request refused ({status}): {detail}")]
    TokenRequest {
        /// `authorization_code` or `refresh_token`.
        grant: &'static str,
        /// The status the token endpoint answered with.
        status: u16,
        /// Its explanation (`hint`, `detail` or `title`).
        detail: String,
    },
    /// OAuth is configured but the store holds no token pair: exchange a code first.
    #[error("no OAuth tokens stored: exchange an authorization code first")]
    NoToken,
    /// The [`TokenStore`](crate::TokenStore) failed to load or save.
    #[error("token store: {0}")]
    TokenStore(#[source] BoxError),
    /// The client was built or called with an impossible configuration.
    #[error("configuration: {0}")]
    Config(String),
    /// A write (POST) was sent but no answer says what happened: the connection dropped after
    /// sending, the request timed out, or amoCRM answered 5xx. The entities **may have been
    /// created**; amoCRM has no idempotency keys, so check (e.g. list by name or
    /// `updated_at`) before sending again. Never raised for reads or PATCH, which are retried.
    #[error("{endpoint}: the write may have been applied: {source}")]
    MaybeApplied {
        /// Endpoint template.
        endpoint: String,
        /// What went wrong after sending.
        #[source]
        source: Box<Error>,
    },
    /// A batch write split into several requests stopped at a failing request: the items in
    /// `written` were created or updated by the earlier requests, the rest were not (or, when
    /// `source` is [`Error::MaybeApplied`], may have been).
    #[error("{endpoint}: {} of the items written before a request failed: {source}", written.len())]
    PartiallyWritten {
        /// Endpoint template.
        endpoint: String,
        /// The items written by earlier requests: the caller's item index and the entity id.
        written: Vec<WrittenItem>,
        /// The error of the failing request.
        #[source]
        source: Box<Error>,
    },
}

/// An item of a batch write that amoCRM accepted: its position in the caller's list and the
/// id amoCRM gave it (or the id that was updated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrittenItem {
    /// Position in the list the caller passed.
    pub index: usize,
    /// The entity id.
    pub id: u64,
}

impl Error {
    /// Whether trying the same request again later may succeed (429, 5xx, transport errors).
    ///
    /// `false` for [`Error::MaybeApplied`] and [`Error::PartiallyWritten`]: repeating the write
    /// may duplicate what was already created.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::RateLimited { .. } | Error::Server { .. } | Error::Transport { .. }
        )
    }

    /// Whether a write may have changed data in amoCRM although it failed: a POST that got no
    /// clear answer, or a batch of which some requests succeeded.
    pub fn may_have_been_applied(&self) -> bool {
        matches!(
            self,
            Error::MaybeApplied { .. } | Error::PartiallyWritten { .. }
        )
    }

    /// The refused fields of a 400, also when it is wrapped in [`Error::PartiallyWritten`];
    /// empty for other errors.
    pub fn validation_errors(&self) -> &[ValidationError] {
        match self {
            Error::Validation { errors, .. } => errors,
            Error::MaybeApplied { source, .. } | Error::PartiallyWritten { source, .. } => {
                source.validation_errors()
            }
            _ => &[],
        }
    }

    /// The HTTP status amoCRM answered with, when the error comes from one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Validation { .. } => Some(400),
            Error::Unauthorized { .. } => Some(401),
            Error::PaymentRequired { .. } => Some(402),
            Error::Forbidden { .. } => Some(403),
            Error::NotFound { .. } => Some(404),
            Error::RateLimited { .. } => Some(429),
            Error::Server { status, .. }
            | Error::UnexpectedStatus { status, .. }
            | Error::TokenRequest { status, .. } => Some(*status),
            Error::MaybeApplied { source, .. } | Error::PartiallyWritten { source, .. } => {
                source.status()
            }
            _ => None,
        }
    }

    /// Wraps an error raised by a [`TokenStore`](crate::TokenStore) implementation.
    pub fn token_store(source: impl Into<BoxError>) -> Self {
        Error::TokenStore(source.into())
    }

    pub(crate) fn transport(endpoint: &str, source: reqwest::Error) -> Self {
        Error::Transport {
            endpoint: endpoint.to_owned(),
            source: source.without_url(),
        }
    }

    pub(crate) fn decode(endpoint: &str, source: serde_json::Error) -> Self {
        Error::Decode {
            endpoint: endpoint.to_owned(),
            source,
        }
    }
}

/// One entry of a 400 answer's `validation-errors[].errors[]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct ValidationError {
    /// The item's `request_id` in a batch request, as amoCRM echoes it.
    pub request_id: Option<String>,
    /// For the batch writes of this crate: the position of the refused item in the list the
    /// caller passed (this crate sends that position as the `request_id`).
    #[serde(skip)]
    pub index: Option<usize>,
    /// amoCRM's error code, e.g. `NotSupportedChoice`.
    pub code: Option<String>,
    /// Dotted path of the offending field, e.g. `custom_fields_values.0.field_id`.
    pub path: Option<String>,
    /// Human text.
    pub detail: Option<String>,
}

fn format_validation(errors: &[ValidationError]) -> String {
    let mut out = String::new();
    for error in errors {
        out.push_str("; ");
        if let Some(index) = error.index {
            out.push_str(&format!("item {index}: "));
        }
        out.push_str(error.path.as_deref().unwrap_or("?"));
        out.push_str(": ");
        out.push_str(
            error
                .detail
                .as_deref()
                .or(error.code.as_deref())
                .unwrap_or("invalid"),
        );
    }
    out
}

fn format_retry_after(retry_after: &Option<Duration>) -> String {
    match retry_after {
        Some(delay) => format!(", retry after {}s", delay.as_secs()),
        None => String::new(),
    }
}

/// amoCRM's `application/problem+json` body.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ProblemBody {
    pub title: Option<String>,
    pub detail: Option<String>,
    pub hint: Option<String>,
    #[serde(rename = "validation-errors", default)]
    pub validation_errors: Vec<ValidationGroup>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ValidationGroup {
    pub request_id: Option<serde_json::Value>,
    #[serde(default)]
    pub errors: Vec<RawValidationError>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RawValidationError {
    pub code: Option<String>,
    pub path: Option<String>,
    pub detail: Option<String>,
}

impl ProblemBody {
    pub(crate) fn parse(body: &[u8]) -> Self {
        serde_json::from_slice(body).unwrap_or_default()
    }

    /// The most useful human text, bounded so an HTML error page does not flood logs.
    pub(crate) fn summary(&self, fallback: &[u8]) -> String {
        let text = match (&self.detail, &self.title, &self.hint) {
            (Some(detail), _, _) => detail.clone(),
            (None, Some(title), _) => title.clone(),
            (None, None, Some(hint)) => hint.clone(),
            (None, None, None) => String::from_utf8_lossy(fallback).into_owned(),
        };
        let text = text.trim();
        if text.is_empty() {
            return "no details".to_owned();
        }
        text.chars().take(300).collect()
    }

    pub(crate) fn into_validation_errors(self) -> Vec<ValidationError> {
        self.validation_errors
            .into_iter()
            .flat_map(|group| {
                let request_id = group.request_id.map(|id| match id {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                });
                let index = request_id.as_deref().and_then(|id| id.parse().ok());
                group.errors.into_iter().map(move |e| ValidationError {
                    request_id: request_id.clone(),
                    index,
                    code: e.code,
                    path: e.path,
                    detail: e.detail,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_message_lists_paths() {
        let body = br#"{"validation-errors":[{"request_id":"0","errors":[{"code":"NotSupportedChoice","path":"custom_fields_values.0.field_id","detail":"The value you selected is not a valid choice."}]}],"title":"Bad Request","type":"https://httpstatus.es/400","status":400,"detail":"Request validation failed"}"#;
        let problem = ProblemBody::parse(body);
        let detail = problem.summary(body);
        let errors = problem.into_validation_errors();
        assert_eq!(errors[0].request_id.as_deref(), Some("0"));
        let error = Error::Validation {
            endpoint: "POST /api/v4/leads".into(),
            detail,
            errors,
        };
        assert_eq!(
            error.to_string(),
            "POST /api/v4/leads: request rejected (400): Request validation failed; \
             item 0: custom_fields_values.0.field_id: The value you selected is not a valid choice."
        );
        assert!(!error.is_retryable());
    }

    #[test]
    fn summary_is_bounded() {
        let body = vec![b'x'; 10_000];
        assert_eq!(ProblemBody::parse(&body).summary(&body).len(), 300);
    }
}
