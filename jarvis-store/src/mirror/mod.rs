//! The mirror mapping: turns what amoCRM says (webhook events, API JSON) into states of the
//! `amocrm_deals` / `amocrm_contacts` rows ([`DealUpsert`], [`ContactUpsert`]), plus a [`TokenStore`]
//! that keeps OAuth tokens in a [`Store`](crate::Store).
//!
//! This is where each source's knowledge is decided, column by column (see the crate's mirror rule): an
//! API answer (a lead of `GET /api/v4/leads`, or one a caller posts in that shape) knows every column
//! it has as a key, `null` meaning no value; a webhook body knows the keys it carries, an empty value
//! meaning no value, and never `closed_at`, the main contact or the full data. A lead or contact body
//! lists every filled custom field, so one without `custom_fields` has none, unless it lacks the
//! entity's `name` too (a digital-pipeline hook carries only ids and stages): then its custom fields are
//! unknown.
//!
//! Both sources end up in the API's shape: `custom_fields` holds `custom_fields_values` as the API
//! returns it (`[{field_id, field_name, field_code, field_type, values: [{value, enum_id, enum_code}]}]`),
//! so readers of `amocrm_deals` see one format whether the row came from a webhook body or from the API.
//!
//! [`MetadataField`]s copy chosen custom fields into the row's `metadata` under keys of the caller's
//! choosing (the service's `JARVIS_METADATA_FIELDS`).
//!
//! A deal row from a webhook body alone (webhook-only mode, no API calls):
//!
//! ```
//! use amocrm_webhook::Parser;
//! use jarvis_store::Known;
//! use amocrm_webhook::types::CustomFieldId;
//! use jarvis_store::mirror::{FieldRef, MetadataField, deal_from_webhook};
//!
//! let body = b"leads[update][0][id]=31840021&leads[update][0][name]=Rent&leads[update][0][price]=10500\
//!     &leads[update][0][status_id]=142&leads[update][0][pipeline_id]=7401234\
//!     &leads[update][0][updated_at]=1764000150\
//!     &leads[update][0][custom_fields][0][id]=771001\
//!     &leads[update][0][custom_fields][0][values][0][value]=RP-48213&account[id]=29711234";
//! let batch = Parser::default().parse(Some("application/x-www-form-urlencoded"), body).unwrap();
//! let mapping = [MetadataField::new("rentprog_id", FieldRef::Id(CustomFieldId(771001)))];
//!
//! let deal = deal_from_webhook(&batch.events[0], &mapping).unwrap();
//! assert_eq!(deal.amocrm_deal_id, "31840021");
//! assert_eq!(deal.status_id, Known::Value(142));
//! assert_eq!(deal.price, Known::Value(10500));
//! assert_eq!(deal.metadata["rentprog_id"], "RP-48213");
//! // A body never says when a lead was closed: the stored value is kept.
//! assert_eq!(deal.closed_at, Known::Unknown);
//! ```
//!
//! A deal row from an API lead (the JSON, or an [`amocrm_client::Lead`] through [`deal_from_lead`]):
//!
//! ```
//! use jarvis_store::Known;
//! use jarvis_store::mirror::{FieldRef, MetadataField, deal_from_api, deal_from_lead};
//! use serde_json::json;
//!
//! let lead = json!({
//!     "id": 31840021, "name": "Rent", "price": 10500, "status_id": 142, "pipeline_id": 7401234,
//!     "updated_at": 1764000150, "closed_at": null,
//!     "custom_fields_values": [{"field_id": 771002, "field_code": "CAR_CLASS",
//!                               "values": [{"value": "Economy", "enum_id": 551201}]}],
//!     "_embedded": {"contacts": [{"id": 52110077, "is_main": true}]}
//! });
//! let mapping = [MetadataField::new("class", FieldRef::Code("CAR_CLASS".into()))];
//!
//! let deal = deal_from_api(&lead, None, &mapping).unwrap();
//! assert_eq!(deal.metadata["class"], "Economy");
//! assert_eq!(deal.main_contact_id, Known::Value("52110077".into()));
//! // amoCRM's `null` clears the stored closing time; the whole lead is kept as `deal_full_data`.
//! assert_eq!(deal.closed_at, Known::Null);
//! assert_eq!(deal.deal_full_data, Known::Value(lead.clone()));
//!
//! // The client's typed lead maps the same way.
//! let typed: amocrm_client::Lead = serde_json::from_value(lead).unwrap();
//! assert_eq!(deal_from_lead(&typed, None, &mapping), Some(deal));
//! ```

