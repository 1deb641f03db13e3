//! Users of the account: `GET /api/v4/users`.

use serde::Deserialize;
use serde_json::Value;

use super::{ListItem, UserId, keep_raw, string_enum};

string_enum!(
    /// What `with=` can add to a user.
    UserWith {
        Role => "role",
        Group => "group",
        Uuid => "uuid",
        AmojoId => "amojo_id",
        UserRank => "user_rank",
        PhoneNumber => "phone_number",
    }
);

/// A user. [`User::raw`] holds the whole object (including `rights`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(remote = "Self")]
#[non_exhaustive]
pub struct User {
    /// The user's id.
    pub id: UserId,
    /// Name.
    #[serde(default)]
    pub name: String,
    /// E-mail (login).
    #[serde(default)]
    pub email: Option<String>,
    /// Interface language.
    #[serde(default)]
    pub lang: Option<String>,
    /// Access rights, as JSON.
    #[serde(default)]
    pub rights: Value,
    #[serde(skip)]
    raw: Value,
}
keep_raw!(User);

impl ListItem for User {
    const KEY: &'static str = "users";
}
