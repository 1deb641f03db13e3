//! `/healthz`, `/readyz` and `/metrics`.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use chrono::Utc;
use serde_json::{Value, json};

use crate::error::{ApiError, unavailable};
use crate::state::AppState;
use crate::telemetry::names;

/// The process is up.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// How long `/readyz` waits for the database: a stalled database must fail the probe, not hang it.
const READY_TIMEOUT: Duration = Duration::from_millis(800);
/// How long `/metrics` waits for the queue figures before serving the rest without them.
const STATS_TIMEOUT: Duration = Duration::from_secs(1);

/// The database answers a trivial query, within a second.
pub async fn readyz(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    match tokio::time::timeout(READY_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => Ok(Json(json!({"status": "ready"}))),
        Ok(Err(e)) => Err(unavailable(&e)),
        Err(_) => {
            tracing::warn!(
                timeout_ms = READY_TIMEOUT.as_millis() as u64,
                "database did not answer the readiness check"
            );
            Err(ApiError::Unavailable(
                "database did not answer in time".into(),
            ))
        }
    }
}

/// Prometheus text format. Queue gauges are read from the database at scrape time, so they are right
/// whichever instance did the work; if the database is down the other metrics are still served.
pub async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    if let Some(spool) = &state.spool {
        spool.export_gauges();
    }
    match tokio::time::timeout(STATS_TIMEOUT, state.store.queue_stats()).await {
        Err(_) => tracing::warn!("stats timed out for /metrics"),
        Ok(Err(e)) => tracing::warn!(error = %e, "stats unavailable for /metrics"),
        Ok(Ok(stats)) => {
            metrics::gauge!(names::BACKLOG).set(stats.backlog as f64);
            metrics::gauge!(names::DEAD).set(stats.dead as f64);
            let age = stats
                .oldest_pending_at
                .map(|t| (Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0)
                .unwrap_or(0.0);
            metrics::gauge!(names::OLDEST_PENDING_AGE).set(age);
        }
    }
    if let Some(client) = &state.client {
        crate::amo::export_usage(client);
    }
    if matches!(
        state.amocrm.auth,
        Some(crate::config::AmoAuth::OAuth { .. })
    ) {
        // Bounded: a scrape must answer even when the database does not.
        let loaded = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            state.store.load_tokens(&state.account_key),
        )
        .await;
        if let Ok(Ok(tokens)) = loaded {
            let expiry = tokens
                .map(|t| t.expires_at.timestamp() as f64)
                .unwrap_or(0.0);
            metrics::gauge!(names::TOKEN_EXPIRY).set(expiry);
        }
    }
    crate::catch_up::export_gap_metrics(&state.store).await;
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
