//! A typed client for the amoCRM / Kommo API v4: read and write leads, contacts, companies,
//! notes, tasks, links and tags with one shared token, rate limit and retry policy.
//!
//! # A short tour
//!
//! Build one [`Client`] per account and share it (clones share everything):
//!
//! ```no_run
//! use amocrm_client::{Client, RateLimit};
//!
//! # fn build() -> amocrm_client::Result<Client> {
//! let client = Client::builder()
//!     .subdomain("geodrive")
//!     .long_lived_token(std::env::var("AMOCRM_LONG_LIVED_TOKEN").unwrap_or_default())
//!     .rate_limit(RateLimit::with_budgets()) // 7/s, 250/min, 7,000/h
//!     .build()?;
//! # Ok(client)
//! # }
//! ```
//!
//! Reading: resource handles return typed models that keep the JSON as received
//! ([`Lead::raw`]); lists stream every page.
//!
//! ```no_run
//! # async fn run(client: amocrm_client::Client) -> amocrm_client::Result<()> {
//! use amocrm_client::{LeadId, LeadWith, LeadsFilter};
//! use futures::TryStreamExt;
//!
//! let lead = client.leads().get(LeadId(17657), &[LeadWith::Contacts]).await?;
//! let contacts = client.contacts().get_many(&lead.contact_ids(), &[]).await?;
//! println!("{} ({} contacts)", lead.name, contacts.len());
//!
//! let since = chrono::Utc::now() - chrono::Duration::hours(1);
//! let mut changed = client.leads().list(LeadsFilter::updated_since(since)).boxed_stream();
//! while let Some(lead) = changed.try_next().await? {
//!     println!("{} changed", lead.id);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Writing: builders accept only what amoCRM does and finish with `.send().await`; batch
//! writes are split into requests of 50 (at most 250) and answer one [`Written`] per item, in
//! the caller's order.
//!
//! ```no_run
//! # async fn run(client: amocrm_client::Client) -> amocrm_client::Result<()> {
//! use amocrm_client::{
//!     ComplexLead, ContactInput, CustomFieldInput, CustomFieldValue, EntityType, LeadId, LeadInput,
//!     NoteContent, NoteInput, PipelineId, StatusId, TaskInput,
//! };
//!
//! // A lead with its contact in one request.
//! let created = client
//!     .leads()
//!     .create_complex([ComplexLead::new(LeadInput::new().name("Website order").price(45_000))
//!         .contact(ContactInput::new().name("Ivan Petrov").custom_field(
//!             CustomFieldInput::new("PHONE", [CustomFieldValue::multitext("MOB", "+79990001122")]),
//!         ))])
//!     .send()
//!     .await?;
//! let lead = created[0].lead_id;
//!
//! // Move it, note why, and plan a call.
//! client
//!     .leads()
//!     .update(lead, LeadInput::new().status(PipelineId(1113), StatusId(2030)))
//!     .send()
//!     .await?;
//! client
//!     .notes(EntityType::Leads)
//!     .create([NoteInput::new(lead, NoteContent::common("Paid the deposit"))])
//!     .send()
//!     .await?;
//! let due = chrono::Utc::now() + chrono::Duration::hours(2);
//! client
//!     .tasks()
//!     .create([TaskInput::new("Confirm the delivery", due).for_entity(lead)])
//!     .send()
//!     .await?;
//! # Ok(())
//! # }
//! ```
//!
//! Anything not typed yet goes through [`Client::request`] with the same auth, limits and
//! retries.
//!
//! # Retries and writes
//!
//! amoCRM has no idempotency keys. Reads and PATCH (which sets the same values again) are
//! retried on 429, 5xx and transport errors. POST is retried only on 429, which amoCRM answers
//! before doing anything, and on connections never made; a POST that fails after being sent
//! returns [`Error::MaybeApplied`]: it may have been applied, so check before sending again.
//! A batch that fails part-way returns [`Error::PartiallyWritten`] with what was written. A 400
//! is [`Error::Validation`], whose [`ValidationError::index`] names the caller's refused item.
//!
//! # Pieces
//!
//! - Auth: a long-lived token, or OAuth 2.0 ([`OAuthConfig`] + a [`TokenStore`]) with refresh
//!   ahead of expiry and once on 401, single-flight, the rotated pair saved before it is used.
//! - A [`RateLimiter`] shared by every request of the account (7 requests/s by default, plus
//!   optional per-minute and per-hour budgets) and retries with backoff ([`RetryPolicy`]).
//! - Resources: [`leads`](Client::leads), [`contacts`](Client::contacts),
//!   [`companies`](Client::companies), [`notes`](Client::notes), [`tasks`](Client::tasks),
//!   [`links`](Client::links), [`tags`](Client::tags), [`events`](Client::events),
//!   [`webhooks`](Client::webhooks), [`account`](Client::account),
//!   [`custom_fields`](Client::custom_fields), [`pipelines`](Client::pipelines),
//!   [`users`](Client::users).
//! - Custom fields: an entity's [`CustomField`]s hold [`CustomFieldValue`]s that read every
//!   field type (chained lists included) and, built with their constructors, write them through
//!   [`CustomFieldInput`]; [`CustomFieldDefinition`]s name the account's fields and choices.
//! - Ids and custom-field types are `amocrm-types`' (re-exported as [`types`]), the ones
//!   `amocrm-webhook` answers with: a [`LeadId`] read from a webhook fetches that lead here.
//! - [`Client::usage`]: requests made by endpoint and status, for API budget reporting.
//!
//! Facts the documentation leaves open are configurable rather than assumed: token lifetimes
//! come from `expires_in`, the authorization page URL can be overridden
//! ([`ClientBuilder::authorization_endpoint`]), and rate budgets are settings.

