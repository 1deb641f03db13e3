//! One webhook event: what happened to which entity, with all its fields.

use std::fmt;
use std::str::FromStr;

use amocrm_types::{
    AccountId, CatalogElementId, CompanyId, ContactId, CustomField, CustomFieldId,
    CustomFieldValue, CustomerId, EnumId, LeadId, NoteId, PipelineId, StatusId, TagId, TaskId,
    UserId,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::batch::Account;
use crate::fields::{Field, Fields};
use crate::hash;

/// What kind of object an event is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Entity {
    /// A deal (`leads[...]`).
    Lead,
    /// A person (`contacts[...]` without `type=company`).
    Contact,
    /// From `companies[...]`, or from `contacts[...]` with `type=company`.
    Company,
    /// A buyer of periodic purchases (`customers[...]`).
    Customer,
    /// A task (`tasks[...]`).
    Task,
    /// A catalog (list) element.
    Catalog,
    /// An incoming lead waiting to be accepted.
    Unsorted,
    /// A chat conversation.
    Talk,
    /// A chat message.
    Message,
    /// A note added to `parent` (`leads[note][0][note][...]`).
    Note {
        /// The entity the note was added to: the section's entity (`Company` for a company
        /// note under `contacts`).
        parent: Box<Entity>,
    },
    /// A section this crate does not know, by its raw name.
    Other(String),
}

impl Entity {
    /// The entity a section names, before looking at the event's fields.
    pub fn from_section(section: &str) -> Entity {
        match section {
            "leads" => Entity::Lead,
            "contacts" => Entity::Contact,
            "companies" => Entity::Company,
            "customers" => Entity::Customer,
            "tasks" => Entity::Task,
            "catalogs" => Entity::Catalog,
            "unsorted" => Entity::Unsorted,
            "talk" => Entity::Talk,
            "message" => Entity::Message,
            other => Entity::Other(other.to_owned()),
        }
    }

