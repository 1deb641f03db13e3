//! The write side of the fake API: adding and changing leads, contacts and companies (also
//! in one complex call), notes, tasks, links and tags, with amoCRM's documented answers.
//! Every change is visible to later reads.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use serde_json::{Map, Value, json};

use crate::data::{FIELD_EMAIL, FIELD_PHONE};
use crate::query::Query;
use crate::store::{Entity, Store};
use crate::{Inner, lock, unix_now};

type St = State<Arc<Inner>>;

/// The most items one write takes (50 for the complex add).
const MAX_BATCH: usize = 250;
const MAX_COMPLEX: usize = 50;
const FIRST_COMPANY_ID: u64 = 73_500_001;
const FIRST_TASK_ID: u64 = 88_100_001;
const FIRST_TAG_ID: u64 = 500_001;

/// State only writes create: companies, tasks, tags, links to companies and catalog
/// elements, pinned notes.
#[derive(Debug)]
pub(crate) struct WriteState {
    pub companies: BTreeMap<u64, Value>,
    pub tasks: BTreeMap<u64, Value>,
    /// Notes of companies (those of leads and contacts live in the store's notes).
    company_notes: BTreeMap<u64, Value>,
    /// (entity path, lower-cased name) → tag.
    tags: BTreeMap<(&'static str, String), Value>,
    next_company: u64,
    next_task: u64,
    next_tag: u64,
}

impl Default for WriteState {
    fn default() -> Self {
        WriteState {
            companies: BTreeMap::new(),
            tasks: BTreeMap::new(),
            company_notes: BTreeMap::new(),
            tags: BTreeMap::new(),
            next_company: FIRST_COMPANY_ID,
            next_task: FIRST_TASK_ID,
            next_tag: FIRST_TAG_ID,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Leads,
    Contacts,
    Companies,
}

impl Kind {
    fn path(self) -> &'static str {
        match self {
            Kind::Leads => "leads",
            Kind::Contacts => "contacts",
            Kind::Companies => "companies",
        }
    }

    fn entities(self, store: &Store) -> &BTreeMap<u64, Value> {
        match self {
            Kind::Leads => &store.leads,
            Kind::Contacts => &store.contacts,
            Kind::Companies => &store.writes.companies,
        }
    }

    fn note_entity(self) -> Option<Entity> {
        match self {
            Kind::Leads => Some(Entity::Leads),
            Kind::Contacts => Some(Entity::Contacts),
            Kind::Companies => None,
        }
    }
}

/// Fields a write may set on each entity, besides custom fields and tags.
fn fields(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Leads => &[
            "name",
            "price",
            "status_id",
            "pipeline_id",
            "responsible_user_id",
            "created_by",
            "updated_by",
            "created_at",
            "updated_at",
            "closed_at",
            "loss_reason_id",
        ],
        Kind::Contacts => &[
            "name",
            "first_name",
            "last_name",
            "responsible_user_id",
            "created_by",
            "updated_by",
            "created_at",
            "updated_at",
        ],
        Kind::Companies => &[
            "name",
            "responsible_user_id",
            "created_by",
            "updated_by",
            "created_at",
            "updated_at",
        ],
    }
}

pub(crate) fn routes() -> Router<Arc<Inner>> {
    let mut router = Router::new()
        .route("/api/v4/leads", post(add_leads).patch(update_leads))
        .route("/api/v4/leads/{id}", patch(update_lead))
        .route("/api/v4/leads/complex", post(add_complex))
        .route(
            "/api/v4/contacts",
            post(add_contacts).patch(update_contacts),
        )
        .route("/api/v4/contacts/{id}", patch(update_contact))
        .route(
            "/api/v4/companies",
            get(list_companies)
                .post(add_companies)
                .patch(update_companies),
        )
        .route(
            "/api/v4/companies/{id}",
            get(get_company).patch(update_company),
        )
        .route(
            "/api/v4/tasks",
            get(list_tasks).post(add_tasks).patch(update_tasks),
        )
        .route("/api/v4/tasks/{id}", get(get_task).patch(update_task));
    for kind in [Kind::Leads, Kind::Contacts, Kind::Companies] {
        let e = kind.path();
        router = router
            .route(
                &format!("/api/v4/{e}/notes"),
                post(move |s: St, b: Bytes| add_notes(s, kind, b))
                    .patch(move |s: St, b: Bytes| update_notes(s, kind, b)),
            )
            .route(
                &format!("/api/v4/{e}/notes/{{id}}"),
                patch(move |s: St, p: Path<String>, b: Bytes| update_note(s, kind, p, b)),
            )
            .route(
                &format!("/api/v4/{e}/notes/{{id}}/pin"),
                post(move |s: St, p: Path<String>| pin_note(s, kind, p)),
            )
            .route(
                &format!("/api/v4/{e}/{{id}}/link"),
                post(move |s: St, p: Path<String>, b: Bytes| link(s, kind, p, b, true)),
            )
            .route(
                &format!("/api/v4/{e}/{{id}}/unlink"),
                post(move |s: St, p: Path<String>, b: Bytes| link(s, kind, p, b, false)),
            )
            .route(
                &format!("/api/v4/{e}/{{id}}/links"),
                get(move |s: St, p: Path<String>| links_of(s, kind, p)),
            )
            .route(
                &format!("/api/v4/{e}/tags"),
                get(move |s: St, q: RawQuery| list_tags(s, kind, q))
                    .post(move |s: St, b: Bytes| add_tags(s, kind, b)),
            );
    }
    router
}

// ---------- answers ----------

fn hal(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/hal+json")],
        body.to_string(),
    )
        .into_response()
}

/// A refused item, in amoCRM's `validation-errors` shape.
struct Refusal {
    request_id: String,
    path: String,
    code: &'static str,
    detail: String,
}

