//! `POST /amocrm/webhook/{secret}`: parse, store in one transaction, answer after the commit.
//!
//! Every answer comes within the answer deadline (`JARVIS_ANSWER_DEADLINE_MS`): 200 once the events
//! are committed; if the database cannot commit in time, the body goes to the local spool (when there
//! is one) and the answer is still 200; otherwise 503, at the deadline, never later.
//!
//! Nothing here calls amoCRM. In webhook-only mode on PostgreSQL, with a worker in the process and
//! no link queries, a lead's change is written to its deal row in the statement that stores its
//! event, which is stored processed (one write per event instead of the worker's claim and
//! completion); the worker does the rest.

use std::sync::Arc;
use std::time::{Duration, Instant};

use amocrm_webhook::{Action, Entity, WebhookBatch};
use axum::Extension;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use jarvis_store::{InsertOutcome, NewEvent, RejectedWebhook, SettledEvent};
use serde::Serialize;
use subtle::ConstantTimeEq;
use tokio::time::timeout_at;

use crate::activity::Delivery;
use crate::error::{ApiError, unavailable};
use crate::spool::SpooledBody;
use crate::state::AppState;
use crate::telemetry::RequestId;
use crate::telemetry::names;

/// The body of a `200` answer.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Accepted {
    /// The events are committed: how many were new, how many were already stored.
    Stored {
        stored: u64,
        duplicates: u64,
        /// Of the new ones, how many were settled as they were stored (for the log, not the body).
        #[serde(skip)]
        settled: u64,
    },
    /// The body waits in the local spool until the database answers.
    Spooled { spooled: bool, events: usize },
}

/// The rows a parsed body becomes.
pub fn new_events(batch: &WebhookBatch, received_at: DateTime<Utc>) -> Vec<NewEvent> {
    batch
        .events
        .iter()
        .map(|event| NewEvent::from_webhook(event, received_at))
        .collect()
}

/// The `status` label of a request: the answers this route gives, without an allocation.
fn status_label(status: StatusCode) -> std::borrow::Cow<'static, str> {
    let label = match status.as_u16() {
        200 => "200",
        400 => "400",
        404 => "404",
        408 => "408",
        413 => "413",
        415 => "415",
        500 => "500",
        503 => "503",
        other => return other.to_string().into(),
    };
    label.into()
}

/// Time kept back from the database, before the deadline, for the spool's append and sync.
fn spool_reserve(answer_deadline: Duration) -> Duration {
    (answer_deadline / 3).min(Duration::from_millis(300))
}

/// The answer when the deadline passes with nothing stored.
fn too_late() -> ApiError {
    tracing::warn!("webhook not stored within the answer deadline");
    ApiError::Unavailable("database unavailable, retry later".into())
}

/// Reads at most `limit + 1` bytes; returns the bytes and whether the body was longer than `limit`.
async fn read_limited(body: Body, limit: usize) -> Result<(Vec<u8>, bool), ApiError> {
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::BadRequest(format!("reading the body failed: {e}")))?;
        let room = (limit + 1).saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if buf.len() > limit {
            return Ok((buf, true));
        }
    }
    Ok((buf, false))
}

