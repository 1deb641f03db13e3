//! `client.tags(entity)`: the account's tags of leads, contacts, companies or customers.

use http::Method;

use crate::client::{Client, Query};
use crate::models::{Tag, TagId, TagInput};

use super::write::{BatchWrite, to_values};
use super::{EntityType, ListRequest, MAX_PAGE_SIZE, push_extra};

/// Filters for `GET /api/v4/{entity}/tags`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagsFilter {
    /// `filter[name]`: the tag with exactly this text.
    pub name: Option<String>,
    /// `filter[id][]`.
    pub ids: Vec<TagId>,
    /// `query`: tags containing this text.
    pub query: Option<String>,
    /// Items per page, at most 250 (the default here).
    pub limit: Option<u32>,
    /// Any other parameter, sent as given.
    pub extra: Vec<(String, String)>,
}

impl TagsFilter {
    fn to_query(&self) -> Query {
        let mut query = Query::new();
        if let Some(name) = &self.name {
            query.push("filter[name]", name);
        }
        query.push_all("filter[id]", &self.ids);
        if let Some(text) = &self.query {
            query.push("query", text);
        }
        push_extra(&mut query, &self.extra);
        query
    }
}

/// Tag endpoints of one entity type: see [`Client::tags`].
#[derive(Debug, Clone, Copy)]
pub struct Tags<'a> {
    client: &'a Client,
    entity: EntityType,
}

impl Client {
    /// The account's tags of one entity type.
    pub fn tags(&self, entity: EntityType) -> Tags<'_> {
        Tags {
            client: self,
            entity,
        }
    }
}

impl<'a> Tags<'a> {
    /// `GET /api/v4/{entity}/tags`.
    pub fn list(&self, filter: TagsFilter) -> ListRequest<Tag> {
        let entity = self.entity.as_str();
        ListRequest::new(
            self.client,
            template(self.entity),
            format!("api/v4/{entity}/tags"),
            filter.to_query(),
            Some(filter.limit.unwrap_or(MAX_PAGE_SIZE)),
            MAX_PAGE_SIZE,
        )
    }

    /// `POST /api/v4/{entity}/tags`: creates tags, 50 a request by default, answering their
    /// ids in the order given. Retried only on 429; a failure after sending is
    /// [`Error::MaybeApplied`](crate::Error::MaybeApplied).
    pub fn create(&self, tags: impl IntoIterator<Item = TagInput>) -> BatchWrite<'a, TagId> {
        let entity = self.entity.as_str();
        BatchWrite::new(
            self.client,
            Method::POST,
            template(self.entity),
            format!("api/v4/{entity}/tags"),
            "tags",
            to_values(tags),
        )
    }
}

fn template(entity: EntityType) -> &'static str {
    match entity {
        EntityType::Leads => "/api/v4/leads/tags",
        EntityType::Contacts => "/api/v4/contacts/tags",
        EntityType::Companies => "/api/v4/companies/tags",
        EntityType::Customers => "/api/v4/customers/tags",
    }
}