fn refused(refusals: Vec<Refusal>) -> Response {
    let groups: Vec<Value> = refusals
        .into_iter()
        .map(|r| {
            json!({"request_id": r.request_id, "errors": [{"code": r.code, "path": r.path, "detail": r.detail}]})
        })
        .collect();
    let body = json!({
        "validation-errors": groups,
        "title": "Bad Request",
        "type": "https://httpstatus.es/400",
        "status": 400,
        "detail": "Request validation failed",
    });
    (
        StatusCode::BAD_REQUEST,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

fn not_found() -> Response {
    let body = json!({"title": "Not Found", "type": "https://httpstatus.es/404", "status": 404, "detail": "Not Found"});
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

fn refuse_body(detail: &str) -> Response {
    refused(vec![Refusal {
        request_id: "0".into(),
        path: String::new(),
        code: "InvalidType",
        detail: detail.into(),
    }])
}

/// The request's items: a JSON array of objects, at most `max`.
fn items(body: &[u8], max: usize) -> Result<Vec<Map<String, Value>>, Box<Response>> {
    let Ok(Value::Array(items)) = serde_json::from_slice::<Value>(body) else {
        return Err(Box::new(refuse_body("The body must be a JSON array")));
    };
    if items.is_empty() || items.len() > max {
        return Err(Box::new(refuse_body(&format!(
            "From 1 to {max} items can be sent in one request"
        ))));
    }
    let mut objects = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        match item {
            Value::Object(o) => objects.push(o),
            _ => {
                return Err(Box::new(refused(vec![Refusal {
                    request_id: i.to_string(),
                    path: String::new(),
                    code: "InvalidType",
                    detail: "This value should be of type object".into(),
                }])));
            }
        }
    }
    Ok(objects)
}

fn request_id(item: &Map<String, Value>, index: usize) -> String {
    match item.get("request_id") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => index.to_string(),
    }
}

fn base(inner: &Inner) -> String {
    lock(&inner.base_url)
        .clone()
        .unwrap_or_else(|| "http://localhost".into())
}

fn self_link(base: &str, path: String) -> Value {
    json!({"self": {"href": format!("{base}{path}")}})
}

// ---------- entity changes ----------

/// Checks an entity write's fields and custom fields; the refusal names the item.
fn check(item: &Map<String, Value>, request_id: &str) -> Result<(), Refusal> {
    let refuse = |path: String, detail: &str| Refusal {
        request_id: request_id.to_owned(),
        path,
        code: "InvalidType",
        detail: detail.to_owned(),
    };
    if let Some(name) = item.get("name")
        && !name.is_string()
    {
        return Err(refuse("name".into(), "This value should be of type string"));
    }
    for key in ["price", "status_id", "pipeline_id", "responsible_user_id"] {
        if let Some(v) = item.get(key)
            && !v.is_u64()
            && !v.is_null()
        {
            return Err(refuse(key.into(), "This value should be of type int"));
        }
    }
    if let Some(fields) = item.get("custom_fields_values") {
        let Some(fields) = fields.as_array() else {
            return Err(refuse(
                "custom_fields_values".into(),
                "This value should be of type array",
            ));
        };
        for (i, field) in fields.iter().enumerate() {
            let code = field.get("field_code").and_then(Value::as_str);
            let known_code = code.is_none_or(|c| field_for_code(c).is_some());
            if field.get("field_id").and_then(Value::as_u64).is_none() && code.is_none() {
                return Err(refuse(
                    format!("custom_fields_values.{i}.field_id"),
                    "This value should not be blank.",
                ));
            }
            if !known_code {
                return Err(Refusal {
                    code: "NotSupportedChoice",
                    ..refuse(
                        format!("custom_fields_values.{i}.field_code"),
                        "The value you selected is not a valid choice.",
                    )
                });
            }
            let values = field.get("values");
            if !values.is_some_and(|v| v.is_null() || v.is_array()) {
                return Err(refuse(
                    format!("custom_fields_values.{i}.values"),
                    "This value should be of type array",
                ));
            }
        }
    }
    Ok(())
}

fn field_for_code(code: &str) -> Option<(u64, &'static str, &'static str)> {
    match code.to_ascii_uppercase().as_str() {
        "PHONE" => Some((FIELD_PHONE, "Телефон", "PHONE")),
        "EMAIL" => Some((FIELD_EMAIL, "Email", "EMAIL")),
        _ => None,
    }
}

/// Sets custom fields: a field named again replaces its values, `values: null` clears it.
fn apply_custom_fields(entity: &mut Map<String, Value>, fields: &[Value]) {
    let mut current: Vec<Value> = entity
        .get("custom_fields_values")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for field in fields {
        let (field_id, name, code, field_type) =
            match field.get("field_code").and_then(Value::as_str) {
                Some(code) => match field_for_code(code) {
                    Some((id, name, code)) => (id, Some(name), Some(code), Some("multitext")),
                    None => continue,
                },
                None => match field.get("field_id").and_then(Value::as_u64) {
                    Some(id) => (id, None, None, None),
                    None => continue,
                },
            };
        let position = current
            .iter()
            .position(|f| f.get("field_id").and_then(Value::as_u64) == Some(field_id));
        let values = field.get("values").cloned().unwrap_or(Value::Null);
        let empty = values.as_array().is_none_or(Vec::is_empty);
        match (position, empty) {
            (Some(p), true) => {
                current.remove(p);
            }
            (Some(p), false) => current[p]["values"] = values,
            (None, true) => {}
            (None, false) => current.push(json!({
                "field_id": field_id,
                "field_name": name,
                "field_code": code,
                "field_type": field_type,
                "values": values,
            })),
        }
    }
    entity.insert(
        "custom_fields_values".into(),
        if current.is_empty() {
            Value::Null
        } else {
            Value::Array(current)
        },
    );
}

impl WriteState {
    /// The tag named by `tag` (`{"id"}` or `{"name"}`), created when named and new.
    fn tag(&mut self, kind: &'static str, tag: &Value) -> Option<Value> {
        if let Some(id) = tag.get("id").and_then(Value::as_u64) {
            return Some(
                self.tags
                    .iter()
                    .find(|((k, _), t)| *k == kind && t["id"].as_u64() == Some(id))
                    .map(|(_, t)| t.clone())
                    .unwrap_or_else(
                        || json!({"id": id, "name": format!("tag {id}"), "color": null}),
                    ),
            );
        }
        let name = tag.get("name").and_then(Value::as_str)?.trim();
        if name.is_empty() {
            return None;
        }
        let key = (kind, name.to_lowercase());
        if let Some(existing) = self.tags.get(&key) {
            return Some(existing.clone());
        }
        let created = json!({"id": self.next_tag, "name": name, "color": tag.get("color").cloned().unwrap_or(Value::Null)});
        self.next_tag += 1;
        self.tags.insert(key, created.clone());
        Some(created)
    }
}

/// Applies a write's fields, custom fields and tags to `entity`.
fn apply(
    store: &mut Store,
    kind: Kind,
    entity: &mut Map<String, Value>,
    item: &Map<String, Value>,
) {
    for key in fields(kind) {
        if let Some(value) = item.get(*key) {
            entity.insert((*key).into(), value.clone());
        }
    }
    if let Some(fields) = item.get("custom_fields_values").and_then(Value::as_array) {
        apply_custom_fields(entity, fields);
    }
    let path = kind.path();
    let mut tags: Vec<Value> = entity
        .get("_embedded")
        .and_then(|e| e.get("tags"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if let Some(replace) = item
        .get("_embedded")
        .and_then(|e| e.get("tags"))
        .and_then(Value::as_array)
    {
        tags = replace
            .iter()
            .filter_map(|t| store.writes.tag(path, t))
            .collect();
    }
    for add in item
        .get("tags_to_add")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(tag) = store.writes.tag(path, add)
            && !tags.iter().any(|t| t["id"] == tag["id"])
        {
            tags.push(tag);
        }
    }
    for remove in item
        .get("tags_to_delete")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        tags.retain(|t| {
            let by_id = remove.get("id").is_some_and(|id| *id == t["id"]);
            let by_name = remove.get("name").and_then(Value::as_str).is_some_and(|n| {
                t["name"]
                    .as_str()
                    .is_some_and(|m| m.eq_ignore_ascii_case(n))
            });
            !(by_id || by_name)
        });
    }
    let embedded = entity.entry("_embedded").or_insert_with(|| json!({}));
    if let Some(embedded) = embedded.as_object_mut() {
        embedded.insert("tags".into(), Value::Array(tags));
    }
}

fn new_entity(kind: Kind, account_id: u64, id: u64) -> Map<String, Value> {
    let now = unix_now();
    let mut entity = json!({
        "id": id,
        "name": "",
        "responsible_user_id": 0,
        "group_id": 0,
        "created_by": 0,
        "updated_by": 0,
        "created_at": now,
        "updated_at": now,
        "closest_task_at": null,
        "is_deleted": false,
        "custom_fields_values": null,
        "account_id": account_id,
        "_embedded": {"tags": [], "companies": []},
    });
    match kind {
        Kind::Leads => {
            entity["price"] = 0.into();
            entity["status_id"] = crate::data::STATUSES[0].into();
            entity["pipeline_id"] = crate::data::PIPELINE_ID.into();
            entity["loss_reason_id"] = Value::Null;
            entity["closed_at"] = Value::Null;
            entity["score"] = Value::Null;
            entity["labor_cost"] = Value::Null;
            entity["_embedded"]["contacts"] = json!([]);
        }
        Kind::Contacts => {
            entity["first_name"] = "".into();
            entity["last_name"] = "".into();
            entity["is_unsorted"] = false.into();
        }
        Kind::Companies => {
            entity["_embedded"]["contacts"] = json!([]);
        }
    }
    match entity {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn next_id(store: &Store, kind: Kind) -> u64 {
    match kind {
        Kind::Leads => store.next_lead,
        Kind::Contacts => store.next_contact,
        Kind::Companies => store.writes.next_company,
    }
}

/// Stores `entity` (an object with `id`) and keeps id counters and links in step.
fn save(store: &mut Store, kind: Kind, entity: Map<String, Value>) -> u64 {
    let entity = Value::Object(entity);
    match kind {
        Kind::Leads => store.upsert_lead(entity),
        Kind::Contacts => store.upsert_contact(entity),
        Kind::Companies => {
            let id = entity["id"].as_u64().unwrap_or(store.writes.next_company);
            store.writes.next_company = store.writes.next_company.max(id + 1);
            store.writes.companies.insert(id, entity);
            id
        }
    }
}

fn create(store: &mut Store, kind: Kind, account_id: u64, item: &Map<String, Value>) -> u64 {
    let id = next_id(store, kind);
    let mut entity = new_entity(kind, account_id, id);
    apply(store, kind, &mut entity, item);
    if kind == Kind::Contacts
        && entity
            .get("name")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
    {
        let first = entity
            .get("first_name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let last = entity
            .get("last_name")
            .and_then(Value::as_str)
            .unwrap_or("");
        entity.insert("name".into(), json!(format!("{first} {last}").trim()));
    }
    save(store, kind, entity)
}

fn update(store: &mut Store, kind: Kind, id: u64, item: &Map<String, Value>) -> Option<i64> {
    let Some(Value::Object(mut entity)) = kind.entities(store).get(&id).cloned() else {
        return None;
    };
    apply(store, kind, &mut entity, item);
    // Strictly increasing, so readers comparing `updated_at` see every change.
    let previous = entity
        .get("updated_at")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let updated_at = item
        .get("updated_at")
        .and_then(Value::as_i64)
        .unwrap_or_else(|| unix_now().max(previous + 1));
    entity.insert("updated_at".into(), updated_at.into());
    if kind == Kind::Leads
        && let Some(status) = item.get("status_id").and_then(Value::as_u64)
        && (status == 142 || status == 143)
        && entity.get("closed_at").is_none_or(Value::is_null)
    {
        entity.insert("closed_at".into(), updated_at.into());
    }
    save(store, kind, entity);
    Some(updated_at)
}

async fn add_entities(inner: &Inner, kind: Kind, body: &[u8]) -> Response {
    let items = match items(body, MAX_BATCH) {
        Ok(items) => items,
        Err(resp) => return *resp,
    };
    let refusals: Vec<Refusal> = items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| check(item, &request_id(item, i)).err())
        .collect();
    if !refusals.is_empty() {
        return refused(refusals);
    }
    let base = base(inner);
    let account_id = inner.config.account_id;
    let mut store = lock(&inner.store);
    let path = kind.path();
    let answered: Vec<Value> = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let id = create(&mut store, kind, account_id, item);
            json!({"id": id, "request_id": request_id(item, i), "_links": self_link(&base, format!("/api/v4/{path}/{id}"))})
        })
        .collect();
    hal(
        StatusCode::OK,
        &json!({"_links": self_link(&base, format!("/api/v4/{path}")), "_embedded": {path: answered}}),
    )
}

async fn update_entities(inner: &Inner, kind: Kind, body: &[u8]) -> Response {
    let items = match items(body, MAX_BATCH) {
        Ok(items) => items,
        Err(resp) => return *resp,
    };
    let base = base(inner);
    let mut store = lock(&inner.store);
    let mut refusals = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let rid = request_id(item, i);
        let known = item
            .get("id")
            .and_then(Value::as_u64)
            .is_some_and(|id| kind.entities(&store).contains_key(&id));
        if !known {
            refusals.push(Refusal {
                request_id: rid,
                path: "id".into(),
                code: "NotFound",
                detail: "Entity not found".into(),
            });
        } else if let Err(refusal) = check(item, &rid) {
            refusals.push(refusal);
        }
    }
    if !refusals.is_empty() {
        return refused(refusals);
    }
    let path = kind.path();
    let answered: Vec<Value> = items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| {
            let id = item.get("id").and_then(Value::as_u64)?;
            let updated_at = update(&mut store, kind, id, item)?;
            Some(json!({"id": id, "updated_at": updated_at, "request_id": request_id(item, i), "_links": self_link(&base, format!("/api/v4/{path}/{id}"))}))
        })
        .collect();
    hal(
        StatusCode::OK,
        &json!({"_links": self_link(&base, format!("/api/v4/{path}")), "_embedded": {path: answered}}),
    )
}

