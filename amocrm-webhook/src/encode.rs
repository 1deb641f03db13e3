//! Writing a batch back as a form body, the way amoCRM (PHP's `http_build_query`) writes it.

use serde_json::{Map, Value};

use crate::batch::WebhookBatch;
use crate::event::WebhookEvent;
use crate::fields::{Field, Fields};
use crate::tree::SELF_KEY;

/// Encodes a batch as an `application/x-www-form-urlencoded` body with bracketed keys.
///
/// Events are written grouped by section, then by action, each in first-seen order, and
/// numbered from 0 within their action; [`unparsed`](WebhookBatch::unparsed) keys follow, then
/// the account block. Parsing the result gives back the same account and events (in that
/// grouped order) as long as the trees are ones parsing produces: no empty objects or arrays,
/// no object whose keys are exactly `0..n` (parsing makes those arrays), and the empty key
/// only for the scalar of a node that also has children.
pub fn encode_form(batch: &WebhookBatch) -> String {
    let mut out = String::with_capacity(1024);
    let mut groups: Vec<(&str, Vec<ActionGroup<'_>>)> = Vec::new();
    for event in &batch.events {
        let position = match groups.iter().position(|(s, _)| *s == event.section) {
            Some(position) => position,
            None => {
                groups.push((&event.section, Vec::new()));
                groups.len() - 1
            }
        };
        let actions = &mut groups[position].1;
        let action = event.action.as_str();
        match actions.iter_mut().find(|(a, _)| *a == action) {
            Some((_, events)) => events.push(event),
            None => actions.push((action, vec![event])),
        }
    }
    let mut key = String::new();
    for (section, actions) in groups {
        for (action, events) in actions {
            for (index, event) in events.into_iter().enumerate() {
                key.clear();
                push_name(&mut key, section);
                push_segment(&mut key, action);
                push_segment(&mut key, &index.to_string());
                write_field(&mut out, &mut key, event.fields.as_field());
            }
        }
    }
    for (name, value) in &batch.unparsed {
        key.clear();
        push_name(&mut key, name);
        write_field(&mut out, &mut key, Fields::from(value).as_field());
    }
    let account = &batch.account;
    let mut block = Map::new();
    if let Some(id) = account.id {
        block.insert("id".to_owned(), Value::String(id.to_string()));
    }
    if let Some(subdomain) = &account.subdomain {
        block.insert("subdomain".to_owned(), Value::String(subdomain.clone()));
    }
    if !account.links.is_empty() {
        block.insert("_links".to_owned(), Value::Object(account.links.clone()));
    }
    for (name, value) in &account.extra {
        block.insert(name.clone(), value.clone());
    }
    if !block.is_empty() {
        key.clear();
        push_name(&mut key, "account");
        write_field(
            &mut out,
            &mut key,
            Fields::from(Value::Object(block)).as_field(),
        );
    }
    out
}

/// The events of one action, in order.
type ActionGroup<'a> = (&'a str, Vec<&'a WebhookEvent>);

fn write_field(out: &mut String, key: &mut String, field: Field<'_>) {
    if let Some(text) = field.as_str() {
        return write_pair(out, key, text);
    }
    let len = key.len();
    for (index, (name, child)) in field.entries().enumerate() {
        match name {
            Some(SELF_KEY) => {}
            Some(name) => push_segment(key, name),
            None => push_segment(key, &index.to_string()),
        }
        write_field(out, key, child);
        key.truncate(len);
    }
}

fn write_pair(out: &mut String, key: &str, value: &str) {
    if !out.is_empty() {
        out.push('&');
    }
    out.push_str(key);
    out.push('=');
    push_encoded(out, value);
}

fn push_name(key: &mut String, name: &str) {
    push_encoded(key, name);
}

fn push_segment(key: &mut String, name: &str) {
    key.push_str("%5B");
    push_encoded(key, name);
    key.push_str("%5D");
}

/// Percent-encodes like PHP's `urlencode`: letters, digits and `-_.` stay, a space is `+`.
fn push_encoded(out: &mut String, text: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &byte in text.as_bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => out.push(byte as char),
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(HEX[usize::from(byte >> 4)] as char);
                out.push(HEX[usize::from(byte & 15)] as char);
            }
        }
    }
}
