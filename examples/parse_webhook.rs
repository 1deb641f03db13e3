//! Reads one webhook body on stdin and prints one JSON line per event.
//!
//! ```sh
//! cargo run -p jarvis-examples --example parse_webhook < amocrm-webhook/tests/fixtures/lead_status.form
//! ```
//!
//! The body is read as JSON when its first non-space byte is `{`, else as a form.

use std::io::{Read, Write};

use amocrm_webhook::Parser;
use anyhow::Context;
use serde_json::json;

fn main() -> anyhow::Result<()> {
    let mut body = Vec::new();
    std::io::stdin()
        .read_to_end(&mut body)
        .context("reading the body from stdin")?;
    let batch = Parser::default()
        .parse(None, &body)
        .context("parsing the webhook body")?;
    let mut out = std::io::stdout().lock();
    for event in &batch.events {
        let line = json!({
            "event_type": event.event_type(),
            "entity_id": event.entity_id(),
            "account_id": event.account_id(),
            "event_hash": event.event_hash(),
            "fields": event.fields,
        });
        writeln!(out, "{line}")?;
    }
    Ok(())
}