async fn update_one(inner: &Inner, kind: Kind, id: &str, body: &[u8]) -> Response {
    let Some(id) = id.parse::<u64>().ok() else {
        return not_found();
    };
    let Ok(Value::Object(item)) = serde_json::from_slice::<Value>(body) else {
        return refuse_body("The body must be a JSON object");
    };
    if let Err(refusal) = check(&item, "0") {
        return refused(vec![refusal]);
    }
    let base = base(inner);
    let mut store = lock(&inner.store);
    match update(&mut store, kind, id, &item) {
        Some(updated_at) => hal(
            StatusCode::OK,
            &json!({"id": id, "updated_at": updated_at, "_links": self_link(&base, format!("/api/v4/{}/{id}", kind.path()))}),
        ),
        None => not_found(),
    }
}

async fn add_leads(State(inner): St, body: Bytes) -> Response {
    add_entities(&inner, Kind::Leads, &body).await
}
async fn update_leads(State(inner): St, body: Bytes) -> Response {
    update_entities(&inner, Kind::Leads, &body).await
}
async fn update_lead(State(inner): St, Path(id): Path<String>, body: Bytes) -> Response {
    update_one(&inner, Kind::Leads, &id, &body).await
}
async fn add_contacts(State(inner): St, body: Bytes) -> Response {
    add_entities(&inner, Kind::Contacts, &body).await
}
async fn update_contacts(State(inner): St, body: Bytes) -> Response {
    update_entities(&inner, Kind::Contacts, &body).await
}
async fn update_contact(State(inner): St, Path(id): Path<String>, body: Bytes) -> Response {
    update_one(&inner, Kind::Contacts, &id, &body).await
}
async fn add_companies(State(inner): St, body: Bytes) -> Response {
    add_entities(&inner, Kind::Companies, &body).await
}
async fn update_companies(State(inner): St, body: Bytes) -> Response {
    update_entities(&inner, Kind::Companies, &body).await
}
async fn update_company(State(inner): St, Path(id): Path<String>, body: Bytes) -> Response {
    update_one(&inner, Kind::Companies, &id, &body).await
}

