//! The one error type of this crate.

/// Longest key quoted in an error message; a hostile key can be a megabyte long.
const MAX_QUOTED_KEY: usize = 200;

/// Why a body was refused. Every message says what was wrong and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The body is longer than [`Limits::max_body_bytes`](crate::Limits::max_body_bytes).
    #[error("body is {size} bytes, over the limit of {limit} bytes")]
    BodyTooLarge {
        /// The body's length in bytes.
        size: usize,
        /// The limit it broke, in bytes.
        limit: usize,
    },

    /// The body has more keys (form pairs or JSON leaves) than [`Limits::max_keys`](crate::Limits::max_keys).
    #[error("body has more than {limit} keys")]
    TooManyKeys {
        /// The limit it broke, in keys.
        limit: usize,
    },

    /// A key has more segments than [`Limits::max_depth`](crate::Limits::max_depth).
    #[error("key `{key}` has {depth} segments, over the limit of {limit}")]
    TooDeep {
        /// The key, cut after 200 bytes.
        key: String,
        /// Its number of segments, the name included.
        depth: usize,
        /// The limit it broke, in segments.
        limit: usize,
    },

    /// A `%` not followed by two hex digits; `offset` is the byte offset of the `%` in the body.
    #[error("invalid percent-encoding at byte {offset}")]
    InvalidPercentEncoding {
        /// Byte offset of the `%` in the body.
        offset: usize,
    },

    /// A key or value does not decode to UTF-8. `offset` is where that key or value starts in
    /// the body; `key` names the key when it is the value that is bad.
    #[error("invalid UTF-8 in {} starting at byte {offset}", describe_utf8_place(.key))]
    InvalidUtf8 {
        /// Byte offset in the body where the bad key or value starts.
        offset: usize,
        /// The key, cut after 200 bytes, when its value is bad; `None` when the key itself is.
        key: Option<String>,
    },

    /// A key that is not `name` or `name[segment]...`.
    #[error("malformed key `{key}` at byte {offset}: {reason}")]
    MalformedKey {
        /// The key as decoded, cut after 200 bytes.
        key: String,
        /// Byte offset in the body where the key starts.
        offset: usize,
        /// What is wrong with it, e.g. an unclosed `[`.
        reason: &'static str,
    },

    /// The JSON body does not parse, or its top level is not an object.
    #[error("invalid JSON body: {0}")]
    InvalidJson(
        /// What is wrong: serde_json's message (with line and column), or that the top level is
        /// not an object.
        String,
    ),

    /// The body parsed but holds no `section[action][index]` event.
    #[error("body carries no events")]
    NoEvents,

    /// [`Parser::parse`](crate::Parser::parse) was given a content type it does not read.
    #[error("unsupported content type `{0}`")]
    UnsupportedContentType(
        /// The `Content-Type` as given.
        String,
    ),
}

fn describe_utf8_place(key: &Option<String>) -> String {
    match key {
        Some(key) => format!("the value of `{key}`"),
        None => "a key".to_owned(),
    }
}

impl Error {
    /// True when the body is refused for its size alone (answer HTTP 413).
    pub fn is_too_large(&self) -> bool {
        matches!(self, Error::BodyTooLarge { .. })
    }

    /// True when the content type is not one this crate reads (answer HTTP 415).
    pub fn is_unsupported_content_type(&self) -> bool {
        matches!(self, Error::UnsupportedContentType(_))
    }
}

/// Shortens a key for an error message, on a character boundary.
pub(crate) fn quote_key(key: &str) -> String {
    if key.len() <= MAX_QUOTED_KEY {
        return key.to_owned();
    }
    let mut end = MAX_QUOTED_KEY;
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &key[..end])
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;
