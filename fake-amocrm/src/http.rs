//! The HTTP side: routes, the gate (counting, faults, latency, rate limit, auth) and handlers.

mod events;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};

use crate::query::Query;
use crate::store::Entity;
use crate::{Failure, FakeConfig, Inner, lock, unix_now};

type St = State<Arc<Inner>>;

const MAX_LIMIT: usize = 250;
const DEFAULT_LIMIT: usize = 50;

pub(crate) fn router(inner: Arc<Inner>) -> Router {
    Router::new()
        .route("/api/v4/leads", get(list_leads))
        .route("/api/v4/leads/notes", get(list_lead_notes))
        .route("/api/v4/leads/{id}", get(get_lead))
        .route("/api/v4/leads/{id}/notes", get(notes_of_lead))
        .route("/api/v4/contacts", get(list_contacts))
        .route("/api/v4/contacts/notes", get(list_contact_notes))
        .route("/api/v4/contacts/{id}", get(get_contact))
        .route("/api/v4/contacts/{id}/notes", get(notes_of_contact))
        .route("/api/v4/account", get(account))
        .route("/api/v4/events", get(events::list_events))
        .route(
            "/api/v4/webhooks",
            get(list_webhooks).post(add_webhook).delete(delete_webhook),
        )
        .route("/oauth2/access_token", post(access_token))
        .route("/oauth2/account/current/subdomain", get(current_subdomain))
        .route("/__fake/stats", get(ctl_stats))
        .route("/__fake/fail", post(ctl_fail))
        .route("/__fake/down", post(ctl_down))
        .route("/__fake/latency", post(ctl_latency))
        .route("/__fake/expire-tokens", post(ctl_expire))
        .route("/__fake/reset", post(ctl_reset))
        .route("/__fake/touch/{id}", post(ctl_touch))
        .merge(crate::writes::routes())
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(inner.clone(), gate))
        .with_state(inner)
}

/// Accept loop that closes connections unanswered while the fake is "down".
pub(crate) struct GateListener {
    pub listener: TcpListener,
    pub inner: Arc<Inner>,
}

impl axum::serve::Listener for GateListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (io, addr) = axum::serve::Listener::accept(&mut self.listener).await;
            if !self.inner.down.load(Ordering::SeqCst) {
                return (io, addr);
            }
            drop(io);
            lock(&self.inner.log).refused_connections += 1;
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

// ---------- gate ----------

