//! The entry points: limits, content-type dispatch and the parser value.

use crate::batch::{WebhookBatch, entries_of};
use crate::error::{Error, Result};
use crate::{form, json};

/// Bounds on what one body may hold. Real deliveries stay far below the defaults
/// (about 8 KB, 90 keys and 10 segments at most).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest body accepted, in bytes. Default 1 MiB.
    pub max_body_bytes: usize,
    /// Most keys accepted: form pairs, or leaves of a JSON body. Default 10,000.
    pub max_keys: usize,
    /// Most segments in one key, the name included (`a[b][c]` has 3). Default 16.
    /// Trees are walked recursively, so keep this in the hundreds at most.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 1024 * 1024,
            max_keys: 10_000,
            max_depth: 16,
        }
    }
}

/// Parses webhook bodies under a set of [`Limits`]. Cheap to copy and share.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Parser {
    limits: Limits,
}

impl Parser {
    /// A parser that refuses bodies breaking `limits`; [`Parser::default`] uses [`Limits::default`].
    pub fn new(limits: Limits) -> Self {
        Parser { limits }
    }

    /// The limits this parser enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Parses an `application/x-www-form-urlencoded` body.
    pub fn parse_form(&self, body: &[u8]) -> Result<WebhookBatch> {
        WebhookBatch::from_tree(form::decode(body, &self.limits)?)
    }

    /// Parses a JSON body holding the same structure (`{"leads": {"add": [{...}]}, "account": {...}}`).
    pub fn parse_json(&self, body: &[u8]) -> Result<WebhookBatch> {
        WebhookBatch::from_tree(entries_of(json::decode(body, &self.limits)?))
    }

    /// Chooses the format by content type: `application/x-www-form-urlencoded` (parameters such
    /// as `charset` ignored) is a form, `application/json` is JSON, `None` sniffs the body (JSON
    /// when the first non-space byte is `{`), anything else is [`Error::UnsupportedContentType`].
    pub fn parse(&self, content_type: Option<&str>, body: &[u8]) -> Result<WebhookBatch> {
        match content_type {
            None => {
                if looks_like_json(body) {
                    self.parse_json(body)
                } else {
                    self.parse_form(body)
                }
            }
            Some(content_type) => {
                let essence = content_type.split(';').next().unwrap_or_default().trim();
                if essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
                    self.parse_form(body)
                } else if essence.eq_ignore_ascii_case("application/json") {
                    self.parse_json(body)
                } else {
                    Err(Error::UnsupportedContentType(content_type.to_owned()))
                }
            }
        }
    }
}

/// True when the first non-whitespace byte opens a JSON object.
pub fn looks_like_json(body: &[u8]) -> bool {
    body.iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'{')
}

/// Parses a form body with the default [`Limits`].
pub fn parse_form(body: &[u8]) -> Result<WebhookBatch> {
    Parser::default().parse_form(body)
}

/// Parses a JSON body with the default [`Limits`].
pub fn parse_json(body: &[u8]) -> Result<WebhookBatch> {
    Parser::default().parse_json(body)
}
