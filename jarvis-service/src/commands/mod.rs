//! One module per `jarvis` command. The command line (`cli.rs`) parses the arguments and calls
//! these with plain values; a command may build the service ([`crate::startup`]), its state, the
//! amoCRM client ([`crate::amo`]) or a worker, and nothing below imports a command.

pub mod auth;
pub mod catch_up;
pub mod config;
pub mod events;
pub mod link;
pub mod migrate;
pub mod serve;
pub mod status;
pub mod sync;
pub mod webhooks;
