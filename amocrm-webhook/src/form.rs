//! Decoding `application/x-www-form-urlencoded` bodies with bracketed keys into a tree.

use std::borrow::Cow;

use memchr::{memchr, memchr2};
use serde_json::{Map, Value};

use crate::error::{Error, Result, quote_key};
use crate::parser::Limits;
use crate::tree::{MapNode, Segment};

/// Decodes a form body into its top-level JSON object.
pub(crate) fn decode(body: &[u8], limits: &Limits) -> Result<Map<String, Value>> {
    if body.len() > limits.max_body_bytes {
        return Err(Error::BodyTooLarge {
            size: body.len(),
            limit: limits.max_body_bytes,
        });
    }
    let mut root = MapNode::default();
    // Reused for every key; its segments borrow the body, so splitting a plain key allocates
    // nothing.
    let mut segments: Vec<Segment<'_>> = Vec::new();
    // Consecutive keys mostly share their parents (`leads[add][0][...]`): remember the raw
    // parent part of the last key and where its nodes sit, and only split and look up the rest.
    let mut parent_key: &[u8] = &[];
    let mut parent_positions: Vec<usize> = Vec::new();
    let mut keys = 0usize;
    let mut start = 0usize;
    while start <= body.len() {
        let end = memchr(b'&', &body[start..]).map_or(body.len(), |i| start + i);
        let pair = &body[start..end];
        if !pair.is_empty() {
            keys += 1;
            if keys > limits.max_keys {
                return Err(Error::TooManyKeys {
                    limit: limits.max_keys,
                });
            }
            let (raw_key, raw_value, value_offset) = match memchr(b'=', pair) {
                Some(eq) => (&pair[..eq], &pair[eq + 1..], start + eq + 1),
                None => (pair, &pair[pair.len()..], end),
            };
            segments.clear();
            let shared = !parent_key.is_empty()
                && raw_key.starts_with(parent_key)
                && starts_with_open(&raw_key[parent_key.len()..]);
            let tail = if shared {
                let parents = parent_positions.len();
                split_brackets(
                    raw_key,
                    parent_key.len(),
                    parents,
                    limits.max_depth,
                    &mut segments,
                )
                .ok()
                .flatten()
            } else {
                None
            };
            let last_open = match tail {
                Some(last_open) => last_open,
                None => {
                    // Split the whole key; this also reports any fault in it.
                    parent_positions.clear();
                    split_key(raw_key, limits.max_depth, &mut segments)
                        .map_err(|fault| fault.into_error(raw_key, start, limits.max_depth))?
                }
            };
            let value = decode_value(raw_value).map_err(|fault| match fault {
                Fault::Escape(at) => Error::InvalidPercentEncoding {
                    offset: value_offset + at,
                },
                _ => Error::InvalidUtf8 {
                    offset: value_offset,
                    key: Some(quote_key(&lossy_key(raw_key))),
                },
            })?;
            // A `[]` parent means a new node each time: nothing to share with the next key.
            let pushes = segments.iter().rev().skip(1).any(|s| *s == Segment::Push);
            root.insert_below(&mut parent_positions, segments.drain(..), value);
            parent_key = if pushes { &[] } else { &raw_key[..last_open] };
        }
        start = end + 1;
    }
    Ok(root.into_object())
}

/// What is wrong with a key or value, before it is put in words with its place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// A bad `%` escape at this offset within the key or value.
    Escape(usize),
    Utf8,
    Malformed(&'static str),
    TooDeep,
}

impl Fault {
    /// The public error for a fault in `raw_key`, which starts at `offset` in the body.
    fn into_error(self, raw_key: &[u8], offset: usize, max_depth: usize) -> Error {
        match self {
            Fault::Escape(at) => Error::InvalidPercentEncoding {
                offset: offset + at,
            },
            Fault::Utf8 => Error::InvalidUtf8 { offset, key: None },
            Fault::Malformed(reason) => Error::MalformedKey {
                key: quote_key(&lossy_key(raw_key)),
                offset,
                reason,
            },
            Fault::TooDeep => {
                let key = lossy_key(raw_key);
                Error::TooDeep {
                    depth: 1 + key.bytes().filter(|&b| b == b'[').count(),
                    key: quote_key(&key),
                    limit: max_depth,
                }
            }
        }
    }
}

