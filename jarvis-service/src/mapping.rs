//! Turns what amoCRM tells us (webhook events, API JSON) into states of the mirror tables: the mapping
//! is library code in `jarvis_store::mirror`, shared with any service that mirrors in-process.

pub use jarvis_store::mirror::*;
