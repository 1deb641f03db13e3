//! `client.notes(entity)`: notes of leads, contacts, companies or customers.

use crate::client::{Client, Query};
use crate::error::Result;
use crate::models::{Note, NoteId, NoteType};

use super::{EntityType, ListRequest, MAX_PAGE_SIZE, Order, TimeRange, get_one, push_extra};

/// Filters for notes lists. Empty fields are not sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotesFilter {
    pub ids: Vec<NoteId>,
    /// Ids of the leads (contacts, ...) whose notes to list.
    pub entity_ids: Vec<u64>,
    pub note_types: Vec<NoteType>,
    pub updated_at: Option<TimeRange>,
    pub order: Option<Order>,
    /// Items per page, at most 250 (the default here).
    pub limit: Option<u32>,
    pub extra: Vec<(String, String)>,
}

impl NotesFilter {
    fn to_query(&self) -> Query {
        let mut query = Query::new();
        query.push_all("filter[id]", &self.ids);
        query.push_all("filter[entity_id]", &self.entity_ids);
        query.push_all("filter[note_type]", &self.note_types);
        if let Some(range) = &self.updated_at {
            range.push(&mut query, "filter[updated_at]");
        }
        if let Some(order) = &self.order {
            order.push(&mut query);
        }
        push_extra(&mut query, &self.extra);
        query
    }
}

/// Note endpoints of one entity type: see [`Client::notes`].
#[derive(Debug, Clone, Copy)]
pub struct Notes<'a> {
    client: &'a Client,
    entity: EntityType,
}

impl Client {
    pub fn notes(&self, entity: EntityType) -> Notes<'_> {
        Notes {
            client: self,
            entity,
        }
    }
}

impl Notes<'_> {
    /// `GET /api/v4/{entity}/notes` across all entities of the type (filter by `entity_ids`).
    pub fn list(&self, filter: NotesFilter) -> ListRequest<Note> {
        let entity = self.entity.as_str();
        ListRequest::new(
            self.client,
            notes_template(self.entity),
            format!("api/v4/{entity}/notes"),
            filter.to_query(),
            Some(filter.limit.unwrap_or(MAX_PAGE_SIZE)),
            MAX_PAGE_SIZE,
        )
    }

    /// `GET /api/v4/{entity}/{id}/notes`: the notes of one lead (contact, ...).
    pub fn for_entity(&self, entity_id: u64, filter: NotesFilter) -> ListRequest<Note> {
        let entity = self.entity.as_str();
        ListRequest::new(
            self.client,
            entity_notes_template(self.entity),
            format!("api/v4/{entity}/{entity_id}/notes"),
            filter.to_query(),
            Some(filter.limit.unwrap_or(MAX_PAGE_SIZE)),
            MAX_PAGE_SIZE,
        )
    }

    /// `GET /api/v4/{entity}/notes/{id}`.
    pub async fn get(&self, id: NoteId) -> Result<Note> {
        let entity = self.entity.as_str();
        get_one(
            self.client,
            note_template(self.entity),
            format!("api/v4/{entity}/notes/{id}"),
            Query::new(),
        )
        .await
    }
}

// Endpoint labels are static strings so they stay few and cheap to count.
fn notes_template(entity: EntityType) -> &'static str {
    match entity {
        EntityType::Leads => "/api/v4/leads/notes",
        EntityType::Contacts => "/api/v4/contacts/notes",
        EntityType::Companies => "/api/v4/companies/notes",
        EntityType::Customers => "/api/v4/customers/notes",
    }
}

fn entity_notes_template(entity: EntityType) -> &'static str {
    match entity {
        EntityType::Leads => "/api/v4/leads/{id}/notes",
        EntityType::Contacts => "/api/v4/contacts/{id}/notes",
        EntityType::Companies => "/api/v4/companies/{id}/notes",
        EntityType::Customers => "/api/v4/customers/{id}/notes",
    }
}

fn note_template(entity: EntityType) -> &'static str {
    match entity {
        EntityType::Leads => "/api/v4/leads/notes/{id}",
        EntityType::Contacts => "/api/v4/contacts/notes/{id}",
        EntityType::Companies => "/api/v4/companies/notes/{id}",
        EntityType::Customers => "/api/v4/customers/notes/{id}",
    }
}
