//! Batch writes: chunking, `request_id` matching, partial failures.

use std::marker::PhantomData;

use http::Method;
use serde_json::Value;

use crate::client::{ApiRequest, Client};
use crate::error::{Error, Result, WrittenItem};
use crate::models::Written;

/// The most items amoCRM takes in one write request.
pub const MAX_BATCH: usize = 250;
/// Items per write request unless the caller says otherwise: amoCRM recommends at most 50.
pub const DEFAULT_BATCH: usize = 50;

/// A batch write: items sent in chunks, one request each, answered with one [`Written`] per
/// item in the caller's order. Finish with [`send`](Self::send).
///
/// **Retries.** POST requests are retried only on 429, which amoCRM answers before doing
/// anything; a POST that fails after being sent (timeout, dropped connection, 5xx) ends in
/// [`Error::MaybeApplied`]: the items may have been created. PATCH requests set the same
/// values again when repeated, so they are retried like reads. When a later chunk fails after
/// earlier ones succeeded, the error is [`Error::PartiallyWritten`], listing what was written.
#[derive(Debug)]
#[must_use = "a write does nothing until it is sent"]
pub struct BatchWrite<'a, Id> {
    client: &'a Client,
    method: Method,
    template: &'static str,
    path: String,
    key: &'static str,
    items: Vec<Value>,
    ids: Vec<Option<u64>>,
    chunk_size: usize,
    _id: PhantomData<fn() -> Id>,
}

impl<'a, Id: From<u64>> BatchWrite<'a, Id> {
    pub(crate) fn new(
        client: &'a Client,
        method: Method,
        template: &'static str,
        path: impl Into<String>,
        key: &'static str,
        items: Vec<Value>,
    ) -> Self {
        let ids = items
            .iter()
            .map(|item| item.get("id").and_then(Value::as_u64))
            .collect();
        BatchWrite {
            client,
            method,
            template,
            path: path.into(),
            key,
            items,
            ids,
            chunk_size: DEFAULT_BATCH,
            _id: PhantomData,
        }
    }

    /// Items per request: 50 by default, at most 250.
    pub fn chunk_size(mut self, size: usize) -> Self {
        self.chunk_size = size.clamp(1, MAX_BATCH);
        self
    }

    /// How many items will be sent.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there is nothing to send (then [`send`](Self::send) makes no request).
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Sends every chunk in order and answers one [`Written`] per item, in the caller's order.
    pub async fn send(mut self) -> Result<Vec<Written<Id>>> {
        let endpoint = format!("{} {}", self.method, self.template);
        for (index, item) in self.items.iter_mut().enumerate() {
            if let Some(object) = item.as_object_mut() {
                object.insert("request_id".into(), Value::String(index.to_string()));
            }
        }
        let mut written: Vec<Written<u64>> = Vec::with_capacity(self.items.len());
        let mut start = 0;
        for chunk in self.items.chunks(self.chunk_size) {
            let request = ApiRequest::with_body(
                self.method.clone(),
                self.template,
                self.path.clone(),
                Value::Array(chunk.to_vec()),
            );
            let answer = match self.client.send_json::<Value>(&request).await {
                Ok(answer) => answer.unwrap_or(Value::Null),
                Err(error) if written.is_empty() => return Err(error),
                Err(error) => {
                    return Err(Error::PartiallyWritten {
                        endpoint,
                        written: written
                            .iter()
                            .map(|w| WrittenItem {
                                index: w.index,
                                id: w.id,
                            })
                            .collect(),
                        source: Box::new(error),
                    });
                }
            };
            let items = answer
                .get("_embedded")
                .and_then(|e| e.get(self.key))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            written.extend(match_items(
                &endpoint,
                start,
                &self.ids[start..start + chunk.len()],
                items,
            )?);
            start += chunk.len();
        }
        written.sort_by_key(|w| w.index);
        Ok(written
            .into_iter()
            .map(|w| Written {
                index: w.index,
                id: Id::from(w.id),
                request_id: w.request_id,
                updated_at: w.updated_at,
                raw: w.raw,
            })
            .collect())
    }
}

