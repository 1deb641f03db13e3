//! A stateful fake amoCRM (API v4 + OAuth 2.0) for benchmarks, demos and fault tests.
//!
//! [`FakeAmo`] serves leads, contacts and notes in the documented HAL shape, issues and
//! rotates OAuth tokens, enforces the 7 requests/s limit with `429`, can be told to fail
//! or go slow, and counts every request. [`send`] plays amoCRM's webhook sender: it posts
//! realistic form-encoded bodies built from the fake's leads at a chosen rate. The history methods
//! ([`FakeAmo::move_lead`], [`FakeAmo::clear_lead_field`], [`FakeAmo::set_main_contact`],
//! [`FakeAmo::trash_lead`], [`FakeAmo::restore_lead`], and their contact counterparts) change an entity
//! as a user would and answer the webhook body amoCRM sends for the change.
//!
//! Writes answer as amoCRM documents them and change what later reads return:
//! `POST`/`PATCH /api/v4/{leads,contacts,companies}` (batches of up to 250, `request_id`
//! echoed), `PATCH /api/v4/{entity}/{id}`, `POST /api/v4/leads/complex` (up to 50, linked
//! contact and company), notes (`POST`/`PATCH /api/v4/{entity}/notes`, `.../notes/{id}/pin`),
//! tasks (`GET`/`POST`/`PATCH /api/v4/tasks`), links (`POST /api/v4/{entity}/{id}/link` and
//! `/unlink`, `GET .../{id}/links`) and tags (`GET`/`POST /api/v4/{entity}/tags`). Refused
//! items get a 400 with `validation-errors[].request_id` and the field's path. There is no
//! duplicate control: a complex add never answers `merged: true`.
//!
//! Control endpoints (not counted, never failed): `GET /__fake/stats` (the [`RequestLog`]),
//! `POST /__fake/fail` `{"status": 500, "count": 3}` (`status` 0 or absent clears it),
//! `POST /__fake/down` `{"seconds": 5}`, `POST /__fake/latency` `{"ms": 250}`,
//! `POST /__fake/expire-tokens`, `POST /__fake/reset` (counters, faults, latency) and
//! `POST /__fake/touch/{id}` (the lead after [`FakeAmo::touch_lead`]).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use fake_amocrm::{FakeAmo, FakeConfig};
//! let fake = FakeAmo::new(FakeConfig::default());
//! fake.seed(300, 300, 1);
//! let addr = fake.start("127.0.0.1:0".parse().unwrap()).await?;
//! println!("{} {:?}", addr, fake.requests());
//! # Ok(()) }
//! ```

mod data;
mod feed;
mod form;
mod history;
mod http;
mod query;
mod send;
mod store;
mod writes;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use data::{FIELD_CAR_CLASS, FIELD_RENTPROG_ID, PIPELINE_ID, STATUSES};
pub use feed::{DISABLE_AFTER_FAILURES, Delivered};
pub use form::{
    contact_event_body, delete_lead_body, encode_component, form_encode, lead_event_body,
    lead_events_body, note_event_body,
};
pub use history::{SECOND_PIPELINE_ID, SECOND_PIPELINE_STATUSES};
pub use send::{KindMix, LatencySummary, SendPlan, SendReport, send, summarize};

/// How the fake behaves. `Default` matches a real account: 7 requests/s, day-long tokens,
/// authentication required.
#[derive(Clone, Debug)]
pub struct FakeConfig {
    /// Requests per second allowed on `/api/v4/*` (sliding 1 s window); `None` = unlimited.
    /// Past it the answer is `429` with `Retry-After: 1`.
    pub rate_per_second: Option<u32>,
    /// Delay added before every answer (changeable with [`FakeAmo::set_latency`]).
    pub latency: Duration,
    /// `expires_in` of issued access tokens; they answer `401` afterwards.
    pub token_lifetime: Duration,
    /// Require `Authorization: Bearer` with a token this server issued or `long_lived_token`.
    pub require_auth: bool,
    /// A token that is always accepted, like a private integration's long-lived token.
    pub long_lived_token: Option<String>,
    /// `account[id]` of webhooks and `GET /api/v4/account`.
    pub account_id: u64,
    /// `account[subdomain]` of webhooks and `GET /api/v4/account`.
    pub subdomain: String,
}

impl Default for FakeConfig {
    fn default() -> Self {
        Self {
            rate_per_second: Some(7),
            latency: Duration::ZERO,
            token_lifetime: Duration::from_secs(86_400),
            require_auth: true,
            long_lived_token: None,
            account_id: 29_071_803,
            subdomain: "geodrive".into(),
        }
    }
}

