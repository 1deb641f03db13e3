//! Plain data carried in and out of a [`Store`](crate::Store).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One webhook event to enqueue (a row of `amocrm_webhook_events`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    /// Dotted name such as `lead.status` (column `event_type`).
    pub event_type: String,
    /// Entity section such as `leads` (column `entity_type`).
    pub entity_type: String,
    /// amoCRM's id of the entity, as text; `None` when the body carries none (column `amocrm_entity_id`).
    pub amocrm_entity_id: Option<String>,
    /// Hex SHA-256 of the event's canonical form; the deduplication key (column `event_hash`, unique).
    pub event_hash: String,
    /// The event as JSON (column `payload`); see [`NewEvent::from_webhook`] for what the worker
    /// expects in it.
    pub payload: Payload,
    /// amoCRM account id (column `account_id`, `INT` in PostgreSQL).
    pub account_id: Option<i64>,
    /// When the webhook was received (column `ts`).
    pub received_at: DateTime<Utc>,
}

/// A [`NewEvent`]'s payload: JSON text, serialized once. The webhook path writes an event straight
/// to its text and the store binds that text, so no `serde_json::Value` tree is built, copied or
/// freed per request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Payload(Box<serde_json::value::RawValue>);

impl Payload {
    /// `value` serialized as JSON.
    pub fn from_json<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<Self> {
        serde_json::value::to_raw_value(value).map(Payload)
    }

    /// `text` if it is JSON.
    pub fn from_text(text: String) -> serde_json::Result<Self> {
        serde_json::value::RawValue::from_string(text).map(Payload)
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// The payload as a JSON value.
    pub fn to_value(&self) -> Value {
        serde_json::from_str(self.0.get()).unwrap_or(Value::Null)
    }

    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn raw(&self) -> &serde_json::value::RawValue {
        &self.0
    }

    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn from_raw(raw: Box<serde_json::value::RawValue>) -> Self {
        Payload(raw)
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl From<Value> for Payload {
    fn from(value: Value) -> Self {
        // A `Value` always serializes.
        Payload::from_json(&value).unwrap_or_else(|_| Payload::from(Value::Null))
    }
}

/// Result of [`Store::insert_events`](crate::Store::insert_events).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InsertOutcome {
    /// Events that were new and are now stored.
    pub stored: u64,
    /// Events whose `event_hash` was already stored (or repeated within the batch).
    pub duplicates: u64,
    /// Of the `stored` events, those stored processed with their rows written
    /// ([`Store::insert_settled`](crate::Store::insert_settled)); the others wait for the worker.
    pub settled: u64,
}

/// Where an event is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventState {
    /// Waiting for a worker (possibly after failed attempts).
    Pending,
    /// Claimed by a worker whose lease has not expired.
    Leased,
    /// Done (`processed = true`).
    Processed,
    /// Gave up after the maximum number of attempts; stays visible until requeued.
    Dead,
}

/// A stored event as read back (by a worker's claim or by an operator).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// The row id (column `id`), the order events were stored in.
    pub id: i64,
    /// When the webhook was received (column `ts`).
    pub received_at: DateTime<Utc>,
    /// Dotted name such as `lead.status` (column `event_type`).
    pub event_type: String,
    /// Entity section such as `leads` (column `entity_type`).
    pub entity_type: String,
    /// amoCRM's id of the entity, as text (column `amocrm_entity_id`).
    pub amocrm_entity_id: Option<String>,
    /// Hex SHA-256 of the event's canonical form (column `event_hash`).
    pub event_hash: String,
    /// The event as JSON (column `payload`), as the database returns its text; `StoredEvent::webhook_event`
    /// (feature `webhook`) reads it back as an `amocrm-webhook` event without an intermediate tree.
    pub payload: Payload,
    /// amoCRM account id (column `account_id`).
    pub account_id: Option<i64>,
    /// Whether a worker finished it (column `processed`).
    pub processed: bool,
    /// Failed attempts so far.
    pub attempts: i32,
    /// When it is due (again) for a worker.
    pub next_attempt_at: DateTime<Utc>,
    /// The end of the current worker's lease, if one was taken.
    pub locked_until: Option<DateTime<Utc>>,
    /// Why the last attempt failed or was put off.
    pub last_error: Option<String>,
    /// When a worker finished it.
    pub processed_at: Option<DateTime<Utc>>,
    /// When it gave up after the maximum number of attempts; `None` unless dead.
    pub dead_at: Option<DateTime<Utc>>,
}

