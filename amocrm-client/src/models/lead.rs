//! Leads ("deals"): `GET /api/v4/leads`, `GET /api/v4/leads/{id}`.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::{
    AccountId, CompanyId, ContactId, CustomFieldValue, CustomFieldsExt, EntityRef, FieldId, LeadId,
    ListItem, PipelineId, StatusId, Tag, UserId, keep_raw, lenient_i64, null_as_default,
    string_enum, unix_to_utc,
};

string_enum!(
    /// What `with=` can add to a lead.
    LeadWith {
        Contacts => "contacts",
        CatalogElements => "catalog_elements",
        IsPriceModifiedByRobot => "is_price_modified_by_robot",
        LossReason => "loss_reason",
        OnlyDeleted => "only_deleted",
        SourceId => "source_id",
    }
);

/// A lead as `GET /api/v4/leads` returns it. [`Lead::raw`] holds the whole object.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(remote = "Self")]
#[non_exhaustive]
pub struct Lead {
    pub id: LeadId,
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    /// The budget, in the account's currency.
    #[serde(default, deserialize_with = "lenient_i64")]
    pub price: Option<i64>,
    #[serde(default)]
    pub responsible_user_id: Option<UserId>,
    #[serde(default)]
    pub group_id: Option<u64>,
    #[serde(default)]
    pub status_id: Option<StatusId>,
    #[serde(default)]
    pub pipeline_id: Option<PipelineId>,
    #[serde(default)]
    pub loss_reason_id: Option<u64>,
    #[serde(default)]
    pub source_id: Option<u64>,
    #[serde(default)]
    pub created_by: Option<UserId>,
    #[serde(default)]
    pub updated_by: Option<UserId>,
    /// Unix seconds; see [`Lead::created_at_utc`].
    #[serde(default)]
    pub created_at: Option<i64>,
    #[serde(default)]
    pub updated_at: Option<i64>,
    #[serde(default)]
    pub closed_at: Option<i64>,
    #[serde(default)]
    pub closest_task_at: Option<i64>,
    #[serde(default)]
    pub is_deleted: bool,
    /// `null` when no custom field is filled.
    #[serde(default)]
    pub custom_fields_values: Option<Vec<CustomFieldValue>>,
    #[serde(default)]
    pub score: Option<i64>,
    #[serde(default)]
    pub account_id: Option<AccountId>,
    #[serde(default)]
    pub labor_cost: Option<i64>,
    #[serde(rename = "_embedded", default)]
    pub embedded: LeadEmbedded,
    #[serde(skip)]
    raw: Value,
}
keep_raw!(Lead);

impl ListItem for Lead {
    const KEY: &'static str = "leads";
}

/// `_embedded` of a lead. `contacts` is present only when asked with `with=contacts`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct LeadEmbedded {
    #[serde(default, deserialize_with = "null_as_default")]
    pub tags: Vec<Tag>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub contacts: Vec<EntityRef<ContactId>>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub companies: Vec<EntityRef<CompanyId>>,
}

impl Lead {
    pub fn created_at_utc(&self) -> Option<DateTime<Utc>> {
        self.created_at.and_then(unix_to_utc)
    }

    pub fn updated_at_utc(&self) -> Option<DateTime<Utc>> {
        self.updated_at.and_then(unix_to_utc)
    }

    pub fn closed_at_utc(&self) -> Option<DateTime<Utc>> {
        self.closed_at.and_then(unix_to_utc)
    }

    /// Ids of the linked contacts (needs `with=contacts`), the main contact first.
    pub fn contact_ids(&self) -> Vec<ContactId> {
        let mut contacts: Vec<_> = self.embedded.contacts.iter().collect();
        contacts.sort_by_key(|c| !c.is_main.unwrap_or(false));
        contacts.into_iter().map(|c| c.id).collect()
    }

    /// The main contact's id, if the lead has one (needs `with=contacts`).
    pub fn main_contact_id(&self) -> Option<ContactId> {
        self.embedded
            .contacts
            .iter()
            .find(|c| c.is_main == Some(true))
            .map(|c| c.id)
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
}
