//! Tags: `GET/POST /api/v4/{entity}/tags`, and tags named in entity writes.

use serde::Serialize;

use super::TagId;

/// A tag named in a write: by id, or by name (a name that does not exist yet is created).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum TagRef {
    /// `{"id": ..}`
    Id {
        /// The tag's id.
        id: TagId,
    },
    /// `{"name": ..}`
    Name {
        /// The tag's text.
        name: String,
    },
}

impl From<TagId> for TagRef {
    fn from(id: TagId) -> Self {
        TagRef::Id { id }
    }
}

impl From<&str> for TagRef {
    fn from(name: &str) -> Self {
        TagRef::Name {
            name: name.to_owned(),
        }
    }
}

impl From<String> for TagRef {
    fn from(name: String) -> Self {
        TagRef::Name { name }
    }
}

/// A tag to create with [`Tags::create`](crate::resources::tags::Tags::create).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TagInput {
    /// The tag's text.
    pub name: String,
    /// Colour as hex without `#` (lead tags only), e.g. `DDEBB5`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
}

impl TagInput {
    /// A tag with this text.
    pub fn new(name: impl Into<String>) -> Self {
        TagInput {
            name: name.into(),
            color: None,
        }
    }

    /// Its colour (lead tags only).
    pub fn color(mut self, color: impl Into<String>) -> Self {
        self.color = Some(color.into());
        self
    }
}
