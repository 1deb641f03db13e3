//! Companies: `GET /api/v4/companies`, `GET /api/v4/companies/{id}`.

use serde::Deserialize;
use serde_json::Value;

use super::{
    AccountId, CompanyId, ContactId, CustomFieldValue, CustomFieldsExt, EntityRef, FieldId, LeadId,
    ListItem, Tag, UserId, keep_raw, null_as_default, string_enum,
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
    pub id: CompanyId,
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
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
    pub custom_fields_values: Option<Vec<CustomFieldValue>>,
    #[serde(default)]
    pub account_id: Option<AccountId>,
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
    #[serde(default, deserialize_with = "null_as_default")]
    pub tags: Vec<Tag>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub leads: Vec<EntityRef<LeadId>>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub contacts: Vec<EntityRef<ContactId>>,
}

impl Company {
    pub fn custom_fields(&self) -> &[CustomFieldValue] {
        self.custom_fields_values.as_deref().unwrap_or(&[])
    }

    pub fn custom_field(&self, id: FieldId) -> Option<&CustomFieldValue> {
        self.custom_fields().field(id)
    }

    pub fn custom_field_by_code(&self, code: &str) -> Option<&CustomFieldValue> {
        self.custom_fields().field_by_code(code)
    }
}