/// A byte of a raw key as the splitter sees it.
enum Token {
    Open,
    Close,
    Plain,
    /// `%XX` or `+`: content that needs decoding.
    Escaped,
}

/// Reads the token at `i` and its length (`%5B` is an opening bracket, 3 bytes long).
#[inline(always)]
fn token_at(raw: &[u8], i: usize) -> std::result::Result<(Token, usize), Fault> {
    match raw[i] {
        b'[' => Ok((Token::Open, 1)),
        b']' => Ok((Token::Close, 1)),
        b'+' => Ok((Token::Escaped, 1)),
        b'%' => {
            let high = raw.get(i + 1).and_then(|&b| hex_value(b));
            let low = raw.get(i + 2).and_then(|&b| hex_value(b));
            match (high, low) {
                (Some(0x5), Some(0xB)) => Ok((Token::Open, 3)),
                (Some(0x5), Some(0xD)) => Ok((Token::Close, 3)),
                (Some(_), Some(_)) => Ok((Token::Escaped, 3)),
                _ => Err(Fault::Escape(i)),
            }
        }
        _ => Ok((Token::Plain, 1)),
    }
}

/// Splits a raw (still percent-encoded) key `name[a][b][]` into segments. Brackets may be
/// literal or `%5B`/`%5D`; splitting before decoding is equivalent to decoding first because
/// no escape of a multi-byte character decodes to a bracket.
pub(crate) fn split_key<'a>(
    raw: &'a [u8],
    max_depth: usize,
    segments: &mut Vec<Segment<'a>>,
) -> std::result::Result<usize, Fault> {
    segments.clear();
    // The name runs to the first `[`; a `]` in it is plain text.
    let mut i = 0;
    let mut escaped = false;
    while i < raw.len() {
        let (token, len) = token_at(raw, i)?;
        match token {
            Token::Open => break,
            Token::Escaped => escaped = true,
            Token::Close => escaped |= len > 1,
            Token::Plain => {}
        }
        i += len;
    }
    if i == 0 {
        return Err(Fault::Malformed("the key has no name before its first `[`"));
    }
    segments.push(Segment::Name(content(raw, 0, i, escaped)?));
    split_brackets(raw, i, 0, max_depth, segments).map(|last| last.unwrap_or(0))
}

/// Splits the `[a][b]` run of `raw` from `i` on, after `parents` segments, appending to
/// `segments`. Gives where the last segment's `[` starts, if there is one.
fn split_brackets<'a>(
    raw: &'a [u8],
    mut i: usize,
    parents: usize,
    max_depth: usize,
    segments: &mut Vec<Segment<'a>>,
) -> std::result::Result<Option<usize>, Fault> {
    let mut last_open = None;
    while i < raw.len() {
        let (token, len) = token_at(raw, i)?;
        if !matches!(token, Token::Open) {
            return Err(Fault::Malformed(
                "text after `]` that does not start a new `[`",
            ));
        }
        last_open = Some(i);
        i += len;
        let content_start = i;
        let mut escaped = false;
        let content_end = loop {
            if i >= raw.len() {
                return Err(Fault::Malformed("`[` without a closing `]`"));
            }
            let (token, len) = token_at(raw, i)?;
            match token {
                Token::Close => {
                    let content_end = i;
                    i += len;
                    break content_end;
                }
                Token::Open => return Err(Fault::Malformed("`[` inside a bracketed segment")),
                Token::Escaped => escaped = true,
                Token::Plain => {}
            }
            i += len;
        };
        if parents + segments.len() >= max_depth {
            return Err(Fault::TooDeep);
        }
        segments.push(if content_start == content_end {
            Segment::Push
        } else {
            Segment::Name(content(raw, content_start, content_end, escaped)?)
        });
    }
    Ok(last_open)
}

/// True when `raw` starts with `[` or `%5B`.
fn starts_with_open(raw: &[u8]) -> bool {
    matches!(raw, [b'[', ..] | [b'%', b'5', b'B' | b'b', ..])
}

