//! Turns what amoCRM tells us (webhook events, API JSON) into rows of the mirror tables.
//!
//! Both sources end up in the API's shape: `custom_fields` holds `custom_fields_values` as the API returns
//! it (`[{field_id, field_name, field_code, field_type, values: [{value, enum_id, enum_code}]}]`), so readers
//! of `amocrm_deals` see one format whether the row came from a webhook body or from the API.

use amocrm_webhook::WebhookEvent;
use chrono::{DateTime, TimeZone, Utc};
use jarvis_store::{ContactUpsert, DealUpsert};
use serde_json::{Map, Value, json};

use crate::config::{FieldRef, MetadataField};

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

/// The custom fields of a webhook event in the API's `custom_fields_values` shape.
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

/// The text value of a custom field (first value) in an API-shaped `custom_fields_values` list.
pub fn custom_field_value(custom_fields: &Value, field: &FieldRef) -> Option<Value> {
    let list = custom_fields.as_array()?;
    let found = list.iter().find(|f| match field {
        FieldRef::Id(id) => f.get("field_id").and_then(json_i64) == Some(*id as i64),
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

/// A deal row from a lead webhook event alone (webhook-only mode and events that carry everything).
pub fn deal_from_webhook(event: &WebhookEvent, mapping: &[MetadataField]) -> Option<DealUpsert> {
    let id = event.entity_id()?.to_string();
    let custom_fields = webhook_custom_fields(event);
    let metadata = metadata_from_custom_fields(custom_fields.as_ref(), mapping);
    Some(DealUpsert {
        amocrm_deal_id: id,
        pipeline_id: event.pipeline_id().map(|v| v as i64),
        status_id: event.status_id().map(|v| v as i64),
        price: event.price(),
        name: event.name().map(String::from),
        responsible_user_id: event.responsible_user_id().map(|v| v as i64),
        custom_fields,
        deal_full_data: None,
        contact_custom_fields: None,
        main_contact_id: None,
        metadata,
        created_at: event.created_at().and_then(unix_to_time),
        updated_at: event.updated_at().and_then(unix_to_time),
        closed_at: None,
        // Not `Some(false)`: a late or retried body must not undo a delete (restores are explicit).
        is_deleted: None,
    })
}

/// A contact row from a contact webhook event alone.
pub fn contact_from_webhook(event: &WebhookEvent) -> Option<ContactUpsert> {
    let id = event.entity_id()?.to_string();
    Some(ContactUpsert {
        amocrm_contact_id: id,
        name: event.name().map(String::from),
        first_name: None,
        last_name: None,
        responsible_user_id: event.responsible_user_id().map(|v| v as i64),
        custom_fields: webhook_custom_fields(event),
        contact_full_data: None,
        metadata: Map::new(),
        created_at: event.created_at().and_then(unix_to_time),
        updated_at: event.updated_at().and_then(unix_to_time),
        // Not `Some(false)`: a late or retried body must not undo a delete (restores are explicit).
        is_deleted: None,
    })
}

/// The id of a lead's main contact (or its first contact) in an API lead JSON with `_embedded.contacts`.
pub fn main_contact_id(lead: &Value) -> Option<u64> {
    let contacts = lead.get("_embedded")?.get("contacts")?.as_array()?;
    let main = contacts
        .iter()
        .find(|c| c.get("is_main").and_then(Value::as_bool) == Some(true))
        .or_else(|| contacts.first())?;
    main.get("id").and_then(json_i64).map(|v| v as u64)
}

/// A deal row from an API lead JSON (as `GET /api/v4/leads` returns each lead), with the main contact's
/// custom fields when known.
pub fn deal_from_api(
    lead: &Value,
    contact: Option<&Value>,
    mapping: &[MetadataField],
) -> Option<DealUpsert> {
    let id = lead.get("id").and_then(json_i64)?;
    let custom_fields = lead
        .get("custom_fields_values")
        .filter(|v| !v.is_null())
        .cloned();
    let metadata = metadata_from_custom_fields(custom_fields.as_ref(), mapping);
    let contact_custom_fields = contact.map(|c| {
        c.get("custom_fields_values")
            .cloned()
            .unwrap_or(Value::Null)
    });
    Some(DealUpsert {
        amocrm_deal_id: id.to_string(),
        pipeline_id: lead.get("pipeline_id").and_then(json_i64),
        status_id: lead.get("status_id").and_then(json_i64),
        price: lead.get("price").and_then(json_i64),
        name: lead.get("name").and_then(json_str),
        responsible_user_id: lead.get("responsible_user_id").and_then(json_i64),
        custom_fields: Some(custom_fields.unwrap_or(Value::Null)),
        deal_full_data: Some(lead.clone()),
        contact_custom_fields,
        main_contact_id: main_contact_id(lead).map(|id| id.to_string()),
        metadata,
        created_at: lead.get("created_at").and_then(json_time),
        updated_at: lead.get("updated_at").and_then(json_time),
        closed_at: lead.get("closed_at").and_then(json_time),
        is_deleted: Some(
            lead.get("is_deleted")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        ),
    })
}

/// A contact row from an API contact JSON.
pub fn contact_from_api(contact: &Value) -> Option<ContactUpsert> {
    let id = contact.get("id").and_then(json_i64)?;
    Some(ContactUpsert {
        amocrm_contact_id: id.to_string(),
        name: contact.get("name").and_then(json_str),
        first_name: contact.get("first_name").and_then(json_str),
        last_name: contact.get("last_name").and_then(json_str),
        responsible_user_id: contact.get("responsible_user_id").and_then(json_i64),
        custom_fields: Some(
            contact
                .get("custom_fields_values")
                .cloned()
                .unwrap_or(Value::Null),
        ),
        contact_full_data: Some(contact.clone()),
        metadata: Map::new(),
        created_at: contact.get("created_at").and_then(json_time),
        updated_at: contact.get("updated_at").and_then(json_time),
        is_deleted: Some(
            contact
                .get("is_deleted")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping() -> Vec<MetadataField> {
        crate::config::parse_metadata_fields("rentprog_id=771001,class=CAR_CLASS").unwrap()
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
        assert_eq!(main_contact_id(&lead), Some(52110077));
        let deal = deal_from_api(&lead, Some(&contact), &mapping()).unwrap();
        assert_eq!(deal.amocrm_deal_id, "31840021");
        assert_eq!(deal.status_id, Some(142));
        assert_eq!(deal.metadata.get("rentprog_id"), Some(&json!("RP-48213")));
        assert_eq!(deal.metadata.get("class"), Some(&json!("Эконом")));
        assert_eq!(
            deal.contact_custom_fields.unwrap()[0]["field_code"],
            "PHONE"
        );
        assert_eq!(deal.updated_at.unwrap().timestamp(), 1764000150);
        assert_eq!(deal.deal_full_data.unwrap()["id"], 31840021);
    }

    #[test]
    fn missing_metadata_field_is_absent_not_null() {
        let fields = json!([{"field_id": 1, "values": [{"value": ""}]}]);
        assert!(metadata_from_custom_fields(Some(&fields), &mapping()).is_empty());
        assert_eq!(custom_field_value(&fields, &FieldRef::Id(1)), None);
    }
}
