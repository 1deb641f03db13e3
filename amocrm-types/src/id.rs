//! Ids of amoCRM's entities, one type per kind, so a lead id cannot be passed where a contact id
//! is expected.
//!
//! Each numeric id is a `u64` newtype that serializes as the bare number (`17657`), prints as
//! it (`Display`), and parses from the decimal text webhook bodies carry (`FromStr`, surrounding
//! whitespace allowed):
//!
//! ```
//! use amocrm_types::{LeadId, StatusId};
//!
//! let lead: LeadId = "31840021".parse()?;
//! assert_eq!(lead, LeadId(31840021));
//! assert_eq!(lead.get(), 31840021);
//! assert_eq!(lead.to_string(), "31840021");
//! assert_eq!(serde_json::to_string(&StatusId::WON)?, "142");
//! assert!("RP-48213".parse::<LeadId>().is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::num::ParseIntError;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl $name {
            #[doc = concat!("A `", stringify!($name), "` from its number.")]
            pub const fn new(id: u64) -> Self {
                $name(id)
            }

            /// The number.
            pub const fn get(self) -> u64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        /// Parses decimal text such as a webhook body's `"31840021"`; surrounding whitespace is
        /// ignored.
        impl FromStr for $name {
            type Err = ParseIntError;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                text.trim().parse().map($name)
            }
        }

        impl From<u64> for $name {
            fn from(id: u64) -> Self {
                $name(id)
            }
        }

        impl From<$name> for u64 {
            fn from(id: $name) -> u64 {
                id.0
            }
        }
    };
}

id_type!(
    /// A lead ("deal", сделка).
    LeadId
);
id_type!(
    /// A contact.
    ContactId
);
id_type!(
    /// A company.
    CompanyId
);
id_type!(
    /// A customer (periodic purchases).
    CustomerId
);
id_type!(
    /// A user of the account.
    UserId
);
id_type!(
    /// A pipeline (sales funnel).
    PipelineId
);
id_type!(
    /// A pipeline stage. Every pipeline ends in [`StatusId::WON`] and [`StatusId::LOST`].
    StatusId
);
id_type!(
    /// A note.
    NoteId
);
id_type!(
    /// A task.
    TaskId
);
id_type!(
    /// A task type: [`TaskTypeId::CALL`], [`TaskTypeId::MEETING`], or one the account added
    /// (`GET /api/v4/account?with=task_types`).
    TaskTypeId
);
id_type!(
    /// A tag.
    TagId
);
id_type!(
    /// A custom field of the account (`field_id` in values, `id` in definitions and webhook
    /// bodies).
    CustomFieldId
);
id_type!(
    /// A choice of a select, multiselect, radio button or multitext custom field (`enum_id`;
    /// `enum` in webhook bodies).
    EnumId
);
id_type!(
    /// A webhook subscription.
    WebhookId
);
id_type!(
    /// An amoCRM account.
    AccountId
);
id_type!(
    /// A catalog (list) of the account.
    CatalogId
);
id_type!(
    /// An element of a catalog.
    CatalogElementId
);
id_type!(
    /// A loss reason of closed-lost leads.
    LossReasonId
);

impl StatusId {
    /// "Closed, won" (успешно реализовано), the same id in every pipeline.
    pub const WON: StatusId = StatusId(142);
    /// "Closed, lost" (закрыто и не реализовано), the same id in every pipeline.
    pub const LOST: StatusId = StatusId(143);
}

impl TaskTypeId {
    /// "Follow-up" / call.
    pub const CALL: TaskTypeId = TaskTypeId(1);
    /// Meeting.
    pub const MEETING: TaskTypeId = TaskTypeId(2);
}

/// An entry of the events feed (`GET /api/v4/events`). Unlike other ids it is text
/// (`01pz58t6p04mc7vhgm57gfq4fk`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(pub String);

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for EventId {
    fn from(id: String) -> Self {
        EventId(id)
    }
}

impl From<&str> for EventId {
    fn from(id: &str) -> Self {
        EventId(id.to_owned())
    }
}

impl FromStr for EventId {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(EventId(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_bare_numbers_in_json() {
        let id: LeadId = serde_json::from_str("17657").unwrap();
        assert_eq!(id, LeadId(17657));
        assert_eq!(serde_json::to_string(&id).unwrap(), "17657");
        assert_eq!(id.to_string(), "17657");
        assert!(serde_json::from_str::<LeadId>("-1").is_err());
    }

    #[test]
    fn ids_parse_from_decimal_text() {
        assert_eq!(" 142 ".parse::<StatusId>(), Ok(StatusId::WON));
        assert_eq!("18446744073709551615".parse(), Ok(UserId(u64::MAX)));
        for bad in ["", "-1", "1.5", "0x10", "12a", "18446744073709551616"] {
            assert!(bad.parse::<ContactId>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn conversions_keep_the_number() {
        assert_eq!(u64::from(CustomFieldId::new(771001)), 771001);
        assert_eq!(EnumId::from(4035).get(), 4035);
        assert_eq!(EventId::from("01pz").to_string(), "01pz");
        assert_eq!(
            serde_json::to_string(&EventId("01pz".into())).unwrap(),
            "\"01pz\""
        );
    }
}
