//! The canonical form of an event and its SHA-256.
//!
//! The canonical form is one line of compact JSON, a 8-element array:
//!
//! ```text
//! ["amocrm-webhook/1",<account_id>,<subdomain>,<section>,<action>,<entity>,<entity_id>,<fields>]
//! ```
//!
//! - `account_id` is a JSON number or `null`; `subdomain` and `entity_id` a string or `null`;
//! - `section` and `action` are the raw names as strings; `entity` is the serde form of
//!   [`Entity`](crate::Entity) (`"lead"`, `{"note":{"parent":"lead"}}`, `{"other":"x"}`);
//! - `fields` is the field tree with every object's keys sorted by their UTF-8 bytes, arrays
//!   in order, no whitespace, strings escaped as `serde_json` escapes them.
//!
//! JSON quoting makes the form unambiguous: two different events never share it.

use std::io::{self, BufWriter, Write};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::event::WebhookEvent;

/// Version tag of the canonical form; change it if the form ever changes.
const FORM_TAG: &str = "amocrm-webhook/1";

struct HashWriter(Sha256);

impl Write for HashWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes the canonical form of `event` to `out`.
pub(crate) fn write_canonical(event: &WebhookEvent, out: &mut impl Write) -> io::Result<()> {
    out.write_all(b"[")?;
    serde_json::to_writer(&mut *out, FORM_TAG)?;
    out.write_all(b",")?;
    serde_json::to_writer(&mut *out, &event.account_id)?;
    out.write_all(b",")?;
    serde_json::to_writer(&mut *out, &event.subdomain)?;
    out.write_all(b",")?;
    serde_json::to_writer(&mut *out, &event.section)?;
    out.write_all(b",")?;
    serde_json::to_writer(&mut *out, event.action.as_str())?;
    out.write_all(b",")?;
    serde_json::to_writer(&mut *out, &event.entity)?;
    out.write_all(b",")?;
    serde_json::to_writer(&mut *out, &event.entity_id)?;
    out.write_all(b",")?;
    write_sorted(&event.fields, out)?;
    out.write_all(b"]")
}

fn write_sorted(value: &Value, out: &mut impl Write) -> io::Result<()> {
    match value {
        Value::Object(object) => {
            out.write_all(b"{")?;
            if object
                .keys()
                .is_sorted_by(|a, b| a.as_bytes() <= b.as_bytes())
            {
                write_members(object.iter(), out)?;
            } else {
                let mut entries: Vec<_> = object.iter().collect();
                entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                write_members(entries.into_iter(), out)?;
            }
            out.write_all(b"}")
        }
        Value::Array(items) => {
            out.write_all(b"[")?;
            for (i, child) in items.iter().enumerate() {
                if i > 0 {
                    out.write_all(b",")?;
                }
                write_sorted(child, out)?;
            }
            out.write_all(b"]")
        }
        scalar => Ok(serde_json::to_writer(&mut *out, scalar)?),
    }
}

fn write_members<'a>(
    members: impl Iterator<Item = (&'a String, &'a Value)>,
    out: &mut impl Write,
) -> io::Result<()> {
    for (i, (key, child)) in members.enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        serde_json::to_writer(&mut *out, key)?;
        out.write_all(b":")?;
        write_sorted(child, out)?;
    }
    Ok(())
}

/// The canonical form as a string, for debugging and documentation.
pub fn canonical_form(event: &WebhookEvent) -> String {
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = write_canonical(event, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn event_hash(event: &WebhookEvent) -> String {
    // The form is written in many small pieces; buffered, the hasher sees whole blocks.
    let mut out = BufWriter::with_capacity(HASH_BUFFER, HashWriter(Sha256::new()));
    // Writing to a hasher cannot fail, nor can flushing into it.
    let _ = write_canonical(event, &mut out);
    let _ = out.flush();
    let (hasher, _) = out.into_parts();
    hex::encode(hasher.0.finalize())
}

/// A few SHA-256 blocks.
const HASH_BUFFER: usize = 512;