/// `/api/v4/leads/123/notes` → `/api/v4/leads/{id}/notes`, so counters stay per endpoint.
fn template(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
                "{id}"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

async fn gate(State(inner): St, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    if path.starts_with("/__fake/") {
        return next.run(req).await;
    }
    let route = format!("{} {}", req.method(), template(&path));
    let resp = guarded(&inner, &path, req, next).await;
    let status = resp.status().as_u16();
    let mut log = lock(&inner.log);
    log.total += 1;
    *log.by_route.entry(route).or_default() += 1;
    *log.by_status.entry(status).or_default() += 1;
    if status == 429 {
        log.rate_limited += 1;
    }
    resp
}

async fn guarded(inner: &Inner, path: &str, req: Request, next: Next) -> Response {
    let latency = *lock(&inner.latency);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if let Some(resp) = injected_failure(inner) {
        return resp;
    }
    let api = path.starts_with("/api/v4/");
    if api && !admit(inner) {
        let mut resp = problem(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests");
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return resp;
    }
    if api && inner.config.require_auth && !authorized(inner, req.headers()) {
        return problem(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    next.run(req).await
}

fn injected_failure(inner: &Inner) -> Option<Response> {
    let mut failure = lock(&inner.failure);
    match &mut *failure {
        Failure::None => None,
        Failure::Down => {
            let mut resp = problem(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable");
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            Some(resp)
        }
        Failure::Status { status, count } => {
            let code = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            if let Some(left) = count {
                *left = left.saturating_sub(1);
                if *left == 0 {
                    *failure = Failure::None;
                }
            }
            let mut resp = problem(code, code.canonical_reason().unwrap_or("Error"));
            if code == StatusCode::TOO_MANY_REQUESTS || code == StatusCode::SERVICE_UNAVAILABLE {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Some(resp)
        }
    }
}

/// Sliding one-second window over admitted requests; refused ones do not extend it.
fn admit(inner: &Inner) -> bool {
    let Some(limit) = inner.config.rate_per_second else {
        return true;
    };
    let now = Instant::now();
    let mut window = lock(&inner.window);
    while window
        .front()
        .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
    {
        window.pop_front();
    }
    if window.len() >= limit as usize {
        return false;
    }
    window.push_back(now);
    true
}

fn authorized(inner: &Inner, headers: &HeaderMap) -> bool {
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
    else {
        return false;
    };
    if inner.config.long_lived_token.as_deref() == Some(token) {
        return true;
    }
    lock(&inner.auth)
        .access
        .get(token)
        .is_some_and(|until| *until > Instant::now())
}

// ---------- helpers ----------

fn hal(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/hal+json")],
        body.to_string(),
    )
        .into_response()
}

fn problem(status: StatusCode, title: &str) -> Response {
    let body = json!({
        "title": title,
        "type": format!("https://httpstatus.es/{}", status.as_u16()),
        "status": status.as_u16(),
        "detail": title,
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

fn bad_filter(path: &str, value: &str) -> Response {
    let body = json!({
        "title": "Bad Request",
        "type": "https://httpstatus.es/400",
        "status": 400,
        "detail": "Request validation failed",
        "validation-errors": [{
            "request_id": "0",
            "errors": [{"code": "InvalidType", "path": path, "detail": format!("This value should be of type int: {value}")}],
        }],
    });
    (
        StatusCode::BAD_REQUEST,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// Links point back at whatever host the client used, so `_links.next` can be followed.
fn base_of(headers: &HeaderMap, inner: &Inner) -> String {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| format!("http://{h}"))
        .or_else(|| lock(&inner.base_url).clone())
        .unwrap_or_else(|| "http://localhost".into())
}

struct Paging {
    limit: usize,
    page: usize,
}

fn paging(q: &Query) -> Paging {
    let limit = q
        .get("limit")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(DEFAULT_LIMIT)
        .clamp(1, MAX_LIMIT);
    let page = q
        .get("page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    Paging { limit, page }
}

/// One page of `ids` as a HAL collection, or `204` when the page is empty.
fn collection(
    base: &str,
    path: &str,
    q: &Query,
    key: &str,
    ids: &[u64],
    render: impl Fn(u64) -> Option<Value>,
) -> Response {
    let Paging { limit, page } = paging(q);
    let start = (page - 1).saturating_mul(limit);
    let items: Vec<Value> = ids
        .iter()
        .skip(start)
        .take(limit)
        .filter_map(|id| render(*id))
        .collect();
    if items.is_empty() {
        return no_content();
    }
    let href = |p: usize| json!({"href": format!("{base}{path}?{}", q.with_page(p))});
    let mut links = serde_json::Map::new();
    links.insert("self".into(), href(page));
    if start + limit < ids.len() {
        links.insert("next".into(), href(page + 1));
    }
    links.insert("first".into(), href(1));
    if page > 1 {
        links.insert("prev".into(), href(page - 1));
    }
    hal(
        StatusCode::OK,
        &json!({"_page": page, "_links": links, "_embedded": {key: items}}),
    )
}

fn parse_id(raw: &str) -> Option<u64> {
    raw.parse().ok()
}

/// Ids of `entities` that pass the `filter[id]` and `filter[updated_at]` filters, ordered by `order[...]`.
/// The error is the offending `filter[id]` value.
fn select(entities: &BTreeMap<u64, Value>, q: &Query) -> Result<Vec<u64>, String> {
    let wanted = q.ids("filter[id]")?;
    let mut ids: Vec<u64> = match wanted {
        Some(mut w) => {
            w.sort_unstable();
            w.dedup();
            w.into_iter()
                .filter(|id| entities.contains_key(id))
                .collect()
        }
        None => entities.keys().copied().collect(),
    };
    let bound = |k: &str| q.get(k).and_then(|v| v.parse::<i64>().ok());
    let from = bound("filter[updated_at][from]");
    let to = bound("filter[updated_at][to]");
    if from.is_some() || to.is_some() {
        ids.retain(|id| {
            let at = entities[id]["updated_at"].as_i64().unwrap_or(0);
            from.is_none_or(|f| at >= f) && to.is_none_or(|t| at <= t)
        });
    }
    for field in ["updated_at", "created_at", "id"] {
        if let Some(dir) = q.get(&format!("order[{field}]")) {
            ids.sort_by_key(|id| entities[id][field].as_i64().unwrap_or(0));
            if dir.eq_ignore_ascii_case("desc") {
                ids.reverse();
            }
            break;
        }
    }
    Ok(ids)
}

// ---------- leads & contacts ----------

async fn list_leads(State(inner): St, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    let q = Query::parse(raw.as_deref());
    let base = base_of(&headers, &inner);
    let with_contacts = q.with().contains("contacts");
    let store = lock(&inner.store);
    let ids = match select(&store.leads, &q) {
        Ok(ids) => ids,
        Err(v) => return bad_filter("filter.id", &v),
    };
    collection(&base, "/api/v4/leads", &q, "leads", &ids, |id| {
        store.render_lead(id, &base, with_contacts)
    })
}

async fn get_lead(
    State(inner): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let q = Query::parse(raw.as_deref());
    let base = base_of(&headers, &inner);
    let with_contacts = q.with().contains("contacts");
    let lead =
        parse_id(&id).and_then(|id| lock(&inner.store).render_lead(id, &base, with_contacts));
    match lead {
        Some(lead) => hal(StatusCode::OK, &lead),
        None => problem(StatusCode::NOT_FOUND, "Not Found"),
    }
}

async fn list_contacts(State(inner): St, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    let q = Query::parse(raw.as_deref());
    let base = base_of(&headers, &inner);
    let with_leads = q.with().contains("leads");
    let store = lock(&inner.store);
    let ids = match select(&store.contacts, &q) {
        Ok(ids) => ids,
        Err(v) => return bad_filter("filter.id", &v),
    };
    collection(&base, "/api/v4/contacts", &q, "contacts", &ids, |id| {
        store.render_contact(id, &base, with_leads)
    })
}

async fn get_contact(
    State(inner): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let q = Query::parse(raw.as_deref());
    let base = base_of(&headers, &inner);
    let with_leads = q.with().contains("leads");
    let contact =
        parse_id(&id).and_then(|id| lock(&inner.store).render_contact(id, &base, with_leads));
    match contact {
        Some(c) => hal(StatusCode::OK, &c),
        None => problem(StatusCode::NOT_FOUND, "Not Found"),
    }
}

// ---------- notes ----------

fn notes(
    inner: &Inner,
    headers: &HeaderMap,
    raw: Option<&str>,
    entity: Entity,
    of: Option<u64>,
) -> Response {
    let q = Query::parse(raw);
    let base = base_of(headers, inner);
    let entity_ids = match q.ids("filter[entity_id]") {
        Ok(v) => v,
        Err(v) => return bad_filter("filter.entity_id", &v),
    };
    let note_ids = match q.ids("filter[id]") {
        Ok(v) => v,
        Err(v) => return bad_filter("filter.id", &v),
    };
    let types = q.list("filter[note_type]");
    let store = lock(&inner.store);
    let ids: Vec<u64> = store
        .notes
        .iter()
        .filter(|(id, (e, n))| {
            let eid = n["entity_id"].as_u64().unwrap_or_default();
            let ty = n["note_type"].as_str().unwrap_or_default();
            *e == entity
                && of.is_none_or(|o| o == eid)
                && entity_ids.as_ref().is_none_or(|l| l.contains(&eid))
                && note_ids.as_ref().is_none_or(|l| l.contains(id))
                && (types.is_empty() || types.iter().any(|t| t == ty))
        })
        .map(|(id, _)| *id)
        .collect();
    let path = match of {
        Some(o) => format!("/api/v4/{}/{o}/notes", entity.path()),
        None => format!("/api/v4/{}/notes", entity.path()),
    };
    collection(&base, &path, &q, "notes", &ids, |id| {
        store.render_note(id, &base)
    })
}

async fn list_lead_notes(
    State(inner): St,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    notes(&inner, &headers, raw.as_deref(), Entity::Leads, None)
}

async fn list_contact_notes(
    State(inner): St,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    notes(&inner, &headers, raw.as_deref(), Entity::Contacts, None)
}

async fn notes_of_lead(
    State(inner): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    match parse_id(&id) {
        Some(id) => notes(&inner, &headers, raw.as_deref(), Entity::Leads, Some(id)),
        None => problem(StatusCode::NOT_FOUND, "Not Found"),
    }
}

async fn notes_of_contact(
    State(inner): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    match parse_id(&id) {
        Some(id) => notes(&inner, &headers, raw.as_deref(), Entity::Contacts, Some(id)),
        None => problem(StatusCode::NOT_FOUND, "Not Found"),
    }
}

// ---------- account & webhooks ----------

async fn account(State(inner): St, headers: HeaderMap) -> Response {
    let base = base_of(&headers, &inner);
    let c = &inner.config;
    hal(
        StatusCode::OK,
        &json!({
            "id": c.account_id,
            "name": c.subdomain,
            "subdomain": c.subdomain,
            "created_at": crate::data::EPOCH - 86_400 * 365,
            "created_by": crate::data::USERS[0],
            "updated_at": crate::data::EPOCH,
            "updated_by": crate::data::USERS[0],
            "current_user_id": crate::data::USERS[0],
            "country": "RU",
            "currency": "RUB",
            "customers_mode": "disabled",
            "is_unsorted_on": true,
            "is_loss_reason_enabled": true,
            "is_helpbot_enabled": false,
            "is_technical_account": false,
            "contact_name_display_order": 1,
            "_links": {"self": {"href": format!("{base}/api/v4/account")}},
        }),
    )
}

async fn list_webhooks(State(inner): St) -> Response {
    let hooks = lock(&inner.store).webhooks.clone();
    if hooks.is_empty() {
        return no_content();
    }
    hal(
        StatusCode::OK,
        &json!({"_total_items": hooks.len(), "_embedded": {"webhooks": hooks}}),
    )
}

#[derive(Deserialize)]
struct WebhookBody {
    destination: String,
    #[serde(default)]
    settings: Vec<String>,
    #[serde(default)]
    sort: Option<i64>,
}

async fn add_webhook(State(inner): St, body: Bytes) -> Response {
    let Ok(body) = serde_json::from_slice::<WebhookBody>(&body) else {
        return problem(StatusCode::BAD_REQUEST, "Bad Request");
    };
    if body.destination.is_empty() {
        return problem(StatusCode::BAD_REQUEST, "Bad Request");
    }
    let now = unix_now();
    let mut store = lock(&inner.store);
    // Subscribing the same destination again replaces its settings, as amoCRM does.
    let existing = store
        .webhooks
        .iter()
        .position(|w| w["destination"] == body.destination.as_str());
    let id = match existing {
        Some(i) => store.webhooks.remove(i)["id"].as_u64().unwrap_or_default(),
        None => {
            store.next_webhook += 1;
            store.next_webhook - 1
        }
    };
    let hook = json!({
        "id": id,
        "destination": body.destination,
        "created_at": now,
        "updated_at": now,
        "account_id": inner.config.account_id,
        "created_by": crate::data::USERS[0],
        "sort": body.sort.unwrap_or(1),
        "disabled": false,
        "settings": body.settings,
    });
    store.webhooks.push(hook.clone());
    drop(store);
    crate::feed::forget_failures(&inner, &body.destination);
    hal(StatusCode::CREATED, &hook)
}

async fn delete_webhook(State(inner): St, body: Bytes) -> Response {
    let destination = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["destination"].as_str().map(str::to_owned));
    let Some(destination) = destination else {
        return problem(StatusCode::BAD_REQUEST, "Bad Request");
    };
    lock(&inner.store)
        .webhooks
        .retain(|w| w["destination"] != destination.as_str());
    no_content()
}

// ---------- OAuth ----------

#[derive(Deserialize, Default)]
struct TokenRequest {
    #[serde(default)]
    grant_type: String,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    refresh_token: Option<String>,
}

fn oauth_error(status: StatusCode, hint: &str) -> Response {
    let body = json!({
        "hint": hint,
        "title": "Некорректный запрос",
        "type": "https://developers.amocrm.ru/v3/errors/OAuthProblemJson",
        "status": status.as_u16(),
        "detail": "В запросе отсутствует ряд параметров или параметры невалидны",
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

async fn access_token(State(inner): St, body: Bytes) -> Response {
    // amoCRM documents a JSON body; form bodies are accepted too, as some clients send them.
    let req = serde_json::from_slice::<TokenRequest>(&body).unwrap_or_else(|_| {
        let q = Query::parse(std::str::from_utf8(&body).ok());
        TokenRequest {
            grant_type: q.get("grant_type").unwrap_or_default().to_owned(),
            code: q.get("code").map(str::to_owned),
            refresh_token: q.get("refresh_token").map(str::to_owned),
        }
    });
    match req.grant_type.as_str() {
        "authorization_code" => {
            lock(&inner.log).code_exchanges += 1;
            let code = req.code.unwrap_or_default();
            if code.is_empty() {
                return oauth_error(StatusCode::BAD_REQUEST, "Check the code parameter");
            }
            if !lock(&inner.auth).used_codes.insert(code) {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "Authorization code has been revoked",
                );
            }
        }
        "refresh_token" => {
            lock(&inner.log).token_refreshes += 1;
            let token = req.refresh_token.unwrap_or_default();
            // Rotation: the refresh token is spent whether or not the answer reaches the client.
            if !lock(&inner.auth).refresh.remove(&token) {
                return oauth_error(StatusCode::UNAUTHORIZED, "Token has been revoked");
            }
        }
        _ => return oauth_error(StatusCode::BAD_REQUEST, "Check the grant_type parameter"),
    }
    let pair = inner.issue_tokens();
    (StatusCode::OK, axum::Json(pair)).into_response()
}

async fn current_subdomain(State(inner): St, headers: HeaderMap) -> Response {
    let token = headers
        .get("x-refresh-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !lock(&inner.auth).refresh.contains(token) {
        return oauth_error(StatusCode::UNAUTHORIZED, "Token has been revoked");
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_owned();
    axum::Json(json!({
        "id": inner.config.account_id,
        "subdomain": inner.config.subdomain,
        "domain": host,
        "top_level_domain": "ru",
    }))
    .into_response()
}

/// An access token shaped like amoCRM's (a JWT) so clients that peek at it do not choke.
/// The signature is random: nothing here verifies it.
pub(crate) fn fake_jwt(
    config: &FakeConfig,
    lifetime: Duration,
    api_domain: Option<&str>,
) -> String {
    let now = unix_now();
    let header = json!({"typ": "JWT", "alg": "RS256"});
    let mut claims = json!({
        "aud": "fake-amocrm",
        "jti": crate::random_token(32),
        "iat": now,
        "nbf": now,
        "exp": now + lifetime.as_secs() as i64,
        "sub": crate::data::USERS[0].to_string(),
        "account_id": config.account_id,
        "base_domain": "amocrm.ru",
        "scopes": ["crm", "notifications"],
    });
    if let Some(domain) = api_domain {
        claims["api_domain"] = domain.into();
    }
    format!(
        "{}.{}.{}",
        base64url(header.to_string().as_bytes()),
        base64url(claims.to_string().as_bytes()),
        base64url(crate::random_token(64).as_bytes())
    )
}

fn base64url(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 0x3f) as usize] as char);
        }
    }
    out
}

// ---------- control ----------

async fn ctl_stats(State(inner): St) -> Response {
    axum::Json(lock(&inner.log).clone()).into_response()
}

#[derive(Deserialize)]
struct FailBody {
    #[serde(default)]
    status: Option<u16>,
    #[serde(default)]
    count: Option<u32>,
}

async fn ctl_fail(State(inner): St, body: Bytes) -> Response {
    let Ok(body) = serde_json::from_slice::<FailBody>(&body) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "expected {\"status\": 500, \"count\": 3}",
        );
    };
    let mode = match body.status {
        None | Some(0) => Failure::None,
        Some(status) if StatusCode::from_u16(status).is_err() => {
            return problem(StatusCode::BAD_REQUEST, "status out of range");
        }
        Some(status) => Failure::Status {
            status,
            count: body.count,
        },
    };
    inner.set_failure(mode.clone());
    axum::Json(mode).into_response()
}

#[derive(Deserialize)]
struct DownBody {
    seconds: f64,
}

/// Over HTTP "down" must end by itself: the control endpoint is unreachable meanwhile.
async fn ctl_down(State(inner): St, body: Bytes) -> Response {
    let Ok(DownBody { seconds }) = serde_json::from_slice(&body) else {
        return problem(StatusCode::BAD_REQUEST, "expected {\"seconds\": 5}");
    };
    if !seconds.is_finite() || seconds <= 0.0 {
        inner.set_failure(Failure::None);
        return no_content();
    }
    inner.set_failure(Failure::Down);
    let inner2 = inner.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
        if *lock(&inner2.failure) == Failure::Down {
            inner2.set_failure(Failure::None);
        }
    });
    no_content()
}

#[derive(Deserialize)]
struct LatencyBody {
    ms: u64,
}

async fn ctl_latency(State(inner): St, body: Bytes) -> Response {
    let Ok(LatencyBody { ms }) = serde_json::from_slice(&body) else {
        return problem(StatusCode::BAD_REQUEST, "expected {\"ms\": 250}");
    };
    *lock(&inner.latency) = Duration::from_millis(ms);
    no_content()
}

async fn ctl_expire(State(inner): St) -> Response {
    lock(&inner.auth).access.clear();
    no_content()
}

async fn ctl_reset(State(inner): St) -> Response {
    *lock(&inner.log) = crate::RequestLog::default();
    lock(&inner.window).clear();
    inner.set_failure(Failure::None);
    *lock(&inner.latency) = inner.config.latency;
    no_content()
}

async fn ctl_touch(State(inner): St, Path(id): Path<String>) -> Response {
    let fake = crate::FakeAmo { inner };
    match parse_id(&id).map(|id| fake.touch_lead(id)) {
        Some(lead) if !lead.is_null() => axum::Json(lead).into_response(),
        _ => problem(StatusCode::NOT_FOUND, "Not Found"),
    }
}

async fn not_found() -> Response {
    problem(StatusCode::NOT_FOUND, "Not Found")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_ids() {
        assert_eq!(
            template("/api/v4/leads/123/notes"),
            "/api/v4/leads/{id}/notes"
        );
        assert_eq!(template("/api/v4/leads"), "/api/v4/leads");
    }

    #[test]
    fn base64url_matches_known_values() {
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(b"\xff\xfe"), "__4");
    }
}
