//! `client.pipelines()`: lead pipelines and their stages.

use crate::client::{ApiRequest, Client, Query};
use crate::error::Result;
use crate::models::{Pipeline, PipelineId, Status, StatusId};

use super::{HalList, get_one};

/// Pipeline endpoints: see [`Client::pipelines`].
#[derive(Debug, Clone, Copy)]
pub struct Pipelines<'a> {
    client: &'a Client,
}

impl Client {
    /// Lead pipelines and their stages.
    pub fn pipelines(&self) -> Pipelines<'_> {
        Pipelines { client: self }
    }
}

impl Pipelines<'_> {
    /// `GET /api/v4/leads/pipelines`: every pipeline with its stages (one page).
    pub async fn list(&self) -> Result<Vec<Pipeline>> {
        let request = ApiRequest::get("/api/v4/leads/pipelines", "api/v4/leads/pipelines");
        Ok(self
            .client
            .send_json::<HalList<Pipeline>>(&request)
            .await?
            .map(HalList::into_items)
            .unwrap_or_default())
    }

    /// `GET /api/v4/leads/pipelines/{id}`.
    pub async fn get(&self, id: PipelineId) -> Result<Pipeline> {
        get_one(
            self.client,
            "/api/v4/leads/pipelines/{id}",
            format!("api/v4/leads/pipelines/{id}"),
            Query::new(),
        )
        .await
    }

    /// `GET /api/v4/leads/pipelines/{id}/statuses`.
    pub async fn statuses(&self, id: PipelineId) -> Result<Vec<Status>> {
        let request = ApiRequest::get(
            "/api/v4/leads/pipelines/{id}/statuses",
            format!("api/v4/leads/pipelines/{id}/statuses"),
        );
        Ok(self
            .client
            .send_json::<HalList<Status>>(&request)
            .await?
            .map(HalList::into_items)
            .unwrap_or_default())
    }

    /// `GET /api/v4/leads/pipelines/{pipeline_id}/statuses/{id}`.
    pub async fn status(&self, pipeline: PipelineId, id: StatusId) -> Result<Status> {
        get_one(
            self.client,
            "/api/v4/leads/pipelines/{pipeline_id}/statuses/{id}",
            format!("api/v4/leads/pipelines/{pipeline}/statuses/{id}"),
            Query::new(),
        )
        .await
    }
}