/// `POST /api/v4/leads/complex`: each lead with at most one new contact and company, linked
/// together; answered as a bare array (`id`, `contact_id`, `company_id`, `request_id: [..]`,
/// `merged`). The fake runs no duplicate control, so `merged` is always false.
async fn add_complex(State(inner): St, body: Bytes) -> Response {
    let items = match items(&body, MAX_COMPLEX) {
        Ok(items) => items,
        Err(resp) => return *resp,
    };
    let mut refusals = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let rid = request_id(item, i);
        let embedded = item.get("_embedded");
        for key in ["contacts", "companies"] {
            let list = embedded.and_then(|e| e.get(key)).and_then(Value::as_array);
            if list.is_some_and(|l| l.len() > 1) {
                refusals.push(Refusal {
                    request_id: rid.clone(),
                    path: format!("_embedded.{key}"),
                    code: "InvalidCount",
                    detail: "This collection should contain 1 element or less.".into(),
                });
            }
            for nested in list.into_iter().flatten() {
                if let Some(nested) = nested.as_object()
                    && let Err(mut refusal) = check(nested, &rid)
                {
                    refusal.path = format!("_embedded.{key}.0.{}", refusal.path);
                    refusals.push(refusal);
                }
            }
        }
        if let Err(refusal) = check(item, &rid) {
            refusals.push(refusal);
        }
    }
    if !refusals.is_empty() {
        return refused(refusals);
    }
    let account_id = inner.config.account_id;
    let mut store = lock(&inner.store);
    let answered: Vec<Value> = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let embedded = item.get("_embedded");
            let first = |key: &str| {
                embedded
                    .and_then(|e| e.get(key))
                    .and_then(Value::as_array)
                    .and_then(|l| l.first())
                    .and_then(Value::as_object)
                    .cloned()
            };
            let company_id =
                first("companies").map(|c| create(&mut store, Kind::Companies, account_id, &c));
            let contact_id =
                first("contacts").map(|c| create(&mut store, Kind::Contacts, account_id, &c));
            let lead_id = create(&mut store, Kind::Leads, account_id, item);
            if let Some(Value::Object(mut lead)) = store.leads.get(&lead_id).cloned() {
                let embedded = lead.entry("_embedded").or_insert_with(|| json!({}));
                if let Some(contact) = contact_id {
                    embedded["contacts"] = json!([{"id": contact, "is_main": true}]);
                }
                if let Some(company) = company_id {
                    embedded["companies"] = json!([{"id": company}]);
                }
                store.upsert_lead(Value::Object(lead));
            }
            if let (Some(contact), Some(company)) = (contact_id, company_id) {
                if let Some(c) = store.contacts.get_mut(&contact) {
                    c["_embedded"]["companies"] = json!([{"id": company}]);
                }
                if let Some(c) = store.writes.companies.get_mut(&company) {
                    c["_embedded"]["contacts"] = json!([{"id": contact}]);
                }
            }
            json!({
                "id": lead_id,
                "contact_id": contact_id,
                "company_id": company_id,
                "request_id": [request_id(item, i)],
                "merged": false,
            })
        })
        .collect();
    hal(StatusCode::OK, &Value::Array(answered))
}

