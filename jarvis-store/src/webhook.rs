//! The queue's payload contract with `amocrm-webhook`: what goes into `amocrm_webhook_events.payload`
//! and how it comes back out.
//!
//! The worker reads every stored event back as a [`WebhookEvent`], so `payload` must be the event
//! serialized by `amocrm-webhook` (the shape `jarvis webhook parse` prints). [`NewEvent::from_webhook`]
//! is the one constructor that guarantees it; a payload of any other shape makes the worker fail the
//! event as undecodable.

use amocrm_webhook::WebhookEvent;
use chrono::{DateTime, Utc};

use crate::{Error, NewEvent, Result, StoredEvent};

impl NewEvent {
    /// The row that enqueues `event`, received at `received_at`: its type, entity, id, account,
    /// deduplication hash and the event itself as the payload.
    ///
    /// ```
    /// use amocrm_webhook::Parser;
    /// use jarvis_store::NewEvent;
    ///
    /// let body = b"leads[delete][0][id]=31840021&leads[delete][0][status_id]=142&leads[delete][0][pipeline_id]=7&account[id]=29711234";
    /// let batch = Parser::default().parse(Some("application/x-www-form-urlencoded"), body).unwrap();
    /// let row = NewEvent::from_webhook(&batch.events[0], chrono::Utc::now());
    /// assert_eq!(row.event_type, "lead.delete");
    /// assert_eq!(row.amocrm_entity_id.as_deref(), Some("31840021"));
    /// assert_eq!(row.webhook_event().unwrap(), batch.events[0]);
    /// ```
    pub fn from_webhook(event: &WebhookEvent, received_at: DateTime<Utc>) -> NewEvent {
        NewEvent {
            event_type: event.event_type().to_string(),
            entity_type: event.entity.name().to_string(),
            amocrm_entity_id: event.entity_id().map(str::to_owned),
            event_hash: event.event_hash(),
            // Serializing an event cannot fail: its fields are strings, lists and maps with string keys.
            payload: crate::Payload::from_json(event)
                .unwrap_or_else(|_| serde_json::Value::Null.into()),
            account_id: event.account_id().map(|id| id.get() as i64),
            received_at,
        }
    }

    /// The event this row carries (see [`StoredEvent::webhook_event`]).
    pub fn webhook_event(&self) -> Result<WebhookEvent> {
        decode(self.payload.get())
    }
}

impl StoredEvent {
    /// The webhook event stored in `payload`; [`Error::Decode`] when the payload was written by
    /// something other than [`NewEvent::from_webhook`] and does not have the event's shape.
    pub fn webhook_event(&self) -> Result<WebhookEvent> {
        decode(self.payload.get())
    }
}

fn decode(payload: &str) -> Result<WebhookEvent> {
    serde_json::from_str(payload).map_err(|e| Error::Decode {
        column: "payload",
        reason: e.to_string(),
    })
}