mod tokens;

use amocrm_client::{Contact, Lead};
use amocrm_webhook::WebhookEvent;
use amocrm_webhook::types::ContactId;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Map, Value, json};

use crate::{ContactUpsert, DealUpsert, Known};

pub use tokens::DbTokenStore;

/// Names the custom field a metadata key's value comes from: by id, or by code (matched without
/// regard to ASCII case). The shared type of `amocrm-types`.
pub use amocrm_webhook::types::FieldRef;

#[cfg(doc)]
use amocrm_client::TokenStore;

/// One metadata mapping: the deal custom field `field` is copied into `metadata[key]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataField {
    /// The key in the row's `metadata` object.
    pub key: String,
    /// The custom field whose (first) value the key holds.
    pub field: FieldRef,
}

impl MetadataField {
    /// A mapping of `field` to `metadata[key]`.
    pub fn new(key: impl Into<String>, field: FieldRef) -> Self {
        Self {
            key: key.into(),
            field,
        }
    }
}

fn unix_to_time(secs: i64) -> Option<DateTime<Utc>> {
    if secs <= 0 {
        return None;
    }
    Utc.timestamp_opt(secs, 0).single()
}

fn json_i64(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn json_time(value: &Value) -> Option<DateTime<Utc>> {
    json_i64(value).and_then(unix_to_time)
}

fn json_str(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The custom fields of a webhook event in the API's `custom_fields_values` shape; `None` when it has
/// none.
pub fn webhook_custom_fields(event: &WebhookEvent) -> Option<Value> {
    let fields = event.custom_fields();
    if fields.is_empty() {
        return None;
    }
    let list: Vec<Value> = fields
        .iter()
        .map(|f| {
            json!({
                "field_id": f.id,
                "field_name": f.name,
                "field_code": f.code,
                "values": f.values.iter().map(|v| json!({"value": v.value, "enum_id": v.enum_id})).collect::<Vec<_>>(),
            })
        })
        .collect();
    Some(Value::Array(list))
}

/// Whether the event's body has `key` at all (an empty value included).
fn carries(event: &WebhookEvent, key: &str) -> bool {
    event.body().get(key).is_some()
}

/// A column read from a body key: unknown without the key, NULL when empty or unparsable.
fn body_column<T>(
    event: &WebhookEvent,
    keys: &[&str],
    read: impl Fn(&WebhookEvent) -> Option<T>,
) -> Known<T> {
    if keys.iter().any(|key| carries(event, key)) {
        Known::from_option(read(event))
    } else {
        Known::Unknown
    }
}

/// The custom fields a body knows: all of them for a whole entity body (see the module docs).
fn body_custom_fields(event: &WebhookEvent) -> Known<Value> {
    if carries(event, "custom_fields") || carries(event, "name") {
        Known::from_option(webhook_custom_fields(event))
    } else {
        Known::Unknown
    }
}

/// The text value of a custom field (first value) in an API-shaped `custom_fields_values` list.
pub fn custom_field_value(custom_fields: &Value, field: &FieldRef) -> Option<Value> {
    let list = custom_fields.as_array()?;
    let found = list.iter().find(|f| match field {
        FieldRef::Id(id) => f.get("field_id").and_then(json_i64) == i64::try_from(id.get()).ok(),
        FieldRef::Code(code) => f
            .get("field_code")
            .and_then(Value::as_str)
            .is_some_and(|c| c.eq_ignore_ascii_case(code)),
    })?;
    let first = found.get("values")?.as_array()?.first()?;
    let value = match first {
        Value::Object(o) => o.get("value").cloned().unwrap_or(Value::Null),
        other => other.clone(),
    };
    match value {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        v => Some(v),
    }
}

/// The configured metadata keys found in a deal's custom fields.
pub fn metadata_from_custom_fields(
    custom_fields: Option<&Value>,
    mapping: &[MetadataField],
) -> Map<String, Value> {
    let mut out = Map::new();
    let Some(fields) = custom_fields else {
        return out;
    };
    for m in mapping {
        if let Some(v) = custom_field_value(fields, &m.field) {
            out.insert(m.key.clone(), v);
        }
    }
    out
}

/// The metadata a state recomputes: every mapped key (dropped when its field is empty or gone) when
/// the custom fields are known, nothing otherwise.
fn mapped_metadata(
    custom_fields: &Known<Value>,
    mapping: &[MetadataField],
) -> (Vec<String>, Map<String, Value>) {
    if !custom_fields.is_known() {
        return (Vec::new(), Map::new());
    }
    let keys = mapping.iter().map(|m| m.key.clone()).collect();
    (
        keys,
        metadata_from_custom_fields(custom_fields.value(), mapping),
    )
}

/// A deal state from a lead webhook event alone (webhook-only mode): what the body carries.
pub fn deal_from_webhook(event: &WebhookEvent, mapping: &[MetadataField]) -> Option<DealUpsert> {
    let id = event.entity_id()?.to_string();
    let custom_fields = body_custom_fields(event);
    let (metadata_keys, metadata) = mapped_metadata(&custom_fields, mapping);
    let number =
        |key: &'static str| body_column(event, &[key], move |e| e.number(key).map(|v| v as i64));
    Some(DealUpsert {
        amocrm_deal_id: id,
        pipeline_id: number("pipeline_id"),
        status_id: number("status_id"),
        price: body_column(event, &["price"], WebhookEvent::price),
        name: body_column(event, &["name"], |e| e.name().map(String::from)),
        responsible_user_id: number("responsible_user_id"),
        custom_fields,
        deal_full_data: Known::Unknown,
        contact_custom_fields: Known::Unknown,
        main_contact_id: Known::Unknown,
        metadata_keys,
        metadata,
        created_at: body_column(event, &["created_at", "date_create"], |e| {
            e.created_at().and_then(unix_to_time)
        }),
        updated_at: event.updated_at().and_then(unix_to_time),
        closed_at: Known::Unknown,
        // Deletes and restores are counted apart (`Store::record_deletion`).
        is_deleted: None,
    })
}

/// A contact state from a contact webhook event alone: what the body carries.
pub fn contact_from_webhook(event: &WebhookEvent) -> Option<ContactUpsert> {
    let id = event.entity_id()?.to_string();
    Some(ContactUpsert {
        amocrm_contact_id: id,
        name: body_column(event, &["name"], |e| e.name().map(String::from)),
        first_name: Known::Unknown,
        last_name: Known::Unknown,
        responsible_user_id: body_column(event, &["responsible_user_id"], |e| {
            e.responsible_user_id().map(|id| id.get() as i64)
        }),
        custom_fields: body_custom_fields(event),
        contact_full_data: Known::Unknown,
        metadata_keys: Vec::new(),
        metadata: Map::new(),
        created_at: body_column(event, &["created_at", "date_create"], |e| {
            e.created_at().and_then(unix_to_time)
        }),
        updated_at: event.updated_at().and_then(unix_to_time),
        is_deleted: None,
    })
}

/// The main contact of an API lead JSON: unknown without `_embedded.contacts` (fetched without
/// `with=contacts`), NULL when the lead has no contact; else the one marked main, or the first.
pub fn main_contact(lead: &Value) -> Known<ContactId> {
    let Some(contacts) = lead
        .get("_embedded")
        .and_then(|e| e.get("contacts"))
        .and_then(Value::as_array)
    else {
        return Known::Unknown;
    };
    let main = contacts
        .iter()
        .find(|c| c.get("is_main").and_then(Value::as_bool) == Some(true))
        .or_else(|| contacts.first());
    Known::from_option(
        main.and_then(|c| c.get("id"))
            .and_then(json_i64)
            .and_then(|id| u64::try_from(id).ok())
            .map(ContactId),
    )
}

/// The id of a lead's main contact (or its first contact) in an API lead JSON with `_embedded.contacts`.
pub fn main_contact_id(lead: &Value) -> Option<ContactId> {
    main_contact(lead).value().copied()
}

/// A column of an API JSON object: unknown without the key, NULL for `null` (or an unreadable value).
fn api_column<T>(object: &Value, key: &str, read: impl Fn(&Value) -> Option<T>) -> Known<T> {
    match object.get(key) {
        None => Known::Unknown,
        Some(value) => Known::from_option(read(value)),
    }
}

/// `custom_fields_values` of an API JSON object: `null` or an empty list is no field.
fn api_custom_fields(object: &Value) -> Known<Value> {
    api_column(object, "custom_fields_values", |v| {
        Some(v.clone()).filter(|v| !v.is_null() && v.as_array().is_none_or(|l| !l.is_empty()))
    })
}

/// A deal state from an API lead JSON (as `GET /api/v4/leads` returns each lead).
///
/// `contact` is the main contact's API JSON when the caller has it (its `custom_fields_values` go to
/// `contact_custom_fields`); without it they are unknown, unless the lead has no contact at all.
pub fn deal_from_api(
    lead: &Value,
    contact: Option<&Value>,
    mapping: &[MetadataField],
) -> Option<DealUpsert> {
    let id = lead.get("id").and_then(json_i64)?;
    let custom_fields = api_custom_fields(lead);
    let (metadata_keys, metadata) = mapped_metadata(&custom_fields, mapping);
    let main = main_contact(lead);
    let contact_custom_fields = match (&main, contact) {
        (Known::Null, _) => Known::Null,
        (_, Some(contact)) => api_custom_fields(contact)
            .value()
            .cloned()
            .map_or(Known::Null, Known::Value),
        (_, None) => Known::Unknown,
    };
    Some(DealUpsert {
        amocrm_deal_id: id.to_string(),
        pipeline_id: api_column(lead, "pipeline_id", json_i64),
        status_id: api_column(lead, "status_id", json_i64),
        price: api_column(lead, "price", json_i64),
        name: api_column(lead, "name", json_str),
        responsible_user_id: api_column(lead, "responsible_user_id", json_i64),
        custom_fields,
        deal_full_data: Known::Value(lead.clone()),
        contact_custom_fields,
        main_contact_id: main.map(|id| id.to_string()),
        metadata_keys,
        metadata,
        created_at: api_column(lead, "created_at", json_time),
        updated_at: lead.get("updated_at").and_then(json_time),
        closed_at: api_column(lead, "closed_at", json_time),
        // The API answers with leads that exist.
        is_deleted: Some(
            lead.get("is_deleted")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        ),
    })
}

/// A contact state from an API contact JSON.
pub fn contact_from_api(contact: &Value) -> Option<ContactUpsert> {
    let id = contact.get("id").and_then(json_i64)?;
    Some(ContactUpsert {
        amocrm_contact_id: id.to_string(),
        name: api_column(contact, "name", json_str),
        first_name: api_column(contact, "first_name", json_str),
        last_name: api_column(contact, "last_name", json_str),
        responsible_user_id: api_column(contact, "responsible_user_id", json_i64),
        custom_fields: api_custom_fields(contact),
        contact_full_data: Known::Value(contact.clone()),
        metadata_keys: Vec::new(),
        metadata: Map::new(),
        created_at: api_column(contact, "created_at", json_time),
        updated_at: contact.get("updated_at").and_then(json_time),
        is_deleted: Some(
            contact
                .get("is_deleted")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        ),
    })
}

/// A deal state from a lead of the API client (see [`deal_from_api`]); `contact` is its main
/// contact when the caller fetched it.
pub fn deal_from_lead(
    lead: &Lead,
    contact: Option<&Contact>,
    mapping: &[MetadataField],
) -> Option<DealUpsert> {
    deal_from_api(lead.raw(), contact.map(Contact::raw), mapping)
}

/// A contact state from a contact of the API client (see [`contact_from_api`]).
pub fn contact_from_contact(contact: &Contact) -> Option<ContactUpsert> {
    contact_from_api(contact.raw())
}

#[cfg(test)]
mod tests {
    use super::*;
    use amocrm_webhook::types::CustomFieldId;

    fn mapping() -> Vec<MetadataField> {
        vec![
            MetadataField::new("rentprog_id", FieldRef::Id(CustomFieldId(771001))),
            MetadataField::new("class", FieldRef::Code("CAR_CLASS".into())),
        ]
    }

    #[test]
    fn api_lead_maps_to_deal_with_metadata_and_contact_fields() {
        let lead = json!({
            "id": 31840021, "name": "Аренда", "price": 10500, "status_id": 142, "pipeline_id": 7401234,
            "responsible_user_id": 8215487, "created_at": 1763990000, "updated_at": 1764000150,
            "closed_at": null, "is_deleted": false,
            "custom_fields_values": [
                {"field_id": 771001, "field_name": "RentProg ID", "field_code": null, "values": [{"value": "RP-48213"}]},
                {"field_id": 771002, "field_name": "Класс", "field_code": "CAR_CLASS", "values": [{"value": "Эконом", "enum_id": 551201}]}
            ],
            "_embedded": {"contacts": [{"id": 1, "is_main": false}, {"id": 52110077, "is_main": true}]}
        });
        let contact = json!({"id": 52110077, "custom_fields_values": [{"field_code": "PHONE", "values": [{"value": "+7 999"}]}]});
        assert_eq!(main_contact_id(&lead), Some(ContactId(52110077)));
        let deal = deal_from_api(&lead, Some(&contact), &mapping()).unwrap();
        assert_eq!(deal.amocrm_deal_id, "31840021");
        assert_eq!(deal.status_id, Known::Value(142));
        assert_eq!(deal.metadata.get("rentprog_id"), Some(&json!("RP-48213")));
        assert_eq!(deal.metadata.get("class"), Some(&json!("Эконом")));
        assert_eq!(deal.metadata_keys, ["rentprog_id", "class"]);
        assert_eq!(
            deal.contact_custom_fields.value().unwrap()[0]["field_code"],
            "PHONE"
        );
        assert_eq!(deal.main_contact_id, Known::Value("52110077".into()));
        assert_eq!(deal.updated_at.unwrap().timestamp(), 1764000150);
        assert_eq!(deal.deal_full_data.value().unwrap()["id"], 31840021);
        // An open lead: amoCRM's null clears the stored closing time.
        assert_eq!(deal.closed_at, Known::Null);
        assert_eq!(deal.is_deleted, Some(false));
    }

    #[test]
    fn api_nulls_clear_and_absent_keys_keep() {
        let lead = json!({"id": 5, "price": null, "custom_fields_values": null, "updated_at": 1764000000,
                          "_embedded": {"contacts": []}});
        let deal = deal_from_api(&lead, None, &mapping()).unwrap();
        assert_eq!(deal.price, Known::Null);
        assert_eq!(deal.custom_fields, Known::Null);
        // The mapped keys are recomputed: removed, since the fields are gone.
        assert_eq!(deal.metadata_keys, ["rentprog_id", "class"]);
        assert!(deal.metadata.is_empty());
        // No contact at all: no main contact and no contact fields.
        assert_eq!(deal.main_contact_id, Known::Null);
        assert_eq!(deal.contact_custom_fields, Known::Null);
        // Keys the answer does not have are not known.
        assert_eq!(deal.status_id, Known::Unknown);
        assert_eq!(deal.closed_at, Known::Unknown);

        let without_contacts = json!({"id": 5, "updated_at": 1764000000});
        let deal = deal_from_api(&without_contacts, None, &mapping()).unwrap();
        assert_eq!(deal.main_contact_id, Known::Unknown);
        assert_eq!(deal.contact_custom_fields, Known::Unknown);
        assert_eq!(deal.custom_fields, Known::Unknown);
        assert!(deal.metadata_keys.is_empty());
    }

    fn lead_event(fields: Value) -> WebhookEvent {
        let account = amocrm_webhook::Account::default();
        WebhookEvent::new(&account, "leads", "update", fields)
    }

    #[test]
    fn a_whole_body_knows_its_fields_even_when_none_are_filled() {
        let event = lead_event(
            json!({"id": "7", "name": "Аренда", "price": "", "status_id": "142",
            "pipeline_id": "7401234", "responsible_user_id": "8215487", "updated_at": "1764000000"}),
        );
        let deal = deal_from_webhook(&event, &mapping()).unwrap();
        assert_eq!(deal.custom_fields, Known::Null);
        assert_eq!(deal.metadata_keys, ["rentprog_id", "class"]);
        assert_eq!(deal.price, Known::Null, "an empty price is no price");
        assert_eq!(deal.status_id, Known::Value(142));
        // A body never says these.
        assert_eq!(deal.closed_at, Known::Unknown);
        assert_eq!(deal.main_contact_id, Known::Unknown);
        assert_eq!(deal.deal_full_data, Known::Unknown);
        assert_eq!(deal.created_at, Known::Unknown);
        assert_eq!(deal.is_deleted, None);
    }

    #[test]
    fn a_digital_pipeline_body_knows_only_what_it_carries() {
        let event = lead_event(
            json!({"id": "7", "status_id": "143", "pipeline_id": "7401234",
            "old_status_id": "142"}),
        );
        let deal = deal_from_webhook(&event, &mapping()).unwrap();
        assert_eq!(deal.status_id, Known::Value(143));
        assert_eq!(deal.custom_fields, Known::Unknown);
        assert!(deal.metadata_keys.is_empty());
        assert_eq!(deal.name, Known::Unknown);
        assert_eq!(deal.price, Known::Unknown);
        assert_eq!(deal.updated_at, None);
    }

    #[test]
    fn missing_metadata_field_is_absent_not_null() {
        let fields = json!([{"field_id": 1, "values": [{"value": ""}]}]);
        assert!(metadata_from_custom_fields(Some(&fields), &mapping()).is_empty());
        assert_eq!(
            custom_field_value(&fields, &FieldRef::Id(CustomFieldId(1))),
            None
        );
    }
}