/// One segment's text: borrowed when it needs no decoding (the usual case), else decoded.
#[inline]
fn content(
    raw: &[u8],
    from: usize,
    to: usize,
    escaped: bool,
) -> std::result::Result<Cow<'_, str>, Fault> {
    if !escaped {
        return std::str::from_utf8(&raw[from..to])
            .map(Cow::Borrowed)
            .map_err(|_| Fault::Utf8);
    }
    let mut decoded = Vec::with_capacity(to - from);
    percent_decode_into(&raw[from..to], &mut decoded).map_err(|at| Fault::Escape(from + at))?;
    String::from_utf8(decoded)
        .map(Cow::Owned)
        .map_err(|_| Fault::Utf8)
}

/// A key decoded for an error message, whatever its faults.
fn lossy_key(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                raw.get(i + 1).and_then(|&b| hex_value(b)),
                raw.get(i + 2).and_then(|&b| hex_value(b)),
            ) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn decode_value(raw: &[u8]) -> std::result::Result<String, Fault> {
    if memchr2(b'%', b'+', raw).is_none() {
        return match std::str::from_utf8(raw) {
            Ok(text) => Ok(text.to_owned()),
            Err(_) => Err(Fault::Utf8),
        };
    }
    let mut out = Vec::with_capacity(raw.len());
    percent_decode_into(raw, &mut out).map_err(Fault::Escape)?;
    String::from_utf8(out).map_err(|_| Fault::Utf8)
}

