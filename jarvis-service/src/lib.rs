//! The amoCRM integration service: receives webhooks, stores every event durably and deduplicated,
//! fetches details from amoCRM only when needed and mirrors deals and contacts into the database.
//!
//! `main.rs` only parses the command line; [`startup::Application`] wires the parts:
//! [`routes`] (HTTP), [`worker`] (the queue consumer), [`amo`] (the amoCRM client and its token store),
//! [`mapping`] (amoCRM data to mirror rows), [`link`] (deals to the business's clients and
//! conversations), [`config`], [`telemetry`], [`metrics`] (every metric) and [`activity`] (what the
//! status page shows).

pub mod activity;
pub mod amo;
pub mod catch_up;
pub mod cli;
pub mod config;
pub mod error;
pub mod link;
pub mod mapping;
pub mod metrics;
pub mod routes;
pub mod spool;
pub mod startup;
pub mod subscription;
pub mod telemetry;
pub mod worker;

pub use config::Settings;
pub use startup::{AppState, Application, RunParts};
