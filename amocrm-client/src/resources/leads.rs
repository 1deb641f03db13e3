//! `client.leads()`: leads ("deals").

use http::Method;
use serde_json::Value;

use crate::client::{ApiRequest, Client, Query};
use crate::error::{Error, Result};
use crate::models::{
    CompanyId, ComplexCreated, ComplexLead, ContactId, Lead, LeadId, LeadInput, LeadWith,
    PipelineId, StatusId, UserId,
};

use super::write::{BatchWrite, SingleWrite, to_values};
use super::{
    ListRequest, MAX_PAGE_SIZE, Order, TimeRange, find_one, get_many, get_one, push_extra,
    with_query,
};

/// The most leads one `POST /api/v4/leads/complex` takes.
pub const MAX_COMPLEX_BATCH: usize = 50;

/// Lead endpoints: see [`Client::leads`].
#[derive(Debug, Clone, Copy)]
pub struct Leads<'a> {
    client: &'a Client,
}

impl Client {
    /// Leads: read, create, update, complex add.
    pub fn leads(&self) -> Leads<'_> {
        Leads { client: self }
    }
}

/// Filters for `GET /api/v4/leads`. Empty fields are not sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeadsFilter {
    /// `filter[id][]`.
    pub ids: Vec<LeadId>,
    /// Full-text search over the lead's filled fields.
    pub query: Option<String>,
    /// `filter[pipeline_id][]`.
    pub pipeline_ids: Vec<PipelineId>,
    /// Stages, each within its pipeline (`filter[statuses][i][pipeline_id|status_id]`).
    pub statuses: Vec<(PipelineId, StatusId)>,
    /// `filter[responsible_user_id][]`.
    pub responsible_user_ids: Vec<UserId>,
    /// `filter[created_at][from|to]`.
    pub created_at: Option<TimeRange>,
    /// `filter[updated_at][from|to]`.
    pub updated_at: Option<TimeRange>,
    /// `filter[closed_at][from|to]`.
    pub closed_at: Option<TimeRange>,
    /// `with=`.
    pub with: Vec<LeadWith>,
    /// `order[..]`.
    pub order: Option<Order>,
    /// Items per page, at most 250 (the default here, to spend fewer requests).
    pub limit: Option<u32>,
    /// Any other parameter, sent as given (`("filter[price][from]", "1000")`).
    pub extra: Vec<(String, String)>,
}

impl LeadsFilter {
    /// Leads changed since `since`.
    pub fn updated_since(since: chrono::DateTime<chrono::Utc>) -> Self {
        LeadsFilter {
            updated_at: Some(TimeRange::since(since)),
            ..LeadsFilter::default()
        }
    }

    /// Sets `with=`.
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
    /// `GET /api/v4/leads/{id}`; [`Error::NotFound`] if there is none.
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

impl<'a> Leads<'a> {
    /// `POST /api/v4/leads`: creates leads, 50 a request by default (at most 250, see
    /// [`BatchWrite::chunk_size`]), answering their ids in the order given.
    ///
    /// Retried only on 429. A request that fails after being sent ends in
    /// [`Error::MaybeApplied`]: the leads may exist, and sending
    /// again may duplicate them. A 400 is [`Error::Validation`] whose
    /// errors name the refused item ([`ValidationError::index`](crate::ValidationError::index))
    /// and field.
    pub fn create(&self, leads: impl IntoIterator<Item = LeadInput>) -> BatchWrite<'a, LeadId> {
        BatchWrite::new(
            self.client,
            Method::POST,
            "/api/v4/leads",
            "api/v4/leads",
            "leads",
            to_values(leads),
        )
    }

    /// `PATCH /api/v4/leads`: changes several leads, 50 a request by default. Retried like
    /// a read (the same values set again change nothing more).
    pub fn update_many(
        &self,
        changes: impl IntoIterator<Item = (LeadId, LeadInput)>,
    ) -> BatchWrite<'a, LeadId> {
        BatchWrite::new(
            self.client,
            Method::PATCH,
            "/api/v4/leads",
            "api/v4/leads",
            "leads",
            with_ids(changes),
        )
    }

    /// `PATCH /api/v4/leads/{id}`: changes one lead, e.g. moves it to another stage with
    /// [`LeadInput::status`]. Retried like a read.
    pub fn update(&self, id: LeadId, changes: LeadInput) -> SingleWrite<'a, LeadId> {
        single_patch(
            self.client,
            "/api/v4/leads/{id}",
            "api/v4/leads",
            id.0,
            &changes,
        )
    }

    /// `POST /api/v4/leads/complex`: creates leads each with a new contact and company in one
    /// request, 50 leads a request (amoCRM's limit). Duplicate control, when enabled for the
    /// integration, may merge an item into an existing lead (see [`ComplexCreated::merged`]).
    ///
    /// Retried only on 429; a failure after sending is
    /// [`Error::MaybeApplied`].
    pub fn create_complex(
        &self,
        leads: impl IntoIterator<Item = ComplexLead>,
    ) -> ComplexCreate<'a> {
        ComplexCreate {
            client: self.client,
            items: leads.into_iter().collect(),
            chunk_size: MAX_COMPLEX_BATCH,
        }
    }
}

