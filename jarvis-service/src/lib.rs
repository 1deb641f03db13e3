//! The amoCRM integration service: receives webhooks, stores every event durably and deduplicated,
//! fetches details from amoCRM only when needed and mirrors deals and contacts into the database.
//!
//! # Layout
//!
//! The modules form layers; each imports only from the layers above it in this list, never from
//! one below, so the arrows run one way:
//!
//! 1. Settings and plumbing: [`config`], [`error`], [`telemetry`], [`metrics`] (every metric),
//!    [`activity`] (what the status page shows) and [`task`] (the stop signal, restarts after a
//!    panic).
//! 2. What the service works with: [`amo`] (the amoCRM client, its tokens in the database, API
//!    usage, broken access), [`mapping`] (amoCRM data to mirror rows), [`link`] (deals to the
//!    business's clients and conversations), [`spool`] (bodies waiting for the database),
//!    [`catch_up`] (gaps and reading them back from amoCRM's events feed) and [`subscription`]
//!    (keeping the webhook subscribed).
//! 3. [`state`]: the [`AppState`] every route and task shares.
//! 4. What runs on the state: [`routes`] (HTTP) and [`worker`] (the queue consumer, split into
//!    plan, fetch and settle, and the catch-up task beside it).
//! 5. [`startup`]: builds the state from settings, the router and the server, and runs the worker,
//!    the catch-up task and the spool's drainer ([`Application`]).
//! 6. [`commands`]: one module per CLI command; a command may use everything above.
//! 7. [`cli`]: the command line's arguments and the dispatch to [`commands`]; `main.rs` only calls it.
//!
//! Nothing imports [`startup`] but the commands, and nothing imports [`commands`] but [`cli`].

pub mod activity;
pub mod amo;
pub mod catch_up;
pub mod cli;
pub mod commands;
pub mod config;
pub mod error;
pub mod link;
pub mod mapping;
pub mod metrics;
pub mod routes;
pub mod spool;
pub mod startup;
pub mod state;
pub mod subscription;
pub mod task;
pub mod telemetry;
pub mod worker;

pub use config::Settings;
pub use startup::{Application, RunParts};
pub use state::AppState;
