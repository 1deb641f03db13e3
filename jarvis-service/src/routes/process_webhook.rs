//! `POST /amocrm/process-webhook`: the previous Jarvis contract, kept for n8n workflows.
//!
//! The caller has already fetched the lead from amoCRM and sends it with the event; this upserts it
//! without any amoCRM call. Body (JSON):
//!
//! ```json
//! {
//!   "event_type": "lead.status",
//!   "lead": { "id": 31840021, "status_id": 142, "custom_fields_values": [...], "_embedded": {...} },
//!   "contact": { "id": 52110077, "custom_fields_values": [...] }
//! }
//! ```
//! `lead` may also be named `deal` or `details`, and may be a whole API answer
//! (`{"_embedded": {"leads": [...]}}`); `contact` (the main contact, as the API returns it) is optional.
//!
//! Each lead is applied by the mirror rule (see `jarvis-store`) as an API answer: every key it has
//! replaces its column (`null` clears it), a key it lacks keeps the stored value. `contact` gives the
//! deal's `contact_custom_fields` only if it is the lead's main contact (or the lead does not say).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use serde_json::{Value, json};
use std::sync::Arc;
use subtle::ConstantTimeEq;

use crate::error::{ApiError, unavailable};
use crate::mapping;
use crate::state::AppState;

fn authorized(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    // Without a configured token the endpoint does not exist.
    let Some(expected) = &state.api_token else {
        return Err(ApiError::NotFound);
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .ok_or(ApiError::Unauthorized)?;
    if bool::from(given.trim().as_bytes().ct_eq(expected.expose().as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

/// The lead objects in the request, wherever n8n put them.
fn leads_of(body: &Value) -> Vec<Value> {
    let candidate = ["lead", "deal", "details", "lead_details"]
        .iter()
        .find_map(|k| body.get(*k))
        .or_else(|| body.get("leads"));
    match candidate {
        Some(Value::Array(list)) => list.clone(),
        Some(v) => match v
            .get("_embedded")
            .and_then(|e| e.get("leads"))
            .and_then(Value::as_array)
        {
            Some(list) => list.clone(),
            None => vec![v.clone()],
        },
        None => Vec::new(),
    }
}

pub async fn process(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    authorized(&state, &headers)?;
    let body: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("body is not JSON: {e}")))?;
    let leads = leads_of(&body);
    if leads.is_empty() {
        return Err(ApiError::BadRequest(
            "no `lead` object with an `id` in the body".into(),
        ));
    }
    let contact = body.get("contact").filter(|c| c.is_object());
    let mut deals = Vec::with_capacity(leads.len());
    for lead in &leads {
        // Another contact's fields are not this deal's contact fields.
        let main = mapping::main_contact(lead);
        let contact = contact.filter(|c| match main.value() {
            Some(main) => c.get("id").and_then(Value::as_u64) == Some(main.get()),
            None => true,
        });
        let deal = mapping::deal_from_api(lead, contact, &state.metadata_fields)
            .ok_or_else(|| ApiError::BadRequest("a lead has no numeric `id`".into()))?;
        deals.push(deal);
    }
    if let Some(contact) = contact.and_then(mapping::contact_from_api) {
        state
            .store
            .upsert_contacts(std::slice::from_ref(&contact))
            .await
            .map_err(|e| unavailable(&e))?;
    }
    let outcome = state
        .store
        .upsert_deals(&deals)
        .await
        .map_err(|e| unavailable(&e))?;
    // Linked in the background: the business's link queries are no part of the caller's wait.
    if let Some(linker) = state.linker.clone() {
        let ids: Vec<String> = deals.iter().map(|d| d.amocrm_deal_id.clone()).collect();
        tokio::spawn(async move { linker.link_deals(&ids).await });
    }
    let ids: Vec<&str> = deals.iter().map(|d| d.amocrm_deal_id.as_str()).collect();
    Ok((
        StatusCode::OK,
        Json(
            json!({"ok": true, "deal_ids": ids, "applied": outcome.applied, "stale": outcome.stale}),
        ),
    ))
}
