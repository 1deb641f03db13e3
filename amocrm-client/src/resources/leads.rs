//! `client.leads()`: leads ("deals").

use crate::client::{Client, Query};
use crate::error::Result;
use crate::models::{Lead, LeadId, LeadWith, PipelineId, StatusId, UserId};

use super::{
    ListRequest, MAX_PAGE_SIZE, Order, TimeRange, find_one, get_many, get_one, push_extra,
    with_query,
};

/// Lead endpoints: see [`Client::leads`].
#[derive(Debug, Clone, Copy)]
pub struct Leads<'a> {
    client: &'a Client,
}

impl Client {
    pub fn leads(&self) -> Leads<'_> {
        Leads { client: self }
    }
}

/// Filters for `GET /api/v4/leads`. Empty fields are not sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeadsFilter {
    pub ids: Vec<LeadId>,
    /// Full-text search over the lead's filled fields.
    pub query: Option<String>,
    pub pipeline_ids: Vec<PipelineId>,
    /// Stages, each within its pipeline (`filter[statuses][i][pipeline_id|status_id]`).
    pub statuses: Vec<(PipelineId, StatusId)>,
    pub responsible_user_ids: Vec<UserId>,
    pub created_at: Option<TimeRange>,
    pub updated_at: Option<TimeRange>,
    pub closed_at: Option<TimeRange>,
    pub with: Vec<LeadWith>,
    pub order: Option<Order>,
    /// Items per page, at most 250 (the default here, to spend fewer requests).
    pub limit: Option<u32>,
    /// Any other parameter, sent as given (`("filter[price][from]", "1000")`).
    pub extra: Vec<(String, String)>,
}

impl LeadsFilter {
    pub fn updated_since(since: chrono::DateTime<chrono::Utc>) -> Self {
        LeadsFilter {
            updated_at: Some(TimeRange::since(since)),
            ..LeadsFilter::default()
        }
    }

    pub fn with(mut self, with: &[LeadWith]) -> Self {
        self.with = with.to_vec();
        self
    }

    pub(crate) fn to_query(&self) -> Query {
        let mut query = Query::new();
        query.push_all("filter[id]", &self.ids);
        if let Some(text) = &self.query {
            query.push("query", text);
        }
        query.push_all("filter[pipeline_id]", &self.pipeline_ids);
        for (i, (pipeline, status)) in self.statuses.iter().enumerate() {
            query.push(format!("filter[statuses][{i}][pipeline_id]"), pipeline);
            query.push(format!("filter[statuses][{i}][status_id]"), status);
        }
        query.push_all("filter[responsible_user_id]", &self.responsible_user_ids);
        for (range, key) in [
            (&self.created_at, "filter[created_at]"),
            (&self.updated_at, "filter[updated_at]"),
            (&self.closed_at, "filter[closed_at]"),
        ] {
            if let Some(range) = range {
                range.push(&mut query, key);
            }
        }
        query.push_joined("with", &self.with);
        if let Some(order) = &self.order {
            order.push(&mut query);
        }
        push_extra(&mut query, &self.extra);
        query
    }
}

impl Leads<'_> {
    /// `GET /api/v4/leads/{id}`; [`Error::NotFound`](crate::Error::NotFound) if there is none.
    pub async fn get(&self, id: LeadId, with: &[LeadWith]) -> Result<Lead> {
        get_one(
            self.client,
            "/api/v4/leads/{id}",
            format!("api/v4/leads/{id}"),
            with_query(with),
        )
        .await
    }

    /// Like [`get`](Self::get), with `None` for a missing lead.
    pub async fn find(&self, id: LeadId, with: &[LeadWith]) -> Result<Option<Lead>> {
        find_one(
            self.client,
            "/api/v4/leads/{id}",
            format!("api/v4/leads/{id}"),
            with_query(with),
        )
        .await
    }

    /// Leads by id through `filter[id][]`, 250 a request. Missing ids are simply absent;
    /// the order is amoCRM's.
    pub async fn get_many(&self, ids: &[LeadId], with: &[LeadWith]) -> Result<Vec<Lead>> {
        get_many(
            self.client,
            "/api/v4/leads",
            "api/v4/leads",
            ids,
            with_query(with),
        )
        .await
    }

    /// `GET /api/v4/leads` with filters; stream it or fetch pages.
    pub fn list(&self, filter: LeadsFilter) -> ListRequest<Lead> {
        ListRequest::new(
            self.client,
            "/api/v4/leads",
            "api/v4/leads",
            filter.to_query(),
            Some(filter.limit.unwrap_or(MAX_PAGE_SIZE)),
            MAX_PAGE_SIZE,
        )
    }
}
