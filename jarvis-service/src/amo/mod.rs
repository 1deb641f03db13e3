//! The amoCRM side of the service: building the client from the settings with its tokens kept in
//! the database ([`client`]), recording API usage ([`usage`]) and watching for API access that only
//! a person can restore ([`access`]). Nothing here knows about the command line.

pub mod access;
pub mod client;
pub mod usage;

pub use access::{API_ACCESS_STATE, AccessBroken, AccessMonitor, AccessProblem, access_broken};
pub use client::{build_client, builder, oauth_config, save_pending_tokens};
/// OAuth tokens kept in `amocrm_oauth_tokens`, so every instance shares the rotated pair.
pub use jarvis_store::mirror::DbTokenStore;
pub use usage::{UsageRecorder, export_usage};
