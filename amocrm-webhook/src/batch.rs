//! A parsed body: its account block and every event in it.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::event::WebhookEvent;
use crate::tree::SELF_KEY;

/// The `account[...]` block. Anything that does not fit the typed fields (an extra key, an id
/// that is not a number) is kept in `extra`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Account {
    pub id: Option<u64>,
    pub subdomain: Option<String>,
    /// `account[_links][...]`, e.g. `self`.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub links: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
}

impl Account {
    fn from_value(value: Value) -> Account {
        let mut account = Account::default();
        let object = match value {
            Value::Object(object) => object,
            scalar => {
                account.extra.insert(SELF_KEY.to_owned(), scalar);
                return account;
            }
        };
        for (key, value) in object {
            match (key.as_str(), value) {
                ("id", Value::String(id)) if account.id.is_none() && id.parse::<u64>().is_ok() => {
                    account.id = id.parse().ok();
                }
                ("subdomain", Value::String(subdomain)) => account.subdomain = Some(subdomain),
                ("_links", Value::Object(links)) => account.links = links,
                (_, value) => {
                    account.extra.insert(key, value);
                }
            }
        }
        account
    }
}

/// Everything one body carried.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct WebhookBatch {
    pub account: Account,
    /// In body order: sections, then actions, in first-seen order; items by index.
    pub events: Vec<WebhookEvent>,
    /// Top-level keys that are not `section[action][index]` events (`foo=1`, `leads[add]=1`),
    /// kept rather than dropped.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub unparsed: Map<String, Value>,
}

impl WebhookBatch {
    /// Splits a decoded top-level object into the account and the events.
    pub(crate) fn from_tree(root: Map<String, Value>) -> Result<WebhookBatch> {
        let mut batch = WebhookBatch::default();
        let mut sections = Vec::with_capacity(root.len());
        for (key, value) in root {
            // Events need the account, which may come last.
            if key == "account" {
                batch.account = Account::from_value(value);
            } else {
                sections.push((key, value));
            }
        }
        for (section, actions) in sections {
            let actions = match actions {
                Value::Object(actions) => actions,
                Value::Array(items) => indexed(items),
                scalar => {
                    batch.unparsed.insert(section, scalar);
                    continue;
                }
            };
            for (action, items) in actions {
                let items = match items {
                    Value::Object(items) => items.into_iter().map(|(_, item)| item).collect(),
                    Value::Array(items) => items,
                    scalar => {
                        let entry = batch
                            .unparsed
                            .entry(section.clone())
                            .or_insert_with(|| Value::Object(Map::new()));
                        if let Value::Object(entry) = entry {
                            entry.insert(action, scalar);
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

fn indexed(items: Vec<Value>) -> Map<String, Value> {
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| (i.to_string(), item))
        .collect()
}
