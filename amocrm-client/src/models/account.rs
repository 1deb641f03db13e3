//! The account: `GET /api/v4/account`.

use serde::Deserialize;
use serde_json::Value;

use super::{AccountId, UserId, keep_raw, string_enum};

string_enum!(
    /// What `with=` can add to the account.
    AccountWith {
        AmojoId => "amojo_id",
        AmojoRights => "amojo_rights",
        UsersGroups => "users_groups",
        TaskTypes => "task_types",
        Version => "version",
        EntityNames => "entity_names",
        DatetimeSettings => "datetime_settings",
        DriveUrl => "drive_url",
        IsApiFilterEnabled => "is_api_filter_enabled",
    }
);

/// The account the token belongs to. [`Account::raw`] holds the whole object.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(remote = "Self")]
#[non_exhaustive]
pub struct Account {
    pub id: AccountId,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub subdomain: String,
    #[serde(default)]
    pub country: Option<String>,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub currency_symbol: Option<String>,
    #[serde(default)]
    pub current_user_id: Option<UserId>,
    #[serde(default)]
    pub customers_mode: Option<String>,
    #[serde(default)]
    pub is_unsorted_on: bool,
    #[serde(default)]
    pub is_loss_reason_enabled: bool,
    #[serde(default)]
    pub is_technical_account: bool,
    #[serde(default)]
    pub amojo_id: Option<String>,
    #[serde(default)]
    pub version: Option<i64>,
    /// Unix seconds.
    #[serde(default)]
    pub created_at: Option<i64>,
    #[serde(default)]
    pub updated_at: Option<i64>,
    #[serde(skip)]
    raw: Value,
}
keep_raw!(Account);