impl StoredEvent {
    /// The event's state at `now`.
    pub fn state(&self, now: DateTime<Utc>) -> EventState {
        if self.processed {
            EventState::Processed
        } else if self.dead_at.is_some() {
            EventState::Dead
        } else if self.locked_until.is_some_and(|until| until > now) {
            EventState::Leased
        } else {
            EventState::Pending
        }
    }
}

/// Result of [`Store::fail_event`](crate::Store::fail_event).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailOutcome {
    /// The event will be claimable again at the given time.
    Retrying,
    /// The event reached the maximum number of attempts and is now dead.
    Dead,
}

/// Which events [`Store::requeue`](crate::Store::requeue) puts back in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requeue {
    /// Every dead event.
    Dead,
    /// The chosen events, whatever their state (processed ones are processed again).
    Ids(Vec<i64>),
}

/// A webhook body that was refused (a row of `amocrm_rejected_webhooks`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedWebhook {
    /// The raw body exactly as received (may be invalid UTF-8).
    pub body: Vec<u8>,
    /// The request's `Content-Type`, if any.
    pub content_type: Option<String>,
    /// Why it was refused, as told to the sender.
    pub reason: String,
    /// When the body was received.
    pub received_at: DateTime<Utc>,
}

/// A stored rejected body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRejected {
    /// The row id.
    pub id: i64,
    /// `body` holds at most [`REJECTED_BODY_KEEP`] bytes of what was refused.
    #[serde(flatten)]
    pub rejected: RejectedWebhook,
    /// Length of the body as given to the store, before it was cut (`None` for rows stored before
    /// bodies were cut).
    pub body_length: Option<u64>,
    /// Lowercase hex SHA-256 of the body as given to the store, before it was cut.
    pub body_sha256: Option<String>,
}

/// How much of a refused body is kept: enough to see what a sender sends, never a disk's worth.
pub const REJECTED_BODY_KEEP: usize = 64 * 1024;

/// A value of `jarvis_state`: a small fact shared between processes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateEntry {
    /// The value as written.
    pub value: Value,
    /// When the value was last written.
    pub updated_at: DateTime<Utc>,
}

/// What one state of an entity says about one column of its mirror row.
///
/// The mirror rule (see the crate docs) in one type: [`Known::Value`] and [`Known::Null`] replace the
/// stored value (a value amoCRM cleared is cleared here), [`Known::Unknown`] keeps it (the source cannot
/// know the column, e.g. a webhook body has no main contact).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Known<T> {
    /// The source does not carry this column: the stored value stays.
    #[default]
    Unknown,
    /// The source says there is no value: the column becomes NULL.
    Null,
    /// The source's value.
    Value(T),
}

impl<T> Known<T> {
    /// A column the source knows: `None` is [`Known::Null`].
    pub fn from_option(value: Option<T>) -> Self {
        match value {
            Some(value) => Known::Value(value),
            None => Known::Null,
        }
    }

    /// Whether the column is to be written (as a value or as NULL).
    pub fn is_known(&self) -> bool {
        !matches!(self, Known::Unknown)
    }

    /// The value, if the source has one.
    pub fn value(&self) -> Option<&T> {
        match self {
            Known::Value(value) => Some(value),
            _ => None,
        }
    }

    /// The value the column takes when this state is applied over `stored`.
    pub fn apply(self, stored: Option<T>) -> Option<T> {
        match self {
            Known::Unknown => stored,
            Known::Null => None,
            Known::Value(value) => Some(value),
        }
    }

    /// Borrows the value.
    pub fn as_ref(&self) -> Known<&T> {
        match self {
            Known::Unknown => Known::Unknown,
            Known::Null => Known::Null,
            Known::Value(value) => Known::Value(value),
        }
    }

    /// Maps the value, keeping `Unknown` and `Null` as they are.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Known<U> {
        match self {
            Known::Unknown => Known::Unknown,
            Known::Null => Known::Null,
            Known::Value(value) => Known::Value(f(value)),
        }
    }
}

impl<T> From<T> for Known<T> {
    fn from(value: T) -> Self {
        Known::Value(value)
    }
}

