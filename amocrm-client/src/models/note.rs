//! Notes on leads, contacts, companies and customers: `GET /api/v4/{entity}/notes`,
//! `GET /api/v4/{entity}/{id}/notes`.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{AccountId, ListItem, NoteId, UserId, keep_raw, string_enum};

string_enum!(
    /// `note_type` of a note. `params` differs by type and stays JSON.
    NoteType {
        /// A plain text note.
        Common => "common",
        /// An incoming call.
        CallIn => "call_in",
        /// An outgoing call.
        CallOut => "call_out",
        /// A message from an integration.
        ServiceMessage => "service_message",
        /// A message from an integration, shown expanded.
        ExtendedServiceMessage => "extended_service_message",
        /// A cash register message.
        MessageCashier => "message_cashier",
        /// A location.
        Geolocation => "geolocation",
        /// An incoming SMS.
        SmsIn => "sms_in",
        /// An outgoing SMS.
        SmsOut => "sms_out",
        /// A file.
        Attachment => "attachment",
        /// A paid invoice.
        Invoice => "invoice_paid",
    }
);

/// A note. [`Note::raw`] holds the whole object.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(remote = "Self")]
#[non_exhaustive]
pub struct Note {
    /// The note's id.
    pub id: NoteId,
    /// Id of the lead, contact, company or customer the note belongs to.
    #[serde(default)]
    pub entity_id: Option<u64>,
    /// The kind of note; `params` depends on it.
    pub note_type: NoteType,
    /// Type-specific content: `text` for common notes; `phone`, `duration`, `link`, `uniq` for
    /// calls; `service`, `text` for service messages; ...
    #[serde(default)]
    pub params: Value,
    /// Who created it.
    #[serde(default)]
    pub created_by: Option<UserId>,
    /// Who changed it last.
    #[serde(default)]
    pub updated_by: Option<UserId>,
    /// Unix seconds.
    #[serde(default)]
    pub created_at: Option<i64>,
    /// Unix seconds.
    #[serde(default)]
    pub updated_at: Option<i64>,
    /// The responsible user.
    #[serde(default)]
    pub responsible_user_id: Option<UserId>,
    /// The responsible user's group.
    #[serde(default)]
    pub group_id: Option<u64>,
    /// The account.
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

/// A call's details, for [`NoteContent::CallIn`] and [`NoteContent::CallOut`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallParams {
    /// The call's unique id in the telephony system.
    pub uniq: String,
    /// Length in seconds.
    pub duration: u32,
    /// The telephony system's name.
    pub source: String,
    /// The recording's URL.
    pub link: Option<String>,
    /// The other party's phone number.
    pub phone: String,
    /// The outcome as text.
    pub call_result: Option<String>,
    /// amoCRM's call status code (1 left a message, 2 call back later, 3 not available,
    /// 4 spoke, 5 wrong number, 6 did not get through, 7 busy).
    pub call_status: Option<u8>,
    /// The user who took or made the call.
    pub call_responsible: Option<UserId>,
}

impl CallParams {
    /// A call with its required details.
    pub fn new(
        uniq: impl Into<String>,
        phone: impl Into<String>,
        duration_seconds: u32,
        source: impl Into<String>,
    ) -> Self {
        CallParams {
            uniq: uniq.into(),
            duration: duration_seconds,
            source: source.into(),
            link: None,
            phone: phone.into(),
            call_result: None,
            call_status: None,
            call_responsible: None,
        }
    }

    /// The recording's URL.
    pub fn link(mut self, link: impl Into<String>) -> Self {
        self.link = Some(link.into());
        self
    }

    /// The outcome as text.
    pub fn result(mut self, result: impl Into<String>) -> Self {
        self.call_result = Some(result.into());
        self
    }

    /// amoCRM's call status code.
    pub fn status(mut self, status: u8) -> Self {
        self.call_status = Some(status);
        self
    }

    /// The user who took or made the call.
    pub fn responsible(mut self, user: UserId) -> Self {
        self.call_responsible = Some(user);
        self
    }

    fn to_params(&self) -> Value {
        let mut params = Map::new();
        params.insert("uniq".into(), json!(self.uniq));
        params.insert("duration".into(), json!(self.duration));
        params.insert("source".into(), json!(self.source));
        if let Some(link) = &self.link {
            params.insert("link".into(), json!(link));
        }
        params.insert("phone".into(), json!(self.phone));
        if let Some(result) = &self.call_result {
            params.insert("call_result".into(), json!(result));
        }
        if let Some(status) = self.call_status {
            params.insert("call_status".into(), json!(status));
        }
        if let Some(user) = self.call_responsible {
            params.insert("call_responsible".into(), json!(user));
        }
        Value::Object(params)
    }
}

/// What a note says: its `note_type` with the `params` that type takes.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum NoteContent {
    /// `common`: plain text.
    Common {
        /// The text.
        text: String,
    },
    /// `call_in`: an incoming call.
    CallIn(CallParams),
    /// `call_out`: an outgoing call.
    CallOut(CallParams),
    /// `service_message`: a message from an integration.
    ServiceMessage {
        /// The integration's name, shown as the sender.
        service: String,
        /// The text.
        text: String,
    },
    /// `extended_service_message`: a service message shown expanded.
    ExtendedServiceMessage {
        /// The integration's name.
        service: String,
        /// The text.
        text: String,
    },
    /// `message_cashier`: a cash register message.
    MessageCashier {
        /// `created`, `shown` or `canceled`.
        status: String,
        /// The text.
        text: String,
    },
    /// `geolocation`: a place.
    Geolocation {
        /// The text.
        text: String,
        /// The address.
        address: String,
        /// Longitude, as text.
        longitude: String,
        /// Latitude, as text.
        latitude: String,
    },
    /// `sms_in`: an incoming SMS.
    SmsIn {
        /// The message.
        text: String,
        /// The sender's phone.
        phone: String,
    },
    /// `sms_out`: an outgoing SMS.
    SmsOut {
        /// The message.
        text: String,
        /// The recipient's phone.
        phone: String,
    },
    /// `attachment`: a file uploaded to the account's file storage.
    Attachment {
        /// The file's UUID.
        file_uuid: String,
        /// The file version's UUID, if a particular version.
        version_uuid: Option<String>,
        /// The name shown.
        file_name: String,
    },
    /// Another type with its params as JSON, for types this crate does not know.
    Other {
        /// `note_type`.
        note_type: NoteType,
        /// `params`.
        params: Value,
    },
}

