//! What every write shares: per-item results and the fields leads, contacts and companies
//! accept alike.

use serde::Serialize;
use serde_json::Value;

use super::TagRef;

/// One item of a write that amoCRM accepted.
///
/// Batch writes answer one `Written` per item the caller passed, in the caller's order:
/// [`index`](Self::index) is the item's position in that list, matched through the
/// `request_id` this crate sends with each item.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Written<Id> {
    /// Position of the item in the list the caller passed (0 for single writes).
    pub index: usize,
    /// The id amoCRM gave the new entity, or the id of the entity updated.
    pub id: Id,
    /// `request_id` as amoCRM echoed it.
    pub request_id: Option<String>,
    /// `updated_at` of an updated entity (Unix seconds), when amoCRM answers it.
    pub updated_at: Option<i64>,
    /// The answer's item as received (`_links` and whatever else amoCRM adds).
    pub raw: Value,
}

/// `_embedded` of an entity being written: only tags go here (contacts and companies of a
/// complex add are added by the complex call).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct InputEmbedded {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<TagRef>>,
}

impl InputEmbedded {
    pub(crate) fn is_empty(&self) -> bool {
        self.tags.is_none()
    }
}

/// Builder methods shared by [`LeadInput`](super::LeadInput),
/// [`ContactInput`](super::ContactInput) and [`CompanyInput`](super::CompanyInput).
macro_rules! common_input_methods {
    () => {
        /// The responsible user.
        pub fn responsible_user(mut self, user: $crate::models::UserId) -> Self {
            self.responsible_user_id = Some(user);
            self
        }

        /// Who created the entity (0: the robot).
        pub fn created_by(mut self, user: $crate::models::UserId) -> Self {
            self.created_by = Some(user);
            self
        }

        /// Who changed the entity (0: the robot).
        pub fn updated_by(mut self, user: $crate::models::UserId) -> Self {
            self.updated_by = Some(user);
            self
        }

        /// When the entity was created, e.g. when importing history.
        pub fn created_at(mut self, at: chrono::DateTime<chrono::Utc>) -> Self {
            self.created_at = Some(at.timestamp());
            self
        }

        /// When the entity was last changed.
        pub fn updated_at(mut self, at: chrono::DateTime<chrono::Utc>) -> Self {
            self.updated_at = Some(at.timestamp());
            self
        }

        /// Sets (or, with [`CustomFieldInput::clear`](crate::CustomFieldInput::clear), clears) a
        /// custom field. Fields not named are left as they are.
        pub fn custom_field(mut self, field: $crate::models::CustomFieldInput) -> Self {
            self.custom_fields_values.push(field);
            self
        }

        /// Sets several custom fields.
        pub fn custom_fields(
            mut self,
            fields: impl IntoIterator<Item = $crate::models::CustomFieldInput>,
        ) -> Self {
            self.custom_fields_values.extend(fields);
            self
        }

        /// The entity's tags (`_embedded.tags`), by id or name: on an update these replace
        /// all its tags (an empty list removes them all).
        pub fn tags<T: Into<$crate::models::TagRef>>(
            mut self,
            tags: impl IntoIterator<Item = T>,
        ) -> Self {
            self.embedded.tags = Some(tags.into_iter().map(Into::into).collect());
            self
        }

        /// Adds a tag and keeps the others (`tags_to_add`); a tag named that does not exist
        /// is created.
        pub fn add_tag(mut self, tag: impl Into<$crate::models::TagRef>) -> Self {
            self.tags_to_add.push(tag.into());
            self
        }

        /// Removes a tag and keeps the others (`tags_to_delete`).
        pub fn remove_tag(mut self, tag: impl Into<$crate::models::TagRef>) -> Self {
            self.tags_to_delete.push(tag.into());
            self
        }
    };
}
pub(crate) use common_input_methods;