/// A state of a lead ("deal") to write to `amocrm_deals`, as one source knows it.
///
/// Applied only if it is not older than the stored row (see the crate docs for the ordering rule);
/// then every [`Known`] column is written, `Unknown` ones kept. `metadata`: the keys in
/// `metadata_keys` (those `JARVIS_METADATA_FIELDS` produces) are removed, then `metadata` is merged
/// in; any other stored key is kept.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DealUpsert {
    /// amoCRM's lead id, as text (column `amocrm_deal_id`, the row's key).
    pub amocrm_deal_id: String,
    /// The pipeline (column `pipeline_id`).
    pub pipeline_id: Known<i64>,
    /// The stage within the pipeline (column `status_id`).
    pub status_id: Known<i64>,
    /// The budget in the account's currency (column `price`).
    pub price: Known<i64>,
    /// The lead's name (column `name`).
    pub name: Known<String>,
    /// The responsible user (column `responsible_user_id`).
    pub responsible_user_id: Known<i64>,
    /// The lead's custom fields in the API's `custom_fields_values` shape (column
    /// `custom_fields`).
    pub custom_fields: Known<Value>,
    /// The whole lead as the API returned it (column `deal_full_data`).
    pub deal_full_data: Known<Value>,
    /// The main contact's `custom_fields_values` (column `contact_custom_fields`).
    pub contact_custom_fields: Known<Value>,
    /// amoCRM id of the lead's main contact (column `main_contact_id`): contact changes follow it.
    pub main_contact_id: Known<String>,
    /// Keys this state recomputes: dropped from the stored metadata unless given in `metadata`.
    pub metadata_keys: Vec<String>,
    /// Keys to set in the stored metadata.
    pub metadata: Map<String, Value>,
    /// amoCRM's creation time (column `created_at`).
    pub created_at: Known<DateTime<Utc>>,
    /// amoCRM's time of this state; `None` for a body without one (applied as the newest state,
    /// keeping the stored time).
    pub updated_at: Option<DateTime<Utc>>,
    /// When the lead was closed, won or lost (column `closed_at`).
    pub closed_at: Known<DateTime<Utc>>,
    /// `None` keeps the stored flag.
    pub is_deleted: Option<bool>,
}

/// A row of `amocrm_deals`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deal {
    /// The row's own id.
    pub id: uuid::Uuid,
    /// The business's client this deal belongs to, when a linker filled it.
    pub client_id: Option<uuid::Uuid>,
    /// The business's conversation this deal belongs to, when a linker filled it.
    pub conversation_id: Option<uuid::Uuid>,
    /// amoCRM's lead id, as text.
    pub amocrm_deal_id: String,
    /// The pipeline.
    pub pipeline_id: Option<i64>,
    /// The stage within the pipeline.
    pub status_id: Option<i64>,
    /// The budget in the account's currency.
    pub price: Option<i64>,
    /// The lead's name.
    pub name: Option<String>,
    /// The responsible user.
    pub responsible_user_id: Option<i64>,
    /// The lead's custom fields in the API's `custom_fields_values` shape.
    pub custom_fields: Option<Value>,
    /// The whole lead as the API last returned it.
    pub deal_full_data: Option<Value>,
    /// The main contact's `custom_fields_values`.
    pub contact_custom_fields: Option<Value>,
    /// amoCRM's id of the lead's main contact, as text.
    pub main_contact_id: Option<String>,
    /// Links to other systems: keys from mapped custom fields and keys set by callers.
    pub metadata: Value,
    /// amoCRM's creation time.
    pub created_at: Option<DateTime<Utc>>,
    /// amoCRM's time of the stored state.
    pub updated_at: Option<DateTime<Utc>>,
    /// When the lead was closed.
    pub closed_at: Option<DateTime<Utc>>,
    /// Whether the lead is deleted in amoCRM (in its trash).
    pub is_deleted: bool,
    /// When the row was last written.
    pub synced_at: DateTime<Utc>,
}

/// A state of a contact to write to `amocrm_contacts`; same rules as [`DealUpsert`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContactUpsert {
    /// amoCRM's contact id, as text (column `amocrm_contact_id`, the row's key).
    pub amocrm_contact_id: String,
    /// The contact's full name (column `name`).
    pub name: Known<String>,
    /// Column `first_name`.
    pub first_name: Known<String>,
    /// Column `last_name`.
    pub last_name: Known<String>,
    /// The responsible user (column `responsible_user_id`).
    pub responsible_user_id: Known<i64>,
    /// The contact's custom fields in the API's `custom_fields_values` shape (column
    /// `custom_fields`).
    pub custom_fields: Known<Value>,
    /// The whole contact as the API returned it (column `contact_full_data`).
    pub contact_full_data: Known<Value>,
    /// Keys this state recomputes: dropped from the stored metadata unless given in `metadata`.
    pub metadata_keys: Vec<String>,
    /// Keys to set in the stored metadata.
    pub metadata: Map<String, Value>,
    /// amoCRM's creation time (column `created_at`).
    pub created_at: Known<DateTime<Utc>>,
    /// As in [`DealUpsert::updated_at`].
    pub updated_at: Option<DateTime<Utc>>,
    /// `None` keeps the stored flag.
    pub is_deleted: Option<bool>,
}

