//! Writing custom fields ([`CustomFieldInput`]) and custom field definitions
//! (`GET /api/v4/{entity}/custom_fields`, [`CustomFieldDefinition`]). The fields and values read
//! from entities ([`CustomField`], [`CustomFieldValue`]) come from `amocrm-types`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    CustomField, CustomFieldId, CustomFieldValue, EnumId, FieldRef, FieldType, ListItem, keep_raw,
    null_as_default,
};

/// One custom field to set (or clear) in a write: `{"field_id": .., "values": [..]}`,
/// `{"field_code": "PHONE", "values": [..]}` or `{"field_id": .., "values": null}`.
///
/// ```
/// use amocrm_client::{CustomFieldId, CustomFieldInput, CustomFieldValue};
///
/// let phone = CustomFieldInput::new("PHONE", [CustomFieldValue::multitext("WORK", "+79990001122")]);
/// let tariff = CustomFieldInput::new(CustomFieldId(3), [CustomFieldValue::enum_id(4035)]);
/// let gone = CustomFieldInput::clear(CustomFieldId(7));
/// assert_eq!(
///     serde_json::to_value(&gone).unwrap(),
///     serde_json::json!({"field_id": 7, "values": null})
/// );
/// # let _ = (phone, tariff);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct CustomFieldInput {
    field: FieldRef,
    values: Option<Vec<CustomFieldValue>>,
}

impl CustomFieldInput {
    /// Sets the field to `values` (one for most types; several for multiselect and multitext).
    pub fn new(
        field: impl Into<FieldRef>,
        values: impl IntoIterator<Item = CustomFieldValue>,
    ) -> Self {
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
    pub fn values(&self) -> Option<&[CustomFieldValue]> {
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
impl From<&CustomField> for CustomFieldInput {
    fn from(field: &CustomField) -> Self {
        CustomFieldInput::new(field.id, field.values.iter().cloned())
    }
}

/// A custom field as the account defines it: its name, type and choices.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(remote = "Self")]
#[non_exhaustive]
pub struct CustomFieldDefinition {
    /// The field's id.
    pub id: CustomFieldId,
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
keep_raw!(CustomFieldDefinition);

impl ListItem for CustomFieldDefinition {
    const KEY: &'static str = "custom_fields";
}

impl CustomFieldDefinition {
    /// The choice with this id, e.g. to name a select value.
    pub fn enum_value(&self, enum_id: EnumId) -> Option<&CustomFieldEnum> {
        self.enums.iter().find(|e| e.id == enum_id)
    }
}

/// A choice of a select-like field.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct CustomFieldEnum {
    /// The choice's id (`enum_id` in values).
    pub id: EnumId,
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