pub async fn receive(
    State(state): State<Arc<AppState>>,
    Path(secret): Path<String>,
    request_id: Option<Extension<RequestId>>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let started = Instant::now();
    let deadline = tokio::time::Instant::from_std(started) + state.http.answer_deadline;
    let result = handle(&state, &secret, &headers, body, deadline).await;
    let status = match &result {
        Ok(_) => StatusCode::OK,
        Err(e) => e.status(),
    };
    // What makes a gap: the last accepted delivery, and deliveries the database could not take.
    match status {
        StatusCode::OK => state.gaps.delivered(),
        StatusCode::SERVICE_UNAVAILABLE => state.gaps.refused(),
        _ => {}
    }
    let elapsed = started.elapsed();
    metrics::counter!(names::WEBHOOK_REQUESTS, "status" => status_label(status)).increment(1);
    metrics::histogram!(names::WEBHOOK_DURATION).record(elapsed.as_secs_f64());
    let (stored, duplicates, settled) = match &result {
        Ok((
            _,
            Json(Accepted::Stored {
                stored,
                duplicates,
                settled,
            }),
        )) => (*stored, *duplicates, *settled),
        _ => (0, 0, 0),
    };
    let duration_ms = elapsed.as_millis() as u64;
    let spooled = matches!(&result, Ok((_, Json(Accepted::Spooled { .. }))));
    if result.is_ok() {
        metrics::gauge!(names::WEBHOOK_LAST_ACCEPTED).set(crate::metrics::unix_now());
    }
    // A spooled body has its own warning line; this one is for bodies the database took.
    if result.is_ok() && !spooled {
        tracing::info!(
            events = stored + duplicates,
            stored,
            duplicates,
            settled,
            duration_ms,
            "webhook batch stored"
        );
    }
    // A wrong secret is not a delivery of ours: it is neither listed nor logged beyond its span.
    if status != StatusCode::NOT_FOUND {
        state.activity.record_delivery(Delivery {
            at: Utc::now(),
            request_id: request_id.map(|Extension(id)| id.0).unwrap_or_default(),
            status: status.as_u16(),
            stored,
            duplicates,
            duration_ms,
            error: result.as_ref().err().map(|e| e.to_string()),
        });
    }
    result
}

