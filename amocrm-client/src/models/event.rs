//! The events feed: `GET /api/v4/events`, a record of changes in the account.

use serde::Deserialize;
use serde_json::Value;

use super::{AccountId, EventId, ListItem, UserId, keep_raw, null_as_default, string_enum};

string_enum!(
    /// `type` of an event. Field changes come as `custom_field_{id}_value_changed`, which
    /// lands in `Other`.
    EventType {
        LeadAdded => "lead_added",
        LeadDeleted => "lead_deleted",
        LeadRestored => "lead_restored",
        LeadStatusChanged => "lead_status_changed",
        LeadLinked => "lead_linked",
        LeadUnlinked => "lead_unlinked",
        ContactAdded => "contact_added",
        ContactDeleted => "contact_deleted",
        ContactRestored => "contact_restored",
        CompanyAdded => "company_added",
        CompanyDeleted => "company_deleted",
        CompanyRestored => "company_restored",
        CustomerAdded => "customer_added",
        CustomerDeleted => "customer_deleted",
        TaskAdded => "task_added",
        TaskDeleted => "task_deleted",
        TaskCompleted => "task_completed",
        IncomingCall => "incoming_call",
        OutgoingCall => "outgoing_call",
        IncomingChatMessage => "incoming_chat_message",
        OutgoingChatMessage => "outgoing_chat_message",
        IncomingSms => "incoming_sms",
        OutgoingSms => "outgoing_sms",
        EntityTagAdded => "entity_tag_added",
        EntityTagDeleted => "entity_tag_deleted",
        EntityLinked => "entity_linked",
        EntityUnlinked => "entity_unlinked",
        EntityMerged => "entity_merged",
        EntityResponsibleChanged => "entity_responsible_changed",
        SaleFieldChanged => "sale_field_changed",
        NameFieldChanged => "name_field_changed",
        CustomFieldValueChanged => "custom_field_value_changed",
        CommonNoteAdded => "common_note_added",
        CommonNoteDeleted => "common_note_deleted",
        AttachmentNoteAdded => "attachment_note_added",
        ServiceNoteAdded => "service_note_added",
    }
);

/// One event. [`Event::raw`] holds the whole object.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(remote = "Self")]
#[non_exhaustive]
pub struct Event {
    /// The event's id.
    pub id: EventId,
    /// What happened (`type`).
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// The entity it happened to.
    #[serde(default)]
    pub entity_id: Option<u64>,
    /// `lead`, `contact`, `company`, `customer`, `task`, ...
    #[serde(default)]
    pub entity_type: Option<String>,
    /// Who did it (0: the robot).
    #[serde(default)]
    pub created_by: Option<UserId>,
    /// Unix seconds.
    #[serde(default)]
    pub created_at: Option<i64>,
    /// What changed, shaped by the event type (e.g. `[{"lead_status": {"id": 142, ...}}]`).
    #[serde(default, deserialize_with = "null_as_default")]
    pub value_after: Vec<Value>,
    /// The values before the change.
    #[serde(default, deserialize_with = "null_as_default")]
    pub value_before: Vec<Value>,
    /// The account.
    #[serde(default)]
    pub account_id: Option<AccountId>,
    #[serde(skip)]
    raw: Value,
}
keep_raw!(Event);

impl ListItem for Event {
    const KEY: &'static str = "events";
}
