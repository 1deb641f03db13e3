//! One webhook event: what happened to which entity, with all its fields.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::batch::Account;
use crate::hash;

/// What kind of object an event is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Entity {
    Lead,
    Contact,
    /// From `companies[...]`, or from `contacts[...]` with `type=company`.
    Company,
    Customer,
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
    Add,
    Update,
    Delete,
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

/// One custom field of an entity, from `custom_fields[i][...]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CustomField {
    pub id: Option<u64>,
    pub name: Option<String>,
    /// The field code (`PHONE`, `EMAIL`, ...) for system fields.
    pub code: Option<String>,
    pub values: Vec<CustomFieldValue>,
}

/// One value of a custom field: a text (a date field holds Unix seconds) and an enum id for
/// select, multiselect and radio fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CustomFieldValue {
    pub value: Option<String>,
    pub enum_id: Option<u64>,
}

/// A tag on an entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Tag {
    pub id: Option<u64>,
    pub name: Option<String>,
}

/// One event of a webhook body.
///
/// `fields` is the event's subtree as sent: a JSON object whose leaves are all strings (see the
/// crate docs for how lists and repeated keys are kept). The typed accessors read it and return
/// `None` for a missing, empty or unparsable value. For notes they read the inner `note` object.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct WebhookEvent {
    /// `account[id]` of the body, else the event's own `account_id` field.
    pub account_id: Option<u64>,
    /// `account[subdomain]` of the body.
    pub subdomain: Option<String>,
    /// The raw section name: `leads`, `contacts`, `unsorted`, ...
    pub section: String,
    pub entity: Entity,
    pub action: Action,
    /// The entity's id as sent: `id`, else `talk_id` for a talk, else `uid` for an unsorted item.
    pub entity_id: Option<String>,
    pub fields: Value,
}

impl WebhookEvent {
    /// Builds the event found at `section[action][index]`, deriving the entity, its id and the
    /// account exactly as parsing does. A `fields` that is not an object is kept under the
    /// empty key, like any scalar that sits where a parent is expected.
    pub fn new(account: &Account, section: &str, action: &str, fields: Value) -> WebhookEvent {
        let fields = match fields {
            Value::Object(_) => fields,
            Value::Array(items) => Value::Object(
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, item)| (i.to_string(), item))
                    .collect(),
            ),
            scalar => {
                let mut object = Map::with_capacity(1);
                object.insert(String::new(), scalar);
                Value::Object(object)
            }
        };
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
            event.account_id = event.number("account_id");
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

    pub fn entity_id(&self) -> Option<&str> {
        self.entity_id.as_deref()
    }

    pub fn account_id(&self) -> Option<u64> {
        self.account_id
    }

    /// The value at `path` below `fields` (for a note the path starts with `"note"`).
    /// Lists are indexed by decimal position.
    pub fn field(&self, path: &[&str]) -> Option<&Value> {
        path.iter().try_fold(&self.fields, |node, key| match node {
            Value::Object(object) => object.get(*key),
            Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        })
    }

    /// The object holding the entity's own fields: the inner `note` for notes, else `fields`.
    pub fn body(&self) -> &Value {
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

    pub fn id_u64(&self) -> Option<u64> {
        self.number("id")
    }

    pub fn name(&self) -> Option<&str> {
        self.text("name")
    }

    pub fn status_id(&self) -> Option<u64> {
        self.number("status_id")
    }

    pub fn old_status_id(&self) -> Option<u64> {
        self.number("old_status_id")
    }

    pub fn pipeline_id(&self) -> Option<u64> {
        self.number("pipeline_id")
    }

    pub fn old_pipeline_id(&self) -> Option<u64> {
        self.number("old_pipeline_id")
    }

    pub fn price(&self) -> Option<i64> {
        self.signed("price")
    }

    /// `0` (no one) is returned as sent.
    pub fn responsible_user_id(&self) -> Option<u64> {
        self.number("responsible_user_id")
    }

    pub fn created_user_id(&self) -> Option<u64> {
        self.number("created_user_id")
    }

    pub fn modified_user_id(&self) -> Option<u64> {
        self.number("modified_user_id")
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
    /// (`values[value]=..&values[enum]=..`) and the date form (`values[0]=<unix>`).
    pub fn custom_fields(&self) -> Vec<CustomField> {
        let Some(fields) = self.body().get("custom_fields") else {
            return Vec::new();
        };
        children(fields)
            .filter_map(|(_, field)| {
                let field = field.as_object()?;
                Some(CustomField {
                    id: parse_number(field.get("id")),
                    name: non_empty(field.get("name")).map(str::to_owned),
                    code: non_empty(field.get("code")).map(str::to_owned),
                    values: custom_field_values(field.get("values")),
                })
            })
            .collect()
    }

    /// `tags[i][id|name]`; a plain string is read as comma-separated names.
    pub fn tags(&self) -> Vec<Tag> {
        match self.body().get("tags") {
            None => Vec::new(),
            Some(Value::String(names)) => names
                .split(',')
                .map(str::trim)
                .filter(|name| !name.is_empty())
                .map(|name| Tag {
                    id: None,
                    name: Some(name.to_owned()),
                })
                .collect(),
            Some(tags) => children(tags)
                .filter_map(|(_, tag)| {
                    let tag = tag.as_object()?;
                    Some(Tag {
                        id: parse_number(tag.get("id")),
                        name: non_empty(tag.get("name")).map(str::to_owned),
                    })
                })
                .collect(),
        }
    }

    /// Lead ids of `linked_leads_id[<id>][ID]` (keyed by lead id, in the order sent).
    pub fn linked_lead_ids(&self) -> Vec<u64> {
        let Some(linked) = self.body().get("linked_leads_id") else {
            return Vec::new();
        };
        if let Some(id) = parse_number(Some(linked)) {
            return vec![id];
        }
        children(linked)
            .filter_map(|(key, entry)| {
                let from_entry = match entry {
                    Value::Object(entry) => {
                        parse_number(entry.get("ID").or_else(|| entry.get("id")))
                    }
                    scalar => parse_number(Some(scalar)),
                };
                from_entry.or_else(|| key.and_then(|key| key.parse().ok()))
            })
            .collect()
    }

    pub fn linked_company_id(&self) -> Option<u64> {
        self.number("linked_company_id")
    }

    /// The entity a note or message belongs to.
    pub fn element_id(&self) -> Option<u64> {
        self.number("element_id")
    }

    /// amoCRM's numeric element type: 1 contact, 2 lead, 3 company, 12 customer.
    pub fn element_type(&self) -> Option<u64> {
        self.number("element_type")
    }

    pub fn talk_id(&self) -> Option<u64> {
        self.number("talk_id")
    }

    pub fn chat_id(&self) -> Option<&str> {
        self.text("chat_id")
    }

    pub fn contact_id(&self) -> Option<u64> {
        self.number("contact_id")
    }
}

fn body_of<'a>(entity: &Entity, fields: &'a Value) -> &'a Value {
    match (entity, fields.get("note")) {
        (Entity::Note { .. }, Some(note @ Value::Object(_))) => note,
        _ => fields,
    }
}

