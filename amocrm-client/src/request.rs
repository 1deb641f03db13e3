//! The escape hatch: any API v4 endpoint this crate does not type yet, through the same auth,
//! token refresh, rate limiter, retries, usage counters and error mapping as the typed calls.

use http::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::client::{ApiRequest, Client, Query};
use crate::error::{Error, Result};

/// A request to an endpoint of the account's API: see [`Client::request`].
#[derive(Debug)]
#[must_use = "a request does nothing until it is sent"]
pub struct RawRequest<'a> {
    client: &'a Client,
    request: ApiRequest,
    invalid: Option<Error>,
}

impl Client {
    /// Calls an endpoint of the account's API that has no typed method yet, e.g.
    /// `client.request(Method::GET, "/api/v4/catalogs").send::<serde_json::Value>()`.
    ///
    /// `path` is relative to the account's base URL (`/api/v4/...`); a full URL is refused.
    /// Counters and logs name the endpoint with numeric segments replaced by `{id}`
    /// (`POST /api/v4/leads/{id}/link`), so they stay few.
    ///
    /// Retries follow the method: GET, PATCH and PUT are retried on 429, 5xx and transport
    /// errors; POST and DELETE only on 429 and on connections never made, and a POST that fails
    /// after being sent ends in [`Error::MaybeApplied`]. Override with
    /// [`idempotent`](RawRequest::idempotent).
    ///
    /// ```no_run
    /// # async fn run(client: amocrm_client::Client) -> amocrm_client::Result<()> {
    /// use amocrm_client::Method;
    /// use serde_json::{Value, json};
    ///
    /// let catalogs: Option<Value> = client
    ///     .request(Method::GET, "/api/v4/catalogs")
    ///     .query("limit", 50)
    ///     .send()
    ///     .await?;
    /// client
    ///     .request(Method::POST, "/api/v4/leads/17657/link")
    ///     .json(&json!([{"to_entity_id": 10, "to_entity_type": "contacts"}]))
    ///     .send::<Value>()
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn request(&self, method: Method, path: &str) -> RawRequest<'_> {
        let trimmed = path.trim_start_matches('/');
        let invalid = (path.contains("://") || path.starts_with("//") || trimmed.is_empty())
            .then(|| Error::Config(format!("request path must be relative, got {path:?}")));
        let (trimmed, query) = match trimmed.split_once('?') {
            Some((path, _)) => (path, true),
            None => (trimmed, false),
        };
        let invalid = invalid.or_else(|| {
            query.then(|| Error::Config("put query parameters in .query(), not the path".into()))
        });
        let template = format!("/{}", template(trimmed));
        let idempotent = crate::retry::is_idempotent(&method);
        RawRequest {
            client: self,
            request: ApiRequest {
                endpoint: format!("{method} {template}"),
                method,
                path: trimmed.to_owned(),
                query: Query::new(),
                body: None,
                idempotent,
            },
            invalid,
        }
    }
}

impl RawRequest<'_> {
    /// Adds `key=value` to the query string (brackets stay literal: `filter[id][]`).
    pub fn query(mut self, key: impl Into<String>, value: impl ToString) -> Self {
        self.request.query.push(key, value);
        self
    }

    /// Replaces the query string with `query`.
    pub fn query_all(mut self, query: Query) -> Self {
        self.request.query = query;
        self
    }

    /// Sends `body` as JSON.
    pub fn json(mut self, body: &impl Serialize) -> Self {
        match serde_json::to_value(body) {
            Ok(value) => self.request.body = Some(value),
            Err(e) => {
                self.invalid = Some(Error::Config(format!("request body is not JSON: {e}")));
            }
        }
        self
    }

    /// Whether sending the request twice cannot change state twice, so it may be retried after
    /// 5xx and transport errors (default: true for GET, PATCH and PUT).
    pub fn idempotent(mut self, idempotent: bool) -> Self {
        self.request.idempotent = idempotent;
        self
    }

    /// The endpoint template this request is counted under, e.g. `GET /api/v4/leads/{id}`.
    pub fn endpoint(&self) -> &str {
        &self.request.endpoint
    }

    /// Sends and decodes the answer as `T` (`serde_json::Value` for raw JSON); `None` for
    /// 204 No Content or an empty body.
    pub async fn send<T: DeserializeOwned>(self) -> Result<Option<T>> {
        if let Some(error) = self.invalid {
            return Err(error);
        }
        self.client.send_json(&self.request).await
    }
}

/// `api/v4/leads/123/notes` → `api/v4/leads/{id}/notes`.
fn template(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
                "{id}"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_hide_ids() {
        assert_eq!(
            template("api/v4/leads/123/notes/45"),
            "api/v4/leads/{id}/notes/{id}"
        );
        assert_eq!(template("api/v4/leads"), "api/v4/leads");
    }
}
