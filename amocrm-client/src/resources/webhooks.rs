//! `client.webhooks()`: subscriptions (account administrators only).

use http::Method;
use serde_json::json;

use crate::client::{ApiRequest, Client, Query};
use crate::error::{Error, Result};
use crate::models::{Webhook, WebhookSetting};

use super::HalList;

/// Webhook endpoints: see [`Client::webhooks`].
#[derive(Debug, Clone, Copy)]
pub struct Webhooks<'a> {
    client: &'a Client,
}

impl Client {
    /// Webhook subscriptions.
    pub fn webhooks(&self) -> Webhooks<'_> {
        Webhooks { client: self }
    }
}

const TEMPLATE: &str = "/api/v4/webhooks";
const PATH: &str = "api/v4/webhooks";

impl Webhooks<'_> {
    /// `GET /api/v4/webhooks`: every subscription (an account has at most 100).
    pub async fn list(&self) -> Result<Vec<Webhook>> {
        self.list_with(Query::new()).await
    }

    /// The subscription for exactly this URL, if any (`filter[destination]`).
    pub async fn find(&self, destination: &str) -> Result<Option<Webhook>> {
        let mut query = Query::new();
        query.push("filter[destination]", destination);
        Ok(self
            .list_with(query)
            .await?
            .into_iter()
            .find(|w| w.destination == destination))
    }

    async fn list_with(&self, query: Query) -> Result<Vec<Webhook>> {
        let request = ApiRequest::get(TEMPLATE, PATH).query(query);
        Ok(self
            .client
            .send_json::<HalList<Webhook>>(&request)
            .await?
            .map(HalList::into_items)
            .unwrap_or_default())
    }

    /// `POST /api/v4/webhooks`: subscribes `destination` to `settings`. Subscribing an existing
    /// destination replaces its settings. Retried only on 429, like every write.
    pub async fn subscribe(
        &self,
        destination: &str,
        settings: &[WebhookSetting],
    ) -> Result<Webhook> {
        let body = json!({ "destination": destination, "settings": settings });
        let request = ApiRequest::with_body(Method::POST, TEMPLATE, PATH, body);
        self.client
            .send_json(&request)
            .await?
            .ok_or_else(|| Error::UnexpectedStatus {
                endpoint: request.endpoint.clone(),
                status: 204,
                detail: "no webhook in the answer".into(),
            })
    }

    /// `DELETE /api/v4/webhooks` with the destination in the body.
    pub async fn unsubscribe(&self, destination: &str) -> Result<()> {
        let body = json!({ "destination": destination });
        let request = ApiRequest::with_body(Method::DELETE, TEMPLATE, PATH, body);
        self.client.send(&request).await?;
        Ok(())
    }
}