// ---------- companies (reads) ----------

fn page(q: &Query, ids: &[u64]) -> (usize, Vec<u64>, bool) {
    let limit = q
        .get("limit")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(50)
        .clamp(1, MAX_BATCH);
    let page = q
        .get("page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let start = (page - 1).saturating_mul(limit);
    let chosen = ids.iter().skip(start).take(limit).copied().collect();
    (page, chosen, start + limit < ids.len())
}

fn list(
    base: &str,
    path: &str,
    q: &Query,
    key: &str,
    ids: &[u64],
    render: impl Fn(u64) -> Option<Value>,
) -> Response {
    let (number, chosen, more) = page(q, ids);
    let items: Vec<Value> = chosen.into_iter().filter_map(render).collect();
    if items.is_empty() {
        return StatusCode::NO_CONTENT.into_response();
    }
    let mut links = json!({"self": {"href": format!("{base}{path}?{}", q.with_page(number))}});
    if more {
        links["next"] = json!({"href": format!("{base}{path}?{}", q.with_page(number + 1))});
    }
    hal(
        StatusCode::OK,
        &json!({"_page": number, "_links": links, "_embedded": {key: items}}),
    )
}

fn render(base: &str, path: &str, entity: &Value) -> Value {
    let mut entity = entity.clone();
    let id = entity["id"].as_u64().unwrap_or_default();
    entity["_links"] = self_link(base, format!("/api/v4/{path}/{id}"));
    entity
}

async fn list_companies(State(inner): St, RawQuery(raw): RawQuery) -> Response {
    let q = Query::parse(raw.as_deref());
    let base = base(&inner);
    let store = lock(&inner.store);
    let wanted = q.ids("filter[id]").ok().flatten();
    let ids: Vec<u64> = store
        .writes
        .companies
        .keys()
        .copied()
        .filter(|id| wanted.as_ref().is_none_or(|w| w.contains(id)))
        .collect();
    list(&base, "/api/v4/companies", &q, "companies", &ids, |id| {
        store
            .writes
            .companies
            .get(&id)
            .map(|c| render(&base, "companies", c))
    })
}

async fn get_company(State(inner): St, Path(id): Path<String>) -> Response {
    let base = base(&inner);
    let store = lock(&inner.store);
    match id
        .parse::<u64>()
        .ok()
        .and_then(|id| store.writes.companies.get(&id))
    {
        Some(company) => hal(StatusCode::OK, &render(&base, "companies", company)),
        None => not_found(),
    }
}

// ---------- notes ----------

const NOTE_TYPES: [&str; 11] = [
    "common",
    "call_in",
    "call_out",
    "service_message",
    "extended_service_message",
    "message_cashier",
    "geolocation",
    "sms_in",
    "sms_out",
    "attachment",
    "invoice_paid",
];

fn check_note(item: &Map<String, Value>, rid: &str) -> Result<(), Refusal> {
    let note_type = item.get("note_type").and_then(Value::as_str).unwrap_or("");
    if !NOTE_TYPES.contains(&note_type) {
        return Err(Refusal {
            request_id: rid.to_owned(),
            path: "note_type".into(),
            code: "NotSupportedChoice",
            detail: "The value you selected is not a valid choice.".into(),
        });
    }
    if !item.get("params").is_some_and(Value::is_object) {
        return Err(Refusal {
            request_id: rid.to_owned(),
            path: "params".into(),
            code: "InvalidType",
            detail: "This value should be of type object".into(),
        });
    }
    Ok(())
}

async fn add_notes(State(inner): St, kind: Kind, body: Bytes) -> Response {
    let items = match items(&body, MAX_BATCH) {
        Ok(items) => items,
        Err(resp) => return *resp,
    };
    let base = base(&inner);
    let account_id = inner.config.account_id;
    let mut store = lock(&inner.store);
    let mut refusals = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let rid = request_id(item, i);
        let owner = item.get("entity_id").and_then(Value::as_u64);
        if !owner.is_some_and(|id| kind.entities(&store).contains_key(&id)) {
            refusals.push(Refusal {
                request_id: rid,
                path: "entity_id".into(),
                code: "NotFound",
                detail: "Entity not found".into(),
            });
        } else if let Err(refusal) = check_note(item, &rid) {
            refusals.push(refusal);
        }
    }
    if !refusals.is_empty() {
        return refused(refusals);
    }
    let path = kind.path();
    let now = unix_now();
    let answered: Vec<Value> = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let entity_id = item.get("entity_id").and_then(Value::as_u64).unwrap_or_default();
            let by = item.get("created_by").cloned().unwrap_or(json!(0));
            let note = json!({
                "entity_id": entity_id,
                "created_by": by,
                "updated_by": by,
                "created_at": now,
                "updated_at": now,
                "responsible_user_id": item.get("responsible_user_id").cloned().unwrap_or(by.clone()),
                "group_id": 0,
                "note_type": item["note_type"],
                "params": item["params"],
                "account_id": account_id,
                "is_pinned": false,
            });
            let id = add_note(&mut store, kind, note);
            json!({"id": id, "entity_id": entity_id, "request_id": request_id(item, i), "_links": self_link(&base, format!("/api/v4/{path}/{entity_id}/notes/{id}"))})
        })
        .collect();
    hal(
        StatusCode::OK,
        &json!({"_links": self_link(&base, format!("/api/v4/{path}/notes")), "_embedded": {"notes": answered}}),
    )
}

/// Notes of leads and contacts live in the store's notes, which the read endpoints serve;
/// company notes are kept here.
fn add_note(store: &mut Store, kind: Kind, mut note: Value) -> u64 {
    match kind.note_entity() {
        Some(entity) => store.add_note(entity, note),
        None => {
            let id = store.next_note;
            store.next_note += 1;
            note["id"] = id.into();
            store.writes.company_notes.insert(id, note);
            id
        }
    }
}

fn note_mut(store: &mut Store, kind: Kind, id: u64) -> Option<&mut Value> {
    match kind.note_entity() {
        Some(entity) => match store.notes.get_mut(&id) {
            Some((owner, note)) if *owner == entity => Some(note),
            _ => None,
        },
        None => store.writes.company_notes.get_mut(&id),
    }
}

