//! `client.notes(entity)`: notes of leads, contacts, companies or customers.

use http::Method;
use serde_json::Value;

use crate::client::{ApiRequest, Client, Query};
use crate::error::Result;
use crate::models::{Note, NoteId, NoteInput, NoteType};

use super::write::{BatchWrite, SingleWrite};
use super::{EntityType, ListRequest, MAX_PAGE_SIZE, Order, TimeRange, get_one, push_extra};

/// Filters for notes lists. Empty fields are not sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotesFilter {
    /// `filter[id][]`.
    pub ids: Vec<NoteId>,
    /// Ids of the leads (contacts, ...) whose notes to list.
    pub entity_ids: Vec<u64>,
    /// `filter[note_type][]`.
    pub note_types: Vec<NoteType>,
    /// `filter[updated_at][from|to]`.
    pub updated_at: Option<TimeRange>,
    /// `order[..]`.
    pub order: Option<Order>,
    /// Items per page, at most 250 (the default here).
    pub limit: Option<u32>,
    /// Any other parameter, sent as given.
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
    /// Notes of one entity type: read, add, update, pin.
    pub fn notes(&self, entity: EntityType) -> Notes<'_> {
        Notes {
            client: self,
            entity,
        }
    }
}

impl<'a> Notes<'a> {
    /// `POST /api/v4/{entity}/notes`: adds notes (each names its entity with
    /// [`NoteInput::new`]), 50 a request by default, answering their ids in the order given.
    ///
    /// Retried only on 429; a failure after sending is
    /// [`Error::MaybeApplied`](crate::Error::MaybeApplied): the notes may exist.
    pub fn create(&self, notes: impl IntoIterator<Item = NoteInput>) -> BatchWrite<'a, NoteId> {
        let entity = self.entity.as_str();
        BatchWrite::new(
            self.client,
            Method::POST,
            notes_template(self.entity),
            format!("api/v4/{entity}/notes"),
            "notes",
            notes.into_iter().map(|n| n.to_json()).collect(),
        )
    }

    /// `PATCH /api/v4/{entity}/notes`: changes several notes' content. Retried like a read.
    pub fn update_many(
        &self,
        changes: impl IntoIterator<Item = (NoteId, NoteInput)>,
    ) -> BatchWrite<'a, NoteId> {
        let entity = self.entity.as_str();
        let items = changes
            .into_iter()
            .map(|(id, note)| {
                let mut value = note.to_json();
                if let Some(object) = value.as_object_mut() {
                    object.insert("id".into(), Value::from(id.0));
                }
                value
            })
            .collect();
        BatchWrite::new(
            self.client,
            Method::PATCH,
            notes_template(self.entity),
            format!("api/v4/{entity}/notes"),
            "notes",
            items,
        )
    }

    /// `PATCH /api/v4/{entity}/notes/{id}`: changes one note's content. Retried like a read.
    pub fn update(&self, id: NoteId, note: NoteInput) -> SingleWrite<'a, NoteId> {
        let entity = self.entity.as_str();
        let request = ApiRequest::with_body(
            Method::PATCH,
            note_template(self.entity),
            format!("api/v4/{entity}/notes/{id}"),
            note.to_json(),
        );
        SingleWrite::new(self.client, request, id.0)
    }

    /// `POST /api/v4/{entity}/notes/{id}/pin`: pins a note to the top of the entity's feed
    /// (leads, contacts and companies). Repeating it changes nothing more, yet like every POST
    /// it is retried only on 429.
    pub async fn pin(&self, id: NoteId) -> Result<()> {
        let entity = self.entity.as_str();
        let request = ApiRequest::with_body(
            Method::POST,
            pin_template(self.entity),
            format!("api/v4/{entity}/notes/{id}/pin"),
            Value::Null,
        );
        let request = ApiRequest {
            body: None,
            ..request
        };
        self.client.send(&request).await?;
        Ok(())
    }

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

fn pin_template(entity: EntityType) -> &'static str {
    match entity {
        EntityType::Leads => "/api/v4/leads/notes/{id}/pin",
        EntityType::Contacts => "/api/v4/contacts/notes/{id}/pin",
        EntityType::Companies => "/api/v4/companies/notes/{id}/pin",
        EntityType::Customers => "/api/v4/customers/notes/{id}/pin",
    }
}
