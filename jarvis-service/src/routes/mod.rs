//! HTTP routes.

pub mod health;
pub mod process_webhook;
pub mod webhook;
