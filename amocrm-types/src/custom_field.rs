//! Custom fields on leads, contacts, companies and customers: a [`CustomField`] (one field with
//! its values) holds [`CustomFieldValue`]s (one value each).
//!
//! The API lists an entity's fields as `custom_fields_values`
//! (`[{"field_id", "field_name", "field_code", "field_type", "values": [{"value", "enum_id", ...}]}]`);
//! a webhook body sends them as `custom_fields[i][id|name|code][values][j][value|enum]`. Both are read
//! into these types, and both the API client and the webhook parser answer with them.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::id::{CatalogElementId, CatalogId, CustomFieldId, EnumId};

/// Strings amoCRM enumerates, with an `Other` arm for values it adds later.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $(#[doc = concat!("`", $text, "`")] $variant,)+
            /// A value this crate does not know yet, kept as sent.
            Other(String),
        }

        impl $name {
            /// The text amoCRM uses for this value.
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $text,)+
                    $name::Other(other) => other,
                }
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }

        impl std::str::FromStr for $name {
            type Err = std::convert::Infallible;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Ok(match s {
                    $($text => $name::$variant,)+
                    other => $name::Other(other.to_owned()),
                })
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Ok(text.parse().unwrap_or_else(|never| match never {}))
            }
        }
    };
}

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

/// `null` and absent both mean "no values".
fn null_as_empty<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}

/// One custom field of an entity with its values: an item of the API's `custom_fields_values`, or
/// `custom_fields[i]` of a webhook body.
///
/// In JSON it has the API's shape (`field_id`, `field_name`, `field_code`, `field_type`,
/// `values`); a webhook's `id`, `name` and `code` are read too.
///
/// ```
/// use amocrm_types::{CustomField, CustomFieldId, EnumId};
///
/// let tariff: CustomField = serde_json::from_str(
///     r#"{"field_id": 3, "field_name": "Tariff", "field_code": null, "field_type": "select",
///         "values": [{"value": "Premium", "enum_id": 4035}]}"#,
/// )?;
/// assert_eq!(tariff.id, CustomFieldId(3));
/// assert_eq!((tariff.text(), tariff.enum_id()), (Some("Premium"), Some(EnumId(4035))));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct CustomField {
    /// The field's id in the account.
    #[serde(rename = "field_id", alias = "id")]
    pub id: CustomFieldId,
    /// The field's name as shown in amoCRM; `None` when not sent.
    #[serde(rename = "field_name", alias = "name", default)]
    pub name: Option<String>,
    /// The code of a predefined field (`PHONE`, `EMAIL`, `POSITION`, ...); `None` for the
    /// account's own fields, which have none.
    #[serde(rename = "field_code", alias = "code", default)]
    pub code: Option<String>,
    /// The field's type; `None` when not sent (webhook bodies never send it).
    #[serde(default)]
    pub field_type: Option<FieldType>,
    /// The values in the order sent; empty when the field has none.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub values: Vec<CustomFieldValue>,
}

impl CustomField {
    /// A field with its values; set [`name`](Self::name), [`code`](Self::code) and
    /// [`field_type`](Self::field_type) as known.
    pub fn new(id: CustomFieldId, values: impl IntoIterator<Item = CustomFieldValue>) -> Self {
        CustomField {
            id,
            name: None,
            code: None,
            field_type: None,
            values: values.into_iter().collect(),
        }
    }

    /// The first value, the only one of most field types.
    pub fn first(&self) -> Option<&CustomFieldValue> {
        self.values.first()
    }

    /// The text of the first value that has one: the single value of a text or select field,
    /// the first of a multitext or multiselect. `None` when no value is a non-empty string; see
    /// [`first_text`](Self::first_text) for numbers and checkboxes.
    pub fn text(&self) -> Option<&str> {
        self.texts().next()
    }

    /// Every value that is a non-empty string, in the order sent (a multiselect may send
    /// option ids alone): every phone number of a contact's `PHONE` field.
    pub fn texts(&self) -> impl Iterator<Item = &str> {
        self.values.iter().filter_map(CustomFieldValue::as_str)
    }

    /// The first value as text, numbers and booleans formatted (see
    /// [`CustomFieldValue::as_text`]).
    pub fn first_text(&self) -> Option<String> {
        self.first().and_then(CustomFieldValue::as_text)
    }

    /// The option of the first value that has one: the chosen option of a select or radio
    /// button. `None` for fields without options.
    pub fn enum_id(&self) -> Option<EnumId> {
        self.enum_ids().next()
    }

