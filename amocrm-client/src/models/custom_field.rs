//! Custom field values on entities, and custom field definitions (`GET /api/v4/{entity}/custom_fields`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

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
    /// The field definition's id.
    pub field_id: FieldId,
    /// The field's name as shown in amoCRM.
    #[serde(default)]
    pub field_name: Option<String>,
    /// Set for predefined fields: `PHONE`, `EMAIL`, `POSITION`, ...; null for user fields.
    #[serde(default)]
    pub field_code: Option<String>,
    /// The field's type.
    #[serde(default)]
    pub field_type: Option<FieldType>,
    /// The values; empty when the field is empty.
    #[serde(default, deserialize_with = "null_as_default")]
    pub values: Vec<FieldValue>,
}

/// One value of a custom field, as read and as written.
///
/// Reading: `value` is a string, number, bool or object depending on the field type (a date is
/// Unix seconds; a legal entity is an object), so it stays JSON; chained-list values carry
/// [`catalog_id`](Self::catalog_id) and [`catalog_element_id`](Self::catalog_element_id)
/// instead; anything else amoCRM sends is kept in [`extra`](Self::extra).
///
/// Writing: build one with a constructor per field type ([`text`](Self::text),
/// [`numeric`](Self::numeric), [`enum_id`](Self::enum_id), [`multitext`](Self::multitext),
/// [`date`](Self::date), [`chained_list`](Self::chained_list), ...) and pass it in a
/// [`CustomFieldInput`]. A value read from amoCRM can be written back as it is.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[non_exhaustive]
pub struct FieldValue {
    /// The value; `null` when the field type has none (chained lists).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub value: Value,
    /// Set for select, multiselect and radiobutton values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enum_id: Option<u64>,
    /// Set for multitext values (`WORK`, `MOB`, ...). amoCRM's contact examples spell it
    /// `enum`; both are read.
    #[serde(default, alias = "enum", skip_serializing_if = "Option::is_none")]
    pub enum_code: Option<String>,
    /// A smart address's part: `address_line_1`, `address_line_2`, `city`, `state`, `zip`,
    /// `country`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtype: Option<String>,
    /// A chained list's catalog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_id: Option<u64>,
    /// A chained list's element of that catalog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_element_id: Option<u64>,
    /// Keys this crate does not model, kept as received and written back as they are.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl FieldValue {
    fn of(value: Value) -> Self {
        FieldValue {
            value,
            ..FieldValue::default()
        }
    }

    /// A text, textarea, url or street address value; also a select, multiselect or
    /// radiobutton choice given by its text.
    pub fn text(text: impl Into<String>) -> Self {
        FieldValue::of(Value::String(text.into()))
    }

    /// A numeric value; whole numbers are sent without a fraction.
    pub fn numeric(number: f64) -> Self {
        let value = if number.fract() == 0.0 && number.abs() < 9.0e15 {
            Value::from(number as i64)
        } else {
            serde_json::Number::from_f64(number).map_or(Value::Null, Value::Number)
        };
        FieldValue::of(value)
    }

    /// A checkbox value.
    pub fn checkbox(checked: bool) -> Self {
        FieldValue::of(Value::Bool(checked))
    }

    /// A select, multiselect or radiobutton choice by its id (one value per chosen option of a
    /// multiselect).
    pub fn enum_id(enum_id: u64) -> Self {
        FieldValue {
            enum_id: Some(enum_id),
            ..FieldValue::default()
        }
    }

    /// A date, date_time or birthday value.
    pub fn date(at: chrono::DateTime<chrono::Utc>) -> Self {
        FieldValue::timestamp(at.timestamp())
    }

    /// A date, date_time or birthday value as Unix seconds.
    pub fn timestamp(unix_seconds: i64) -> Self {
        FieldValue::of(Value::from(unix_seconds))
    }

    /// A multitext value (phone, e-mail, messenger) with its kind: `WORK`, `WORKDD`, `MOB`,
    /// `FAX`, `HOME`, `PRIV`, `OTHER`.
    pub fn multitext(enum_code: impl Into<String>, value: impl Into<String>) -> Self {
        FieldValue {
            value: Value::String(value.into()),
            enum_code: Some(enum_code.into()),
            ..FieldValue::default()
        }
    }

    /// One part of a smart address (`subtype`: `address_line_1`, `address_line_2`, `city`,
    /// `state`, `zip`, `country`).
    pub fn smart_address(subtype: impl Into<String>, value: impl Into<String>) -> Self {
        FieldValue {
            value: Value::String(value.into()),
            subtype: Some(subtype.into()),
            ..FieldValue::default()
        }
    }

    /// A legal entity's details.
    pub fn legal_entity(entity: LegalEntity) -> Self {
        FieldValue::of(serde_json::to_value(entity).unwrap_or(Value::Null))
    }

    /// A chained list value: an element of a catalog.
    pub fn chained_list(catalog_id: u64, catalog_element_id: u64) -> Self {
        FieldValue {
            catalog_id: Some(catalog_id),
            catalog_element_id: Some(catalog_element_id),
            ..FieldValue::default()
        }
    }

