//! `client.custom_fields(entity)`: field definitions, to name ids and enum values.

use crate::client::{Client, Query};
use crate::error::Result;
use crate::models::{CustomFieldDefinition, CustomFieldId};

use super::{EntityType, ListRequest, get_one};

/// The custom fields endpoint returns at most 50 items a page.
pub const MAX_CUSTOM_FIELDS_PAGE_SIZE: u32 = 50;

/// Custom field endpoints of one entity type: see [`Client::custom_fields`].
#[derive(Debug, Clone, Copy)]
pub struct CustomFields<'a> {
    client: &'a Client,
    entity: EntityType,
}

impl Client {
    /// Custom field definitions of one entity type.
    pub fn custom_fields(&self, entity: EntityType) -> CustomFields<'_> {
        CustomFields {
            client: self,
            entity,
        }
    }
}

impl CustomFields<'_> {
    /// `GET /api/v4/{entity}/custom_fields`, every page.
    pub fn list(&self) -> ListRequest<CustomFieldDefinition> {
        let entity = self.entity.as_str();
        ListRequest::new(
            self.client,
            match self.entity {
                EntityType::Leads => "/api/v4/leads/custom_fields",
                EntityType::Contacts => "/api/v4/contacts/custom_fields",
                EntityType::Companies => "/api/v4/companies/custom_fields",
                EntityType::Customers => "/api/v4/customers/custom_fields",
            },
            format!("api/v4/{entity}/custom_fields"),
            Query::new(),
            Some(MAX_CUSTOM_FIELDS_PAGE_SIZE),
            MAX_CUSTOM_FIELDS_PAGE_SIZE,
        )
    }

    /// `GET /api/v4/{entity}/custom_fields/{id}`.
    pub async fn get(&self, id: CustomFieldId) -> Result<CustomFieldDefinition> {
        let entity = self.entity.as_str();
        let template = match self.entity {
            EntityType::Leads => "/api/v4/leads/custom_fields/{id}",
            EntityType::Contacts => "/api/v4/contacts/custom_fields/{id}",
            EntityType::Companies => "/api/v4/companies/custom_fields/{id}",
            EntityType::Customers => "/api/v4/customers/custom_fields/{id}",
        };
        get_one(
            self.client,
            template,
            format!("api/v4/{entity}/custom_fields/{id}"),
            Query::new(),
        )
        .await
    }
}
