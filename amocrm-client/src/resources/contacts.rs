//! `client.contacts()` and `client.companies()` share their filter shape.

use std::fmt::Display;

use crate::client::{Client, Query};
use crate::error::Result;
use crate::models::{Contact, ContactId, ContactWith, UserId};

use super::{
    ListRequest, MAX_PAGE_SIZE, Order, TimeRange, find_one, get_many, get_one, push_extra,
    with_query,
};

/// Filters for contacts and companies lists. Empty fields are not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityFilter<Id, W> {
    pub ids: Vec<Id>,
    /// Full-text search (phones and e-mails included).
    pub query: Option<String>,
    pub responsible_user_ids: Vec<UserId>,
    pub created_at: Option<TimeRange>,
    pub updated_at: Option<TimeRange>,
    pub with: Vec<W>,
    pub order: Option<Order>,
    /// Items per page, at most 250 (the default here).
    pub limit: Option<u32>,
    /// Any other parameter, sent as given.
    pub extra: Vec<(String, String)>,
}

impl<Id, W> Default for EntityFilter<Id, W> {
    fn default() -> Self {
        EntityFilter {
            ids: Vec::new(),
            query: None,
            responsible_user_ids: Vec::new(),
            created_at: None,
            updated_at: None,
            with: Vec::new(),
            order: None,
            limit: None,
            extra: Vec::new(),
        }
    }
}

impl<Id: Display, W: AsRef<str>> EntityFilter<Id, W> {
    pub(crate) fn to_query(&self) -> Query {
        let mut query = Query::new();
        query.push_all("filter[id]", &self.ids);
        if let Some(text) = &self.query {
            query.push("query", text);
        }
        query.push_all("filter[responsible_user_id]", &self.responsible_user_ids);
        if let Some(range) = &self.created_at {
            range.push(&mut query, "filter[created_at]");
        }
        if let Some(range) = &self.updated_at {
            range.push(&mut query, "filter[updated_at]");
        }
        query.push_joined("with", &self.with);
        if let Some(order) = &self.order {
            order.push(&mut query);
        }
        push_extra(&mut query, &self.extra);
        query
    }
}

pub type ContactsFilter = EntityFilter<ContactId, ContactWith>;

/// Contact endpoints: see [`Client::contacts`].
#[derive(Debug, Clone, Copy)]
pub struct Contacts<'a> {
    client: &'a Client,
}

impl Client {
    pub fn contacts(&self) -> Contacts<'_> {
        Contacts { client: self }
    }
}

impl Contacts<'_> {
    /// `GET /api/v4/contacts/{id}`; [`Error::NotFound`](crate::Error::NotFound) if there is none.
    pub async fn get(&self, id: ContactId, with: &[ContactWith]) -> Result<Contact> {
        get_one(
            self.client,
            "/api/v4/contacts/{id}",
            format!("api/v4/contacts/{id}"),
            with_query(with),
        )
        .await
    }

    pub async fn find(&self, id: ContactId, with: &[ContactWith]) -> Result<Option<Contact>> {
        find_one(
            self.client,
            "/api/v4/contacts/{id}",
            format!("api/v4/contacts/{id}"),
            with_query(with),
        )
        .await
    }

    /// Contacts by id through `filter[id][]`, 250 a request.
    pub async fn get_many(&self, ids: &[ContactId], with: &[ContactWith]) -> Result<Vec<Contact>> {
        get_many(
            self.client,
            "/api/v4/contacts",
            "api/v4/contacts",
            ids,
            with_query(with),
        )
        .await
    }

    pub fn list(&self, filter: ContactsFilter) -> ListRequest<Contact> {
        ListRequest::new(
            self.client,
            "/api/v4/contacts",
            "api/v4/contacts",
            filter.to_query(),
            Some(filter.limit.unwrap_or(MAX_PAGE_SIZE)),
            MAX_PAGE_SIZE,
        )
    }
}
