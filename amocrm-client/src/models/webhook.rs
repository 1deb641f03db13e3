//! Webhook subscriptions: `GET/POST/DELETE /api/v4/webhooks`.

use serde::Deserialize;
use serde_json::Value;

use super::{AccountId, ListItem, UserId, WebhookId, keep_raw, null_as_default, string_enum};

string_enum!(
    /// An event a webhook subscribes to (`settings[]`).
    WebhookSetting {
        AddLead => "add_lead",
        UpdateLead => "update_lead",
        DeleteLead => "delete_lead",
        RestoreLead => "restore_lead",
        StatusLead => "status_lead",
        ResponsibleLead => "responsible_lead",
        NoteLead => "note_lead",
        AddContact => "add_contact",
        UpdateContact => "update_contact",
        DeleteContact => "delete_contact",
        RestoreContact => "restore_contact",
        ResponsibleContact => "responsible_contact",
        NoteContact => "note_contact",
        AddCompany => "add_company",
        UpdateCompany => "update_company",
        DeleteCompany => "delete_company",
        RestoreCompany => "restore_company",
        ResponsibleCompany => "responsible_company",
        NoteCompany => "note_company",
        AddCustomer => "add_customer",
        UpdateCustomer => "update_customer",
        DeleteCustomer => "delete_customer",
        ResponsibleCustomer => "responsible_customer",
        NoteCustomer => "note_customer",
        AddTask => "add_task",
        UpdateTask => "update_task",
        DeleteTask => "delete_task",
        ResponsibleTask => "responsible_task",
        AddUnsorted => "add_unsorted",
        UpdateUnsorted => "update_unsorted",
        DeleteUnsorted => "delete_unsorted",
        AddTalk => "add_talk",
        UpdateTalk => "update_talk",
        AddMessage => "add_message",
        AddCatalog => "add_catalog",
        UpdateCatalog => "update_catalog",
        DeleteCatalog => "delete_catalog",
    }
);

/// A webhook subscription. [`Webhook::raw`] holds the whole object.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(remote = "Self")]
#[non_exhaustive]
pub struct Webhook {
    /// The subscription's id.
    pub id: WebhookId,
    /// The URL amoCRM calls.
    pub destination: String,
    /// The events it is subscribed to.
    #[serde(default, deserialize_with = "null_as_default")]
    pub settings: Vec<WebhookSetting>,
    /// amoCRM switches off a webhook that keeps failing.
    #[serde(default)]
    pub disabled: bool,
    /// Delivery order.
    #[serde(default)]
    pub sort: Option<i64>,
    /// Who subscribed it.
    #[serde(default)]
    pub created_by: Option<UserId>,
    /// Unix seconds.
    #[serde(default)]
    pub created_at: Option<i64>,
    /// Unix seconds.
    #[serde(default)]
    pub updated_at: Option<i64>,
    /// The account.
    #[serde(default)]
    pub account_id: Option<AccountId>,
    #[serde(skip)]
    raw: Value,
}
keep_raw!(Webhook);

impl ListItem for Webhook {
    const KEY: &'static str = "webhooks";
}