fn change_note(
    store: &mut Store,
    kind: Kind,
    id: u64,
    item: &Map<String, Value>,
) -> Option<(u64, i64)> {
    let note = note_mut(store, kind, id)?;
    if let Some(params) = item.get("params") {
        note["params"] = params.clone();
    }
    if let Some(note_type) = item.get("note_type") {
        note["note_type"] = note_type.clone();
    }
    let updated_at = unix_now().max(note["updated_at"].as_i64().unwrap_or(0) + 1);
    note["updated_at"] = updated_at.into();
    Some((note["entity_id"].as_u64().unwrap_or_default(), updated_at))
}

async fn update_notes(State(inner): St, kind: Kind, body: Bytes) -> Response {
    let items = match items(&body, MAX_BATCH) {
        Ok(items) => items,
        Err(resp) => return *resp,
    };
    let base = base(&inner);
    let mut store = lock(&inner.store);
    let mut answered = Vec::with_capacity(items.len());
    let mut refusals = Vec::new();
    for (i, item) in items.iter().enumerate() {
        if let Err(refusal) = check_note(item, &request_id(item, i)) {
            refusals.push(refusal);
        }
    }
    if !refusals.is_empty() {
        return refused(refusals);
    }
    for (i, item) in items.iter().enumerate() {
        let id = item.get("id").and_then(Value::as_u64).unwrap_or_default();
        match change_note(&mut store, kind, id, item) {
            Some((entity_id, updated_at)) => answered.push(json!({
                "id": id, "entity_id": entity_id, "updated_at": updated_at,
                "request_id": request_id(item, i),
                "_links": self_link(&base, format!("/api/v4/{}/{entity_id}/notes/{id}", kind.path())),
            })),
            None => {
                return refused(vec![Refusal {
                    request_id: request_id(item, i),
                    path: "id".into(),
                    code: "NotFound",
                    detail: "Note not found".into(),
                }]);
            }
        }
    }
    hal(StatusCode::OK, &json!({"_embedded": {"notes": answered}}))
}

async fn update_note(
    State(inner): St,
    kind: Kind,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let Ok(Value::Object(item)) = serde_json::from_slice::<Value>(&body) else {
        return refuse_body("The body must be a JSON object");
    };
    if let Err(refusal) = check_note(&item, "0") {
        return refused(vec![refusal]);
    }
    let base = base(&inner);
    let mut store = lock(&inner.store);
    let id = id.parse::<u64>().unwrap_or_default();
    match change_note(&mut store, kind, id, &item) {
        Some((entity_id, updated_at)) => hal(
            StatusCode::OK,
            &json!({"id": id, "entity_id": entity_id, "updated_at": updated_at,
                "_links": self_link(&base, format!("/api/v4/{}/{entity_id}/notes/{id}", kind.path()))}),
        ),
        None => not_found(),
    }
}

async fn pin_note(State(inner): St, kind: Kind, Path(id): Path<String>) -> Response {
    let mut store = lock(&inner.store);
    match id
        .parse::<u64>()
        .ok()
        .and_then(|id| note_mut(&mut store, kind, id))
    {
        Some(note) => {
            note["is_pinned"] = true.into();
            StatusCode::NO_CONTENT.into_response()
        }
        None => not_found(),
    }
}

// ---------- tasks ----------

fn check_task(item: &Map<String, Value>, rid: &str, creating: bool) -> Result<(), Refusal> {
    let refuse = |path: &str, detail: &str| Refusal {
        request_id: rid.to_owned(),
        path: path.into(),
        code: "InvalidType",
        detail: detail.into(),
    };
    if creating && !item.get("text").is_some_and(Value::is_string) {
        return Err(refuse("text", "This value should not be blank."));
    }
    if creating && !item.get("complete_till").is_some_and(Value::is_i64) {
        return Err(refuse("complete_till", "This value should not be blank."));
    }
    if let Some(entity_type) = item.get("entity_type").and_then(Value::as_str)
        && !["leads", "contacts", "companies", "customers"].contains(&entity_type)
    {
        return Err(refuse(
            "entity_type",
            "The value you selected is not a valid choice.",
        ));
    }
    Ok(())
}

fn apply_task(task: &mut Value, item: &Map<String, Value>) {
    for key in [
        "text",
        "complete_till",
        "task_type_id",
        "entity_id",
        "entity_type",
        "responsible_user_id",
        "duration",
        "created_by",
        "is_completed",
        "result",
    ] {
        if let Some(value) = item.get(key) {
            task[key] = value.clone();
        }
    }
}

async fn add_tasks(State(inner): St, body: Bytes) -> Response {
    let items = match items(&body, MAX_BATCH) {
        Ok(items) => items,
        Err(resp) => return *resp,
    };
    let refusals: Vec<Refusal> = items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| check_task(item, &request_id(item, i), true).err())
        .collect();
    if !refusals.is_empty() {
        return refused(refusals);
    }
    let base = base(&inner);
    let account_id = inner.config.account_id;
    let now = unix_now();
    let mut store = lock(&inner.store);
    let answered: Vec<Value> = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let id = store.writes.next_task;
            store.writes.next_task += 1;
            let mut task = json!({
                "id": id, "created_by": 0, "updated_by": 0, "created_at": now, "updated_at": now,
                "responsible_user_id": 0, "group_id": 0, "entity_id": null, "entity_type": null,
                "duration": 0, "is_completed": false, "task_type_id": 1, "text": "", "result": [],
                "complete_till": now, "account_id": account_id,
            });
            apply_task(&mut task, item);
            store.writes.tasks.insert(id, task);
            json!({"id": id, "request_id": request_id(item, i), "_links": self_link(&base, format!("/api/v4/tasks/{id}"))})
        })
        .collect();
    hal(
        StatusCode::OK,
        &json!({"_links": self_link(&base, "/api/v4/tasks".into()), "_embedded": {"tasks": answered}}),
    )
}

fn change_task(store: &mut Store, id: u64, item: &Map<String, Value>) -> Option<i64> {
    let task = store.writes.tasks.get_mut(&id)?;
    apply_task(task, item);
    let updated_at = unix_now().max(task["updated_at"].as_i64().unwrap_or(0) + 1);
    task["updated_at"] = updated_at.into();
    Some(updated_at)
}