    /// The singular name used in [`WebhookEvent::event_type`].
    pub fn name(&self) -> &str {
        match self {
            Entity::Lead => "lead",
            Entity::Contact => "contact",
            Entity::Company => "company",
            Entity::Customer => "customer",
            Entity::Task => "task",
            Entity::Catalog => "catalog",
            Entity::Unsorted => "unsorted",
            Entity::Talk => "conversation",
            Entity::Message => "message",
            Entity::Note { .. } => "note",
            Entity::Other(name) => name,
        }
    }
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What happened. Serialized as the raw action name (`"add"`, `"status"`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
#[non_exhaustive]
pub enum Action {
    /// The entity was created.
    Add,
    /// The entity was changed.
    Update,
    /// The entity was deleted.
    Delete,
    /// A deleted entity was restored.
    Restore,
    /// A lead moved to another status or pipeline.
    Status,
    /// The responsible user changed.
    Responsible,
    /// A note was added to the section's entity.
    Note,
    /// An action this crate does not know, by its raw name.
    Other(String),
}

impl Action {
    /// The action named by a raw key segment.
    pub fn parse(raw: &str) -> Action {
        match raw {
            "add" => Action::Add,
            "update" => Action::Update,
            "delete" => Action::Delete,
            "restore" => Action::Restore,
            "status" => Action::Status,
            "responsible" => Action::Responsible,
            "note" => Action::Note,
            other => Action::Other(other.to_owned()),
        }
    }

    /// The raw name, as it appears in the body.
    pub fn as_str(&self) -> &str {
        match self {
            Action::Add => "add",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::Restore => "restore",
            Action::Status => "status",
            Action::Responsible => "responsible",
            Action::Note => "note",
            Action::Other(other) => other,
        }
    }
}

impl From<String> for Action {
    fn from(raw: String) -> Self {
        match Action::parse(&raw) {
            Action::Other(_) => Action::Other(raw),
            known => known,
        }
    }
}

impl From<Action> for String {
    fn from(action: Action) -> Self {
        match action {
            Action::Other(raw) => raw,
            known => known.as_str().to_owned(),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A tag on an entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Tag {
    /// The tag's id; `None` when missing, not a number, or the tags came as a name list.
    pub id: Option<TagId>,
    /// The tag's text; `None` when missing or empty.
    pub name: Option<String>,
}

/// One event of a webhook body.
///
/// `fields` is the event's subtree as sent: an object whose leaves are all strings (see the
/// crate docs for how lists and repeated keys are kept), serialized as that JSON. The typed
/// accessors read it and return `None` for a missing, empty or unparsable value. For notes they
/// read the inner `note` object.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct WebhookEvent {
    /// `account[id]` of the body, else the event's own `account_id` field.
    pub account_id: Option<AccountId>,
    /// `account[subdomain]` of the body.
    pub subdomain: Option<String>,
    /// The raw section name: `leads`, `contacts`, `unsorted`, ...
    pub section: String,
    /// What the event is about, derived from the section and, for companies and notes, the fields.
    pub entity: Entity,
    /// What happened, from the `[action]` segment.
    pub action: Action,
    /// The entity's id as sent: `id`, else `talk_id` for a talk, else `uid` for an unsorted item.
    pub entity_id: Option<String>,
    /// The event's subtree (`section[action][index][...]`) as sent, every leaf a string.
    pub fields: Fields,
}

impl WebhookEvent {
    /// Builds the event found at `section[action][index]`, deriving the entity, its id and the
    /// account exactly as parsing does. `fields` is a [`Fields`] or a `serde_json::Value`; one
    /// that is not an object is made one as parsing would: a list keyed by position, a scalar
    /// kept under the empty key, like any scalar that sits where a parent is expected.
    pub fn new(
        account: &Account,
        section: &str,
        action: &str,
        fields: impl Into<Fields>,
    ) -> WebhookEvent {
        let mut fields = fields.into();
        if !fields.as_field().is_object() {
            // Rare (`leads[add][0]=1`, `leads[add][0][0]=1`): rebuilt through JSON.
            let object = match fields.to_value() {
                Value::Array(items) => items
                    .into_iter()
                    .enumerate()
                    .map(|(i, item)| (i.to_string(), item))
                    .collect(),
                scalar => std::iter::once((String::new(), scalar)).collect(),
            };
            fields = Fields::from(Value::Object(object));
        }
        let action = Action::parse(action);
        let entity = detect_entity(section, &action, &fields);
        let mut event = WebhookEvent {
            account_id: account.id,
            subdomain: account.subdomain.clone(),
            section: section.to_owned(),
            entity,
            action,
            entity_id: None,
            fields,
        };
        let entity_id = event
            .text("id")
            .or_else(|| match event.entity {
                Entity::Talk => event.text("talk_id"),
                Entity::Unsorted => event.text("uid"),
                _ => None,
            })
            .map(str::to_owned);
        event.entity_id = entity_id;
        if event.account_id.is_none() {
            event.account_id = event.number("account_id").map(AccountId);
        }
        event
    }

    /// The dotted event name (`lead.status`, `company.update`, `note.add`, ...); see the
    /// mapping table in the crate docs.
    pub fn event_type(&self) -> String {
        match (&self.entity, &self.action) {
            (Entity::Note { .. }, Action::Note) => "note.add".to_owned(),
            (entity, action) => format!("{}.{}", entity.name(), action.as_str()),
        }
    }

    /// Hex SHA-256 of the event's canonical form (see the crate docs): equal for the same
    /// event whatever its key order, different as soon as any value differs.
    pub fn event_hash(&self) -> String {
        hash::event_hash(self)
    }

    /// The event as one JSON object of `event_type`, `entity_id`, `account_id`, `event_hash` and
    /// `fields`: a line of `jarvis webhook parse` and of the `parse_webhook` example.
    pub fn summary(&self) -> Value {
        serde_json::json!({
            "event_type": self.event_type(),
            "entity_id": self.entity_id(),
            "account_id": self.account_id(),
            "event_hash": self.event_hash(),
            "fields": self.fields,
        })
    }

    /// The entity's id as sent (see [`entity_id`](Self#structfield.entity_id)); `None` for
    /// an event that names none, e.g. an online-chat message.
    pub fn entity_id(&self) -> Option<&str> {
        self.entity_id.as_deref()
    }

    /// The entity's id as `T` when the event is about that kind of entity: a [`LeadId`] of a
    /// lead event, a [`ContactId`] of a contact event, a [`NoteId`] of a note, ... (see
    /// [`EntityIdType`]). `None` for another kind of entity, or an id that is not a number.
    ///
    /// ```
    /// use amocrm_webhook::types::{ContactId, LeadId};
    ///
    /// let batch = amocrm_webhook::parse_form(b"leads[update][0][id]=31840021&account[id]=1")?;
    /// let event = &batch.events[0];
    /// assert_eq!(event.entity_id_as::<LeadId>(), Some(LeadId(31840021)));
    /// assert_eq!(event.entity_id_as::<ContactId>(), None, "a lead is not a contact");
    /// # Ok::<(), amocrm_webhook::Error>(())
    /// ```
    pub fn entity_id_as<T: EntityIdType>(&self) -> Option<T> {
        if !T::names(&self.entity) {
            return None;
        }
        self.entity_id()?.parse().ok()
    }

    /// The amoCRM account id (see [`account_id`](Self#structfield.account_id)); `None` for
    /// old bodies that carry only `account[subdomain]`.
    pub fn account_id(&self) -> Option<AccountId> {
        self.account_id
    }

    /// The value at `path` below `fields` (for a note the path starts with `"note"`).
    /// Lists are indexed by decimal position.
    pub fn field(&self, path: &[&str]) -> Option<Field<'_>> {
        self.fields.path(path)
    }

    /// The object holding the entity's own fields: the inner `note` for notes, else `fields`.
    pub fn body(&self) -> Field<'_> {
        body_of(&self.entity, &self.fields)
    }

    /// A non-empty string field of [`body`](Self::body).
    pub fn text(&self, key: &str) -> Option<&str> {
        non_empty(self.body().get(key))
    }

    /// A field of [`body`](Self::body) parsed as an unsigned number.
    pub fn number(&self, key: &str) -> Option<u64> {
        self.text(key).and_then(|s| s.trim().parse().ok())
    }

    fn signed(&self, key: &str) -> Option<i64> {
        self.text(key).and_then(|s| s.trim().parse().ok())
    }

    /// A field of [`body`](Self::body) parsed as an id.
    fn id<T: FromStr>(&self, key: &str) -> Option<T> {
        self.text(key).and_then(|s| s.parse().ok())
    }

    /// `id` as a number; `None` when missing, empty or not a number (a chat message's UUID).
    pub fn id_u64(&self) -> Option<u64> {
        self.number("id")
    }

    /// The entity's `name`; `None` when missing or empty (`name=` is common on add and update).
    pub fn name(&self) -> Option<&str> {
        self.text("name")
    }

    /// A lead's pipeline stage (`status_id`) after the change; [`StatusId::WON`] (142) is won,
    /// [`StatusId::LOST`] (143) lost.
    /// `None` when missing or empty.
    pub fn status_id(&self) -> Option<StatusId> {
        self.id("status_id")
    }

    /// A lead's stage before a status change (`old_status_id`); `None` when missing or empty,
    /// as it is on add and update.
    pub fn old_status_id(&self) -> Option<StatusId> {
        self.id("old_status_id")
    }

    /// A lead's (or incoming lead's) pipeline (`pipeline_id`); `None` when missing or empty.
    pub fn pipeline_id(&self) -> Option<PipelineId> {
        self.id("pipeline_id")
    }

    /// A lead's pipeline before a status change (`old_pipeline_id`); `None` when missing or empty.
    pub fn old_pipeline_id(&self) -> Option<PipelineId> {
        self.id("old_pipeline_id")
    }

    /// A lead's budget (`price`) in whole units of the account's currency; `None` when missing,
    /// empty (`price=` is common) or not an integer.
    pub fn price(&self) -> Option<i64> {
        self.signed("price")
    }

    /// The user responsible for the entity; `0` (no one) is returned as sent, `None` when
    /// missing or empty.
    pub fn responsible_user_id(&self) -> Option<UserId> {
        self.id("responsible_user_id")
    }

    /// The user who created the entity (`created_user_id`); `0` (amoCRM itself, a robot or an
    /// integration) as sent, `None` when missing or empty.
    pub fn created_user_id(&self) -> Option<UserId> {
        self.id("created_user_id")
    }

    /// The user who made the change (`modified_user_id`); `0` as sent, `None` when missing or empty.
    pub fn modified_user_id(&self) -> Option<UserId> {
        self.id("modified_user_id")
    }

    /// `created_at`, else `date_create`, in Unix seconds. Notes' `YYYY-MM-DD HH:MM:SS` strings
    /// carry no time zone and give `None`; read them with [`text`](Self::text).
    pub fn created_at(&self) -> Option<i64> {
        self.signed("created_at")
            .or_else(|| self.signed("date_create"))
    }

    /// `updated_at`, else `last_modified`, in Unix seconds. Missing from deletes and old bodies.
    pub fn updated_at(&self) -> Option<i64> {
        self.signed("updated_at")
            .or_else(|| self.signed("last_modified"))
    }

    /// `custom_fields[i][id|name|code][values][j][value|enum]`, including the radio form
    /// (`values[value]=..&values[enum]=..`) and the date form (`values[0]=<unix>`). A field
    /// without a numeric `id` is skipped (it stays in [`fields`](Self#structfield.fields)).
    ///
    /// Each value's text is in [`CustomFieldValue::value`] as a JSON string (`null` when sent
    /// empty); a numeric `enum` is its [`enum_id`](CustomFieldValue::enum_id), any other its
    /// [`enum_code`](CustomFieldValue::enum_code).
    pub fn custom_fields(&self) -> Vec<CustomField> {
        self.custom_field_nodes()
            .filter_map(custom_field_of)
            .collect()
    }

    /// The custom field whose `id` is `id`, the first one if the body repeats it; `None` when
    /// the event does not carry it (webhooks send only the fields that have a value).
    ///
    /// Only the field found is copied out, so this is cheaper than searching
    /// [`custom_fields`](Self::custom_fields).
    pub fn custom_field_by_id(&self, id: CustomFieldId) -> Option<CustomField> {
        self.custom_field_nodes()
            .find(|field| parse_number(field.get("id")) == Some(id.0))
            .and_then(custom_field_of)
    }

    /// The custom field whose `code` is `code` (compared exactly; amoCRM's codes are upper
    /// case: `PHONE`, `EMAIL`), the first one with a numeric id if several match; `None` when
    /// the event carries no such field. Most fields have no code: use
    /// [`custom_field_by_id`](Self::custom_field_by_id) for them.
    pub fn custom_field_by_code(&self, code: &str) -> Option<CustomField> {
        if code.is_empty() {
            return None;
        }
        self.custom_field_nodes()
            .filter(|field| non_empty(field.get("code")) == Some(code))
            .find_map(custom_field_of)
    }

    fn custom_field_nodes(&self) -> impl Iterator<Item = Field<'_>> {
        self.body()
            .get("custom_fields")
            .into_iter()
            .flat_map(|fields| fields.entries())
            .map(|(_, field)| field)
            .filter(Field::is_object)
    }

    /// `tags[i][id|name]`; a plain string is read as comma-separated names.
    pub fn tags(&self) -> Vec<Tag> {
        let Some(tags) = self.body().get("tags") else {
            return Vec::new();
        };
        if let Some(names) = tags.as_str() {
            return names
                .split(',')
                .map(str::trim)
                .filter(|name| !name.is_empty())
                .map(|name| Tag {
                    id: None,
                    name: Some(name.to_owned()),
                })
                .collect();
        }
        tags.entries()
            .filter(|(_, tag)| tag.is_object())
            .map(|(_, tag)| Tag {
                id: parse_number(tag.get("id")).map(TagId),
                name: non_empty(tag.get("name")).map(str::to_owned),
            })
            .collect()
    }

    /// Lead ids of `linked_leads_id[<id>][ID]` (keyed by lead id, in the order sent).
    pub fn linked_lead_ids(&self) -> Vec<LeadId> {
        let Some(linked) = self.body().get("linked_leads_id") else {
            return Vec::new();
        };
        if let Some(id) = parse_number(Some(linked)) {
            return vec![LeadId(id)];
        }
        linked
            .entries()
            .filter_map(|(key, entry)| {
                let from_entry = if entry.is_object() {
                    parse_number(entry.get("ID").or_else(|| entry.get("id")))
                } else {
                    parse_number(Some(entry))
                };
                from_entry
                    .or_else(|| key.and_then(|key| key.parse().ok()))
                    .map(LeadId)
            })
            .collect()
    }

    /// A contact's company (`linked_company_id`); `None` when missing or empty.
    pub fn linked_company_id(&self) -> Option<CompanyId> {
        self.id("linked_company_id")
    }

    /// The entity a note or message belongs to.
    pub fn element_id(&self) -> Option<u64> {
        self.number("element_id")
    }

    /// amoCRM's numeric element type: 1 contact, 2 lead, 3 company, 12 customer.
    pub fn element_type(&self) -> Option<u64> {
        self.number("element_type")
    }

    /// The conversation of a talk or message (`talk_id`); `None` when missing or empty.
    pub fn talk_id(&self) -> Option<u64> {
        self.number("talk_id")
    }

    /// The chat of a talk or message (`chat_id`, a UUID); `None` when missing or empty.
    pub fn chat_id(&self) -> Option<&str> {
        self.text("chat_id")
    }

    /// The contact a talk or message is with (`contact_id`); `None` when missing or empty.
    pub fn contact_id(&self) -> Option<ContactId> {
        self.id("contact_id")
    }
}

fn body_of<'a>(entity: &Entity, fields: &'a Fields) -> Field<'a> {
    match (entity, fields.get("note")) {
        (Entity::Note { .. }, Some(note)) if note.is_object() => note,
        _ => fields.as_field(),
    }
}