    /// Every value's option in the order sent, skipping values without one: the chosen options
    /// of a multiselect.
    pub fn enum_ids(&self) -> impl Iterator<Item = EnumId> + '_ {
        self.values.iter().filter_map(|value| value.enum_id)
    }

    /// The first value that has one, as an integer: a date or date-time field's Unix seconds
    /// (a number in the API, text in a webhook body), or a whole-number field. `None` when
    /// there is no value or it is not an integer.
    pub fn unix_seconds(&self) -> Option<i64> {
        self.values
            .iter()
            .find(|value| value.has_value())
            .and_then(CustomFieldValue::as_i64)
    }
}

/// One value of a custom field, as read and as written.
///
/// Reading: `value` is a string, number, bool or object depending on the field type (a date is
/// Unix seconds; a legal entity is an object), so it stays JSON; from a webhook body it is
/// always a string (or `null` when sent empty). Chained-list values carry
/// [`catalog_id`](Self::catalog_id) and [`catalog_element_id`](Self::catalog_element_id)
/// instead; anything else amoCRM sends is kept in [`extra`](Self::extra).
///
/// Writing: build one with a constructor per field type ([`text`](Self::text),
/// [`numeric`](Self::numeric), [`enum_id`](Self::enum_id), [`multitext`](Self::multitext),
/// [`timestamp`](Self::timestamp), [`chained_list`](Self::chained_list), ...). A value read from
/// amoCRM can be written back as it is.
///
/// ```
/// use amocrm_types::{CustomFieldValue, EnumId};
///
/// let phone = CustomFieldValue::multitext("MOB", "+79990001122");
/// assert_eq!(
///     serde_json::to_value(&phone)?,
///     serde_json::json!({"value": "+79990001122", "enum_code": "MOB"})
/// );
/// assert_eq!(CustomFieldValue::enum_id(4035).enum_id, Some(EnumId(4035)));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[non_exhaustive]
pub struct CustomFieldValue {
    /// The value; `null` when the field type has none (chained lists, options given by id).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub value: Value,
    /// The chosen option of a select, multiselect or radio button value (a webhook body's
    /// `values[j][enum]`, which the webhook parser reads into this field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enum_id: Option<EnumId>,
    /// The kind of a multitext value (`WORK`, `MOB`, ...). amoCRM's contact examples spell it
    /// `enum`; both are read.
    #[serde(default, alias = "enum", skip_serializing_if = "Option::is_none")]
    pub enum_code: Option<String>,
    /// A smart address's part: `address_line_1`, `address_line_2`, `city`, `state`, `zip`,
    /// `country`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtype: Option<String>,
    /// A chained list's catalog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_id: Option<CatalogId>,
    /// A chained list's element of that catalog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_element_id: Option<CatalogElementId>,
    /// Keys this crate does not model, kept as received and written back as they are.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl CustomFieldValue {
    fn of(value: Value) -> Self {
        CustomFieldValue {
            value,
            ..CustomFieldValue::default()
        }
    }

    /// A text, textarea, url or street address value; also a select, multiselect or
    /// radio button choice given by its text.
    pub fn text(text: impl Into<String>) -> Self {
        CustomFieldValue::of(Value::String(text.into()))
    }

    /// A numeric value; whole numbers are sent without a fraction.
    pub fn numeric(number: f64) -> Self {
        let value = if number.fract() == 0.0 && number.abs() < 9.0e15 {
            Value::from(number as i64)
        } else {
            serde_json::Number::from_f64(number).map_or(Value::Null, Value::Number)
        };
        CustomFieldValue::of(value)
    }

    /// A checkbox value.
    pub fn checkbox(checked: bool) -> Self {
        CustomFieldValue::of(Value::Bool(checked))
    }

    /// A select, multiselect or radio button choice by its id (one value per chosen option of
    /// a multiselect).
    pub fn enum_id(enum_id: impl Into<EnumId>) -> Self {
        CustomFieldValue {
            enum_id: Some(enum_id.into()),
            ..CustomFieldValue::default()
        }
    }

    /// A date, date_time or birthday value.
    #[cfg(feature = "chrono")]
    pub fn date(at: chrono::DateTime<chrono::Utc>) -> Self {
        CustomFieldValue::timestamp(at.timestamp())
    }

    /// A date, date_time or birthday value as Unix seconds.
    pub fn timestamp(unix_seconds: i64) -> Self {
        CustomFieldValue::of(Value::from(unix_seconds))
    }

    /// A multitext value (phone, e-mail, messenger) with its kind: `WORK`, `WORKDD`, `MOB`,
    /// `FAX`, `HOME`, `PRIV`, `OTHER`.
    pub fn multitext(enum_code: impl Into<String>, value: impl Into<String>) -> Self {
        CustomFieldValue {
            value: Value::String(value.into()),
            enum_code: Some(enum_code.into()),
            ..CustomFieldValue::default()
        }
    }

