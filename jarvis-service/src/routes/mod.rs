//! HTTP routes.

pub mod health;
pub mod process_webhook;
pub mod status;
pub mod webhook;
