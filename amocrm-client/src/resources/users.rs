//! `client.users()`.

use crate::client::Client;
use crate::error::Result;
use crate::models::{User, UserId, UserWith};

use super::{ListRequest, MAX_PAGE_SIZE, get_one, with_query};

/// User endpoints: see [`Client::users`].
#[derive(Debug, Clone, Copy)]
pub struct Users<'a> {
    client: &'a Client,
}

impl Client {
    /// The account's users.
    pub fn users(&self) -> Users<'_> {
        Users { client: self }
    }
}

impl Users<'_> {
    /// `GET /api/v4/users`, every page.
    pub fn list(&self, with: &[UserWith]) -> ListRequest<User> {
        ListRequest::new(
            self.client,
            "/api/v4/users",
            "api/v4/users",
            with_query(with),
            Some(MAX_PAGE_SIZE),
            MAX_PAGE_SIZE,
        )
    }

    /// `GET /api/v4/users/{id}`.
    pub async fn get(&self, id: UserId, with: &[UserWith]) -> Result<User> {
        get_one(
            self.client,
            "/api/v4/users/{id}",
            format!("api/v4/users/{id}"),
            with_query(with),
        )
        .await
    }
}
