//! Companies: `GET /api/v4/companies`, `GET /api/v4/companies/{id}`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::write::{InputEmbedded, common_input_methods};
use super::{
    AccountId, CompanyId, ContactId, CustomField, CustomFieldId, CustomFieldInput, CustomFieldsExt,
    EntityRef, LeadId, ListItem, Tag, TagRef, UserId, keep_raw, null_as_default, string_enum,
};

string_enum!(
    /// What `with=` can add to a company.
    CompanyWith {
        Leads => "leads",
        Contacts => "contacts",
        Customers => "customers",
        CatalogElements => "catalog_elements",
    }
);

/// A company. [`Company::raw`] holds the whole object.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(remote = "Self")]
#[non_exhaustive]
pub struct Company {
    /// The company's id.
    pub id: CompanyId,
    /// The company's name.
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
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
    /// `null` when no custom field is filled.
    #[serde(default)]
    pub custom_fields_values: Option<Vec<CustomField>>,
    /// The account.
    #[serde(default)]
    pub account_id: Option<AccountId>,
    /// Tags, leads and contacts.
    #[serde(rename = "_embedded", default)]
    pub embedded: CompanyEmbedded,
    #[serde(skip)]
    raw: Value,
}
keep_raw!(Company);

impl ListItem for Company {
    const KEY: &'static str = "companies";
}

/// `_embedded` of a company.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct CompanyEmbedded {
    /// The company's tags.
    #[serde(default, deserialize_with = "null_as_default")]
    pub tags: Vec<Tag>,
    /// Linked leads (with `with=leads`).
    #[serde(default, deserialize_with = "null_as_default")]
    pub leads: Vec<EntityRef<LeadId>>,
    /// Linked contacts (with `with=contacts`).
    #[serde(default, deserialize_with = "null_as_default")]
    pub contacts: Vec<EntityRef<ContactId>>,
}

impl Company {
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
}

/// A company to create ([`Companies::create`](crate::resources::companies::Companies::create)),
/// changes to one, or the company of a [`ComplexLead`](super::ComplexLead).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[must_use]
pub struct CompanyInput {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
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

impl CompanyInput {
    /// Nothing set yet.
    pub fn new() -> Self {
        CompanyInput::default()
    }

    /// The company's name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    common_input_methods!();
}