/// Matches the answer's items to the chunk's: by `request_id` (the caller's index), else by
/// id (updates), else by position.
fn match_items(
    endpoint: &str,
    start: usize,
    ids: &[Option<u64>],
    items: Vec<Value>,
) -> Result<Vec<Written<u64>>> {
    let mut out = Vec::with_capacity(items.len());
    for (position, item) in items.into_iter().enumerate() {
        let id = item.get("id").and_then(Value::as_u64);
        let request_id = match item.get("request_id") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let in_chunk = |index: usize| (start..start + ids.len()).contains(&index);
        let index = request_id
            .as_deref()
            .and_then(|r| r.parse::<usize>().ok())
            .filter(|&i| in_chunk(i))
            .or_else(|| {
                id.and_then(|id| ids.iter().position(|&x| x == Some(id)))
                    .map(|p| start + p)
            })
            .or_else(|| (position < ids.len()).then_some(start + position));
        let (Some(id), Some(index)) = (id, index) else {
            return Err(Error::UnexpectedStatus {
                endpoint: endpoint.to_owned(),
                status: 200,
                detail: format!("answer item {position} has no id or matches no item sent"),
            });
        };
        out.push(Written {
            index,
            id,
            request_id,
            updated_at: item.get("updated_at").and_then(Value::as_i64),
            raw: item,
        });
    }
    Ok(out)
}

/// A write of one entity at its own path (`PATCH /api/v4/leads/{id}`). Finish with
/// [`send`](Self::send). PATCH is retried like a read: the same body sets the same values.
#[derive(Debug)]
#[must_use = "a write does nothing until it is sent"]
pub struct SingleWrite<'a, Id> {
    client: &'a Client,
    request: ApiRequest,
    id: u64,
    _id: PhantomData<fn() -> Id>,
}

impl<'a, Id: From<u64>> SingleWrite<'a, Id> {
    pub(crate) fn new(client: &'a Client, request: ApiRequest, id: u64) -> Self {
        SingleWrite {
            client,
            request,
            id,
            _id: PhantomData,
        }
    }

    /// Sends the change; answers the entity's id and new `updated_at`.
    pub async fn send(self) -> Result<Written<Id>> {
        let answer = self
            .client
            .send_json::<Value>(&self.request)
            .await?
            .unwrap_or(Value::Null);
        Ok(Written {
            index: 0,
            id: Id::from(answer.get("id").and_then(Value::as_u64).unwrap_or(self.id)),
            request_id: None,
            updated_at: answer.get("updated_at").and_then(Value::as_i64),
            raw: answer,
        })
    }
}

/// Serializes write inputs. They are plain structs with string keys, which always serialize.
pub(crate) fn to_values<T: serde::Serialize>(items: impl IntoIterator<Item = T>) -> Vec<Value> {
    items
        .into_iter()
        .map(|item| serde_json::to_value(item).unwrap_or(Value::Null))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn matches_by_request_id_then_id_then_position() {
        let items = vec![
            json!({"id": 11, "request_id": "6"}),
            json!({"id": 10, "request_id": "5"}),
        ];
        let written = match_items("POST /x", 5, &[None, None], items).unwrap();
        assert_eq!((written[0].index, written[0].id), (6, 11));
        assert_eq!((written[1].index, written[1].id), (5, 10));

        let by_id = vec![json!({"id": 8}), json!({"id": 7})];
        let written = match_items("PATCH /x", 0, &[Some(7), Some(8)], by_id).unwrap();
        assert_eq!((written[0].index, written[1].index), (1, 0));

        let by_position = vec![json!({"id": 3})];
        let written = match_items("POST /x", 2, &[None], by_position).unwrap();
        assert_eq!(written[0].index, 2);

        assert!(match_items("POST /x", 0, &[None], vec![json!({})]).is_err());
    }
}
