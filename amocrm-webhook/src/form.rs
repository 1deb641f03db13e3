//! Decoding `application/x-www-form-urlencoded` bodies with bracketed keys into a tree.

use std::borrow::Cow;
use std::cell::Cell;

use memchr::{memchr2, memchr2_iter};

use crate::batch::Entries;
use crate::error::{Error, Result, quote_key};
use crate::parser::Limits;
use crate::tree::{NodeId, Segment, Spare, Tree, reuse};

/// Buffers a thread reuses from one body to the next, so that decoding a typical body
/// allocates little besides its output.
struct Scratch {
    nodes: Spare,
    segments: Vec<(Segment<'static>, usize)>,
    path: Vec<NodeId>,
    shared: Vec<(usize, NodeId)>,
}

impl Scratch {
    const EMPTY: Scratch = Scratch {
        nodes: Spare::EMPTY,
        segments: Vec::new(),
        path: Vec::new(),
        shared: Vec::new(),
    };

    /// Most nodes kept between bodies (under 100 KB): a huge body's buffers are freed.
    const MAX_NODES: usize = 1024;
}

thread_local! {
    static SCRATCH: Cell<Scratch> = const { Cell::new(Scratch::EMPTY) };
}

/// Decodes a form body into its top two levels (see [`Level`](crate::batch::Level)).
pub(crate) fn decode<'b>(body: &'b [u8], limits: &Limits) -> Result<Entries<'b>> {
    if body.len() > limits.max_body_bytes {
        return Err(Error::BodyTooLarge {
            size: body.len(),
            limit: limits.max_body_bytes,
        });
    }
    let mut scratch = SCRATCH.with(|cell| cell.replace(Scratch::EMPTY));
    let decoded = decode_with(body, limits, &mut scratch);
    if scratch.nodes.capacity() <= Scratch::MAX_NODES {
        SCRATCH.with(|cell| cell.set(scratch));
    }
    decoded
}