/// Appends the decoded form of `raw` (`+` is a space, `%XX` a byte) to `out`; a bad escape
/// gives its offset within `raw`.
pub(crate) fn percent_decode_into(raw: &[u8], out: &mut Vec<u8>) -> std::result::Result<(), usize> {
    out.reserve(raw.len());
    let mut i = 0;
    while i < raw.len() {
        // Copy the run of plain bytes in one go.
        let run = memchr2(b'%', b'+', &raw[i..]).unwrap_or(raw.len() - i);
        out.extend_from_slice(&raw[i..i + run]);
        i += run;
        match raw.get(i) {
            Some(b'+') => {
                out.push(b' ');
                i += 1;
            }
            Some(_) => {
                let high = raw.get(i + 1).and_then(|&b| hex_value(b));
                let low = raw.get(i + 2).and_then(|&b| hex_value(b));
                match (high, low) {
                    (Some(high), Some(low)) => out.push(high << 4 | low),
                    _ => return Err(i),
                }
                i += 3;
            }
            None => {}
        }
    }
    Ok(())
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_str(raw: &str) -> String {
        let mut out = Vec::new();
        percent_decode_into(raw.as_bytes(), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn split(key: &str) -> std::result::Result<Vec<Option<String>>, Fault> {
        let mut segments = Vec::new();
        split_key(key.as_bytes(), 16, &mut segments)?;
        Ok(segments
            .into_iter()
            .map(|segment| match segment {
                Segment::Name(name) => Some(name.into_owned()),
                Segment::Push => None,
            })
            .collect())
    }

    fn some(parts: &[&str]) -> Vec<Option<String>> {
        parts.iter().map(|p| Some((*p).to_owned())).collect()
    }

    #[test]
    fn decodes_plus_and_percent() {
        assert_eq!(decode_str("a+b%2Bc%5b%5D"), "a b+c[]");
        assert_eq!(decode_str("%D0%98"), "И");
        assert_eq!(decode_str("%252B"), "%2B");
        assert_eq!(decode_str("&amp;"), "&amp;");
    }

    #[test]
    fn reports_the_offset_of_a_bad_escape() {
        let mut out = Vec::new();
        assert_eq!(percent_decode_into(b"ab%zz", &mut out), Err(2));
        assert_eq!(percent_decode_into(b"ab%4", &mut out), Err(2));
        assert_eq!(percent_decode_into(b"%", &mut out), Err(0));
    }

    #[test]
    fn splits_bracketed_keys_literal_or_encoded() {
        assert_eq!(split("a").unwrap(), some(&["a"]));
        assert_eq!(
            split("a[b][0][]").unwrap(),
            [Some("a".into()), Some("b".into()), Some("0".into()), None]
        );
        assert_eq!(
            split("a%5Bb%5d%5B%5D").unwrap(),
            [Some("a".into()), Some("b".into()), None]
        );
        assert_eq!(split("a]b[c]").unwrap(), some(&["a]b", "c"]));
        assert_eq!(split("a%5Db%5Bc+d%2B%5D").unwrap(), some(&["a]b", "c d+"]));
        assert_eq!(split("%D0%B8[%D1%8F]").unwrap(), some(&["и", "я"]));
        // An escaped escape is text, not a bracket.
        assert_eq!(split("a%255B").unwrap(), some(&["a%5B"]));
    }

    #[test]
    fn rejects_malformed_keys() {
        for key in ["[a]", "", "a[b", "a[b]c", "a[b[c]]", "a[b]]", "a%5Bb"] {
            assert!(
                matches!(split(key), Err(Fault::Malformed(_))),
                "{key} should be malformed"
            );
        }
        assert_eq!(split("a[b%zz]"), Err(Fault::Escape(3)));
        assert_eq!(split("a[%FF]"), Err(Fault::Utf8));
    }

    #[test]
    fn counts_depth_in_segments() {
        let mut segments = Vec::new();
        assert!(split_key(b"a[b][c]", 3, &mut segments).is_ok());
        assert_eq!(
            split_key(b"a[b][c][d]", 3, &mut segments),
            Err(Fault::TooDeep)
        );
        assert_eq!(
            Fault::TooDeep.into_error(b"a[b][c][d][e]", 7, 3),
            Error::TooDeep {
                key: "a[b][c][d][e]".into(),
                depth: 5,
                limit: 3
            }
        );
    }

    #[test]
    fn lossy_key_survives_bad_input() {
        assert_eq!(lossy_key(b"a%5Bb%zz%"), "a[b%zz%");
        assert_eq!(lossy_key(b"a+%FF"), "a \u{FFFD}");
    }

    /// The decoder without the shared-parent shortcut: every key split and looked up whole.
    fn reference(body: &[u8], limits: &Limits) -> Result<Map<String, Value>> {
        let mut root = MapNode::default();
        let mut segments = Vec::new();
        for (at, pair) in body.split(|&b| b == b'&').scan(0, |offset, pair| {
            let at = *offset;
            *offset += pair.len() + 1;
            Some((at, pair))
        }) {
            if pair.is_empty() {
                continue;
            }
            let (raw_key, raw_value) = match memchr(b'=', pair) {
                Some(eq) => (&pair[..eq], &pair[eq + 1..]),
                None => (pair, &pair[pair.len()..]),
            };
            split_key(raw_key, limits.max_depth, &mut segments)
                .map_err(|fault| fault.into_error(raw_key, at, limits.max_depth))?;
            let value = decode_value(raw_value).map_err(|_| Error::NoEvents)?;
            root.insert(segments.drain(..), value);
        }
        Ok(root.into_object())
    }

    proptest::proptest! {
        #[test]
        fn sharing_parents_changes_nothing(
            keys in proptest::collection::vec(
                proptest::collection::vec(
                    proptest::sample::select(vec!["a", "b", "ab", "0", "1", "", "%5B", "x%5D"]),
                    1..5,
                ),
                1..12,
            ),
            encoded in proptest::bool::ANY,
        ) {
            let (open, close) = if encoded { ("%5B", "%5D") } else { ("[", "]") };
            let body: Vec<String> = keys
                .iter()
                .enumerate()
                .map(|(n, segments)| {
                    let mut key = format!("k{}", segments[0]);
                    for segment in &segments[1..] {
                        key.push_str(&format!("{open}{segment}{close}"));
                    }
                    format!("{key}={n}")
                })
                .collect();
            let body = body.join("&");
            let limits = Limits { max_depth: 4, ..Limits::default() };
            let fast = decode(body.as_bytes(), &limits).map_err(|e| e.to_string());
            let slow = reference(body.as_bytes(), &limits).map_err(|e| e.to_string());
            proptest::prop_assert_eq!(fast, slow, "{}", body);
        }
    }
}