    /// One part of a smart address (`subtype`: `address_line_1`, `address_line_2`, `city`,
    /// `state`, `zip`, `country`).
    pub fn smart_address(subtype: impl Into<String>, value: impl Into<String>) -> Self {
        CustomFieldValue {
            value: Value::String(value.into()),
            subtype: Some(subtype.into()),
            ..CustomFieldValue::default()
        }
    }

    /// A legal entity's details.
    pub fn legal_entity(entity: LegalEntity) -> Self {
        CustomFieldValue::of(serde_json::to_value(entity).unwrap_or(Value::Null))
    }

    /// A chained list value: an element of a catalog.
    pub fn chained_list(
        catalog_id: impl Into<CatalogId>,
        catalog_element_id: impl Into<CatalogElementId>,
    ) -> Self {
        CustomFieldValue {
            catalog_id: Some(catalog_id.into()),
            catalog_element_id: Some(catalog_element_id.into()),
            ..CustomFieldValue::default()
        }
    }

    /// A chained list value's catalog and element.
    pub fn catalog_element(&self) -> Option<(CatalogId, CatalogElementId)> {
        Some((self.catalog_id?, self.catalog_element_id?))
    }

    /// Whether [`value`](Self::value) holds anything: not `null`, not an empty string.
    pub fn has_value(&self) -> bool {
        match &self.value {
            Value::Null => false,
            Value::String(text) => !text.is_empty(),
            _ => true,
        }
    }

    /// The value when it is a non-empty string, without copying.
    pub fn as_str(&self) -> Option<&str> {
        self.value.as_str().filter(|text| !text.is_empty())
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
/// [`CustomFieldValue::legal_entity`].
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

/// Names a custom field: by id, or by code for predefined fields (`PHONE`, `EMAIL`).
///
/// ```
/// use amocrm_types::{CustomFieldId, FieldRef};
///
/// assert_eq!(FieldRef::parse("771001"), FieldRef::Id(CustomFieldId(771001)));
/// assert_eq!(FieldRef::parse(" UTM_SOURCE "), FieldRef::Code("UTM_SOURCE".into()));
/// assert_eq!(FieldRef::from(CustomFieldId(3)).to_string(), "3");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FieldRef {
    /// The field's id (`field_id`).
    Id(CustomFieldId),
    /// The field's code (`field_code`, e.g. `PHONE`, `UTM_SOURCE`).
    Code(String),
}

impl FieldRef {
    /// A field named as text: an id when it is a whole number, a code otherwise (surrounding
    /// whitespace dropped).
    pub fn parse(field: &str) -> FieldRef {
        let field = field.trim();
        match field.parse() {
            Ok(id) => FieldRef::Id(id),
            Err(_) => FieldRef::Code(field.to_owned()),
        }
    }

    /// Whether `field` is the one named: the same id, or a code equal without regard to ASCII
    /// case.
    pub fn matches(&self, field: &CustomField) -> bool {
        match self {
            FieldRef::Id(id) => field.id == *id,
            FieldRef::Code(code) => field
                .code
                .as_deref()
                .is_some_and(|c| c.eq_ignore_ascii_case(code)),
        }
    }
}

impl std::fmt::Display for FieldRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FieldRef::Id(id) => id.fmt(f),
            FieldRef::Code(code) => f.write_str(code),
        }
    }
}

