//! Contacts: `GET /api/v4/contacts`, `GET /api/v4/contacts/{id}`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::write::{InputEmbedded, common_input_methods};
use super::{
    AccountId, CompanyId, ContactId, CustomField, CustomFieldId, CustomFieldInput, CustomFieldsExt,
    EntityRef, LeadId, ListItem, Tag, TagRef, UserId, keep_raw, null_as_default, string_enum,
    unix_to_utc,
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
    /// The contact's id.
    pub id: ContactId,
    /// Full name.
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    /// First name.
    #[serde(default)]
    pub first_name: Option<String>,
    /// Last name.
    #[serde(default)]
    pub last_name: Option<String>,
    /// The responsible user.
    #[serde(default)]
    pub responsible_user_id: Option<UserId>,
    /// The responsible user's group.
    #[serde(default)]
    pub group_id: Option<u64>,
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
    /// Unix seconds of the nearest open task.
    #[serde(default)]
    pub closest_task_at: Option<i64>,
    /// Whether it is in the bin.
    #[serde(default)]
    pub is_deleted: bool,
    /// Whether it came with an incoming (unsorted) lead not yet accepted.
    #[serde(default)]
    pub is_unsorted: bool,
    /// Phones and e-mails are custom fields with codes `PHONE` and `EMAIL`.
    #[serde(default)]
    pub custom_fields_values: Option<Vec<CustomField>>,
    /// The account.
    #[serde(default)]
    pub account_id: Option<AccountId>,
    /// Tags, leads and companies.
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
    /// The contact's tags.
    #[serde(default, deserialize_with = "null_as_default")]
    pub tags: Vec<Tag>,
    /// Linked leads (with `with=leads`).
    #[serde(default, deserialize_with = "null_as_default")]
    pub leads: Vec<EntityRef<LeadId>>,
    /// The linked company.
    #[serde(default, deserialize_with = "null_as_default")]
    pub companies: Vec<EntityRef<CompanyId>>,
}

impl Contact {
    /// `created_at` as a date-time.
    pub fn created_at_utc(&self) -> Option<DateTime<Utc>> {
        self.created_at.and_then(unix_to_utc)
    }

    /// `updated_at` as a date-time.
    pub fn updated_at_utc(&self) -> Option<DateTime<Utc>> {
        self.updated_at.and_then(unix_to_utc)
    }

    /// The custom fields, empty when none is filled.
    pub fn custom_fields(&self) -> &[CustomField] {
        self.custom_fields_values.as_deref().unwrap_or(&[])
    }

    /// The custom field with this id, if filled.
    pub fn custom_field(&self, id: CustomFieldId) -> Option<&CustomField> {
        self.custom_fields().field(id)
    }

    /// The custom field with this code (case-insensitive), if filled.
    pub fn custom_field_by_code(&self, code: &str) -> Option<&CustomField> {
        self.custom_fields().field_by_code(code)
    }

    /// Every phone number (the `PHONE` field), as entered.
    pub fn phones(&self) -> Vec<String> {
        self.custom_field_by_code("PHONE")
            .map(|field| field.texts().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// Every e-mail address (the `EMAIL` field).
    pub fn emails(&self) -> Vec<String> {
        self.custom_field_by_code("EMAIL")
            .map(|field| field.texts().map(str::to_owned).collect())
            .unwrap_or_default()
    }
}

/// A contact to create ([`Contacts::create`](crate::resources::contacts::Contacts::create)),
/// changes to one, or the contact of a [`ComplexLead`](super::ComplexLead).
///
/// ```
/// use amocrm_client::{ContactInput, CustomFieldInput, CustomFieldValue};
///
/// let contact = ContactInput::new()
///     .first_name("Ivan")
///     .last_name("Petrov")
///     .custom_field(CustomFieldInput::new("PHONE", [CustomFieldValue::multitext("MOB", "+79990001122")]));
/// # let _ = contact;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[must_use]
pub struct ContactInput {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    responsible_user_id: Option<UserId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_by: Option<UserId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    updated_by: Option<UserId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    updated_at: Option<i64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    custom_fields_values: Vec<CustomFieldInput>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tags_to_add: Vec<TagRef>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tags_to_delete: Vec<TagRef>,
    #[serde(rename = "_embedded", skip_serializing_if = "InputEmbedded::is_empty")]
    embedded: InputEmbedded,
}

impl ContactInput {
    /// Nothing set yet.
    pub fn new() -> Self {
        ContactInput::default()
    }

    /// The full name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The first name.
    pub fn first_name(mut self, name: impl Into<String>) -> Self {
        self.first_name = Some(name.into());
        self
    }

    /// The last name.
    pub fn last_name(mut self, name: impl Into<String>) -> Self {
        self.last_name = Some(name.into());
        self
    }

    common_input_methods!();
}