impl NoteContent {
    /// A plain text note.
    pub fn common(text: impl Into<String>) -> Self {
        NoteContent::Common { text: text.into() }
    }

    /// A message from an integration.
    pub fn service_message(service: impl Into<String>, text: impl Into<String>) -> Self {
        NoteContent::ServiceMessage {
            service: service.into(),
            text: text.into(),
        }
    }

    /// The `note_type` sent.
    pub fn note_type(&self) -> NoteType {
        match self {
            NoteContent::Common { .. } => NoteType::Common,
            NoteContent::CallIn(_) => NoteType::CallIn,
            NoteContent::CallOut(_) => NoteType::CallOut,
            NoteContent::ServiceMessage { .. } => NoteType::ServiceMessage,
            NoteContent::ExtendedServiceMessage { .. } => NoteType::ExtendedServiceMessage,
            NoteContent::MessageCashier { .. } => NoteType::MessageCashier,
            NoteContent::Geolocation { .. } => NoteType::Geolocation,
            NoteContent::SmsIn { .. } => NoteType::SmsIn,
            NoteContent::SmsOut { .. } => NoteType::SmsOut,
            NoteContent::Attachment { .. } => NoteType::Attachment,
            NoteContent::Other { note_type, .. } => note_type.clone(),
        }
    }

    /// The `params` sent.
    pub fn params(&self) -> Value {
        match self {
            NoteContent::Common { text } => json!({ "text": text }),
            NoteContent::CallIn(call) | NoteContent::CallOut(call) => call.to_params(),
            NoteContent::ServiceMessage { service, text }
            | NoteContent::ExtendedServiceMessage { service, text } => {
                json!({ "service": service, "text": text })
            }
            NoteContent::MessageCashier { status, text } => {
                json!({ "status": status, "text": text })
            }
            NoteContent::Geolocation {
                text,
                address,
                longitude,
                latitude,
            } => json!({
                "text": text,
                "address": address,
                "longitude": longitude,
                "latitude": latitude,
            }),
            NoteContent::SmsIn { text, phone } | NoteContent::SmsOut { text, phone } => {
                json!({ "text": text, "phone": phone })
            }
            NoteContent::Attachment {
                file_uuid,
                version_uuid,
                file_name,
            } => {
                let mut params = json!({ "file_uuid": file_uuid, "file_name": file_name });
                if let Some(version) = version_uuid {
                    params["version_uuid"] = json!(version);
                }
                params
            }
            NoteContent::Other { params, .. } => params.clone(),
        }
    }
}

/// A note to add with [`Notes::create`](crate::resources::notes::Notes::create), or a note's
/// new content for [`Notes::update`](crate::resources::notes::Notes::update).
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct NoteInput {
    pub(crate) entity_id: Option<u64>,
    pub(crate) content: NoteContent,
    pub(crate) created_by: Option<UserId>,
    pub(crate) responsible_user_id: Option<UserId>,
    pub(crate) trigger_digital_pipeline: Option<bool>,
}

impl NoteInput {
    /// A note on the lead (contact, company, customer) `entity_id`.
    pub fn new(entity_id: impl Into<u64>, content: NoteContent) -> Self {
        NoteInput {
            entity_id: Some(entity_id.into()),
            content,
            created_by: None,
            responsible_user_id: None,
            trigger_digital_pipeline: None,
        }
    }

    /// New content for an existing note (its id is given to the update call).
    pub fn content(content: NoteContent) -> Self {
        NoteInput {
            entity_id: None,
            content,
            created_by: None,
            responsible_user_id: None,
            trigger_digital_pipeline: None,
        }
    }

    /// The author (0: the robot).
    pub fn created_by(mut self, user: UserId) -> Self {
        self.created_by = Some(user);
        self
    }

    /// The responsible user.
    pub fn responsible_user(mut self, user: UserId) -> Self {
        self.responsible_user_id = Some(user);
        self
    }

    /// Whether the note should start the digital pipeline's triggers (amoCRM's
    /// `is_need_to_trigger_digital_pipeline`, for calls and SMS).
    pub fn trigger_digital_pipeline(mut self, trigger: bool) -> Self {
        self.trigger_digital_pipeline = Some(trigger);
        self
    }

    pub(crate) fn to_json(&self) -> Value {
        let mut note = Map::new();
        if let Some(entity_id) = self.entity_id {
            note.insert("entity_id".into(), json!(entity_id));
        }
        note.insert("note_type".into(), json!(self.content.note_type()));
        note.insert("params".into(), self.content.params());
        if let Some(user) = self.created_by {
            note.insert("created_by".into(), json!(user));
        }
        if let Some(user) = self.responsible_user_id {
            note.insert("responsible_user_id".into(), json!(user));
        }
        if let Some(trigger) = self.trigger_digital_pipeline {
            note.insert("is_need_to_trigger_digital_pipeline".into(), json!(trigger));
        }
        Value::Object(note)
    }
}