async fn update_tasks(State(inner): St, body: Bytes) -> Response {
    let items = match items(&body, MAX_BATCH) {
        Ok(items) => items,
        Err(resp) => return *resp,
    };
    let base = base(&inner);
    let mut store = lock(&inner.store);
    let mut refusals = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let rid = request_id(item, i);
        let known = item
            .get("id")
            .and_then(Value::as_u64)
            .is_some_and(|id| store.writes.tasks.contains_key(&id));
        if !known {
            refusals.push(Refusal {
                request_id: rid,
                path: "id".into(),
                code: "NotFound",
                detail: "Task not found".into(),
            });
        } else if let Err(refusal) = check_task(item, &rid, false) {
            refusals.push(refusal);
        }
    }
    if !refusals.is_empty() {
        return refused(refusals);
    }
    let answered: Vec<Value> = items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| {
            let id = item.get("id").and_then(Value::as_u64)?;
            let updated_at = change_task(&mut store, id, item)?;
            Some(json!({"id": id, "updated_at": updated_at, "request_id": request_id(item, i), "_links": self_link(&base, format!("/api/v4/tasks/{id}"))}))
        })
        .collect();
    hal(StatusCode::OK, &json!({"_embedded": {"tasks": answered}}))
}

async fn update_task(State(inner): St, Path(id): Path<String>, body: Bytes) -> Response {
    let Ok(Value::Object(item)) = serde_json::from_slice::<Value>(&body) else {
        return refuse_body("The body must be a JSON object");
    };
    if let Err(refusal) = check_task(&item, "0", false) {
        return refused(vec![refusal]);
    }
    let base = base(&inner);
    let mut store = lock(&inner.store);
    let id = id.parse::<u64>().unwrap_or_default();
    match change_task(&mut store, id, &item) {
        Some(updated_at) => hal(
            StatusCode::OK,
            &json!({"id": id, "updated_at": updated_at, "_links": self_link(&base, format!("/api/v4/tasks/{id}"))}),
        ),
        None => not_found(),
    }
}

async fn list_tasks(State(inner): St, RawQuery(raw): RawQuery) -> Response {
    let q = Query::parse(raw.as_deref());
    let base = base(&inner);
    let store = lock(&inner.store);
    let ids = q.ids("filter[id]").ok().flatten();
    let users = q.ids("filter[responsible_user_id]").ok().flatten();
    let types = q.ids("filter[task_type]").ok().flatten();
    let entity_ids = q.ids("filter[entity_id]").ok().flatten();
    let entity_type = q.get("filter[entity_type]").map(str::to_owned);
    let completed = q
        .get("filter[is_completed]")
        .map(|v| v == "1" || v == "true");
    let from = q
        .get("filter[updated_at][from]")
        .and_then(|v| v.parse::<i64>().ok());
    let to = q
        .get("filter[updated_at][to]")
        .and_then(|v| v.parse::<i64>().ok());
    let matches = |task: &Value| {
        let n = |k: &str| task[k].as_u64().unwrap_or_default();
        let updated = task["updated_at"].as_i64().unwrap_or_default();
        ids.as_ref().is_none_or(|l| l.contains(&n("id")))
            && users
                .as_ref()
                .is_none_or(|l| l.contains(&n("responsible_user_id")))
            && types
                .as_ref()
                .is_none_or(|l| l.contains(&n("task_type_id")))
            && entity_ids
                .as_ref()
                .is_none_or(|l| l.contains(&n("entity_id")))
            && entity_type
                .as_deref()
                .is_none_or(|t| task["entity_type"].as_str() == Some(t))
            && completed.is_none_or(|c| task["is_completed"].as_bool() == Some(c))
            && from.is_none_or(|f| updated >= f)
            && to.is_none_or(|t| updated <= t)
    };
    let selected: Vec<u64> = store
        .writes
        .tasks
        .iter()
        .filter(|(_, t)| matches(t))
        .map(|(id, _)| *id)
        .collect();
    list(&base, "/api/v4/tasks", &q, "tasks", &selected, |id| {
        store
            .writes
            .tasks
            .get(&id)
            .map(|t| render(&base, "tasks", t))
    })
}

async fn get_task(State(inner): St, Path(id): Path<String>) -> Response {
    let base = base(&inner);
    let store = lock(&inner.store);
    match id
        .parse::<u64>()
        .ok()
        .and_then(|id| store.writes.tasks.get(&id))
    {
        Some(task) => hal(StatusCode::OK, &render(&base, "tasks", task)),
        None => not_found(),
    }
}

// ---------- links ----------

/// The `_embedded` list of `entity` where links to `to_type` are kept.
fn link_list<'a>(entity: &'a mut Value, to_type: &str) -> Option<&'a mut Vec<Value>> {
    let embedded = entity.get_mut("_embedded")?.as_object_mut()?;
    let list = embedded.entry(to_type).or_insert_with(|| json!([]));
    if !list.is_array() {
        *list = json!([]);
    }
    list.as_array_mut()
}

fn entity_mut<'a>(store: &'a mut Store, kind: &str, id: u64) -> Option<&'a mut Value> {
    match kind {
        "leads" => store.leads.get_mut(&id),
        "contacts" => store.contacts.get_mut(&id),
        "companies" => store.writes.companies.get_mut(&id),
        _ => None,
    }
}

/// Links `from` → `to` (or unlinks), on both sides where both are entities the fake keeps.
fn set_link(store: &mut Store, from: (&str, u64), to: (&str, u64), metadata: &Value, linked: bool) {
    let entry = |id: u64, metadata: &Value, main_key: bool| {
        let mut entry = json!({"id": id});
        if main_key {
            entry["is_main"] = metadata.get("is_main").cloned().unwrap_or(json!(false));
        }
        if let Some(object) = metadata.as_object() {
            for (k, v) in object {
                if k != "is_main" {
                    entry[k] = v.clone();
                }
            }
        }
        entry
    };
    for ((kind, id), (to_kind, to_id), main_key) in [
        (from, to, from.0 == "leads" && to.0 == "contacts"),
        (to, from, to.0 == "leads" && from.0 == "contacts"),
    ] {
        if to_kind == "catalog_elements" && kind != from.0 {
            continue;
        }
        let Some(entity) = entity_mut(store, kind, id) else {
            continue;
        };
        if let Some(list) = link_list(entity, to_kind) {
            list.retain(|e| e["id"].as_u64() != Some(to_id));
            if linked {
                list.push(entry(to_id, metadata, main_key));
            }
        }
    }
    // Lead ↔ contact links also feed the contact's `with=leads` index.
    let lead = match (from.0, to.0) {
        ("leads", "contacts") => Some(from.1),
        ("contacts", "leads") => Some(to.1),
        _ => None,
    };
    if let Some(lead) = lead
        && let Some(lead) = store.leads.get(&lead).cloned()
    {
        store.upsert_lead(lead);
    }
}