fn detect_entity(section: &str, action: &Action, fields: &Value) -> Entity {
    let note = fields.get("note").filter(|note| note.is_object());
    let mut entity = Entity::from_section(section);
    if entity == Entity::Contact {
        let typed_company = |node: Option<&Value>| {
            node.and_then(|n| n.get("type")).and_then(Value::as_str) == Some("company")
        };
        let company_note = *action == Action::Note
            && (typed_company(note)
                || note
                    .and_then(|n| n.get("element_type"))
                    .and_then(Value::as_str)
                    == Some("3"));
        if typed_company(Some(fields)) || company_note {
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

fn non_empty(value: Option<&Value>) -> Option<&str> {
    value.and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn parse_number(value: Option<&Value>) -> Option<u64> {
    non_empty(value).and_then(|s| s.trim().parse().ok())
}

/// The children of a list, whether it arrived dense (an array) or sparse (an object).
fn children(value: &Value) -> Box<dyn Iterator<Item = (Option<&str>, &Value)> + '_> {
    match value {
        Value::Array(items) => Box::new(items.iter().map(|item| (None, item))),
        Value::Object(object) => Box::new(object.iter().map(|(k, v)| (Some(k.as_str()), v))),
        _ => Box::new(std::iter::empty()),
    }
}

fn custom_field_values(values: Option<&Value>) -> Vec<CustomFieldValue> {
    let one = |object: &Map<String, Value>| CustomFieldValue {
        value: non_empty(object.get("value")).map(str::to_owned),
        enum_id: parse_number(object.get("enum").or_else(|| object.get("enum_id"))),
    };
    match values {
        None => Vec::new(),
        Some(Value::String(value)) => vec![CustomFieldValue {
            value: Some(value.clone()).filter(|v| !v.is_empty()),
            enum_id: None,
        }],
        // The radio form: one value object with no index.
        Some(Value::Object(object))
            if object.contains_key("value") || object.contains_key("enum") =>
        {
            vec![one(object)]
        }
        Some(list) => children(list)
            .filter_map(|(_, value)| match value {
                Value::Object(object) => Some(one(object)),
                Value::String(text) => Some(CustomFieldValue {
                    value: Some(text.clone()).filter(|v| !v.is_empty()),
                    enum_id: None,
                }),
                _ => None,
            })
            .collect(),
    }
}
