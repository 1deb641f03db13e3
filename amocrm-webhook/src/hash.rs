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

use sha2::{Digest, Sha256};

use crate::event::WebhookEvent;
use crate::fields::Field;

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
    write_sorted(event.fields.as_field(), out)?;
    out.write_all(b"]")
}

fn write_sorted(field: Field<'_>, out: &mut impl Write) -> io::Result<()> {
    if let Some(text) = field.as_str() {
        return Ok(serde_json::to_writer(&mut *out, text)?);
    }
    if field.is_list() {
        out.write_all(b"[")?;
        for (i, (_, item)) in field.entries().enumerate() {
            if i > 0 {
                out.write_all(b",")?;
            }
            write_sorted(item, out)?;
        }
        return out.write_all(b"]");
    }
    out.write_all(b"{")?;
    if field.entries().is_sorted_by(|a, b| key(a) <= key(b)) {
        write_members(field.entries(), out)?;
    } else {
        let mut entries: Vec<_> = field.entries().collect();
        entries.sort_unstable_by(|a, b| key(a).cmp(key(b)));
        write_members(entries.into_iter(), out)?;
    }
    out.write_all(b"}")
}

fn key<'a>(entry: &(Option<&'a str>, Field<'a>)) -> &'a [u8] {
    entry.0.unwrap_or_default().as_bytes()
}

fn write_members<'a>(
    members: impl Iterator<Item = (Option<&'a str>, Field<'a>)>,
    out: &mut impl Write,
) -> io::Result<()> {
    for (i, (key, child)) in members.enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        serde_json::to_writer(&mut *out, key.unwrap_or_default())?;
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
