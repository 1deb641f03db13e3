//! Types mirroring amoCRM's API v4 JSON.
//!
//! Ids and custom fields come from `amocrm-types` (also [`crate::types`]), shared with
//! `amocrm-webhook`: a [`CustomField`] is one field of an entity with its values, a
//! [`CustomFieldValue`] one value, and a [`CustomFieldDefinition`] a field as the account defines it.
//!
//! Every top-level entity keeps the object exactly as received ([`Lead::raw`] and friends), so
//! fields this crate does not model (or that amoCRM adds later) are never lost. Nested types hold
//! only the fields they name; their full JSON lives in the entity's raw value.

pub mod account;
pub mod company;
pub mod contact;
pub mod custom_field;
pub mod event;
pub mod lead;
pub mod link;
pub mod note;
pub mod pipeline;
pub mod tag;
pub mod task;
pub mod user;
pub mod webhook;
pub mod write;

use serde::{Deserialize, Deserializer, de::DeserializeOwned};

pub use account::{Account, AccountWith};
pub use amocrm_types::{
    AccountId, CatalogElementId, CatalogId, CompanyId, ContactId, CustomField, CustomFieldId,
    CustomFieldValue, CustomFieldsExt, CustomerId, EnumId, EventId, FieldRef, FieldType, LeadId,
    LegalEntity, LossReasonId, NoteId, PipelineId, StatusId, TagId, TaskId, TaskTypeId, UserId,
    WebhookId,
};
pub use company::{Company, CompanyEmbedded, CompanyInput, CompanyWith};
pub use contact::{Contact, ContactEmbedded, ContactInput, ContactWith};
pub use custom_field::{CustomFieldDefinition, CustomFieldEnum, CustomFieldInput};
pub use event::{Event, EventType};
pub use lead::{ComplexCreated, ComplexLead, Lead, LeadEmbedded, LeadInput, LeadWith};
pub use link::{Link, LinkTarget};
pub use note::{CallParams, Note, NoteContent, NoteInput, NoteType};
pub use pipeline::{Pipeline, Status};
pub use tag::{TagInput, TagRef};
pub use task::{Task, TaskEntity, TaskInput, TaskResult};
pub use user::{User, UserWith};
pub use webhook::{Webhook, WebhookSetting};
pub use write::Written;

/// An item of a HAL list: `T::KEY` names its array under `_embedded`.
pub trait ListItem: DeserializeOwned + Send + 'static {
    /// The key under `_embedded`, e.g. `leads`.
    const KEY: &'static str;
}

/// Strings amoCRM enumerates, with an `Other` arm for values it adds later.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $($(#[$vmeta])* #[doc = concat!("`", $text, "`")] $variant,)+
            /// A value this crate does not know yet, kept as sent.
            Other(String),
        }

        impl $name {
            /// The text amoCRM uses for this value.
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $text,)+
                    $name::Other(other) => other,
                }
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }

        impl std::str::FromStr for $name {
            type Err = std::convert::Infallible;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Ok(match s {
                    $($text => $name::$variant,)+
                    other => $name::Other(other.to_owned()),
                })
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Ok(text.parse().unwrap_or_else(|never| match never {}))
            }
        }
    };
}
pub(crate) use string_enum;

/// Keeps the received JSON beside the typed fields. The struct derives `Deserialize` with
/// `#[serde(remote = "Self")]`, which turns the derived code into an inherent function this
/// impl calls on the already-parsed value.
macro_rules! keep_raw {
    ($name:ident) => {
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let raw = <serde_json::Value as serde::Deserialize>::deserialize(deserializer)?;
                let mut typed = $name::deserialize(&raw).map_err(serde::de::Error::custom)?;
                typed.raw = raw;
                Ok(typed)
            }
        }

        /// Serializes the JSON as received, unknown fields included.
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                self.raw.serialize(s)
            }
        }

        impl $name {
            /// The JSON object exactly as amoCRM sent it.
            pub fn raw(&self) -> &serde_json::Value {
                &self.raw
            }

            /// The JSON object exactly as amoCRM sent it, without copying.
            pub fn into_raw(self) -> serde_json::Value {
                self.raw
            }
        }
    };
}
pub(crate) use keep_raw;

/// A tag as embedded in leads, contacts and companies.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[non_exhaustive]
pub struct Tag {
    /// The tag's id.
    pub id: TagId,
    /// The tag's text.
    #[serde(default)]
    pub name: String,
    /// Colour (hex, without `#`), for lead tags.
    #[serde(default)]
    pub color: Option<String>,
}

impl ListItem for Tag {
    const KEY: &'static str = "tags";
}

/// A link to another entity as embedded in a list (`{"id": 1}`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[non_exhaustive]
pub struct EntityRef<Id> {
    /// The linked entity's id.
    pub id: Id,
    /// Set on a lead's contacts: whether this is the lead's main contact.
    #[serde(default)]
    pub is_main: Option<bool>,
}

/// Unix seconds (amoCRM's timestamps) as a UTC date-time.
pub fn unix_to_utc(seconds: i64) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp(seconds, 0)
}

/// `null` and absent both mean "empty list" in amoCRM's answers.
pub(crate) fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Accepts an integer, a float with no fraction or a numeric string: a budget has come as all
/// three across amoCRM's API versions.
pub(crate) fn lenient_i64<'de, D>(deserializer: D) -> Result<Option<i64>, D::Error>
where
    D: Deserializer<'de>,
{
    use serde::de::Error;
    Ok(
        match Option::<serde_json::Value>::deserialize(deserializer)? {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::Number(n)) => match n.as_i64() {
                Some(i) => Some(i),
                None => n.as_f64().map(|f| f as i64),
            },
            Some(serde_json::Value::String(s)) if s.trim().is_empty() => None,
            Some(serde_json::Value::String(s)) => Some(
                s.trim()
                    .parse::<f64>()
                    .map_err(|_| D::Error::custom(format!("not a number: {s:?}")))?
                    as i64,
            ),
            Some(other) => return Err(D::Error::custom(format!("not a number: {other}"))),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Price {
        #[serde(default, deserialize_with = "lenient_i64")]
        price: Option<i64>,
    }

    #[test]
    fn lenient_numbers() {
        let p = |s: &str| serde_json::from_str::<Price>(s).unwrap().price;
        assert_eq!(p(r#"{"price": 25000}"#), Some(25000));
        assert_eq!(p(r#"{"price": 25000.0}"#), Some(25000));
        assert_eq!(p(r#"{"price": "25000"}"#), Some(25000));
        assert_eq!(p(r#"{"price": ""}"#), None);
        assert_eq!(p(r#"{"price": null}"#), None);
        assert_eq!(p(r#"{}"#), None);
    }

    #[test]
    fn ids_are_transparent() {
        let id: LeadId = serde_json::from_str("17657").unwrap();
        assert_eq!(id, LeadId(17657));
        assert_eq!(id.to_string(), "17657");
        assert_eq!(serde_json::to_string(&id).unwrap(), "17657");
    }
}
