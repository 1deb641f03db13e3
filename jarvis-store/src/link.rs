//! Links from deals to the business's own tables: the store side of `client_id` and
//! `conversation_id`.
//!
//! The business writes the queries (they run against its own tables, which this crate knows nothing
//! about); the store runs them with typed binds, under a statement timeout and with read-only intent
//! ([`LinkStore::run_link_query`]), and writes what they found without overwriting a value that
//! someone else set ([`LinkStore::apply_link`]).
//!
//! Who set a value is known from the `linked_client_id` / `linked_conversation_id` columns: they hold
//! what the linker itself wrote last. A `client_id` that is set and differs from `linked_client_id`
//! was set by someone else.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::Result;

/// One value bound to an operator's link query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkBind {
    /// A text value, NULL when `None`.
    Text(Option<String>),
    /// A list of texts: `text[]` on PostgreSQL, a JSON array text on SQLite (read it with
    /// `json_each`).
    TextList(Vec<String>),
}

/// Which of a deal's link columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkColumn {
    /// `client_id`, found from the deal's main contact.
    Client,
    /// `conversation_id`, found from the lead's talks and chat messages.
    Conversation,
}

impl LinkColumn {
    /// `client` or `conversation` (metric labels, logs).
    pub fn as_str(self) -> &'static str {
        match self {
            LinkColumn::Client => "client",
            LinkColumn::Conversation => "conversation",
        }
    }

    /// The column other services read.
    pub(crate) fn value_column(self) -> &'static str {
        match self {
            LinkColumn::Client => "client_id",
            LinkColumn::Conversation => "conversation_id",
        }
    }

    /// The column holding what the linker wrote last.
    pub(crate) fn ours_column(self) -> &'static str {
        match self {
            LinkColumn::Client => "linked_client_id",
            LinkColumn::Conversation => "linked_conversation_id",
        }
    }

    /// The column holding what the link was last computed for (main contact id, talk id).
    pub(crate) fn for_column(self) -> &'static str {
        match self {
            LinkColumn::Client => "client_linked_for",
            LinkColumn::Conversation => "conversation_linked_for",
        }
    }
}

/// Why an operator's link query gave no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkFailure {
    /// It ran longer than its timeout and was cancelled.
    Timeout,
    /// The database refused it: a syntax error, a missing table or column, a wrong type, an attempt
    /// to write.
    Query,
    /// It answered something that is not a UUID.
    Value,
    /// The database could not be reached.
    Unavailable,
}

impl LinkFailure {
    /// `timeout`, `query`, `value` or `unavailable` (metric labels).
    pub fn as_str(self) -> &'static str {
        match self {
            LinkFailure::Timeout => "timeout",
            LinkFailure::Query => "query",
            LinkFailure::Value => "value",
            LinkFailure::Unavailable => "unavailable",
        }
    }
}

/// The link state of one deal, and what its link queries are computed from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DealLinks {
    /// amoCRM's lead id, as text.
    pub amocrm_deal_id: String,
    /// amoCRM's id of the lead's main contact, as text.
    pub main_contact_id: Option<String>,
    /// The main contact's `custom_fields_values` as stored on the deal.
    pub contact_custom_fields: Option<Value>,
    /// The deal's `metadata`.
    pub metadata: Value,
    /// The stored `client_id`.
    pub client_id: Option<Uuid>,
    /// The `client_id` the linker wrote last.
    pub linked_client_id: Option<Uuid>,
    /// The main contact the client link was last computed for.
    pub client_linked_for: Option<String>,
    /// The stored `conversation_id`.
    pub conversation_id: Option<Uuid>,
    /// The `conversation_id` the linker wrote last.
    pub linked_conversation_id: Option<Uuid>,
    /// The talk the conversation link was last computed for.
    pub conversation_linked_for: Option<String>,
    /// Set while the last attempt to link this deal failed (it is tried again).
    pub link_failed_at: Option<DateTime<Utc>>,
    /// Whether the deal is deleted in amoCRM.
    pub is_deleted: bool,
}

impl DealLinks {
    /// The current value of a link column.
    pub fn value(&self, column: LinkColumn) -> Option<Uuid> {
        match column {
            LinkColumn::Client => self.client_id,
            LinkColumn::Conversation => self.conversation_id,
        }
    }

    /// What the linker wrote last in a link column.
    pub fn ours(&self, column: LinkColumn) -> Option<Uuid> {
        match column {
            LinkColumn::Client => self.linked_client_id,
            LinkColumn::Conversation => self.linked_conversation_id,
        }
    }

    /// What a link column was last computed for.
    pub fn linked_for(&self, column: LinkColumn) -> Option<&str> {
        match column {
            LinkColumn::Client => self.client_linked_for.as_deref(),
            LinkColumn::Conversation => self.conversation_linked_for.as_deref(),
        }
    }

    /// Whether a link column holds a value the linker did not write.
    pub fn set_by_someone_else(&self, column: LinkColumn) -> bool {
        let value = self.value(column);
        value.is_some() && value != self.ours(column)
    }
}

/// What [`LinkStore::apply_link`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkOutcome {
    /// The column now holds the value found.
    Linked,
    /// The column already held the value found, or nothing was found and it stays empty.
    Unchanged,
    /// Nothing was found and the value the linker had written earlier (for another main contact or
    /// talk) was removed.
    Cleared,
    /// Someone else set the column to another value; it was kept (overwriting was not allowed).
    KeptOther,
    /// No such deal.
    NoDeal,
}

