//! Leads ("deals"): `GET /api/v4/leads`, `GET /api/v4/leads/{id}`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::write::{InputEmbedded, common_input_methods};
use super::{
    AccountId, CompanyId, CompanyInput, ContactId, ContactInput, CustomField, CustomFieldId,
    CustomFieldInput, CustomFieldsExt, EntityRef, LeadId, ListItem, LossReasonId, PipelineId,
    StatusId, Tag, TagRef, UserId, keep_raw, lenient_i64, null_as_default, string_enum,
    unix_to_utc,
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
    /// The lead's id.
    pub id: LeadId,
    /// The lead's name.
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    /// The budget, in the account's currency.
    #[serde(default, deserialize_with = "lenient_i64")]
    pub price: Option<i64>,
    /// The responsible user.
    #[serde(default)]
    pub responsible_user_id: Option<UserId>,
    /// The responsible user's group.
    #[serde(default)]
    pub group_id: Option<u64>,
    /// The stage (within `pipeline_id`).
    #[serde(default)]
    pub status_id: Option<StatusId>,
    /// The pipeline.
    #[serde(default)]
    pub pipeline_id: Option<PipelineId>,
    /// Why a lost lead was lost.
    #[serde(default)]
    pub loss_reason_id: Option<u64>,
    /// The source (needs `with=source_id`).
    #[serde(default)]
    pub source_id: Option<u64>,
    /// Who created it (0: the robot).
    #[serde(default)]
    pub created_by: Option<UserId>,
    /// Who changed it last.
    #[serde(default)]
    pub updated_by: Option<UserId>,
    /// Unix seconds; see [`Lead::created_at_utc`].
    #[serde(default)]
    pub created_at: Option<i64>,
    /// Unix seconds.
    #[serde(default)]
    pub updated_at: Option<i64>,
    /// Unix seconds; set once the lead is won or lost.
    #[serde(default)]
    pub closed_at: Option<i64>,
    /// Unix seconds of the nearest open task.
    #[serde(default)]
    pub closest_task_at: Option<i64>,
    /// Whether it is in the bin.
    #[serde(default)]
    pub is_deleted: bool,
    /// `null` when no custom field is filled.
    #[serde(default)]
    pub custom_fields_values: Option<Vec<CustomField>>,
    /// Lead score.
    #[serde(default)]
    pub score: Option<i64>,
    /// The account.
    #[serde(default)]
    pub account_id: Option<AccountId>,
    /// Time spent on the lead, in seconds.
    #[serde(default)]
    pub labor_cost: Option<i64>,
    /// Tags, contacts and companies.
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
    /// The lead's tags.
    #[serde(default, deserialize_with = "null_as_default")]
    pub tags: Vec<Tag>,
    /// Linked contacts (with `with=contacts`).
    #[serde(default, deserialize_with = "null_as_default")]
    pub contacts: Vec<EntityRef<ContactId>>,
    /// The linked company.
    #[serde(default, deserialize_with = "null_as_default")]
    pub companies: Vec<EntityRef<CompanyId>>,
}

impl Lead {
    /// `created_at` as a date-time.
    pub fn created_at_utc(&self) -> Option<DateTime<Utc>> {
        self.created_at.and_then(unix_to_utc)
    }

    /// `updated_at` as a date-time.
    pub fn updated_at_utc(&self) -> Option<DateTime<Utc>> {
        self.updated_at.and_then(unix_to_utc)
    }

    /// `closed_at` as a date-time.
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

/// A lead to create ([`Leads::create`](crate::resources::leads::Leads::create)) or the changes
/// to make to one ([`Leads::update`](crate::resources::leads::Leads::update)). Only what is set
/// is sent; only what amoCRM accepts can be set.
///
/// ```
/// use amocrm_client::{CustomFieldInput, CustomFieldId, CustomFieldValue, LeadInput, PipelineId, StatusId};
///
/// let lead = LeadInput::new()
///     .name("Rent: BMW X5, 3 days")
///     .price(45_000)
///     .status(PipelineId(1113), StatusId(2030))
///     .custom_field(CustomFieldInput::new(CustomFieldId(3), [CustomFieldValue::text("X5")]))
///     .add_tag("website");
/// # let _ = lead;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[must_use]
pub struct LeadInput {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    price: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_id: Option<StatusId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pipeline_id: Option<PipelineId>,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    closed_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    loss_reason_id: Option<LossReasonId>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    custom_fields_values: Vec<CustomFieldInput>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tags_to_add: Vec<TagRef>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tags_to_delete: Vec<TagRef>,
    #[serde(rename = "_embedded", skip_serializing_if = "InputEmbedded::is_empty")]
    embedded: InputEmbedded,
}

impl LeadInput {
    /// Nothing set yet.
    pub fn new() -> Self {
        LeadInput::default()
    }

