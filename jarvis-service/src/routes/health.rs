//! `/healthz`, `/readyz` and `/metrics`.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use chrono::Utc;
use serde_json::{Value, json};

use crate::error::{ApiError, unavailable};
use crate::startup::AppState;
use crate::telemetry::names;

/// The process is up.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// The database answers.
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    state.store.ping().await.map_err(|e| unavailable(&e))?;
    Ok(Json(json!({"status": "ready"})))
}

/// Prometheus text format. Queue gauges are read from the database at scrape time, so they are right
/// whichever instance did the work; if the database is down the other metrics are still served.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    match state.store.queue_stats().await {
        Ok(stats) => {
            metrics::gauge!(names::BACKLOG).set(stats.backlog as f64);
            metrics::gauge!(names::DEAD).set(stats.dead as f64);
            let age = stats
                .oldest_pending_at
                .map(|t| (Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0)
                .unwrap_or(0.0);
            metrics::gauge!(names::OLDEST_PENDING_AGE).set(age);
        }
        Err(e) => tracing::warn!(error = %e, "stats unavailable for /metrics"),
    }
    if let Some(client) = &state.client {
        crate::worker::export_client_usage(client);
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