#![warn(missing_docs)]

pub mod auth;
pub mod client;
pub mod error;
pub mod models;
pub mod rate_limit;
pub mod request;
pub mod resources;
pub mod retry;
pub mod usage;

/// The ids and custom-field types shared with `amocrm-webhook` (the `amocrm-types` crate).
pub use amocrm_types as types;
pub use auth::{
    AccessToken, AuthorizationCode, AuthorizationMode, ClientSecret, InMemoryTokenStore,
    JsonFileTokenStore, OAuthConfig, RefreshToken, SAVE_RETRY, TokenPair, TokenResponse,
    TokenStore,
};
pub use client::{Client, ClientBuilder, Domain, OAuth, Query};
pub use error::{BoxError, Error, Result, ValidationError, WrittenItem};
pub use http::Method;
pub use models::{
    Account, AccountId, AccountWith, CallParams, CatalogElementId, CatalogId, Company, CompanyId,
    CompanyInput, CompanyWith, ComplexCreated, ComplexLead, Contact, ContactId, ContactInput,
    ContactWith, CustomField, CustomFieldDefinition, CustomFieldEnum, CustomFieldId,
    CustomFieldInput, CustomFieldValue, CustomFieldsExt, CustomerId, EntityRef, EnumId, Event,
    EventId, EventType, FieldRef, FieldType, Lead, LeadId, LeadInput, LeadWith, LegalEntity, Link,
    LinkTarget, LossReasonId, Note, NoteContent, NoteId, NoteInput, NoteType, Pipeline, PipelineId,
    Status, StatusId, Tag, TagId, TagInput, TagRef, Task, TaskEntity, TaskId, TaskInput,
    TaskResult, TaskTypeId, User, UserId, UserWith, Webhook, WebhookId, WebhookSetting, Written,
};
pub use rate_limit::{DEFAULT_GUARD, RateLimit, RateLimiter};
pub use request::RawRequest;

/// Re-exported so that a [`TokenStore`] can be implemented without a direct `async-trait` dependency.
pub use async_trait::async_trait;
/// Re-exported for iterating [`ListRequest::pages`](resources::ListRequest::pages) and
/// [`stream`](resources::ListRequest::stream) with `.next().await` / `.try_next().await`.
pub use futures::{Stream, StreamExt, TryStreamExt};
pub use resources::companies::CompaniesFilter;
pub use resources::contacts::{ContactsFilter, EntityFilter};
pub use resources::events::EventsFilter;
pub use resources::leads::{ComplexCreate, LeadsFilter, MAX_COMPLEX_BATCH};
pub use resources::links::LinksFilter;
pub use resources::notes::NotesFilter;
pub use resources::tags::TagsFilter;
pub use resources::tasks::TasksFilter;
pub use resources::write::{BatchWrite, DEFAULT_BATCH, MAX_BATCH, SingleWrite};
pub use resources::{
    EntityType, ListRequest, MAX_PAGE_SIZE, Order, OrderField, Page, TimeRange, decode_list,
};
pub use retry::RetryPolicy;
pub use usage::{RequestEvent, RequestObserver, UsageSnapshot};

/// The README's examples, compiled and run as doc tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
