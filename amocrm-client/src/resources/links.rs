//! `client.links(entity)`: links between leads, contacts, companies, customers and catalog
//! elements.

use http::Method;
use serde_json::Value;

use crate::client::{ApiRequest, Client, Query};
use crate::error::Result;
use crate::models::{Link, LinkTarget};

use super::write::MAX_BATCH;
use super::{EntityType, HalList, ListRequest, MAX_PAGE_SIZE, push_extra};

/// Filters for `GET /api/v4/{entity}/links`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinksFilter {
    /// `filter[entity_id][]`: whose links.
    pub entity_ids: Vec<u64>,
    /// `filter[to_entity_id]`: only links to this entity (with `to_entity_type`).
    pub to_entity_id: Option<u64>,
    /// `filter[to_entity_type]`: `contacts`, `companies`, `leads`, `catalog_elements`, ...
    pub to_entity_type: Option<String>,
    /// `filter[to_catalog_id]`: only elements of this catalog.
    pub to_catalog_id: Option<u64>,
    /// Any other parameter, sent as given.
    pub extra: Vec<(String, String)>,
}

impl LinksFilter {
    fn to_query(&self) -> Query {
        let mut query = Query::new();
        query.push_all("filter[entity_id]", &self.entity_ids);
        if let Some(id) = self.to_entity_id {
            query.push("filter[to_entity_id]", id);
        }
        if let Some(entity_type) = &self.to_entity_type {
            query.push("filter[to_entity_type]", entity_type);
        }
        if let Some(catalog) = self.to_catalog_id {
            query.push("filter[to_catalog_id]", catalog);
        }
        push_extra(&mut query, &self.extra);
        query
    }
}

/// Link endpoints of one entity type: see [`Client::links`].
#[derive(Debug, Clone, Copy)]
pub struct Links<'a> {
    client: &'a Client,
    entity: EntityType,
}

impl Client {
    /// Links of one entity type: `client.links(EntityType::Leads).link(lead_id, [..])`.
    pub fn links(&self, entity: EntityType) -> Links<'_> {
        Links {
            client: self,
            entity,
        }
    }
}

impl Links<'_> {
    /// `GET /api/v4/{entity}/{id}/links`: everything linked to one entity.
    pub async fn of(&self, entity_id: u64) -> Result<Vec<Link>> {
        let entity = self.entity.as_str();
        let request = ApiRequest::get(
            templates(self.entity).entity_links,
            format!("api/v4/{entity}/{entity_id}/links"),
        );
        Ok(self
            .client
            .send_json::<HalList<Link>>(&request)
            .await?
            .map(HalList::into_items)
            .unwrap_or_default())
    }

    /// `GET /api/v4/{entity}/links` with filters (e.g. the links of many leads at once).
    pub fn list(&self, filter: LinksFilter) -> ListRequest<Link> {
        let entity = self.entity.as_str();
        ListRequest::new(
            self.client,
            templates(self.entity).links,
            format!("api/v4/{entity}/links"),
            filter.to_query(),
            None,
            MAX_PAGE_SIZE,
        )
    }

    /// `POST /api/v4/{entity}/{id}/link`: links `targets` to one entity, 250 a request;
    /// answers the links made. Linking what is already linked changes nothing, yet like every
    /// POST it is retried only on 429; a failure after sending is
    /// [`Error::MaybeApplied`](crate::Error::MaybeApplied).
    pub async fn link(
        &self,
        entity_id: u64,
        targets: impl IntoIterator<Item = LinkTarget>,
    ) -> Result<Vec<Link>> {
        let entity = self.entity.as_str();
        let items: Vec<Value> = targets.into_iter().map(|t| t.to_json(None)).collect();
        let mut links = Vec::with_capacity(items.len());
        for chunk in items.chunks(MAX_BATCH) {
            let request = ApiRequest::with_body(
                Method::POST,
                templates(self.entity).link,
                format!("api/v4/{entity}/{entity_id}/link"),
                Value::Array(chunk.to_vec()),
            );
            if let Some(list) = self.client.send_json::<HalList<Link>>(&request).await? {
                links.extend(list.into_items());
            }
        }
        Ok(links)
    }

    /// `POST /api/v4/{entity}/link`: links for several entities at once, as
    /// `(entity_id, target)` pairs, 250 a request. Retried only on 429.
    pub async fn link_many(
        &self,
        links: impl IntoIterator<Item = (u64, LinkTarget)>,
    ) -> Result<Vec<Link>> {
        let entity = self.entity.as_str();
        let items: Vec<Value> = links
            .into_iter()
            .map(|(id, target)| target.to_json(Some(id)))
            .collect();
        let mut made = Vec::with_capacity(items.len());
        for chunk in items.chunks(MAX_BATCH) {
            let request = ApiRequest::with_body(
                Method::POST,
                templates(self.entity).links,
                format!("api/v4/{entity}/link"),
                Value::Array(chunk.to_vec()),
            );
            if let Some(list) = self.client.send_json::<HalList<Link>>(&request).await? {
                made.extend(list.into_items());
            }
        }
        Ok(made)
    }

    /// `POST /api/v4/{entity}/{id}/unlink`: removes links (amoCRM answers 204). Retried only
    /// on 429.
    pub async fn unlink(
        &self,
        entity_id: u64,
        targets: impl IntoIterator<Item = LinkTarget>,
    ) -> Result<()> {
        let entity = self.entity.as_str();
        let items: Vec<Value> = targets.into_iter().map(|t| t.to_json(None)).collect();
        for chunk in items.chunks(MAX_BATCH) {
            let request = ApiRequest::with_body(
                Method::POST,
                templates(self.entity).unlink,
                format!("api/v4/{entity}/{entity_id}/unlink"),
                Value::Array(chunk.to_vec()),
            );
            self.client.send(&request).await?;
        }
        Ok(())
    }
}

struct Templates {
    links: &'static str,
    entity_links: &'static str,
    link: &'static str,
    unlink: &'static str,
}

// Endpoint labels are static strings so they stay few and cheap to count.
fn templates(entity: EntityType) -> Templates {
    macro_rules! of {
        ($e:literal) => {
            Templates {
                links: concat!("/api/v4/", $e, "/links"),
                entity_links: concat!("/api/v4/", $e, "/{id}/links"),
                link: concat!("/api/v4/", $e, "/{id}/link"),
                unlink: concat!("/api/v4/", $e, "/{id}/unlink"),
            }
        };
    }
    match entity {
        EntityType::Leads => of!("leads"),
        EntityType::Contacts => of!("contacts"),
        EntityType::Companies => of!("companies"),
        EntityType::Customers => of!("customers"),
    }
}
