//! `client.contacts()` and `client.companies()` share their filter shape.

use std::fmt::Display;

use http::Method;

use crate::client::{Client, Query};
use crate::error::Result;
use crate::models::{Contact, ContactId, ContactInput, ContactWith, UserId};

use super::leads::{single_patch, with_ids};
use super::write::{BatchWrite, SingleWrite, to_values};
use super::{
    ListRequest, MAX_PAGE_SIZE, Order, TimeRange, find_one, get_many, get_one, push_extra,
    with_query,
};

/// Filters for contacts and companies lists. Empty fields are not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityFilter<Id, W> {
    /// `filter[id][]`.
    pub ids: Vec<Id>,
    /// Full-text search (phones and e-mails included).
    pub query: Option<String>,
    /// `filter[responsible_user_id][]`.
    pub responsible_user_ids: Vec<UserId>,
    /// `filter[created_at][from|to]`.
    pub created_at: Option<TimeRange>,
    /// `filter[updated_at][from|to]`.
    pub updated_at: Option<TimeRange>,
    /// `with=`.
    pub with: Vec<W>,
    /// `order[..]`.
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

/// Filters for `GET /api/v4/contacts`.
pub type ContactsFilter = EntityFilter<ContactId, ContactWith>;

/// Contact endpoints: see [`Client::contacts`].
#[derive(Debug, Clone, Copy)]
pub struct Contacts<'a> {
    client: &'a Client,
}

impl Client {
    /// Contacts: read, create, update.
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

    /// Like [`get`](Self::get), with `None` for a missing contact.
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

    /// `GET /api/v4/contacts` with filters; stream it or fetch pages.
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

impl<'a> Contacts<'a> {
    /// `POST /api/v4/contacts`: creates contacts, 50 a request by default (at most 250, see
    /// [`BatchWrite::chunk_size`]), answering their ids in the order given.
    ///
    /// Retried only on 429. A request that fails after being sent ends in
    /// [`Error::MaybeApplied`](crate::Error::MaybeApplied): they may exist, and sending again
    /// may duplicate them. A 400's errors name the refused item
    /// ([`ValidationError::index`](crate::ValidationError::index)) and field.
    pub fn create(
        &self,
        items: impl IntoIterator<Item = ContactInput>,
    ) -> BatchWrite<'a, ContactId> {
        BatchWrite::new(
            self.client,
            Method::POST,
            "/api/v4/contacts",
            "api/v4/contacts",
            "contacts",
            to_values(items),
        )
    }

    /// `PATCH /api/v4/contacts`: changes several contacts, 50 a request by default. Retried
    /// like a read (the same values set again change nothing more).
    pub fn update_many(
        &self,
        changes: impl IntoIterator<Item = (ContactId, ContactInput)>,
    ) -> BatchWrite<'a, ContactId> {
        BatchWrite::new(
            self.client,
            Method::PATCH,
            "/api/v4/contacts",
            "api/v4/contacts",
            "contacts",
            with_ids(changes),
        )
    }

    /// `PATCH /api/v4/contacts/{id}`: changes one. Retried like a read.
    pub fn update(&self, id: ContactId, changes: ContactInput) -> SingleWrite<'a, ContactId> {
        single_patch(
            self.client,
            "/api/v4/contacts/{id}",
            "api/v4/contacts",
            id.0,
            &changes,
        )
    }
}
