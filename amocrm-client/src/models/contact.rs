//! Contacts: `GET /api/v4/contacts`, `GET /api/v4/contacts/{id}`.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::{
    AccountId, CompanyId, ContactId, CustomFieldValue, CustomFieldsExt, EntityRef, FieldId, LeadId,
    ListItem, Tag, UserId, keep_raw, null_as_default, string_enum, unix_to_utc,
};

string_enum!(
    /// What `with=` can add to a contact.
    ContactWith {
        Leads => "leads",
        Customers => "customers",
        CatalogElements => "catalog_elements",
    }
);

/// A contact as `GET /api/v4/contacts` returns it. [`Contact::raw`] holds the whole object.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(remote = "Self")]
#[non_exhaustive]
pub struct Contact {
    pub id: ContactId,
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub last_name: Option<String>,
    #[serde(default)]
    pub responsible_user_id: Option<UserId>,
    #[serde(default)]
    pub group_id: Option<u64>,
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
    pub closest_task_at: Option<i64>,
    #[serde(default)]
    pub is_deleted: bool,
    #[serde(default)]
    pub is_unsorted: bool,
    /// Phones and e-mails are custom fields with codes `PHONE` and `EMAIL`.
    #[serde(default)]
    pub custom_fields_values: Option<Vec<CustomFieldValue>>,
    #[serde(default)]
    pub account_id: Option<AccountId>,
    #[serde(rename = "_embedded", default)]
    pub embedded: ContactEmbedded,
    #[serde(skip)]
    raw: Value,
}
keep_raw!(Contact);

impl ListItem for Contact {
    const KEY: &'static str = "contacts";
}

/// `_embedded` of a contact; `leads` is present only with `with=leads`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct ContactEmbedded {
    #[serde(default, deserialize_with = "null_as_default")]
    pub tags: Vec<Tag>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub leads: Vec<EntityRef<LeadId>>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub companies: Vec<EntityRef<CompanyId>>,
}

impl Contact {
    pub fn created_at_utc(&self) -> Option<DateTime<Utc>> {
        self.created_at.and_then(unix_to_utc)
    }

    pub fn updated_at_utc(&self) -> Option<DateTime<Utc>> {
        self.updated_at.and_then(unix_to_utc)
    }

    /// The custom fields, empty when none is filled.
    pub fn custom_fields(&self) -> &[CustomFieldValue] {
        self.custom_fields_values.as_deref().unwrap_or(&[])
    }

    pub fn custom_field(&self, id: FieldId) -> Option<&CustomFieldValue> {
        self.custom_fields().field(id)
    }

    pub fn custom_field_by_code(&self, code: &str) -> Option<&CustomFieldValue> {
        self.custom_fields().field_by_code(code)
    }

    /// Every phone number (the `PHONE` field), as entered.
    pub fn phones(&self) -> Vec<String> {
        self.custom_field_by_code("PHONE")
            .map(CustomFieldValue::texts)
            .unwrap_or_default()
    }

    /// Every e-mail address (the `EMAIL` field).
    pub fn emails(&self) -> Vec<String> {
        self.custom_field_by_code("EMAIL")
            .map(CustomFieldValue::texts)
            .unwrap_or_default()
    }
}