/// The new state of a link column: `(value, ours, outcome)`, from its current state, the value the
/// query found and whether overwriting someone else's value is allowed.
///
/// - A value found replaces an empty column or one the linker wrote; it replaces someone else's value
///   only when `overwrite`.
/// - Nothing found clears a value the linker wrote (it was computed for another main contact or
///   talk), and never someone else's.
pub(crate) fn decide(
    current: Option<Uuid>,
    ours: Option<Uuid>,
    found: Option<Uuid>,
    overwrite: bool,
) -> (Option<Uuid>, Option<Uuid>, LinkOutcome) {
    let someone_else = current.is_some() && current != ours;
    match found {
        Some(found) if current == Some(found) => (current, ours, LinkOutcome::Unchanged),
        Some(_) if someone_else && !overwrite => (current, ours, LinkOutcome::KeptOther),
        Some(found) => (Some(found), Some(found), LinkOutcome::Linked),
        None if current.is_some() && !someone_else => (None, None, LinkOutcome::Cleared),
        None => (current, ours, LinkOutcome::Unchanged),
    }
}

/// Which deals [`LinkStore::deals_to_link`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkScan {
    /// Deals whose `client_id` may need a link: empty, or computed for another main contact than
    /// the deal's (whoever set it: the caller decides whether to overwrite).
    pub client: bool,
    /// Deals whose `conversation_id` is empty.
    pub conversation: bool,
    /// Only deals changed in amoCRM at or after this time (`updated_at`; `synced_at` for rows without
    /// it).
    pub since: Option<DateTime<Utc>>,
    /// Only deals whose `amocrm_deal_id` sorts after this one (keyset paging).
    pub after: Option<String>,
    /// Only deals whose last link attempt failed before this time.
    pub failed_before: Option<DateTime<Utc>>,
    /// Most deals returned.
    pub limit: usize,
}

/// The store side of linking deals to the business's tables. Both stores implement it; reach it
/// through [`Store::links`](crate::Store::links).
#[async_trait::async_trait]
pub trait LinkStore: Send + Sync {
    /// Runs an operator's query and returns the first column of its first row as a UUID (`None` for
    /// no row or a NULL). Binds `binds` in order as `$1`, `$2`, ...; a query may use any of them.
    ///
    /// Runs read-only and is cancelled after `timeout`: on PostgreSQL in a `READ ONLY` transaction
    /// with `SET LOCAL statement_timeout`; on SQLite on a connection with `PRAGMA query_only` and a
    /// progress handler that interrupts it. Its failures are [`Error::LinkQuery`](crate::Error) with
    /// the database's own message (the query is the operator's, so is the message).
    async fn run_link_query(
        &self,
        sql: &str,
        binds: &[LinkBind],
        timeout: Duration,
    ) -> Result<Option<Uuid>>;

    /// A deal's link state.
    async fn deal_links(&self, amocrm_deal_id: &str) -> Result<Option<DealLinks>>;

    /// The link state of deals that are the main contact's deals of `amocrm_contact_id`.
    async fn deal_links_by_main_contact(&self, amocrm_contact_id: &str) -> Result<Vec<DealLinks>>;

    /// Writes a computed link and records what it was computed for (`linked_for`: the main contact,
    /// the talk), atomically against concurrent writers of the same row. A value found replaces an
    /// empty column or one the linker wrote, and someone else's only with `overwrite`; nothing
    /// found clears a value the linker wrote, never someone else's.
    async fn apply_link(
        &self,
        amocrm_deal_id: &str,
        column: LinkColumn,
        found: Option<Uuid>,
        linked_for: Option<&str>,
        overwrite: bool,
    ) -> Result<LinkOutcome>;

    /// Records whether the last link attempt of a deal failed (`link_failed_at` set to now, or
    /// cleared).
    async fn set_link_failed(&self, amocrm_deal_id: &str, failed: bool) -> Result<()>;

    /// Deals that may need a link, in `amocrm_deal_id` order; deleted deals are left out.
    async fn deals_to_link(&self, scan: &LinkScan) -> Result<Vec<DealLinks>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> Option<Uuid> {
        Some(Uuid::from_u128(n))
    }

    #[test]
    fn an_empty_column_takes_the_value_found() {
        assert_eq!(
            decide(None, None, id(1), false),
            (id(1), id(1), LinkOutcome::Linked)
        );
        assert_eq!(
            decide(None, None, None, false),
            (None, None, LinkOutcome::Unchanged)
        );
    }

    #[test]
    fn someone_elses_value_is_kept_unless_overwriting() {
        assert_eq!(
            decide(id(9), None, id(1), false),
            (id(9), None, LinkOutcome::KeptOther)
        );
        assert_eq!(
            decide(id(9), id(1), id(1), false),
            (id(9), id(1), LinkOutcome::KeptOther)
        );
        assert_eq!(
            decide(id(9), None, id(1), true),
            (id(1), id(1), LinkOutcome::Linked)
        );
        // Nothing found never removes someone else's value, overwriting or not.
        assert_eq!(
            decide(id(9), None, None, true),
            (id(9), None, LinkOutcome::Unchanged)
        );
    }

    #[test]
    fn the_linkers_own_value_follows_the_query() {
        assert_eq!(
            decide(id(1), id(1), id(2), false),
            (id(2), id(2), LinkOutcome::Linked)
        );
        assert_eq!(
            decide(id(1), id(1), id(1), false),
            (id(1), id(1), LinkOutcome::Unchanged)
        );
        assert_eq!(
            decide(id(1), id(1), None, false),
            (None, None, LinkOutcome::Cleared)
        );
    }
}
