//! `client.companies()`.

use http::Method;

use crate::client::Client;
use crate::error::Result;
use crate::models::{Company, CompanyId, CompanyInput, CompanyWith};

use super::contacts::EntityFilter;
use super::leads::{single_patch, with_ids};
use super::write::{BatchWrite, SingleWrite, to_values};
use super::{ListRequest, MAX_PAGE_SIZE, find_one, get_many, get_one, with_query};

/// Filters for `GET /api/v4/companies`.
pub type CompaniesFilter = EntityFilter<CompanyId, CompanyWith>;

/// Company endpoints: see [`Client::companies`].
#[derive(Debug, Clone, Copy)]
pub struct Companies<'a> {
    client: &'a Client,
}

impl Client {
    /// Companies: read, create, update.
    pub fn companies(&self) -> Companies<'_> {
        Companies { client: self }
    }
}

impl Companies<'_> {
    /// `GET /api/v4/companies/{id}`; [`Error::NotFound`](crate::Error::NotFound) if there is none.
    pub async fn get(&self, id: CompanyId, with: &[CompanyWith]) -> Result<Company> {
        get_one(
            self.client,
            "/api/v4/companies/{id}",
            format!("api/v4/companies/{id}"),
            with_query(with),
        )
        .await
    }

    /// Like [`get`](Self::get), with `None` for a missing company.
    pub async fn find(&self, id: CompanyId, with: &[CompanyWith]) -> Result<Option<Company>> {
        find_one(
            self.client,
            "/api/v4/companies/{id}",
            format!("api/v4/companies/{id}"),
            with_query(with),
        )
        .await
    }

    /// Companies by id through `filter[id][]`, 250 a request.
    pub async fn get_many(&self, ids: &[CompanyId], with: &[CompanyWith]) -> Result<Vec<Company>> {
        get_many(
            self.client,
            "/api/v4/companies",
            "api/v4/companies",
            ids,
            with_query(with),
        )
        .await
    }

    /// `GET /api/v4/companies` with filters; stream it or fetch pages.
    pub fn list(&self, filter: CompaniesFilter) -> ListRequest<Company> {
        ListRequest::new(
            self.client,
            "/api/v4/companies",
            "api/v4/companies",
            filter.to_query(),
            Some(filter.limit.unwrap_or(MAX_PAGE_SIZE)),
            MAX_PAGE_SIZE,
        )
    }
}

impl<'a> Companies<'a> {
    /// `POST /api/v4/companies`: creates companies, 50 a request by default (at most 250, see
    /// [`BatchWrite::chunk_size`]), answering their ids in the order given.
    ///
    /// Retried only on 429. A request that fails after being sent ends in
    /// [`Error::MaybeApplied`](crate::Error::MaybeApplied): they may exist, and sending again
    /// may duplicate them. A 400's errors name the refused item
    /// ([`ValidationError::index`](crate::ValidationError::index)) and field.
    pub fn create(
        &self,
        items: impl IntoIterator<Item = CompanyInput>,
    ) -> BatchWrite<'a, CompanyId> {
        BatchWrite::new(
            self.client,
            Method::POST,
            "/api/v4/companies",
            "api/v4/companies",
            "companies",
            to_values(items),
        )
    }

    /// `PATCH /api/v4/companies`: changes several companies, 50 a request by default. Retried
    /// like a read (the same values set again change nothing more).
    pub fn update_many(
        &self,
        changes: impl IntoIterator<Item = (CompanyId, CompanyInput)>,
    ) -> BatchWrite<'a, CompanyId> {
        BatchWrite::new(
            self.client,
            Method::PATCH,
            "/api/v4/companies",
            "api/v4/companies",
            "companies",
            with_ids(changes),
        )
    }

    /// `PATCH /api/v4/companies/{id}`: changes one. Retried like a read.
    pub fn update(&self, id: CompanyId, changes: CompanyInput) -> SingleWrite<'a, CompanyId> {
        single_patch(
            self.client,
            "/api/v4/companies/{id}",
            "api/v4/companies",
            id.0,
            &changes,
        )
    }
}