async fn link(
    State(inner): St,
    kind: Kind,
    Path(id): Path<String>,
    body: Bytes,
    linked: bool,
) -> Response {
    let items = match items(&body, MAX_BATCH) {
        Ok(items) => items,
        Err(resp) => return *resp,
    };
    let Some(id) = id.parse::<u64>().ok() else {
        return not_found();
    };
    let mut store = lock(&inner.store);
    if !kind.entities(&store).contains_key(&id) {
        return not_found();
    }
    let mut refusals = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let to_type = item
            .get("to_entity_type")
            .and_then(Value::as_str)
            .unwrap_or("");
        let to_id = item.get("to_entity_id").and_then(Value::as_u64);
        let valid_type = [
            "leads",
            "contacts",
            "companies",
            "customers",
            "catalog_elements",
        ]
        .contains(&to_type);
        if !valid_type || to_id.is_none() {
            refusals.push(Refusal {
                request_id: i.to_string(),
                path: if valid_type {
                    "to_entity_id".into()
                } else {
                    "to_entity_type".into()
                },
                code: "InvalidType",
                detail: "The value you selected is not a valid choice.".into(),
            });
        }
    }
    if !refusals.is_empty() {
        return refused(refusals);
    }
    let mut made = Vec::with_capacity(items.len());
    for item in &items {
        let to_type = item["to_entity_type"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let to_id = item["to_entity_id"].as_u64().unwrap_or_default();
        let metadata = item.get("metadata").cloned().unwrap_or(Value::Null);
        set_link(
            &mut store,
            (kind.path(), id),
            (&to_type, to_id),
            &metadata,
            linked,
        );
        made.push(json!({
            "entity_id": id, "entity_type": kind.path(),
            "to_entity_id": to_id, "to_entity_type": to_type, "metadata": metadata,
        }));
    }
    if !linked {
        return StatusCode::NO_CONTENT.into_response();
    }
    hal(
        StatusCode::OK,
        &json!({"_total_items": made.len(), "_embedded": {"links": made}}),
    )
}

async fn links_of(State(inner): St, kind: Kind, Path(id): Path<String>) -> Response {
    let Some(id) = id.parse::<u64>().ok() else {
        return not_found();
    };
    let store = lock(&inner.store);
    let Some(entity) = kind.entities(&store).get(&id).cloned() else {
        return not_found();
    };
    let mut links = Vec::new();
    let mut push = |to_type: &str, entries: Vec<Value>| {
        for entry in entries {
            let mut metadata = entry.as_object().cloned().unwrap_or_default();
            metadata.remove("id");
            metadata.remove("_links");
            let to_id = entry["id"].as_u64().unwrap_or_default();
            links.push(json!({
                "entity_id": id, "entity_type": kind.path(), "to_entity_id": to_id,
                "to_entity_type": to_type,
                "metadata": if metadata.is_empty() { Value::Null } else { Value::Object(metadata) },
            }));
        }
    };
    for to_type in ["contacts", "companies", "catalog_elements", "leads"] {
        let entries = entity
            .pointer(&format!("/_embedded/{to_type}"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        push(to_type, entries);
    }
    if kind == Kind::Contacts {
        let leads = store
            .leads_of_contact(id)
            .into_iter()
            .map(|lead| json!({"id": lead}))
            .collect();
        push("leads", leads);
    }
    if links.is_empty() {
        return StatusCode::NO_CONTENT.into_response();
    }
    hal(
        StatusCode::OK,
        &json!({"_total_items": links.len(), "_embedded": {"links": links}}),
    )
}

// ---------- tags ----------

async fn list_tags(State(inner): St, kind: Kind, RawQuery(raw): RawQuery) -> Response {
    let q = Query::parse(raw.as_deref());
    let base = base(&inner);
    let store = lock(&inner.store);
    let name = q.get("filter[name]").map(str::to_lowercase);
    let text = q.get("query").map(str::to_lowercase);
    let ids = q.ids("filter[id]").ok().flatten();
    let tags: BTreeMap<u64, Value> = store
        .writes
        .tags
        .iter()
        .filter(|((k, lower), tag)| {
            *k == kind.path()
                && name.as_deref().is_none_or(|n| n == lower)
                && text.as_deref().is_none_or(|t| lower.contains(t))
                && ids
                    .as_ref()
                    .is_none_or(|l| tag["id"].as_u64().is_some_and(|id| l.contains(&id)))
        })
        .filter_map(|(_, tag)| Some((tag["id"].as_u64()?, tag.clone())))
        .collect();
    let ordered: Vec<u64> = tags.keys().copied().collect();
    list(
        &base,
        &format!("/api/v4/{}/tags", kind.path()),
        &q,
        "tags",
        &ordered,
        |id| tags.get(&id).cloned(),
    )
}

async fn add_tags(State(inner): St, kind: Kind, body: Bytes) -> Response {
    let items = match items(&body, MAX_BATCH) {
        Ok(items) => items,
        Err(resp) => return *resp,
    };
    let refusals: Vec<Refusal> = items
        .iter()
        .enumerate()
        .filter(|(_, item)| {
            item.get("name")
                .and_then(Value::as_str)
                .is_none_or(|n| n.trim().is_empty())
        })
        .map(|(i, item)| Refusal {
            request_id: request_id(item, i),
            path: "name".into(),
            code: "InvalidType",
            detail: "This value should not be blank.".into(),
        })
        .collect();
    if !refusals.is_empty() {
        return refused(refusals);
    }
    let mut store = lock(&inner.store);
    let answered: Vec<Value> = items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| {
            let mut tag = store
                .writes
                .tag(kind.path(), &Value::Object(item.clone()))?;
            tag["request_id"] = request_id(item, i).into();
            Some(tag)
        })
        .collect();
    hal(StatusCode::OK, &json!({"_embedded": {"tags": answered}}))
}
