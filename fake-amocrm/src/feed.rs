//! The events feed and webhook delivery.
//!
//! Every change the fake makes through [`FakeAmo`]'s change methods (`create_lead`, `touch_lead`,
//! `touch_contact`, `rename_contact`, `delete_lead`) is recorded as an event object in the documented
//! shape of `GET /api/v4/events`: `id`, `type`, `entity_id`, `entity_type`, `created_by`, `created_at`,
//! `value_before`, `value_after`, `account_id`. The webhook registry (`POST /api/v4/webhooks`) can
//! be delivered to with [`FakeAmo::deliver`]: like amoCRM, a webhook that keeps failing is switched
//! off (`disabled: true`) and receives nothing more until subscribed again; [`FakeAmo::disable_webhook`]
//! switches one off at once, and [`FakeAmo::set_delivering`] stops every delivery (the account
//! sending nothing, while the feed still records).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::{FakeAmo, Inner, data, lock, unix_now};

/// amoCRM switches a webhook off after more than 100 failed deliveries within two hours.
pub const DISABLE_AFTER_FAILURES: u32 = 100;

/// The recorded events (oldest first) and delivery state.
pub(crate) struct Feed {
    pub(crate) events: Vec<Value>,
    next_id: u64,
    /// Failed deliveries per destination since its last success or subscription.
    failures: HashMap<String, u32>,
}

impl Feed {
    pub(crate) fn new() -> Self {
        Self {
            events: Vec::new(),
            next_id: 1,
            failures: HashMap::new(),
        }
    }
}

/// Delivery switches, read without taking the store lock.
pub(crate) struct Delivery {
    pub(crate) delivering: AtomicBool,
    pub(crate) disable_after: AtomicU32,
}

impl Delivery {
    pub(crate) fn new() -> Self {
        Self {
            delivering: AtomicBool::new(true),
            disable_after: AtomicU32::new(DISABLE_AFTER_FAILURES),
        }
    }
}

/// What [`FakeAmo::deliver`] did with one body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivered {
    /// Webhooks that answered 2xx.
    pub accepted: u32,
    /// Webhooks that failed (non-2xx, no answer within 2 s, or no connection).
    pub failed: u32,
    /// Webhooks skipped because they are disabled or delivering is switched off.
    pub skipped: u32,
}

impl Inner {
    /// Records one event in the feed.
    pub(crate) fn record_event(
        &self,
        event_type: &str,
        entity_type: &str,
        entity_id: u64,
        value_before: Value,
        value_after: Value,
    ) {
        let account_id = self.config.account_id;
        let mut feed = lock(&self.feed);
        let number = feed.next_id;
        feed.next_id += 1;
        // amoCRM's event ids are 26 lowercase characters, e.g. `01pz58t6p04mc7vhgm57gfq4fk`.
        let id = format!("01{number:024x}");
        feed.events.push(json!({
            "id": id,
            "type": event_type,
            "entity_id": entity_id,
            "entity_type": entity_type,
            "created_by": data::USERS[0],
            "created_at": unix_now(),
            "value_before": value_before,
            "value_after": value_after,
            "account_id": account_id,
            "_embedded": {"entity": {"id": entity_id}},
        }));
    }
}

fn status_value(lead: &Value) -> Value {
    json!([{"lead_status": {"id": lead["status_id"], "pipeline_id": lead["pipeline_id"]}}])
}

/// Records what a lead change did: its status and its price, compared field by field.
pub(crate) fn record_lead_change(inner: &Inner, id: u64, before: &Value, after: &Value) {
    if before["status_id"] != after["status_id"] || before["pipeline_id"] != after["pipeline_id"] {
        inner.record_event(
            "lead_status_changed",
            "lead",
            id,
            status_value(before),
            status_value(after),
        );
    }
    if before["price"] != after["price"] {
        inner.record_event(
            "sale_field_changed",
            "lead",
            id,
            json!([{"sale_field_value": {"sale": before["price"]}}]),
            json!([{"sale_field_value": {"sale": after["price"]}}]),
        );
    }
    if before["responsible_user_id"] != after["responsible_user_id"] {
        inner.record_event(
            "entity_responsible_changed",
            "lead",
            id,
            json!([{"responsible_user": {"id": before["responsible_user_id"]}}]),
            json!([{"responsible_user": {"id": after["responsible_user_id"]}}]),
        );
    }
    if before["name"] != after["name"] {
        inner.record_event(
            "name_field_changed",
            "lead",
            id,
            json!([{"name_field_value": {"name": before["name"]}}]),
            json!([{"name_field_value": {"name": after["name"]}}]),
        );
    }
}