    /// A chained list value's `(catalog_id, catalog_element_id)`.
    pub fn catalog_element(&self) -> Option<(u64, u64)> {
        Some((self.catalog_id?, self.catalog_element_id?))
    }

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

/// A legal entity field's value (`legal_entity`), for writing with
/// [`FieldValue::legal_entity`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LegalEntity {
    /// The entity's name.
    pub name: String,
    /// 1 for a private person, 2 for a legal entity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity_type: Option<u8>,
    /// Tax number (INN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vat_id: Option<String>,
    /// Registration number (OGRN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tax_registration_reason_code: Option<String>,
    /// Legal address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Tax registration reason code (KPP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kpp: Option<String>,
    /// The entity's id in an outside system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_uid: Option<String>,
}

impl LegalEntity {
    /// A legal entity with only its name set; fill the other public fields as needed.
    pub fn new(name: impl Into<String>) -> Self {
        LegalEntity {
            name: name.into(),
            ..LegalEntity::default()
        }
    }
}

/// Which custom field to write: by id, or by code for predefined fields (`PHONE`, `EMAIL`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldRef {
    /// `field_id`.
    Id(FieldId),
    /// `field_code`.
    Code(String),
}

impl From<FieldId> for FieldRef {
    fn from(id: FieldId) -> Self {
        FieldRef::Id(id)
    }
}

impl From<&str> for FieldRef {
    fn from(code: &str) -> Self {
        FieldRef::Code(code.to_owned())
    }
}

impl From<String> for FieldRef {
    fn from(code: String) -> Self {
        FieldRef::Code(code)
    }
}

/// One custom field to set (or clear) in a write: `{"field_id": .., "values": [..]}`,
/// `{"field_code": "PHONE", "values": [..]}` or `{"field_id": .., "values": null}`.
///
/// ```
/// use amocrm_client::{CustomFieldInput, FieldId, FieldValue};
///
/// let phone = CustomFieldInput::new("PHONE", [FieldValue::multitext("WORK", "+79990001122")]);
/// let tariff = CustomFieldInput::new(FieldId(3), [FieldValue::enum_id(4035)]);
/// let gone = CustomFieldInput::clear(FieldId(7));
/// assert_eq!(
///     serde_json::to_value(&gone).unwrap(),
///     serde_json::json!({"field_id": 7, "values": null})
/// );
/// # let _ = (phone, tariff);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct CustomFieldInput {
    field: FieldRef,
    values: Option<Vec<FieldValue>>,
}

impl CustomFieldInput {
    /// Sets the field to `values` (one for most types; several for multiselect and multitext).
    pub fn new(field: impl Into<FieldRef>, values: impl IntoIterator<Item = FieldValue>) -> Self {
        CustomFieldInput {
            field: field.into(),
            values: Some(values.into_iter().collect()),
        }
    }

    /// Clears the field (`values: null`).
    pub fn clear(field: impl Into<FieldRef>) -> Self {
        CustomFieldInput {
            field: field.into(),
            values: None,
        }
    }

    /// The field written.
    pub fn field(&self) -> &FieldRef {
        &self.field
    }

    /// The values written; `None` clears the field.
    pub fn values(&self) -> Option<&[FieldValue]> {
        self.values.as_deref()
    }
}

impl Serialize for CustomFieldInput {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(2))?;
        match &self.field {
            FieldRef::Id(id) => map.serialize_entry("field_id", id)?,
            FieldRef::Code(code) => map.serialize_entry("field_code", code)?,
        }
        map.serialize_entry("values", &self.values)?;
        map.end()
    }
}

/// A field read from amoCRM, to write back (e.g. copied to another lead).
impl From<&CustomFieldValue> for CustomFieldInput {
    fn from(field: &CustomFieldValue) -> Self {
        CustomFieldInput::new(field.field_id, field.values.iter().cloned())
    }
}

impl CustomFieldValue {
    /// The first value, the only one of most field types.
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
    /// By field id.
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
    /// The field's id.
    pub id: FieldId,
    /// The field's name.
    #[serde(default)]
    pub name: String,
    /// The field's type (`type` in the JSON).
    #[serde(rename = "type", default)]
    pub field_type: Option<FieldType>,
    /// The code of a predefined field (`PHONE`, `EMAIL`), else none.
    #[serde(default)]
    pub code: Option<String>,
    /// Position among the entity's fields.
    #[serde(default)]
    pub sort: Option<i64>,
    /// `leads`, `contacts`, `companies`, ...
    #[serde(default)]
    pub entity_type: Option<String>,
    /// The group (tab) the field is shown in.
    #[serde(default)]
    pub group_id: Option<String>,
    /// Whether only the API can change the field.
    #[serde(default)]
    pub is_api_only: bool,
    /// Whether amoCRM created the field.
    #[serde(default)]
    pub is_predefined: bool,
    /// Whether the field can be deleted.
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
    /// The choice's id (`enum_id` in values).
    pub id: u64,
    /// The choice's text.
    #[serde(default)]
    pub value: String,
    /// Position among the choices.
    #[serde(default)]
    pub sort: Option<i64>,
    /// The choice's code (`WORK`, `MOB` for multitext).
    #[serde(default)]
    pub code: Option<String>,
}