/// `[{"id": .., ...changes}]` for batch PATCH.
pub(crate) fn with_ids<Id: Into<u64>, T: serde::Serialize>(
    changes: impl IntoIterator<Item = (Id, T)>,
) -> Vec<Value> {
    changes
        .into_iter()
        .map(|(id, change)| {
            let mut value = serde_json::to_value(change).unwrap_or(Value::Null);
            if let Some(object) = value.as_object_mut() {
                object.insert("id".into(), Value::from(id.into()));
            }
            value
        })
        .collect()
}

pub(crate) fn single_patch<'a, Id: From<u64>, T: serde::Serialize>(
    client: &'a Client,
    template: &'static str,
    base: &str,
    id: u64,
    changes: &T,
) -> SingleWrite<'a, Id> {
    let body = serde_json::to_value(changes).unwrap_or(Value::Null);
    let request = ApiRequest::with_body(Method::PATCH, template, format!("{base}/{id}"), body);
    SingleWrite::new(client, request, id)
}

/// A complex add: see [`Leads::create_complex`]. Finish with [`send`](Self::send).
#[derive(Debug)]
#[must_use = "a write does nothing until it is sent"]
pub struct ComplexCreate<'a> {
    client: &'a Client,
    items: Vec<ComplexLead>,
    chunk_size: usize,
}

impl ComplexCreate<'_> {
    /// Leads per request: 50 (the most amoCRM takes) by default.
    pub fn chunk_size(mut self, size: usize) -> Self {
        self.chunk_size = size.clamp(1, MAX_COMPLEX_BATCH);
        self
    }

    /// Sends every chunk in order; answers one [`ComplexCreated`] per lead made or merged,
    /// ordered by the caller's items.
    pub async fn send(self) -> Result<Vec<ComplexCreated>> {
        const TEMPLATE: &str = "/api/v4/leads/complex";
        let endpoint = format!("POST {TEMPLATE}");
        let mut bodies = Vec::with_capacity(self.items.len());
        for (index, item) in self.items.iter().enumerate() {
            let mut body = item
                .to_json()
                .map_err(|e| Error::Config(format!("complex lead {index}: {e}")))?;
            if let Some(object) = body.as_object_mut() {
                object.insert("request_id".into(), Value::String(index.to_string()));
            }
            bodies.push(body);
        }
        let mut created: Vec<ComplexCreated> = Vec::with_capacity(bodies.len());
        let mut start = 0;
        for chunk in bodies.chunks(self.chunk_size) {
            let request = ApiRequest::with_body(
                Method::POST,
                TEMPLATE,
                "api/v4/leads/complex",
                Value::Array(chunk.to_vec()),
            );
            let answer = match self.client.send_json::<Value>(&request).await {
                Ok(answer) => answer.unwrap_or(Value::Null),
                Err(error) if created.is_empty() => return Err(error),
                Err(error) => {
                    return Err(Error::PartiallyWritten {
                        endpoint,
                        written: created
                            .iter()
                            .flat_map(|c| {
                                c.indices.iter().map(|&index| crate::error::WrittenItem {
                                    index,
                                    id: c.lead_id.0,
                                })
                            })
                            .collect(),
                        source: Box::new(error),
                    });
                }
            };
            // Documented as a bare array; accept the HAL shape too.
            let items = match answer {
                Value::Array(items) => items,
                other => other
                    .pointer("/_embedded/leads")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
            };
            for (position, item) in items.into_iter().enumerate() {
                created.push(complex_item(&endpoint, start, chunk.len(), position, item)?);
            }
            start += chunk.len();
        }
        created.sort_by_key(|c| c.indices.first().copied().unwrap_or(usize::MAX));
        Ok(created)
    }
}

fn complex_item(
    endpoint: &str,
    start: usize,
    len: usize,
    position: usize,
    item: Value,
) -> Result<ComplexCreated> {
    let request_ids: Vec<String> = match item.get("request_id") {
        Some(Value::Array(ids)) => ids
            .iter()
            .filter_map(|id| match id {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Number(n)) => vec![n.to_string()],
        _ => Vec::new(),
    };
    let mut indices: Vec<usize> = request_ids
        .iter()
        .filter_map(|id| id.parse::<usize>().ok())
        .filter(|index| (start..start + len).contains(index))
        .collect();
    if indices.is_empty() && position < len {
        indices.push(start + position);
    }
    let id = |key: &str| item.get(key).and_then(Value::as_u64).filter(|&id| id > 0);
    let Some(lead_id) = id("id") else {
        return Err(Error::UnexpectedStatus {
            endpoint: endpoint.to_owned(),
            status: 200,
            detail: format!("complex answer item {position} has no lead id"),
        });
    };
    Ok(ComplexCreated {
        indices,
        lead_id: LeadId(lead_id),
        contact_id: id("contact_id").map(ContactId),
        company_id: id("company_id").map(CompanyId),
        merged: item.get("merged").and_then(Value::as_bool).unwrap_or(false),
        raw: item,
    })
}
