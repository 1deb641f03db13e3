//! A typed client for the amoCRM / Kommo API v4.
//!
//! - [`Client`]: one per account, built with [`Client::builder`], cheap to clone and share.
//! - Auth: a long-lived token, or OAuth 2.0 ([`OAuthConfig`] + a [`TokenStore`]) with refresh
//!   ahead of expiry and once on 401, single-flight, the rotated pair saved before it is used.
//! - A [`RateLimiter`] shared by every request of the account (7 requests/s by default, plus
//!   optional per-minute and per-hour budgets) and retries with backoff ([`RetryPolicy`]).
//! - Resources: [`leads`](Client::leads), [`contacts`](Client::contacts),
//!   [`companies`](Client::companies), [`notes`](Client::notes), [`events`](Client::events),
//!   [`webhooks`](Client::webhooks), [`account`](Client::account),
//!   [`custom_fields`](Client::custom_fields), [`pipelines`](Client::pipelines),
//!   [`users`](Client::users). Models keep the JSON as received ([`Lead::raw`]).
//! - [`Client::usage`]: requests made by endpoint and status, for API budget reporting.
//!
//! ```no_run
//! use amocrm_client::{Client, LeadId, LeadWith, RateLimit};
//!
//! # async fn run() -> amocrm_client::Result<()> {
//! let client = Client::builder()
//!     .subdomain("geodrive")
//!     .long_lived_token(std::env::var("AMOCRM_LONG_LIVED_TOKEN").unwrap_or_default())
//!     .rate_limit(RateLimit::with_budgets()) // 7/s, 250/min, 7,000/h
//!     .build()?;
//!
//! let lead = client.leads().get(LeadId(17657), &[LeadWith::Contacts]).await?;
//! let contacts = client.contacts().get_many(&lead.contact_ids(), &[]).await?;
//! println!("{} ({} contacts), raw: {}", lead.name, contacts.len(), lead.raw());
//! println!("requests so far: {}", client.usage().total_requests());
//! # Ok(())
//! # }
//! ```
//!
//! Facts the documentation leaves open are configurable rather than assumed: token lifetimes
//! come from `expires_in`, the authorization page URL can be overridden
//! ([`ClientBuilder::authorization_endpoint`]), and rate budgets are settings.

pub mod auth;
pub mod client;
pub mod error;
pub mod models;
pub mod rate_limit;
pub mod resources;
pub mod retry;
pub mod usage;

pub use auth::{
    AccessToken, AuthorizationCode, AuthorizationMode, ClientSecret, InMemoryTokenStore,
    JsonFileTokenStore, OAuthConfig, RefreshToken, SAVE_RETRY, TokenPair, TokenResponse,
    TokenStore,
};
pub use client::{Client, ClientBuilder, Domain, OAuth, Query};
pub use error::{BoxError, Error, Result, ValidationError};
pub use models::{
    Account, AccountId, AccountWith, Company, CompanyId, CompanyWith, Contact, ContactId,
    ContactWith, CustomField, CustomFieldValue, CustomFieldsExt, EntityRef, Event, EventId,
    EventType, FieldId, FieldType, FieldValue, Lead, LeadId, LeadWith, Note, NoteId, NoteType,
    Pipeline, PipelineId, Status, StatusId, Tag, TagId, User, UserId, UserWith, Webhook, WebhookId,
    WebhookSetting,
};
pub use rate_limit::{DEFAULT_GUARD, RateLimit, RateLimiter};
pub use resources::companies::CompaniesFilter;
pub use resources::contacts::{ContactsFilter, EntityFilter};
pub use resources::events::EventsFilter;
pub use resources::leads::LeadsFilter;
pub use resources::notes::NotesFilter;
pub use resources::{
    EntityType, ListRequest, MAX_PAGE_SIZE, Order, OrderField, Page, TimeRange, decode_list,
};
pub use retry::RetryPolicy;
pub use usage::{RequestEvent, RequestObserver, UsageSnapshot};