/// An injected fault. Requests to `/__fake/*` control endpoints are never affected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Failure {
    None,
    /// Answer every request with `status` (a problem JSON body), for the next `count`
    /// requests or, with `None`, until changed.
    Status {
        status: u16,
        count: Option<u32>,
    },
    /// New connections are closed right after accept; requests on already open
    /// connections get `503` with `Connection: close`.
    Down,
}

/// Counts of requests the fake has seen since start or the last reset.
/// Requests to `/__fake/*` are not counted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestLog {
    pub total: u64,
    /// By method and path template, e.g. `"GET /api/v4/leads/{id}"`.
    pub by_route: BTreeMap<String, u64>,
    pub by_status: BTreeMap<u16, u64>,
    /// Every `429` answered (rate limit or injected).
    pub rate_limited: u64,
    /// `refresh_token` grant requests, accepted or not.
    pub token_refreshes: u64,
    /// `authorization_code` grant requests, accepted or not.
    pub code_exchanges: u64,
    /// Connections closed unanswered while [`Failure::Down`].
    pub refused_connections: u64,
}

impl RequestLog {
    /// Count for one route, e.g. `log.route("GET /api/v4/leads")`.
    pub fn route(&self, route: &str) -> u64 {
        self.by_route.get(route).copied().unwrap_or(0)
    }

    pub fn status(&self, status: u16) -> u64 {
        self.by_status.get(&status).copied().unwrap_or(0)
    }
}

/// The body of a successful `POST /oauth2/access_token`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenPair {
    pub token_type: String,
    pub expires_in: u64,
    pub access_token: String,
    pub refresh_token: String,
    pub server_time: i64,
}

#[derive(Default)]
pub(crate) struct AuthState {
    /// access token → when it stops working
    pub access: HashMap<String, Instant>,
    pub refresh: HashSet<String>,
    pub used_codes: HashSet<String>,
}

pub(crate) struct Inner {
    pub config: FakeConfig,
    pub latency: Mutex<Duration>,
    pub store: Mutex<store::Store>,
    pub auth: Mutex<AuthState>,
    pub log: Mutex<RequestLog>,
    pub window: Mutex<VecDeque<Instant>>,
    pub failure: Mutex<Failure>,
    /// Mirrors `Failure::Down` for the accept loop, which must not take locks.
    pub down: AtomicBool,
    pub base_url: Mutex<Option<String>>,
    /// The events feed (`GET /api/v4/events`) and webhook failure counts.
    pub feed: Mutex<feed::Feed>,
    pub delivery: feed::Delivery,
}

/// Locks ignoring poison: a panicked test thread must not wedge the fake for the others.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

impl Inner {
    pub(crate) fn set_failure(&self, mode: Failure) {
        self.down
            .store(matches!(mode, Failure::Down), Ordering::SeqCst);
        *lock(&self.failure) = mode;
    }

    pub(crate) fn issue_tokens(&self) -> TokenPair {
        let lifetime = self.config.token_lifetime;
        let domain = lock(&self.base_url)
            .as_deref()
            .map(|u| u.trim_start_matches("http://").to_owned());
        let access_token = http::fake_jwt(&self.config, lifetime, domain.as_deref());
        let refresh_token = random_token(64);
        let mut auth = lock(&self.auth);
        auth.access
            .insert(access_token.clone(), Instant::now() + lifetime);
        auth.refresh.insert(refresh_token.clone());
        TokenPair {
            token_type: "Bearer".into(),
            expires_in: lifetime.as_secs(),
            access_token,
            refresh_token,
            server_time: unix_now(),
        }
    }
}

pub(crate) fn random_token(len: usize) -> String {
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// The fake server and its state. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct FakeAmo {
    inner: Arc<Inner>,
}

impl FakeAmo {
    pub fn new(config: FakeConfig) -> Self {
        let latency = config.latency;
        Self {
            inner: Arc::new(Inner {
                config,
                latency: Mutex::new(latency),
                store: Mutex::new(store::Store::new()),
                auth: Mutex::new(AuthState::default()),
                log: Mutex::new(RequestLog::default()),
                window: Mutex::new(VecDeque::new()),
                failure: Mutex::new(Failure::None),
                down: AtomicBool::new(false),
                base_url: Mutex::new(None),
                feed: Mutex::new(feed::Feed::new()),
                delivery: feed::Delivery::new(),
            }),
        }
    }

    pub fn config(&self) -> &FakeConfig {
        &self.inner.config
    }

