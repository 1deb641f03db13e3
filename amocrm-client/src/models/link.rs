//! Links between entities: `GET /api/v4/{entity}/links`, `POST /api/v4/{entity}/{id}/link`,
//! `POST /api/v4/{entity}/{id}/unlink`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{CatalogElementId, CatalogId, CompanyId, ContactId, CustomerId, LeadId, ListItem};

/// One link as amoCRM lists it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct Link {
    /// The entity the link starts from.
    pub entity_id: u64,
    /// Its type: `leads`, `contacts`, `companies`, `customers`.
    pub entity_type: String,
    /// The linked entity.
    pub to_entity_id: u64,
    /// Its type: `leads`, `contacts`, `companies`, `customers`, `catalog_elements`.
    pub to_entity_type: String,
    /// `is_main` for contacts; `catalog_id`, `quantity`, `price_id` for catalog elements.
    #[serde(default)]
    pub metadata: Option<Value>,
}

impl ListItem for Link {
    const KEY: &'static str = "links";
}

/// What to link to (or unlink from) an entity.
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct LinkTarget {
    to_entity_id: u64,
    to_entity_type: &'static str,
    metadata: Map<String, Value>,
}

impl LinkTarget {
    fn new(id: u64, entity_type: &'static str) -> Self {
        LinkTarget {
            to_entity_id: id,
            to_entity_type: entity_type,
            metadata: Map::new(),
        }
    }

    /// A contact.
    pub fn contact(id: ContactId) -> Self {
        LinkTarget::new(id.0, "contacts")
    }

    /// A contact, as the lead's main contact (`metadata.is_main`).
    pub fn main_contact(id: ContactId) -> Self {
        let mut target = LinkTarget::contact(id);
        target.metadata.insert("is_main".into(), json!(true));
        target
    }

    /// A company.
    pub fn company(id: CompanyId) -> Self {
        LinkTarget::new(id.0, "companies")
    }

    /// A lead (to link from a contact or company).
    pub fn lead(id: LeadId) -> Self {
        LinkTarget::new(id.0, "leads")
    }

    /// A customer.
    pub fn customer(id: CustomerId) -> Self {
        LinkTarget::new(id.0, "customers")
    }

    /// An element of a catalog (a product, say), `quantity` of it.
    pub fn catalog_element(catalog: CatalogId, element: CatalogElementId, quantity: f64) -> Self {
        let mut target = LinkTarget::new(element.0, "catalog_elements");
        target.metadata.insert("catalog_id".into(), json!(catalog));
        // Whole quantities go as integers, as amoCRM's examples write them.
        let quantity = if quantity.fract() == 0.0 && quantity.abs() < 9.0e15 {
            json!(quantity as i64)
        } else {
            json!(quantity)
        };
        target.metadata.insert("quantity".into(), quantity);
        target
    }

    /// The linked entity's type as amoCRM names it.
    pub fn to_entity_type(&self) -> &'static str {
        self.to_entity_type
    }

    pub(crate) fn to_json(&self, entity_id: Option<u64>) -> Value {
        let mut link = Map::new();
        if let Some(entity_id) = entity_id {
            link.insert("entity_id".into(), json!(entity_id));
        }
        link.insert("to_entity_id".into(), json!(self.to_entity_id));
        link.insert("to_entity_type".into(), json!(self.to_entity_type));
        if !self.metadata.is_empty() {
            link.insert("metadata".into(), Value::Object(self.metadata.clone()));
        }
        Value::Object(link)
    }
}
