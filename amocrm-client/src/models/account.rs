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
    /// The account's id.
    pub id: AccountId,
    /// The account's name.
    #[serde(default)]
    pub name: String,
    /// Its subdomain (`geodrive`).
    #[serde(default)]
    pub subdomain: String,
    /// Country code.
    #[serde(default)]
    pub country: Option<String>,
    /// Currency code.
    #[serde(default)]
    pub currency: Option<String>,
    /// Currency symbol.
    #[serde(default)]
    pub currency_symbol: Option<String>,
    /// The user the token belongs to.
    #[serde(default)]
    pub current_user_id: Option<UserId>,
    /// How customers work in the account.
    #[serde(default)]
    pub customers_mode: Option<String>,
    /// Whether incoming leads (unsorted) are on.
    #[serde(default)]
    pub is_unsorted_on: bool,
    /// Whether loss reasons are on.
    #[serde(default)]
    pub is_loss_reason_enabled: bool,
    /// Whether it is a technical account.
    #[serde(default)]
    pub is_technical_account: bool,
    /// Id in amoCRM's chat service.
    #[serde(default)]
    pub amojo_id: Option<String>,
    /// Account version.
    #[serde(default)]
    pub version: Option<i64>,
    /// Unix seconds.
    #[serde(default)]
    pub created_at: Option<i64>,
    /// Unix seconds.
    #[serde(default)]
    pub updated_at: Option<i64>,
    #[serde(skip)]
    raw: Value,
}
keep_raw!(Account);
