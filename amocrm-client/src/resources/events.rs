//! `client.events()`: the account's change feed, to catch up after downtime.

use crate::client::{Client, Query};
use crate::error::Result;
use crate::models::{Event, EventId, EventType, UserId};

use super::{ListRequest, TimeRange, get_one, push_extra};

/// The events endpoint returns at most 100 items a page.
pub const MAX_EVENTS_PAGE_SIZE: u32 = 100;

/// Filters for `GET /api/v4/events`. Empty fields are not sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventsFilter {
    /// `filter[id][]`.
    pub ids: Vec<EventId>,
    /// `filter[type][]`.
    pub types: Vec<EventType>,
    /// Entity kinds: `lead`, `contact`, `company`, `customer`, `task`, ...
    pub entities: Vec<String>,
    /// `filter[entity_id][]` (at most 10, with one entity).
    pub entity_ids: Vec<u64>,
    /// `filter[created_by][]`.
    pub created_by: Vec<UserId>,
    /// `filter[created_at][from|to]`.
    pub created_at: Option<TimeRange>,
    /// Names to add: `contact_name`, `lead_name`, `company_name`, ...
    pub with: Vec<String>,
    /// Items per page, at most 100 (the default here).
    pub limit: Option<u32>,
    /// Any other parameter, sent as given.
    pub extra: Vec<(String, String)>,
}

impl EventsFilter {
    fn to_query(&self) -> Query {
        let mut query = Query::new();
        query.push_all("filter[id]", &self.ids);
        query.push_all("filter[type]", &self.types);
        query.push_all("filter[entity]", &self.entities);
        query.push_all("filter[entity_id]", &self.entity_ids);
        query.push_all("filter[created_by]", &self.created_by);
        if let Some(range) = &self.created_at {
            range.push(&mut query, "filter[created_at]");
        }
        query.push_joined("with", &self.with);
        push_extra(&mut query, &self.extra);
        query
    }
}

/// Event endpoints: see [`Client::events`].
#[derive(Debug, Clone, Copy)]
pub struct Events<'a> {
    client: &'a Client,
}

impl Client {
    /// The events feed.
    pub fn events(&self) -> Events<'_> {
        Events { client: self }
    }
}

impl Events<'_> {
    /// `GET /api/v4/events`, newest first unless filtered otherwise.
    pub fn list(&self, filter: EventsFilter) -> ListRequest<Event> {
        ListRequest::new(
            self.client,
            "/api/v4/events",
            "api/v4/events",
            filter.to_query(),
            Some(filter.limit.unwrap_or(MAX_EVENTS_PAGE_SIZE)),
            MAX_EVENTS_PAGE_SIZE,
        )
    }

    /// `GET /api/v4/events/{id}`.
    pub async fn get(&self, id: &EventId) -> Result<Event> {
        get_one(
            self.client,
            "/api/v4/events/{id}",
            format!("api/v4/events/{id}"),
            Query::new(),
        )
        .await
    }
}
