//! Notes on leads, contacts, companies and customers: `GET /api/v4/{entity}/notes`,
//! `GET /api/v4/{entity}/{id}/notes`.

use serde::Deserialize;
use serde_json::Value;

use super::{AccountId, ListItem, NoteId, UserId, keep_raw, string_enum};

string_enum!(
    /// `note_type` of a note. `params` differs by type and stays JSON.
    NoteType {
        Common => "common",
        CallIn => "call_in",
        CallOut => "call_out",
        ServiceMessage => "service_message",
        ExtendedServiceMessage => "extended_service_message",
        MessageCashier => "message_cashier",
        Geolocation => "geolocation",
        SmsIn => "sms_in",
        SmsOut => "sms_out",
        Attachment => "attachment",
        Invoice => "invoice_paid",
    }
);

/// A note. [`Note::raw`] holds the whole object.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(remote = "Self")]
#[non_exhaustive]
pub struct Note {
    pub id: NoteId,
    /// Id of the lead, contact, company or customer the note belongs to.
    #[serde(default)]
    pub entity_id: Option<u64>,
    pub note_type: NoteType,
    /// Type-specific content: `text` for common notes; `phone`, `duration`, `link`, `uniq` for
    /// calls; `service`, `text` for service messages; ...
    #[serde(default)]
    pub params: Value,
    #[serde(default)]
    pub created_by: Option<UserId>,
    #[serde(default)]
    pub updated_by: Option<UserId>,
    /// Unix seconds.
    #[serde(default)]
    pub created_at: Option<i64>,
    #[serde(default)]
    pub updated_at: Option<i64>,
    #[serde(default)]
    pub responsible_user_id: Option<UserId>,
    #[serde(default)]
    pub group_id: Option<u64>,
    #[serde(default)]
    pub account_id: Option<AccountId>,
    #[serde(skip)]
    raw: Value,
}
keep_raw!(Note);

impl ListItem for Note {
    const KEY: &'static str = "notes";
}

impl Note {
    /// `params.text`, set on common notes, SMS and service messages.
    pub fn text(&self) -> Option<&str> {
        self.params.get("text").and_then(Value::as_str)
    }
}