    /// Binds `addr` (`127.0.0.1:0` for a free port) and serves on a spawned task
    /// for as long as the tokio runtime lives. Returns the bound address.
    pub async fn start(&self, addr: SocketAddr) -> std::io::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let bound = listener.local_addr()?;
        *lock(&self.inner.base_url) = Some(format!("http://{bound}"));
        let gated = http::GateListener {
            listener,
            inner: self.inner.clone(),
        };
        let app = self.router();
        tokio::spawn(async move {
            if let Err(e) = axum::serve(gated, app).await {
                tracing::error!(error = %e, "fake amoCRM server stopped");
            }
        });
        Ok(bound)
    }

    /// The whole app (API, OAuth and `/__fake/*` control endpoints) to mount elsewhere.
    pub fn router(&self) -> axum::Router {
        http::router(self.inner.clone())
    }

    /// `http://127.0.0.1:PORT` once [`FakeAmo::start`] has bound.
    pub fn base_url(&self) -> Option<String> {
        lock(&self.inner.base_url).clone()
    }

    // ---- state ----

    /// Inserts or replaces a lead (API v4 shape). Without an `id` one is assigned.
    /// Contacts linked in `_embedded.contacts` (`{id, is_main}`) are indexed.
    pub fn upsert_lead(&self, lead: Value) -> u64 {
        lock(&self.inner.store).upsert_lead(lead)
    }

    /// Inserts or replaces a contact (API v4 shape). Without an `id` one is assigned.
    pub fn upsert_contact(&self, contact: Value) -> u64 {
        lock(&self.inner.store).upsert_contact(contact)
    }

    /// Adds a `common` note with `text` to a lead; returns the note id.
    pub fn add_note(&self, lead_id: u64, text: &str) -> u64 {
        let account_id = self.inner.config.account_id;
        let mut store = lock(&self.inner.store);
        let id = store.next_note;
        let note = data::note(
            &mut store.rng,
            id,
            lead_id,
            account_id,
            Some(text),
            unix_now(),
        );
        store.add_note(store::Entity::Leads, note)
    }

    /// Adds a note in API v4 shape (`entity_id`, `note_type`, `params`, ...) to a lead.
    pub fn add_note_value(&self, note: Value) -> u64 {
        lock(&self.inner.store).add_note(store::Entity::Leads, note)
    }

    /// Generates `contacts` contacts and `leads` leads (each with a main contact when
    /// there are contacts, some with a second one, and up to two notes). The same
    /// `seed` on a fresh fake gives the same data, so a `send` process can mirror a
    /// `serve` process.
    pub fn seed(&self, leads: usize, contacts: usize, seed: u64) {
        let account_id = self.inner.config.account_id;
        let mut store = lock(&self.inner.store);
        let mut rng = StdRng::seed_from_u64(seed);
        let mut contact_ids = Vec::with_capacity(contacts);
        for _ in 0..contacts {
            let id = store.next_contact;
            let c = data::contact(&mut rng, id, account_id);
            contact_ids.push(store.upsert_contact(c));
        }
        for _ in 0..leads {
            let id = store.next_lead;
            let mut links = Vec::new();
            if let Some(main) = contact_ids.choose(&mut rng) {
                links.push((*main, true));
                if rng.random_bool(0.1)
                    && let Some(other) = contact_ids.choose(&mut rng).filter(|o| *o != main)
                {
                    links.push((*other, false));
                }
            }
            let lead = data::lead(&mut rng, id, account_id, &links);
            let created = lead["created_at"].as_i64().unwrap_or(data::EPOCH);
            store.upsert_lead(lead);
            for n in 0..rng.random_range(0..=2i64) {
                let nid = store.next_note;
                let note = data::note(&mut rng, nid, id, account_id, None, created + 600 * (n + 1));
                store.add_note(store::Entity::Leads, note);
            }
        }
        store.rng = StdRng::seed_from_u64(seed ^ 0x5eed_f00d);
    }

    /// Creates one more generated lead (linked to a random existing contact) and
    /// returns it, as an `add` event would describe it.
    pub fn create_lead(&self) -> Value {
        let account_id = self.inner.config.account_id;
        let mut store = lock(&self.inner.store);
        let id = store.next_lead;
        let main = {
            let ids: Vec<u64> = store.contacts.keys().copied().collect();
            ids.choose(&mut store.rng).copied()
        };
        let links: Vec<(u64, bool)> = main.map(|m| (m, true)).into_iter().collect();
        let mut lead = data::lead(&mut store.rng, id, account_id, &links);
        let now = unix_now();
        lead["created_at"] = now.into();
        lead["updated_at"] = now.into();
        lead["status_id"] = STATUSES[0].into();
        lead["closed_at"] = Value::Null;
        store.upsert_lead(lead.clone());
        drop(store);
        feed::record_lead_added(&self.inner, &lead);
        lead
    }

    /// Moves a lead to another stage and bumps `updated_at` (strictly increasing per
    /// lead, so every event built from the result is distinct). Returns the lead with
    /// `old_status_id`/`old_pipeline_id` added, or `Value::Null` for an unknown id.
    pub fn touch_lead(&self, id: u64) -> Value {
        let mut store = lock(&self.inner.store);
        let store = &mut *store;
        let Some(lead) = store.leads.get_mut(&id) else {
            return Value::Null;
        };
        let before = lead.clone();
        let rng = &mut store.rng;
        let old_status = lead["status_id"].as_u64().unwrap_or(STATUSES[0]);
        let pipeline = lead["pipeline_id"].as_u64().unwrap_or(PIPELINE_ID);
        let choices: Vec<u64> = STATUSES
            .iter()
            .copied()
            .filter(|s| *s != old_status)
            .collect();
        let status = *choices.choose(rng).unwrap_or(&STATUSES[0]);
        let updated = (lead["updated_at"].as_i64().unwrap_or(0) + 1).max(unix_now());
        lead["status_id"] = status.into();
        lead["updated_at"] = updated.into();
        lead["updated_by"] = (*data::USERS.choose(rng).unwrap_or(&data::USERS[0])).into();
        lead["closed_at"] = if status == 142 || status == 143 {
            updated.into()
        } else {
            Value::Null
        };
        if rng.random_bool(0.3) {
            lead["price"] = (rng.random_range(3..60u32) * 500).into();
        }
        feed::record_lead_change(&self.inner, id, &before, lead);
        let mut out = lead.clone();
        out["old_status_id"] = old_status.into();
        out["old_pipeline_id"] = pipeline.into();
        out
    }

    /// Bumps a contact's `updated_at`; returns it with `_embedded.leads` (`[{id}]`),
    /// or `Value::Null` for an unknown id.
    pub fn touch_contact(&self, id: u64) -> Value {
        let mut store = lock(&self.inner.store);
        let leads = store.leads_of_contact(id);
        let Some(contact) = store.contacts.get_mut(&id) else {
            return Value::Null;
        };
        let updated = (contact["updated_at"].as_i64().unwrap_or(0) + 1).max(unix_now());
        contact["updated_at"] = updated.into();
        feed::record_contact_change(&self.inner, id, contact, contact);
        let mut out = contact.clone();
        out["_embedded"]["leads"] = leads.iter().map(|l| serde_json::json!({"id": l})).collect();
        out
    }

    /// Removes a lead (and its notes); returns it as it was.
    pub fn delete_lead(&self, id: u64) -> Option<Value> {
        let removed = lock(&self.inner.store).remove_lead(id);
        if let Some(lead) = &removed {
            feed::record_lead_deleted(&self.inner, lead);
        }
        removed
    }

    /// The stored lead (API v4 shape, with `_embedded.contacts`, without `_links`).
    pub fn lead(&self, id: u64) -> Option<Value> {
        lock(&self.inner.store).leads.get(&id).cloned()
    }

    pub fn contact(&self, id: u64) -> Option<Value> {
        lock(&self.inner.store).contacts.get(&id).cloned()
    }

    /// Notes of one lead, oldest first.
    pub fn lead_notes(&self, lead_id: u64) -> Vec<Value> {
        lock(&self.inner.store)
            .notes
            .values()
            .filter(|(e, n)| *e == store::Entity::Leads && n["entity_id"].as_u64() == Some(lead_id))
            .map(|(_, n)| n.clone())
            .collect()
    }

    pub fn lead_ids(&self) -> Vec<u64> {
        lock(&self.inner.store).leads.keys().copied().collect()
    }

    pub fn contact_ids(&self) -> Vec<u64> {
        lock(&self.inner.store).contacts.keys().copied().collect()
    }

    /// Webhook subscriptions made through `POST /api/v4/webhooks`.
    pub fn webhooks(&self) -> Vec<Value> {
        lock(&self.inner.store).webhooks.clone()
    }

    // ---- auth ----

    /// Issues a token pair as a code exchange would, without HTTP or counting.
    pub fn issue_tokens(&self) -> TokenPair {
        self.inner.issue_tokens()
    }

    /// Every issued access token answers `401` from now on; refresh tokens still work.
    pub fn expire_tokens(&self) {
        lock(&self.inner.auth).access.clear();
    }

    // ---- faults ----

    pub fn set_failure(&self, mode: Failure) {
        self.inner.set_failure(mode);
    }

    pub fn failure(&self) -> Failure {
        lock(&self.inner.failure).clone()
    }

    pub fn set_latency(&self, d: Duration) {
        *lock(&self.inner.latency) = d;
    }

    // ---- counters ----

    pub fn requests(&self) -> RequestLog {
        lock(&self.inner.log).clone()
    }

    /// Zeroes the counters and forgets the rate-limit window.
    pub fn reset_counters(&self) {
        *lock(&self.inner.log) = RequestLog::default();
        lock(&self.inner.window).clear();
    }
}
