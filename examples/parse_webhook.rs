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
        writeln!(out, "{}", event.summary())?;
    }
    Ok(())
}