async fn handle(
    state: &AppState,
    secret: &str,
    headers: &HeaderMap,
    body: Body,
    deadline: tokio::time::Instant,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let Some(expected) = &state.webhook_secret else {
        return Err(ApiError::NotFound);
    };
    if !bool::from(secret.as_bytes().ct_eq(expected.expose().as_bytes())) {
        return Err(ApiError::NotFound);
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);

    let limit = state.parser_limits.max_body_bytes;
    let body_timeout = state.http.body_read_timeout;
    let Ok(read) = tokio::time::timeout(body_timeout, read_limited(body, limit)).await else {
        metrics::counter!(names::BODY_READ_TIMEOUTS).increment(1);
        return Err(ApiError::RequestTimeout(format!(
            "the body did not arrive within {} ms",
            body_timeout.as_millis()
        )));
    };
    let (raw, too_long) = read?;
    if too_long {
        // Keep what was read (the first `limit` bytes) so the sender can be traced; say so in the reason.
        let reason = format!("body larger than {limit} bytes; the first {limit} bytes are kept");
        return Err(reject(
            state,
            deadline,
            &raw[..limit],
            content_type,
            "too_large",
            ApiError::PayloadTooLarge(reason),
        )
        .await);
    }

    let batch = match state.parser.parse(content_type.as_deref(), &raw) {
        Ok(batch) => batch,
        Err(err) => {
            let (label, api_error) = if err.is_too_large() {
                ("too_large", ApiError::PayloadTooLarge(err.to_string()))
            } else if err.is_unsupported_content_type() {
                (
                    "content_type",
                    ApiError::UnsupportedMediaType(err.to_string()),
                )
            } else {
                ("malformed", ApiError::BadRequest(err.to_string()))
            };
            return Err(reject(state, deadline, &raw, content_type, label, api_error).await);
        }
    };
    if let (Some(expected), Some(actual)) = (state.account_id, batch.account.id)
        && expected != actual.get()
    {
        let reason = format!("account {actual} is not the configured account");
        return Err(reject(
            state,
            deadline,
            &raw,
            content_type,
            "account",
            ApiError::BadRequest(reason),
        )
        .await);
    }

    let received_at = Utc::now();
    let events = new_events(&batch, received_at);
    let count = events.len();
    metrics::counter!(names::EVENTS_RECEIVED).increment(count as u64);
    let db_deadline = match &state.spool {
        Some(_) => deadline - spool_reserve(state.http.answer_deadline),
        None => deadline,
    };
    let _storing = Storing::begin(&state.storing);
    let bypass = state.spool.as_ref().is_some_and(|s| s.bypassing_database());
    let failure = if bypass {
        "the database failed a webhook just before".to_string()
    } else {
        match timeout_at(db_deadline, store_events(state, &batch, events)).await {
            Ok(Ok(outcome)) => {
                metrics::counter!(names::EVENTS_STORED).increment(outcome.stored);
                metrics::counter!(names::EVENTS_DUPLICATE).increment(outcome.duplicates);
                if outcome.settled > 0 {
                    let settled = std::iter::repeat_n(&received_at, outcome.settled as usize);
                    crate::worker::record_processed(state, settled, Utc::now());
                }
                if outcome.stored > outcome.settled {
                    state.wake.notify_one();
                }
                return Ok((
                    StatusCode::OK,
                    Json(Accepted::Stored {
                        stored: outcome.stored,
                        duplicates: outcome.duplicates,
                        settled: outcome.settled,
                    }),
                ));
            }
            // Refused for its content (e.g. PostgreSQL cannot hold a NUL character): a retry would
            // fail the same way, so this is bad input, kept for audit like any other.
            Ok(Err(e)) if e.is_bad_data() => {
                let reason = format!("the events cannot be stored: {e}");
                let error = ApiError::BadRequest(reason);
                return Err(reject(state, deadline, &raw, content_type, "unstorable", error).await);
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "the database did not commit within the answer deadline".to_string(),
        }
    };
    if let (Some(spool), false) = (&state.spool, bypass) {
        spool.database_failed();
    }
    let Some(spool) = &state.spool else {
        tracing::warn!(error = %failure, "database unavailable");
        return Err(ApiError::Unavailable(
            "database unavailable, retry later".into(),
        ));
    };
    let spooled = SpooledBody {
        received_at,
        content_type,
        body: raw,
    };
    match timeout_at(deadline, spool.append(&spooled)).await {
        Ok(Ok(())) => {
            tracing::warn!(cause = %failure, events = count, spool_bodies = spool.bodies(), "webhook spooled; it is stored once the database answers");
            Ok((
                StatusCode::OK,
                Json(Accepted::Spooled {
                    spooled: true,
                    events: count,
                }),
            ))
        }
        Ok(Err(error)) => {
            tracing::error!(cause = %failure, error = %error, "webhook neither stored nor spooled");
            Err(ApiError::Unavailable(format!(
                "database unavailable and {error}; retry later"
            )))
        }
        Err(_) => Err(too_late()),
    }
}

/// Stores a body's events in one transaction; settles them in it when the service does so on
/// receipt ([`AppState::settle_on_receipt`]): a lead's change with its deal row, an event with
/// nothing to mirror as it is. Contact changes (their fields are copied into their deals) and
/// deletes or restores are left to the worker: the store writes a group of deals and events in
/// one statement, which anything more would make a transaction of several round trips.
async fn store_events(
    state: &AppState,
    batch: &WebhookBatch,
    events: Vec<NewEvent>,
) -> jarvis_store::Result<InsertOutcome> {
    if !state.settle_on_receipt {
        return state.store.insert_events(&events).await;
    }
    let settled = batch
        .events
        .iter()
        .zip(events)
        .map(|(event, new)| {
            let to_worker = matches!(event.entity, Entity::Contact)
                || (matches!(event.entity, Entity::Lead)
                    && matches!(event.action, Action::Delete | Action::Restore));
            SettledEvent {
                writes: (!to_worker).then(|| {
                    crate::worker::body_writes(event, &new.event_hash, &state.metadata_fields)
                }),
                event: new,
            }
        })
        .collect();
    state.store.insert_settled(settled).await
}

/// Keeps a refused body for audit, then returns the error to answer with (503 if it could not be kept:
/// the sender retries and nothing is lost).
async fn reject(
    state: &AppState,
    deadline: tokio::time::Instant,
    raw: &[u8],
    content_type: Option<String>,
    label: &'static str,
    error: ApiError,
) -> ApiError {
    let rejected = RejectedWebhook {
        body: raw.to_vec(),
        content_type,
        reason: error.to_string(),
        received_at: Utc::now(),
    };
    match timeout_at(deadline, state.store.insert_rejected(&rejected)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return unavailable(&e),
        Err(_) => return too_late(),
    }
    metrics::counter!(names::WEBHOOKS_REJECTED, "reason" => label).increment(1);
    tracing::info!(reason = %error, "webhook body rejected and kept for audit");
    error
}

/// Counts a webhook as being stored (see [`AppState::storing`]) until dropped: stored, refused,
/// spooled or cut off by its deadline.
struct Storing<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> Storing<'a> {
    fn begin(count: &'a std::sync::atomic::AtomicUsize) -> Self {
        count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Storing(count)
    }
}

impl Drop for Storing<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}
