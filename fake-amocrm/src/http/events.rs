//! `GET /api/v4/events`: the feed, newest first, 100 a page, with the documented filters.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::{St, base_of, hal, no_content};
use crate::lock;
use crate::query::Query;

const MAX_EVENTS_LIMIT: usize = 100;

/// Whether `event_type` is asked for by `wanted`: `custom_field_value_changed` stands for every
/// `custom_field_{id}_value_changed`, as in amoCRM.
fn type_matches(wanted: &[String], event_type: &str) -> bool {
    wanted.is_empty()
        || wanted.iter().any(|w| {
            w == event_type
                || (w == "custom_field_value_changed"
                    && event_type.starts_with("custom_field_")
                    && event_type.ends_with("_value_changed"))
        })
}

fn number(q: &Query, key: &str) -> Option<i64> {
    q.get(key).and_then(|v| v.parse().ok())
}

pub(super) async fn list_events(
    State(inner): St,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let q = Query::parse(raw.as_deref());
    let from = number(&q, "filter[created_at][from]");
    let to = number(&q, "filter[created_at][to]");
    let types = q.list("filter[type]");
    let entities = q.list("filter[entity]");
    let entity_ids = q.list("filter[entity_id]");
    let limit = q
        .get("limit")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(MAX_EVENTS_LIMIT)
        .clamp(1, MAX_EVENTS_LIMIT);
    let page = q
        .get("page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let matching: Vec<Value> = {
        let feed = lock(&inner.feed);
        feed.events
            .iter()
            .rev()
            .filter(|e| {
                let at = e["created_at"].as_i64().unwrap_or(0);
                from.is_none_or(|f| at >= f)
                    && to.is_none_or(|t| at <= t)
                    && type_matches(&types, e["type"].as_str().unwrap_or(""))
                    && (entities.is_empty()
                        || entities.iter().any(|x| e["entity_type"] == x.as_str()))
                    && (entity_ids.is_empty()
                        || entity_ids
                            .iter()
                            .any(|x| x.parse::<u64>().ok() == e["entity_id"].as_u64()))
            })
            .cloned()
            .collect()
    };
    let start = (page - 1).saturating_mul(limit);
    let items: Vec<Value> = matching.iter().skip(start).take(limit).cloned().collect();
    if items.is_empty() {
        return no_content();
    }
    let base = base_of(&headers, &inner);
    let href = |p: usize| json!({"href": format!("{base}/api/v4/events?{}", q.with_page(p))});
    let mut links = serde_json::Map::new();
    links.insert("self".into(), href(page));
    if start + limit < matching.len() {
        links.insert("next".into(), href(page + 1));
    }
    hal(
        StatusCode::OK,
        &json!({"_page": page, "_links": links, "_embedded": {"events": items}}),
    )
}
