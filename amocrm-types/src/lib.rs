//! The vocabulary shared by the amoCRM crates: one id type per kind of entity ([`LeadId`],
//! [`ContactId`], [`StatusId`], [`CustomFieldId`], ...) and the custom-field types
//! ([`CustomField`], one field with its values; [`CustomFieldValue`], one value).
//!
//! `amocrm-webhook` (parsing webhook bodies) and `amocrm-client` (the API v4 client) both answer
//! with these types and re-export this crate as `types`, so a lead id read from a webhook is the
//! very value the client takes to fetch that lead:
//!
//! ```
//! use amocrm_types::{CustomField, CustomFieldId, CustomFieldsExt, LeadId};
//!
//! // `leads[status][0][id]=31840021` in a webhook body...
//! let lead: LeadId = "31840021".parse()?;
//! // ...and `"id": 31840021` in the API's JSON.
//! assert_eq!(serde_json::from_str::<LeadId>("31840021")?, lead);
//!
//! // A lead's `custom_fields_values` as the API returns them.
//! let fields: Vec<CustomField> = serde_json::from_str(
//!     r#"[{"field_id": 771001, "field_name": "RentProg ID", "values": [{"value": "RP-48213"}]}]"#,
//! )?;
//! let rentprog = fields.field(CustomFieldId(771001)).expect("field 771001");
//! assert_eq!(rentprog.text(), Some("RP-48213"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Why a crate of its own
//!
//! A service that only receives webhooks depends on `amocrm-webhook` alone and must not build an
//! HTTP client, TLS and an async runtime to name a lead id. Putting the shared types in the API
//! client (behind a feature of the webhook crate) would make the light crate depend on the heavy
//! one; a third crate that both depend on keeps the webhook parser light and still gives both one
//! vocabulary. It depends on `serde` and `serde_json` only (a custom field's value is JSON:
//! text, a number, a flag or an object), both already needed by the two crates; the optional
//! `chrono` feature adds `CustomFieldValue::date`.

#![warn(missing_docs)]

pub mod custom_field;
pub mod id;

pub use custom_field::{
    CustomField, CustomFieldValue, CustomFieldsExt, FieldRef, FieldType, LegalEntity,
};
pub use id::{
    AccountId, CatalogElementId, CatalogId, CompanyId, ContactId, CustomFieldId, CustomerId,
    EnumId, EventId, LeadId, LossReasonId, NoteId, PipelineId, StatusId, TagId, TaskId, TaskTypeId,
    UserId, WebhookId,
};

/// The README's examples, compiled and run as doc tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
