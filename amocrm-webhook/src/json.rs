//! Reading the same nested structure from a JSON body.
//!
//! The JSON is brought to the shape a form body gives: every leaf a string (numbers as written,
//! `true`/`false` as `1`/`0` like PHP's `http_build_query`, `null` as an empty string) and objects
//! whose keys are exactly `0..n` turned into arrays, so one event hashes the same whichever way
//! it arrived.

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::error::{Error, Result, quote_key};
use crate::parser::Limits;
use crate::tree::{is_dense, parse_index};

pub(crate) fn decode(body: &[u8], limits: &Limits) -> Result<Map<String, Value>> {
    if body.len() > limits.max_body_bytes {
        return Err(Error::BodyTooLarge {
            size: body.len(),
            limit: limits.max_body_bytes,
        });
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| Error::InvalidJson(e.to_string()))?;
    let Value::Object(object) = value else {
        return Err(Error::InvalidJson(
            "the top level is not an object".to_owned(),
        ));
    };
    let mut path = Vec::new();
    let mut leaves = 0;
    for (key, value) in &object {
        path.push(Cow::Borrowed(key.as_str()));
        check(value, &mut path, &mut leaves, limits)?;
        path.pop();
    }
    Ok(object
        .into_iter()
        .map(|(key, value)| (key, normalize(value)))
        .collect())
}

/// Enforces the key and depth limits, naming the offending key as a bracketed path.
fn check<'a>(
    value: &'a Value,
    path: &mut Vec<Cow<'a, str>>,
    leaves: &mut usize,
    limits: &Limits,
) -> Result<()> {
    if path.len() > limits.max_depth {
        let mut key = path[0].to_string();
        for segment in &path[1..] {
            key.push('[');
            key.push_str(segment);
            key.push(']');
        }
        return Err(Error::TooDeep {
            key: quote_key(&key),
            depth: path.len(),
            limit: limits.max_depth,
        });
    }
    match value {
        Value::Object(object) => {
            for (key, child) in object {
                path.push(Cow::Borrowed(key));
                check(child, path, leaves, limits)?;
                path.pop();
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                path.push(Cow::Owned(i.to_string()));
                check(child, path, leaves, limits)?;
                path.pop();
            }
        }
        _ => {
            *leaves += 1;
            if *leaves > limits.max_keys {
                return Err(Error::TooManyKeys {
                    limit: limits.max_keys,
                });
            }
        }
    }
    Ok(())
}

fn normalize(value: Value) -> Value {
    match value {
        Value::String(_) => value,
        Value::Number(number) => Value::String(number.to_string()),
        Value::Bool(flag) => Value::String(if flag { "1" } else { "0" }.to_owned()),
        Value::Null => Value::String(String::new()),
        Value::Array(items) => Value::Array(items.into_iter().map(normalize).collect()),
        Value::Object(object) => {
            if is_dense(object.keys().map(String::as_str)) {
                let mut slots: Vec<Option<Value>> = Vec::with_capacity(object.len());
                slots.resize_with(object.len(), || None);
                for (key, child) in object {
                    if let Some(slot) = parse_index(&key).and_then(|i| slots.get_mut(i as usize)) {
                        *slot = Some(normalize(child));
                    }
                }
                Value::Array(slots.into_iter().flatten().collect())
            } else {
                Value::Object(
                    object
                        .into_iter()
                        .map(|(key, child)| (key, normalize(child)))
                        .collect(),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn leaves_become_strings_and_dense_objects_arrays() {
        let body = br#"{"a":{"1":true,"0":null},"b":[1.5,false],"c":{"7":"x"}}"#;
        let object = decode(body, &Limits::default()).unwrap();
        assert_eq!(
            Value::Object(object),
            json!({"a": ["", "1"], "b": ["1.5", "0"], "c": {"7": "x"}})
        );
    }

    #[test]
    fn names_the_deep_key() {
        let limits = Limits {
            max_depth: 2,
            ..Limits::default()
        };
        let err = decode(br#"{"a":{"b":{"c":"1"}}}"#, &limits).unwrap_err();
        assert_eq!(
            err,
            Error::TooDeep {
                key: "a[b][c]".into(),
                depth: 3,
                limit: 2
            }
        );
    }
}