pub(crate) fn record_lead_added(inner: &Inner, lead: &Value) {
    if let Some(id) = lead["id"].as_u64() {
        inner.record_event("lead_added", "lead", id, json!([]), status_value(lead));
    }
}

pub(crate) fn record_lead_deleted(inner: &Inner, lead: &Value) {
    if let Some(id) = lead["id"].as_u64() {
        inner.record_event("lead_deleted", "lead", id, status_value(lead), json!([]));
    }
}

pub(crate) fn record_contact_change(inner: &Inner, id: u64, before: &Value, after: &Value) {
    inner.record_event(
        "name_field_changed",
        "contact",
        id,
        json!([{"name_field_value": {"name": before["name"]}}]),
        json!([{"name_field_value": {"name": after["name"]}}]),
    );
}

impl FakeAmo {
    /// Every recorded feed event, oldest first.
    pub fn feed_events(&self) -> Vec<Value> {
        lock(&self.inner.feed).events.clone()
    }

    /// Changes a contact's name (and `updated_at`), recording `name_field_changed`. Returns the
    /// contact, or `Value::Null` for an unknown id.
    pub fn rename_contact(&self, id: u64, name: &str) -> Value {
        let mut store = lock(&self.inner.store);
        let Some(contact) = store.contacts.get_mut(&id) else {
            return Value::Null;
        };
        let before = contact.clone();
        contact["name"] = name.into();
        contact["updated_at"] = (contact["updated_at"].as_i64().unwrap_or(0) + 1)
            .max(unix_now())
            .into();
        let after = contact.clone();
        drop(store);
        record_contact_change(&self.inner, id, &before, &after);
        after
    }

    /// Switches a webhook off, as amoCRM does after too many failed deliveries. Returns whether
    /// `destination` was subscribed.
    pub fn disable_webhook(&self, destination: &str) -> bool {
        let mut store = lock(&self.inner.store);
        let mut found = false;
        for hook in store
            .webhooks
            .iter_mut()
            .filter(|w| w["destination"] == destination)
        {
            hook["disabled"] = true.into();
            found = true;
        }
        found
    }

    /// Starts or stops every webhook delivery (the feed keeps recording either way).
    pub fn set_delivering(&self, on: bool) {
        self.inner.delivery.delivering.store(on, Ordering::SeqCst);
    }

    /// Failed deliveries after which a webhook is switched off (default
    /// [`DISABLE_AFTER_FAILURES`]).
    pub fn set_disable_after(&self, failures: u32) {
        self.inner
            .delivery
            .disable_after
            .store(failures.max(1), Ordering::SeqCst);
    }

    /// Posts a form body to every active subscribed webhook, as amoCRM delivers a change, with
    /// amoCRM's 2 s limit. A webhook whose failures pass the threshold is switched off.
    pub async fn deliver(&self, body: &str) -> Delivered {
        let hooks = lock(&self.inner.store).webhooks.clone();
        let mut delivered = Delivered::default();
        let delivering = self.inner.delivery.delivering.load(Ordering::SeqCst);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("an HTTP client");
        for hook in hooks {
            let Some(destination) = hook["destination"].as_str() else {
                continue;
            };
            if !delivering || hook["disabled"].as_bool().unwrap_or(false) {
                delivered.skipped += 1;
                continue;
            }
            let ok = http
                .post(destination)
                .header("content-type", "application/x-www-form-urlencoded")
                .header("user-agent", "amoCRM-Webhooks/3.0")
                .body(body.to_owned())
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            let limit = self.inner.delivery.disable_after.load(Ordering::SeqCst);
            let mut feed = lock(&self.inner.feed);
            if ok {
                delivered.accepted += 1;
                feed.failures.remove(destination);
                continue;
            }
            delivered.failed += 1;
            let failures = feed.failures.entry(destination.to_owned()).or_default();
            *failures += 1;
            if *failures > limit {
                feed.failures.remove(destination);
                drop(feed);
                self.disable_webhook(destination);
            }
        }
        delivered
    }
}

/// Forgets a destination's failures (a new subscription starts afresh).
pub(crate) fn forget_failures(inner: &Inner, destination: &str) {
    lock(&inner.feed).failures.remove(destination);
}