impl From<CustomFieldId> for FieldRef {
    fn from(id: CustomFieldId) -> Self {
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

/// Finding fields in a list of them (an entity's `custom_fields_values`).
///
/// ```
/// use amocrm_types::{CustomField, CustomFieldId, CustomFieldValue, CustomFieldsExt, FieldRef};
///
/// let mut phone = CustomField::new(CustomFieldId(1), [CustomFieldValue::multitext("WORK", "+7 999")]);
/// phone.code = Some("PHONE".into());
/// let fields = vec![phone];
/// assert_eq!(fields.field_by_code("phone").and_then(CustomField::text), Some("+7 999"));
/// assert!(fields.field(CustomFieldId(2)).is_none());
/// assert!(fields.find(&FieldRef::Id(CustomFieldId(1))).is_some());
/// ```
pub trait CustomFieldsExt {
    /// The first field with this id.
    fn field(&self, id: CustomFieldId) -> Option<&CustomField>;
    /// The first field with this `field_code`, compared without regard to ASCII case
    /// (`PHONE`, `EMAIL`).
    fn field_by_code(&self, code: &str) -> Option<&CustomField>;
    /// The first field `field` names (see [`FieldRef::matches`]).
    fn find(&self, field: &FieldRef) -> Option<&CustomField>;
}

impl CustomFieldsExt for [CustomField] {
    fn field(&self, id: CustomFieldId) -> Option<&CustomField> {
        self.iter().find(|f| f.id == id)
    }

    fn field_by_code(&self, code: &str) -> Option<&CustomField> {
        self.iter().find(|f| {
            f.code
                .as_deref()
                .is_some_and(|c| c.eq_ignore_ascii_case(code))
        })
    }

    fn find(&self, field: &FieldRef) -> Option<&CustomField> {
        self.iter().find(|f| field.matches(f))
    }
}

impl CustomFieldsExt for Option<Vec<CustomField>> {
    fn field(&self, id: CustomFieldId) -> Option<&CustomField> {
        self.as_deref().and_then(|fields| fields.field(id))
    }

    fn field_by_code(&self, code: &str) -> Option<&CustomField> {
        self.as_deref()
            .and_then(|fields| fields.field_by_code(code))
    }

    fn find(&self, field: &FieldRef) -> Option<&CustomField> {
        self.as_deref().and_then(|fields| fields.find(field))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn api_and_webhook_shapes_read_alike() {
        let api: CustomField = serde_json::from_value(json!({
            "field_id": 771005, "field_name": "Радио", "field_code": null,
            "values": [{"value": "Да", "enum_id": 551301}]
        }))
        .unwrap();
        let webhook: CustomField = serde_json::from_value(json!({
            "id": 771005, "name": "Радио", "values": [{"value": "Да", "enum_id": 551301}]
        }))
        .unwrap();
        assert_eq!(api, webhook);
        assert_eq!(api.enum_id(), Some(EnumId(551301)));
        assert_eq!(
            serde_json::to_value(&api).unwrap(),
            json!({"field_id": 771005, "field_name": "Радио", "field_code": null,
                   "field_type": null, "values": [{"value": "Да", "enum_id": 551301}]})
        );
    }

    #[test]
    fn null_values_are_no_values() {
        let field: CustomField =
            serde_json::from_value(json!({"field_id": 1, "values": null})).unwrap();
        assert!(field.values.is_empty());
        assert_eq!((field.text(), field.unix_seconds()), (None, None));
    }

    #[test]
    fn readers_skip_empty_values() {
        let field = CustomField::new(
            CustomFieldId(1),
            [
                CustomFieldValue::enum_id(5001),
                CustomFieldValue::text(""),
                CustomFieldValue::text("GPS"),
                CustomFieldValue::enum_id(5003),
            ],
        );
        assert_eq!(field.text(), Some("GPS"));
        assert_eq!(field.texts().collect::<Vec<_>>(), ["GPS"]);
        assert_eq!(
            field.enum_ids().collect::<Vec<_>>(),
            [EnumId(5001), EnumId(5003)]
        );
        assert_eq!(field.first_text(), None, "the first value has no text");
    }

    #[test]
    fn dates_read_as_numbers_or_text() {
        let api = CustomField::new(CustomFieldId(1), [CustomFieldValue::timestamp(1764000000)]);
        let webhook = CustomField::new(CustomFieldId(1), [CustomFieldValue::text("1764000000")]);
        assert_eq!(api.unix_seconds(), Some(1764000000));
        assert_eq!(webhook.unix_seconds(), Some(1764000000));
        assert_eq!(api.first_text().as_deref(), Some("1764000000"));
        let words = CustomField::new(CustomFieldId(1), [CustomFieldValue::text("tomorrow")]);
        assert_eq!(words.unix_seconds(), None);
    }

    #[test]
    fn values_keep_unknown_keys_and_write_back() {
        let raw = json!({"value": "Lenina 1", "subtype": "address_line_1", "extra_key": [1]});
        let value: CustomFieldValue = serde_json::from_value(raw.clone()).unwrap();
        assert_eq!(value.extra["extra_key"], json!([1]));
        assert_eq!(serde_json::to_value(&value).unwrap(), raw);

        let chained: CustomFieldValue =
            serde_json::from_value(json!({"catalog_id": 5103, "catalog_element_id": 3})).unwrap();
        assert_eq!(
            chained.catalog_element(),
            Some((CatalogId(5103), CatalogElementId(3)))
        );
        assert_eq!(chained, CustomFieldValue::chained_list(5103, 3));
    }

    #[test]
    fn field_refs_match_by_id_or_code() {
        let mut field = CustomField::new(CustomFieldId(7), []);
        field.code = Some("UTM_SOURCE".into());
        assert!(FieldRef::Id(CustomFieldId(7)).matches(&field));
        assert!(FieldRef::parse("utm_source").matches(&field));
        assert!(!FieldRef::Id(CustomFieldId(8)).matches(&field));
        assert!(!FieldRef::parse("UTM").matches(&field));
        assert_eq!(FieldRef::parse("7"), FieldRef::Id(CustomFieldId(7)));
        assert_eq!(FieldRef::parse("7a"), FieldRef::Code("7a".into()));
    }
}