fn decode_with<'b>(body: &'b [u8], limits: &Limits, scratch: &mut Scratch) -> Result<Entries<'b>> {
    // Real bodies carry about one node per 40-60 bytes; a guess only saves regrowing.
    let hint = (body.len() / 32).min(Scratch::MAX_NODES);
    let mut tree = Tree::reusing(std::mem::replace(&mut scratch.nodes, Spare::EMPTY), hint);
    // Reused for every key, with where each segment ends in the raw key. Segments borrow the
    // body, so splitting a plain key allocates nothing.
    let mut segments: Vec<(Segment<'_>, usize)> = reuse(std::mem::take(&mut scratch.segments));
    let path = &mut scratch.path;
    // Consecutive keys mostly share their leading segments (`leads[add][0][...]`). Remember
    // the last raw key and, for each of its leading segments before any `[]` (which makes a
    // new node each time), where it ends and the node it leads to. A key with the same bytes
    // up to such an end is only split and looked up from there.
    let mut last_key: &[u8] = &[];
    let shared = &mut scratch.shared;
    shared.clear();
    // Validated once here, keys and values that need no decoding are slices of it (brackets,
    // `&` and `=` are ASCII, so they always fall on character boundaries). A body that is not
    // UTF-8 as sent may still decode to it, and is checked piece by piece instead.
    let text = std::str::from_utf8(body).ok();
    let mut keys = 0usize;
    let mut start = 0usize;
    // One pass over the body finds every `&` and `=`: cheaper than two searches per pair,
    // whose fixed cost dominates on pairs this short.
    let mut separators = memchr2_iter(b'&', b'=', body);
    while start <= body.len() {
        let mut eq = None;
        let end = loop {
            match separators.next() {
                Some(at) if body[at] == b'&' => break at,
                Some(at) => {
                    eq.get_or_insert(at);
                }
                None => break body.len(),
            }
        };
        let pair = &body[start..end];
        if !pair.is_empty() {
            keys += 1;
            if keys > limits.max_keys {
                return Err(Error::TooManyKeys {
                    limit: limits.max_keys,
                });
            }
            let (raw_key, raw_value, value_offset) = match eq {
                Some(eq) => (&body[start..eq], &body[eq + 1..end], eq + 1),
                None => (pair, &pair[pair.len()..], end),
            };
            let key_text = text.and_then(|text| text.get(start..start + raw_key.len()));
            segments.clear();
            let mut reused = None;
            for (depth, &(segment_end, node)) in shared.iter().enumerate().rev() {
                if raw_key.get(..segment_end) != last_key.get(..segment_end) {
                    continue;
                }
                // Anything odd after the shared part is left to the full split below, which
                // also reports it.
                let rest = &raw_key[segment_end..];
                if (rest.is_empty() || starts_with_open(rest))
                    && split_brackets(
                        raw_key,
                        key_text,
                        segment_end,
                        depth + 1,
                        limits.max_depth,
                        &mut segments,
                    )
                    .is_ok()
                {
                    reused = Some((depth, node));
                }
                break;
            }
            let start_node = match reused {
                Some((depth, node)) => {
                    shared.truncate(depth + 1);
                    node
                }
                None => {
                    shared.clear();
                    split_key(raw_key, key_text, limits.max_depth, &mut segments)
                        .map_err(|fault| fault.into_error(raw_key, start, limits.max_depth))?;
                    Tree::ROOT
                }
            };
            let value_text = text.and_then(|text| text.get(value_offset..end));
            let value = decode_value(raw_value, value_text).map_err(|fault| match fault {
                Fault::Escape(at) => Error::InvalidPercentEncoding {
                    offset: value_offset + at,
                },
                _ => Error::InvalidUtf8 {
                    offset: value_offset,
                    key: Some(quote_key(&lossy_key(raw_key))),
                },
            })?;
            if let [(Segment::Name(_), segment_end)] = segments.as_slice() {
                // The usual key: one more leaf under the parent of the last one.
                let segment_end = *segment_end;
                if let Some((segment, _)) = segments.pop() {
                    let node = tree.insert_leaf(start_node, segment, value);
                    shared.push((segment_end, node));
                }
            } else {
                let base = shared.len();
                for (segment, segment_end) in &segments {
                    if *segment == Segment::Push {
                        break;
                    }
                    shared.push((*segment_end, Tree::ROOT));
                }
                path.clear();
                tree.insert_below(
                    start_node,
                    path,
                    segments.drain(..).map(|(segment, _)| segment),
                    value,
                );
                for (entry, &node) in shared[base..].iter_mut().zip(path.iter()) {
                    entry.1 = node;
                }
            }
            last_key = raw_key;
        }
        start = end + 1;
    }
    let (entries, nodes) = tree.into_entries();
    scratch.nodes = nodes;
    scratch.segments = reuse(segments);
    Ok(entries)
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
            // Brackets are nearly always sent as `%5B` and `%5D`.
            match raw.get(i + 1..i + 3) {
                Some(b"5B" | b"5b") => return Ok((Token::Open, 3)),
                Some(b"5D" | b"5d") => return Ok((Token::Close, 3)),
                _ => {}
            }
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
    text: Option<&'a str>,
    max_depth: usize,
    segments: &mut Vec<(Segment<'a>, usize)>,
) -> std::result::Result<(), Fault> {
    segments.clear();
    // The name runs to the first `[`; a `]` in it is plain text.
    let mut i = 0;
    let mut escaped = false;
    loop {
        i = skip_plain(raw, i);
        if i >= raw.len() {
            break;
        }
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
    segments.push((Segment::Name(content(raw, text, 0, i, escaped)?), i));
    split_brackets(raw, text, i, 0, max_depth, segments)
}

/// Splits the `[a][b]` run of `raw` from `i` on, after `parents` segments, appending each
/// segment and where it ends to `segments`.
fn split_brackets<'a>(
    raw: &'a [u8],
    text: Option<&'a str>,
    mut i: usize,
    parents: usize,
    max_depth: usize,
    segments: &mut Vec<(Segment<'a>, usize)>,
) -> std::result::Result<(), Fault> {
    while i < raw.len() {
        let (token, len) = token_at(raw, i)?;
        if !matches!(token, Token::Open) {
            return Err(Fault::Malformed(
                "text after `]` that does not start a new `[`",
            ));
        }
        i += len;
        let content_start = i;
        let mut escaped = false;
        let content_end = loop {
            i = skip_plain(raw, i);
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
        let segment = if content_start == content_end {
            Segment::Push
        } else {
            Segment::Name(content(raw, text, content_start, content_end, escaped)?)
        };
        segments.push((segment, i));
    }
    Ok(())
}

/// True when `raw` starts with `[` or `%5B`.
fn starts_with_open(raw: &[u8]) -> bool {
    matches!(raw, [b'[', ..] | [b'%', b'5', b'B' | b'b', ..])
}

/// Where the first byte at or after `i` that the splitter must look at is (a bracket, `%`
/// or `+`), or the end.
#[inline(always)]
fn skip_plain(raw: &[u8], mut i: usize) -> usize {
    // Segments are a few bytes long: a table lookup per byte beats a memchr call.
    while i < raw.len() && !SPECIAL[usize::from(raw[i])] {
        i += 1;
    }
    i
}

/// The bytes [`skip_plain`] stops at.
const SPECIAL: [bool; 256] = {
    let mut table = [false; 256];
    table[b'[' as usize] = true;
    table[b']' as usize] = true;
    table[b'%' as usize] = true;
    table[b'+' as usize] = true;
    table
};

/// One segment's text: borrowed when it needs no decoding (the usual case), else decoded.
/// `text` is `raw` when it is known to be UTF-8, which spares validating each segment.
#[inline]
fn content<'a>(
    raw: &'a [u8],
    text: Option<&'a str>,
    from: usize,
    to: usize,
    escaped: bool,
) -> std::result::Result<Cow<'a, str>, Fault> {
    if !escaped {
        if let Some(text) = text.and_then(|text| text.get(from..to)) {
            return Ok(Cow::Borrowed(text));
        }
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

/// Decodes a value; `text` is `raw` when it is known to be UTF-8.
fn decode_value<'a>(
    raw: &'a [u8],
    text: Option<&'a str>,
) -> std::result::Result<Cow<'a, str>, Fault> {
    // Most values are a few bytes long, where a plain loop beats a memchr call.
    let plain = if raw.len() < 32 {
        !raw.iter().any(|&b| b == b'%' || b == b'+')
    } else {
        memchr2(b'%', b'+', raw).is_none()
    };
    if plain {
        if let Some(text) = text {
            return Ok(Cow::Borrowed(text));
        }
        return match std::str::from_utf8(raw) {
            Ok(text) => Ok(Cow::Borrowed(text)),
            Err(_) => Err(Fault::Utf8),
        };
    }
    let mut out = Vec::with_capacity(raw.len());
    percent_decode_into(raw, &mut out).map_err(Fault::Escape)?;
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| Fault::Utf8)
}

