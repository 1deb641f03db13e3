//! `client.companies()`.

use crate::client::Client;
use crate::error::Result;
use crate::models::{Company, CompanyId, CompanyWith};

use super::contacts::EntityFilter;
use super::{ListRequest, MAX_PAGE_SIZE, find_one, get_many, get_one, with_query};

pub type CompaniesFilter = EntityFilter<CompanyId, CompanyWith>;

/// Company endpoints: see [`Client::companies`].
#[derive(Debug, Clone, Copy)]
pub struct Companies<'a> {
    client: &'a Client,
}

impl Client {
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