/// The mirror tables that delete and restore events apply to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MirrorEntity {
    /// `amocrm_deals`
    Deal,
    /// `amocrm_contacts`
    Contact,
}

impl MirrorEntity {
    /// The name kept in `amocrm_deletions.entity_type`.
    pub fn as_str(&self) -> &'static str {
        match self {
            MirrorEntity::Deal => "deal",
            MirrorEntity::Contact => "contact",
        }
    }
}

/// A row of `amocrm_contacts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contact {
    /// The row's own id.
    pub id: uuid::Uuid,
    /// amoCRM's contact id, as text.
    pub amocrm_contact_id: String,
    /// The contact's full name.
    pub name: Option<String>,
    /// First name.
    pub first_name: Option<String>,
    /// Last name.
    pub last_name: Option<String>,
    /// The responsible user.
    pub responsible_user_id: Option<i64>,
    /// The contact's custom fields in the API's `custom_fields_values` shape.
    pub custom_fields: Option<Value>,
    /// The whole contact as the API last returned it.
    pub contact_full_data: Option<Value>,
    /// Links to other systems, set by callers.
    pub metadata: Value,
    /// amoCRM's creation time.
    pub created_at: Option<DateTime<Utc>>,
    /// amoCRM's time of the stored state.
    pub updated_at: Option<DateTime<Utc>>,
    /// Whether the contact is deleted in amoCRM.
    pub is_deleted: bool,
    /// When the row was last written.
    pub synced_at: DateTime<Utc>,
}

/// Result of an upsert of many rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpsertOutcome {
    /// Rows inserted or changed.
    pub applied: u64,
    /// Rows left alone because the stored row is newer.
    pub stale: u64,
}

/// An OAuth token pair for one amoCRM account (a row of `amocrm_oauth_tokens`).
///
/// `Debug` hides the tokens.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredTokens {
    /// The bearer token requests carry.
    pub access_token: String,
    /// The token that gets the next pair (replaced at every refresh).
    pub refresh_token: String,
    /// The token type amoCRM gave (`Bearer`).
    pub token_type: String,
    /// When the access token stops working.
    pub expires_at: DateTime<Utc>,
    /// When the pair was saved.
    pub updated_at: DateTime<Utc>,
}

impl std::fmt::Debug for StoredTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredTokens")
            .field("access_token", &"[redacted]")
            .field("refresh_token", &"[redacted]")
            .field("token_type", &self.token_type)
            .field("expires_at", &self.expires_at)
            .field("updated_at", &self.updated_at)
            .finish()
    }
}

/// amoCRM API requests made in one minute, for one endpoint and status (table `amocrm_api_usage`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiUsage {
    /// Start of the minute (seconds truncated to zero).
    pub minute: DateTime<Utc>,
    /// Endpoint label such as `GET /api/v4/leads`.
    pub endpoint: String,
    /// HTTP status, or 0 for a transport error.
    pub status: u16,
    /// Requests made.
    pub count: u64,
}

/// The queue figures `/metrics` reads at every scrape: answered from the queue's partial
/// indexes, so their cost follows the backlog, not the whole history.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueueStats {
    /// Events neither processed nor dead.
    pub backlog: u64,
    /// `ts` of the oldest event in the backlog.
    pub oldest_pending_at: Option<DateTime<Utc>>,
    /// Events that gave up.
    pub dead: u64,
}

/// Queue and mirror figures for `jarvis status`: counts over whole tables.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Events neither processed nor dead.
    pub backlog: u64,
    /// `ts` of the oldest event in the backlog.
    pub oldest_pending_at: Option<DateTime<Utc>>,
    /// Events that gave up.
    pub dead: u64,
    /// Events processed.
    pub processed: u64,
    /// Events in the backlog that have failed at least once (counted or postponed).
    pub retrying: u64,
    /// Rejected bodies kept.
    pub rejected: u64,
    /// `ts` of the newest stored event.
    pub last_event_at: Option<DateTime<Utc>>,
    /// Rows of `amocrm_deals`.
    pub deals: u64,
    /// Rows of `amocrm_contacts`.
    pub contacts: u64,
    /// Stored events per `event_type`, sorted by name.
    pub by_type: Vec<(String, u64)>,
}