fn detect_entity(section: &str, action: &Action, fields: &Fields) -> Entity {
    let note = fields.get("note").filter(Field::is_object);
    let mut entity = Entity::from_section(section);
    if entity == Entity::Contact {
        let typed_company = |node: Option<Field<'_>>| {
            node.and_then(|n| n.get("type")).and_then(|t| t.as_str()) == Some("company")
        };
        let company_note = *action == Action::Note
            && (typed_company(note)
                || note
                    .and_then(|n| n.get("element_type"))
                    .and_then(|t| t.as_str())
                    == Some("3"));
        if typed_company(Some(fields.as_field())) || company_note {
            entity = Entity::Company;
        }
    }
    if *action == Action::Note {
        Entity::Note {
            parent: Box::new(entity),
        }
    } else {
        entity
    }
}

fn non_empty(value: Option<Field<'_>>) -> Option<&str> {
    value.and_then(|v| v.as_str()).filter(|s| !s.is_empty())
}

fn parse_number(value: Option<Field<'_>>) -> Option<u64> {
    non_empty(value).and_then(|s| s.trim().parse().ok())
}

fn custom_field_of(field: Field<'_>) -> Option<CustomField> {
    let id = parse_number(field.get("id"))?;
    let mut custom_field =
        CustomField::new(CustomFieldId(id), custom_field_values(field.get("values")));
    custom_field.name = non_empty(field.get("name")).map(str::to_owned);
    custom_field.code = non_empty(field.get("code")).map(str::to_owned);
    Some(custom_field)
}

