//! A parsed body: its account block and every event in it.

use std::borrow::Cow;

use amocrm_types::AccountId;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::event::WebhookEvent;
use crate::fields::Fields;
use crate::tree::SELF_KEY;

/// The `account[...]` block. Anything that does not fit the typed fields (an extra key, an id
/// that is not a number) is kept in `extra`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Account {
    /// `account[id]`, the amoCRM account id; `None` when missing or not a number (very old
    /// bodies carry only the subdomain).
    pub id: Option<AccountId>,
    /// `account[subdomain]`, e.g. `geodrive` of `geodrive.amocrm.ru`; `None` when missing.
    pub subdomain: Option<String>,
    /// `account[_links][...]`, e.g. `self`.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub links: Map<String, Value>,
    /// Every other `account[...]` key, as JSON, kept rather than dropped.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
}

impl Account {
    fn from_level(level: Level<'_>) -> Account {
        let mut account = Account::default();
        let entries = match level {
            Level::Map {
                list: false,
                entries,
            } => entries,
            Level::Value(Value::Object(object)) => entries_of(object),
            scalar => {
                account
                    .extra
                    .insert(SELF_KEY.to_owned(), scalar.into_value());
                return account;
            }
        };
        for (key, level) in entries {
            match (key.as_ref(), level) {
                ("id", Level::Text(id) | Level::Value(Value::String(id)))
                    if account.id.is_none() && id.parse::<u64>().is_ok() =>
                {
                    account.id = id.parse::<u64>().ok().map(AccountId);
                }
                ("subdomain", Level::Text(subdomain) | Level::Value(Value::String(subdomain))) => {
                    account.subdomain = Some(subdomain);
                }
                ("_links", Level::Value(Value::Object(links))) => account.links = links,
                (
                    "_links",
                    Level::Map {
                        list: false,
                        entries,
                    },
                ) => account.links = object_of(entries),
                (_, level) => {
                    account.extra.insert(key.into_owned(), level.into_value());
                }
            }
        }
        account
    }
}

/// The entries of a map at the top of a body: the sections and the account, or the actions
/// of a section and the fields of the account.
pub(crate) type Entries<'k> = Vec<(Cow<'k, str>, Level<'k>)>;

/// A node at the top three levels of a body (sections, actions, items). These levels are
/// taken apart into events, so the form decoder hands them over as lists instead of building
/// maps only to take them apart again.
#[derive(Debug)]
pub(crate) enum Level<'k> {
    /// A leaf of a form body.
    Text(String),
    /// A map of a form body below the top levels: an event's fields.
    Fields(Fields),
    /// Any node of a JSON body.
    Value(Value),
    /// A map as its entries. `list` when its keys are exactly `0..n` (it would be a JSON
    /// array), the entries then in index order; else in first-seen order.
    Map { list: bool, entries: Entries<'k> },
}

impl Level<'_> {
    /// The node as JSON, as the decoder would have built it.
    pub(crate) fn into_value(self) -> Value {
        match self {
            Level::Text(text) => Value::String(text),
            Level::Fields(fields) => fields.to_value(),
            Level::Value(value) => value,
            Level::Map {
                list: true,
                entries,
            } => Value::Array(
                entries
                    .into_iter()
                    .map(|(_, level)| level.into_value())
                    .collect(),
            ),
            Level::Map {
                list: false,
                entries,
            } => Value::Object(object_of(entries)),
        }
    }
}

fn object_of(entries: Entries<'_>) -> Map<String, Value> {
    entries
        .into_iter()
        .map(|(key, level)| (key.into_owned(), level.into_value()))
        .collect()
}

/// A JSON object's members as entries.
pub(crate) fn entries_of(object: Map<String, Value>) -> Entries<'static> {
    object
        .into_iter()
        .map(|(key, value)| (Cow::Owned(key), Level::Value(value)))
        .collect()
}

/// Everything one body carried.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct WebhookBatch {
    /// The body's `account[...]` block; all fields `None` or empty when the body has none.
    pub account: Account,
    /// In body order: sections, then actions, in first-seen order; items by index.
    pub events: Vec<WebhookEvent>,
    /// Top-level keys that are not `section[action][index]` events (`foo=1`, `leads[add]=1`),
    /// kept rather than dropped.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub unparsed: Map<String, Value>,
}

impl WebhookBatch {
    /// Splits a decoded top level into the account and the events.
    pub(crate) fn from_tree(root: Entries<'_>) -> Result<WebhookBatch> {
        let mut batch = WebhookBatch::default();
        let mut root = root;
        // Events need the account, which may come last.
        if let Some(at) = root.iter().position(|(key, _)| key == "account") {
            batch.account = Account::from_level(root.remove(at).1);
        }
        for (section, level) in root {
            let actions = match level {
                // A list's entries are keyed `0..n` in order, as its items would be indexed.
                Level::Map { entries, .. } => entries,
                other => match other.into_value() {
                    Value::Object(actions) => entries_of(actions),
                    Value::Array(items) => items
                        .into_iter()
                        .enumerate()
                        .map(|(i, item)| (Cow::Owned(i.to_string()), Level::Value(item)))
                        .collect(),
                    scalar => {
                        batch.unparsed.insert(section.into_owned(), scalar);
                        continue;
                    }
                },
            };
            for (action, level) in actions {
                let items = match level {
                    Level::Map { entries, .. } => {
                        batch.events.reserve(entries.len());
                        for (_, item) in entries {
                            let fields = match item {
                                Level::Fields(fields) => fields,
                                other => Fields::from(other.into_value()),
                            };
                            let event =
                                WebhookEvent::new(&batch.account, &section, &action, fields);
                            batch.events.push(event);
                        }
                        continue;
                    }
                    other => other.into_value(),
                };
                let items: Vec<Value> = match items {
                    Value::Object(items) => items.into_iter().map(|(_, item)| item).collect(),
                    Value::Array(items) => items,
                    scalar => {
                        let entry = batch
                            .unparsed
                            .entry(section.as_ref())
                            .or_insert_with(|| Value::Object(Map::new()));
                        if let Value::Object(entry) = entry {
                            entry.insert(action.into_owned(), scalar);
                        }
                        continue;
                    }
                };
                batch.events.reserve(items.len());
                for item in items {
                    let event = WebhookEvent::new(&batch.account, &section, &action, item);
                    batch.events.push(event);
                }
            }
        }
        if batch.events.is_empty() {
            return Err(Error::NoEvents);
        }
        Ok(batch)
    }
}