/// Appends the decoded form of `raw` (`+` is a space, `%XX` a byte) to `out`; a bad escape
/// gives its offset within `raw`.
pub(crate) fn percent_decode_into(raw: &[u8], out: &mut Vec<u8>) -> std::result::Result<(), usize> {
    out.reserve(raw.len());
    let mut i = 0;
    while i < raw.len() {
        // Copy the run of plain bytes in one go. Runs are short in real values (escapes of
        // Cyrillic text come back to back), where a plain loop beats a memchr call per run.
        let run = i;
        while i < raw.len() && raw[i] != b'%' && raw[i] != b'+' {
            i += 1;
        }
        if i > run {
            out.extend_from_slice(&raw[run..i]);
        }
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
    match HEX[usize::from(byte)] {
        NOT_HEX => None,
        value => Some(value),
    }
}

const NOT_HEX: u8 = 0xff;

/// The value of each hex digit, [`NOT_HEX`] for other bytes: one load per digit of the
/// escapes that fill Cyrillic values.
const HEX: [u8; 256] = {
    let mut table = [NOT_HEX; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        table[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Level;
    use memchr::memchr;
    use serde_json::Value;

    fn decode_str(raw: &str) -> String {
        let mut out = Vec::new();
        percent_decode_into(raw.as_bytes(), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn split(key: &str) -> std::result::Result<Vec<Option<String>>, Fault> {
        let mut segments = Vec::new();
        split_key(key.as_bytes(), None, 16, &mut segments)?;
        Ok(segments
            .into_iter()
            .map(|(segment, _)| match segment {
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
        assert!(split_key(b"a[b][c]", None, 3, &mut segments).is_ok());
        assert_eq!(
            split_key(b"a[b][c][d]", None, 3, &mut segments),
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
    fn reference(body: &[u8], limits: &Limits) -> Result<Value> {
        let mut root = Tree::with_capacity(0);
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
            split_key(raw_key, None, limits.max_depth, &mut segments)
                .map_err(|fault| fault.into_error(raw_key, at, limits.max_depth))?;
            let value = decode_value(raw_value, None).map_err(|_| Error::NoEvents)?;
            root.insert(segments.drain(..).map(|(segment, _)| segment), value);
        }
        Ok(root.into_value())
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
            let fast = decode(body.as_bytes(), &limits)
                .map(|entries| Level::Map { list: false, entries }.into_value())
                .map_err(|e| e.to_string());
            let slow = reference(body.as_bytes(), &limits)
                .map_err(|e| e.to_string());
            proptest::prop_assert_eq!(fast, slow, "{}", body);
        }
    }
}