/// A value's text: a JSON string, `null` when empty.
fn text_value(text: Option<&str>) -> Value {
    match text {
        Some(text) if !text.is_empty() => Value::String(text.to_owned()),
        _ => Value::Null,
    }
}

fn custom_field_values(values: Option<Field<'_>>) -> Vec<CustomFieldValue> {
    let one = |object: Field<'_>| {
        let mut value = CustomFieldValue::default();
        value.value = text_value(object.get("value").and_then(|v| v.as_str()));
        if let Some(choice) = non_empty(object.get("enum").or_else(|| object.get("enum_id"))) {
            match choice.parse::<EnumId>() {
                Ok(id) => value.enum_id = Some(id),
                Err(_) => value.enum_code = Some(choice.to_owned()),
            }
        }
        value
    };
    let text = |text: &str| {
        let mut value = CustomFieldValue::default();
        value.value = text_value(Some(text));
        value
    };
    let Some(values) = values else {
        return Vec::new();
    };
    if let Some(value) = values.as_str() {
        return vec![text(value)];
    }
    // The radio form: one value object with no index.
    if values.is_object() && (values.get("value").is_some() || values.get("enum").is_some()) {
        return vec![one(values)];
    }
    values
        .entries()
        .filter_map(|(_, value)| match value.as_str() {
            Some(value) => Some(text(value)),
            None => value.is_object().then(|| one(value)),
        })
        .collect()
}

/// An id type naming the entity of an event, for [`WebhookEvent::entity_id_as`].
pub trait EntityIdType: FromStr {
    /// Whether an event about `entity` carries an id of this type.
    fn names(entity: &Entity) -> bool;
}

macro_rules! entity_id_type {
    ($($id:ty => $pattern:pat),+ $(,)?) => {
        $(
            #[doc = concat!("The id of an event whose entity is `", stringify!($pattern), "`.")]
            impl EntityIdType for $id {
                fn names(entity: &Entity) -> bool {
                    matches!(entity, $pattern)
                }
            }
        )+
    };
}

entity_id_type!(
    LeadId => Entity::Lead,
    ContactId => Entity::Contact,
    CompanyId => Entity::Company,
    CustomerId => Entity::Customer,
    TaskId => Entity::Task,
    CatalogElementId => Entity::Catalog,
    NoteId => Entity::Note { .. },
);
