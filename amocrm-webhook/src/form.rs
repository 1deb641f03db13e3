//! Decoding `application/x-www-form-urlencoded` bodies with bracketed keys into a tree.

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
    // Reused for every key: decoding a key allocates nothing once these have grown.
    let mut key_bytes = Vec::new();
    let mut ranges: Vec<Option<(usize, usize)>> = Vec::new();
    let mut keys = 0usize;
    let mut start = 0usize;
    while start <= body.len() {
        let end = body[start..]
            .iter()
            .position(|&b| b == b'&')
            .map_or(body.len(), |i| start + i);
        let pair = &body[start..end];
        if !pair.is_empty() {
            keys += 1;
            if keys > limits.max_keys {
                return Err(Error::TooManyKeys {
                    limit: limits.max_keys,
                });
            }
            let (raw_key, raw_value, value_offset) = match pair.iter().position(|&b| b == b'=') {
                Some(eq) => (&pair[..eq], &pair[eq + 1..], start + eq + 1),
                None => (pair, &pair[pair.len()..], end),
            };
            key_bytes.clear();
            percent_decode_into(raw_key, start, &mut key_bytes)?;
            let key = std::str::from_utf8(&key_bytes).map_err(|_| Error::InvalidUtf8 {
                offset: start,
                key: None,
            })?;
            split_key(key, start, limits.max_depth, &mut ranges)?;
            let mut value = Vec::with_capacity(raw_value.len());
            percent_decode_into(raw_value, value_offset, &mut value)?;
            let value = String::from_utf8(value).map_err(|_| Error::InvalidUtf8 {
                offset: value_offset,
                key: Some(quote_key(key)),
            })?;
            let segments = ranges.iter().map(|range| match *range {
                Some((from, to)) => Segment::Name(&key[from..to]),
                None => Segment::Push,
            });
            root.insert(segments, value);
        }
        start = end + 1;
    }
    Ok(root.into_object())
}

/// Appends the decoded form of `raw` (`+` is a space, `%XX` a byte) to `out`.
/// `offset` is where `raw` starts in the body, for error messages.
pub(crate) fn percent_decode_into(raw: &[u8], offset: usize, out: &mut Vec<u8>) -> Result<()> {
    out.reserve(raw.len());
    let mut i = 0;
    while i < raw.len() {
        // Copy the run of plain bytes in one go.
        let run = raw[i..]
            .iter()
            .position(|&b| b == b'%' || b == b'+')
            .unwrap_or(raw.len() - i);
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
                    _ => return Err(Error::InvalidPercentEncoding { offset: offset + i }),
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

/// Splits `name[a][b][]` into byte ranges of `key` (`None` for `[]`).
/// `offset` is where the key starts in the body, for error messages.
pub(crate) fn split_key(
    key: &str,
    offset: usize,
    max_depth: usize,
    ranges: &mut Vec<Option<(usize, usize)>>,
) -> Result<()> {
    ranges.clear();
    let bytes = key.as_bytes();
    let malformed = |reason| Error::MalformedKey {
        key: quote_key(key),
        offset,
        reason,
    };
    let name_end = bytes.iter().position(|&b| b == b'[').unwrap_or(bytes.len());
    if name_end == 0 {
        return Err(malformed("the key has no name before its first `[`"));
    }
    ranges.push(Some((0, name_end)));
    let mut i = name_end;
    while i < bytes.len() {
        if bytes[i] != b'[' {
            return Err(malformed("text after `]` that does not start a new `[`"));
        }
        let close = bytes[i + 1..]
            .iter()
            .position(|&b| b == b']' || b == b'[')
            .map(|j| i + 1 + j);
        let close = match close {
            Some(close) if bytes[close] == b']' => close,
            Some(_) => return Err(malformed("`[` inside a bracketed segment")),
            None => return Err(malformed("`[` without a closing `]`")),
        };
        ranges.push(if close == i + 1 {
            None
        } else {
            Some((i + 1, close))
        });
        if ranges.len() > max_depth {
            let depth = ranges.len() + bytes[close..].iter().filter(|&&b| b == b'[').count();
            return Err(Error::TooDeep {
                key: quote_key(key),
                depth,
                limit: max_depth,
            });
        }
        i = close + 1;
    }
    if ranges.len() > max_depth {
        return Err(Error::TooDeep {
            key: quote_key(key),
            depth: ranges.len(),
            limit: max_depth,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_str(raw: &str) -> Result<String> {
        let mut out = Vec::new();
        percent_decode_into(raw.as_bytes(), 0, &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    fn split(key: &str) -> Result<Vec<Option<&str>>> {
        let mut ranges = Vec::new();
        split_key(key, 0, 16, &mut ranges)?;
        Ok(ranges
            .into_iter()
            .map(|r| r.map(|(from, to)| &key[from..to]))
            .collect())
    }

    #[test]
    fn decodes_plus_and_percent() {
        assert_eq!(decode_str("a+b%2Bc%5b%5D").unwrap(), "a b+c[]");
        assert_eq!(decode_str("%D0%98").unwrap(), "И");
        assert_eq!(decode_str("%252B").unwrap(), "%2B");
        assert_eq!(decode_str("&amp;").unwrap(), "&amp;");
    }

    #[test]
    fn reports_the_offset_of_a_bad_escape() {
        let mut out = Vec::new();
        assert_eq!(
            percent_decode_into(b"ab%zz", 10, &mut out),
            Err(Error::InvalidPercentEncoding { offset: 12 })
        );
        assert_eq!(
            percent_decode_into(b"ab%4", 0, &mut out),
            Err(Error::InvalidPercentEncoding { offset: 2 })
        );
        assert_eq!(
            percent_decode_into(b"%", 0, &mut out),
            Err(Error::InvalidPercentEncoding { offset: 0 })
        );
    }

    #[test]
    fn splits_bracketed_keys() {
        assert_eq!(split("a").unwrap(), [Some("a")]);
        assert_eq!(split("a[b][0][]").unwrap(), [Some("a"), Some("b"), Some("0"), None]);
        assert_eq!(split("a]b[c]").unwrap(), [Some("a]b"), Some("c")]);
    }

    #[test]
    fn rejects_malformed_keys() {
        for key in ["[a]", "a[b", "a[b]c", "a[b[c]]", "a[b]]"] {
            assert!(
                matches!(split(key), Err(Error::MalformedKey { .. })),
                "{key} should be malformed"
            );
        }
    }

    #[test]
    fn counts_depth_in_segments() {
        let mut ranges = Vec::new();
        assert!(split_key("a[b][c]", 0, 3, &mut ranges).is_ok());
        assert_eq!(
            split_key("a[b][c][d][e]", 7, 3, &mut ranges),
            Err(Error::TooDeep {
                key: "a[b][c][d][e]".into(),
                depth: 5,
                limit: 3
            })
        );
    }
}
