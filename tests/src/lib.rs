//! End-to-end tests live in `tests/*.rs` files beside this crate.
