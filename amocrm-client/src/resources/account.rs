//! `client.account()`.

use crate::client::Client;
use crate::error::Result;
use crate::models::{Account, AccountWith};

use super::{get_one, with_query};

/// Account endpoint: see [`Client::account`].
#[derive(Debug, Clone, Copy)]
pub struct AccountResource<'a> {
    client: &'a Client,
}

impl Client {
    /// The account: `GET /api/v4/account`.
    pub fn account(&self) -> AccountResource<'_> {
        AccountResource { client: self }
    }
}

impl AccountResource<'_> {
    /// `GET /api/v4/account?with=...`
    pub async fn get(&self, with: &[AccountWith]) -> Result<Account> {
        get_one(
            self.client,
            "/api/v4/account",
            "api/v4/account".into(),
            with_query(with),
        )
        .await
    }
}
