//! Custom field values on entities, and custom field definitions (`GET /api/v4/{entity}/custom_fields`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{FieldId, ListItem, keep_raw, null_as_default, string_enum};

string_enum!(
    /// `field_type` of a custom field.
    FieldType {
        Text => "text",
        Numeric => "numeric",
        Checkbox => "checkbox",
        Select => "select",
        Multiselect => "multiselect",
        Multitext => "multitext",
        Date => "date",
        DateTime => "date_time",
        Birthday => "birthday",
        Url => "url",
        Textarea => "textarea",
        Radiobutton => "radiobutton",
        StreetAddress => "streetaddress",
        SmartAddress => "smart_address",
        LegalEntity => "legal_entity",
        Price => "price",
        Monetary => "monetary",
        Category => "category",
        Items => "items",
        TrackingData => "tracking_data",
        LinkedEntity => "linked_entity",
        ChainedList => "chained_list",
        File => "file",
        Payer => "payer",
        Supplier => "supplier",
    }
);

/// One custom field's values on a lead, contact or company (`custom_fields_values[]`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct CustomFieldValue {
    pub field_id: FieldId,
    #[serde(default)]
    pub field_name: Option<String>,
    /// Set for predefined fields: `PHONE`, `EMAIL`, `POSITION`, ...; null for user fields.
    #[serde(default)]
    pub field_code: Option<String>,
    #[serde(default)]
    pub field_type: Option<FieldType>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub values: Vec<FieldValue>,
}

/// One value of a custom field. `value` is a string, number, bool or object depending on the
/// field type (a date is Unix seconds; a legal entity is an object), so it stays JSON.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct FieldValue {
    #[serde(default)]
    pub value: Value,
    /// Set for select, multiselect, radiobutton and multitext (`WORK`, `MOB`, ...) values.
    #[serde(default)]
    pub enum_id: Option<u64>,
    #[serde(default)]
    pub enum_code: Option<String>,
}

impl FieldValue {
    /// The value as text: strings as they are, numbers and booleans formatted.
    pub fn as_text(&self) -> Option<String> {
        match &self.value {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// The value as an integer (numbers, numeric strings, date fields' Unix seconds).
    pub fn as_i64(&self) -> Option<i64> {
        match &self.value {
            Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
}

impl CustomFieldValue {
    pub fn first(&self) -> Option<&FieldValue> {
        self.values.first()
    }

    /// The first value as text, the common case for text, numeric and select fields.
    pub fn first_text(&self) -> Option<String> {
        self.first().and_then(FieldValue::as_text)
    }

    /// All values as text, e.g. every phone number of a contact.
    pub fn texts(&self) -> Vec<String> {
        self.values.iter().filter_map(FieldValue::as_text).collect()
    }
}

/// Finding fields in a `custom_fields_values` list.
pub trait CustomFieldsExt {
    fn field(&self, id: FieldId) -> Option<&CustomFieldValue>;
    /// By `field_code`, case-insensitively (`PHONE`, `EMAIL`).
    fn field_by_code(&self, code: &str) -> Option<&CustomFieldValue>;
}

impl CustomFieldsExt for [CustomFieldValue] {
    fn field(&self, id: FieldId) -> Option<&CustomFieldValue> {
        self.iter().find(|f| f.field_id == id)
    }

    fn field_by_code(&self, code: &str) -> Option<&CustomFieldValue> {
        self.iter().find(|f| {
            f.field_code
                .as_deref()
                .is_some_and(|c| c.eq_ignore_ascii_case(code))
        })
    }
}

impl CustomFieldsExt for Option<Vec<CustomFieldValue>> {
    fn field(&self, id: FieldId) -> Option<&CustomFieldValue> {
        self.as_deref().and_then(|fields| fields.field(id))
    }

    fn field_by_code(&self, code: &str) -> Option<&CustomFieldValue> {
        self.as_deref()
            .and_then(|fields| fields.field_by_code(code))
    }
}

/// A custom field definition.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(remote = "Self")]
#[non_exhaustive]
pub struct CustomField {
    pub id: FieldId,
    #[serde(default)]
    pub name: String,
    #[serde(rename = "type", default)]
    pub field_type: Option<FieldType>,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub sort: Option<i64>,
    #[serde(default)]
    pub entity_type: Option<String>,
    #[serde(default)]
    pub group_id: Option<String>,
    #[serde(default)]
    pub is_api_only: bool,
    #[serde(default)]
    pub is_predefined: bool,
    #[serde(default)]
    pub is_deletable: bool,
    /// Choices of select, multiselect, radiobutton and multitext fields.
    #[serde(default, deserialize_with = "null_as_default")]
    pub enums: Vec<CustomFieldEnum>,
    #[serde(skip)]
    raw: Value,
}
keep_raw!(CustomField);

impl ListItem for CustomField {
    const KEY: &'static str = "custom_fields";
}

impl CustomField {
    /// The choice with this id, e.g. to name a select value.
    pub fn enum_value(&self, enum_id: u64) -> Option<&CustomFieldEnum> {
        self.enums.iter().find(|e| e.id == enum_id)
    }
}

/// A choice of a select-like field.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct CustomFieldEnum {
    pub id: u64,
    #[serde(default)]
    pub value: String,
    #[serde(default)]
    pub sort: Option<i64>,
    #[serde(default)]
    pub code: Option<String>,
}