    /// The lead's name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The budget, in the account's currency.
    pub fn price(mut self, price: i64) -> Self {
        self.price = Some(price);
        self
    }

    /// Puts (or moves) the lead to a stage of a pipeline.
    pub fn status(mut self, pipeline: PipelineId, status: StatusId) -> Self {
        self.pipeline_id = Some(pipeline);
        self.status_id = Some(status);
        self
    }

    /// Moves the lead to another stage of its current pipeline (or, on create, of the main
    /// pipeline). Stages 142 (won) and 143 (lost) exist in every pipeline.
    pub fn status_id(mut self, status: StatusId) -> Self {
        self.status_id = Some(status);
        self
    }

    /// When the lead was closed.
    pub fn closed_at(mut self, at: DateTime<Utc>) -> Self {
        self.closed_at = Some(at.timestamp());
        self
    }

    /// Why the lead was lost (with the lost stage, 143).
    pub fn loss_reason(mut self, reason: LossReasonId) -> Self {
        self.loss_reason_id = Some(reason);
        self
    }

    common_input_methods!();
}

/// A lead with its new contact and company, for
/// [`Leads::create_complex`](crate::resources::leads::Leads::create_complex).
#[derive(Debug, Clone, Default, PartialEq)]
#[must_use]
pub struct ComplexLead {
    pub(crate) lead: LeadInput,
    pub(crate) contact: Option<ContactInput>,
    pub(crate) company: Option<CompanyInput>,
}

impl ComplexLead {
    /// A lead without contact or company yet.
    pub fn new(lead: LeadInput) -> Self {
        ComplexLead {
            lead,
            contact: None,
            company: None,
        }
    }

    /// The contact to create with the lead (at most one).
    pub fn contact(mut self, contact: ContactInput) -> Self {
        self.contact = Some(contact);
        self
    }

    /// The company to create with the lead (at most one); a new contact and company are
    /// linked to each other too.
    pub fn company(mut self, company: CompanyInput) -> Self {
        self.company = Some(company);
        self
    }

    pub(crate) fn to_json(&self) -> serde_json::Result<Value> {
        let mut lead = serde_json::to_value(&self.lead)?;
        let object = lead
            .as_object_mut()
            .ok_or_else(|| serde::ser::Error::custom("a lead serializes to an object"))?;
        let embedded = object
            .entry("_embedded")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(embedded) = embedded.as_object_mut() {
            if let Some(contact) = &self.contact {
                embedded.insert(
                    "contacts".into(),
                    Value::Array(vec![serde_json::to_value(contact)?]),
                );
            }
            if let Some(company) = &self.company {
                embedded.insert(
                    "companies".into(),
                    Value::Array(vec![serde_json::to_value(company)?]),
                );
            }
        }
        if object
            .get("_embedded")
            .is_some_and(|e| e.as_object().is_some_and(|m| m.is_empty()))
        {
            object.remove("_embedded");
        }
        Ok(lead)
    }
}

/// One lead created by [`Leads::create_complex`](crate::resources::leads::Leads::create_complex).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ComplexCreated {
    /// Positions in the caller's list of the items this answer covers: one, or several when
    /// duplicate control merged them into one lead.
    pub indices: Vec<usize>,
    /// The lead (an existing one when `merged`).
    pub lead_id: LeadId,
    /// The contact created or merged into, if one was given.
    pub contact_id: Option<ContactId>,
    /// The company created or merged into, if one was given.
    pub company_id: Option<CompanyId>,
    /// Whether duplicate control merged the item into an existing lead.
    pub merged: bool,
    /// The answer's item as received.
    pub raw: Value,
}
