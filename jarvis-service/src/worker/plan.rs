//! Deciding, from a claimed batch, what needs fetching and what can be settled from the bodies
//! alone: in API mode every lead or contact event waits for its entity's fetch; in webhook-only
//! mode rows come from the bodies and deletes and restores are recorded.

use std::collections::{BTreeMap, HashMap};

use amocrm_webhook::{Action, Entity, WebhookEvent};
use jarvis_store::{
    ContactUpsert, DealUpsert, DeletionRecord, EventWrites, MirrorEntity, StoredEvent,
};

use super::Worker;
use super::settle::Settle;
use crate::config::MetadataField;
use crate::mapping;

/// The work one batch of events asks for.
#[derive(Default)]
pub(super) struct Plan {
    /// Deals fully described by their webhook bodies (webhook-only mode).
    pub(super) deals_from_bodies: Vec<(i64, DealUpsert)>,
    /// Leads to fetch (API mode), with the events waiting for each.
    pub(super) leads_to_fetch: BTreeMap<u64, Vec<i64>>,
    pub(super) contacts_from_bodies: Vec<(i64, ContactUpsert)>,
    /// Contacts to fetch (API mode), with the events waiting for each.
    pub(super) contacts_to_fetch: BTreeMap<u64, Vec<i64>>,
    /// Deletes and restores to record (webhook-only mode), with their events.
    pub(super) deletions: Vec<(i64, DeletionRecord)>,
    /// Events with nothing to mirror.
    pub(super) nothing: Vec<i64>,
    pub(super) settled: HashMap<i64, Settle>,
}

impl Worker {
    pub(super) fn plan(&self, events: &[StoredEvent]) -> Plan {
        let api = self.state.client.is_some();
        let mut plan = Plan::default();
        for stored in events {
            let event: WebhookEvent = match stored.webhook_event() {
                Ok(event) => event,
                Err(e) => {
                    plan.settled.insert(
                        stored.id,
                        Settle::Permanent(format!("stored payload is not a webhook event: {e}")),
                    );
                    continue;
                }
            };
            // A catch-up event names an entity without its data: only a fetch can apply it, and
            // catch-up runs in API mode only; a later switch to webhook-only mode leaves it be.
            if !api && crate::catch_up::is_catch_up(&stored.event_type) {
                plan.nothing.push(stored.id);
                continue;
            }
            if api
                && let Some(entity) = mirror_entity(&event.entity)
                && let Some(Ok(numeric)) = event.entity_id().map(str::parse::<u64>)
            {
                let fetch = match entity {
                    MirrorEntity::Deal => &mut plan.leads_to_fetch,
                    MirrorEntity::Contact => &mut plan.contacts_to_fetch,
                };
                fetch.entry(numeric).or_default().push(stored.id);
                continue;
            }
            let writes = body_writes(&event, &stored.event_hash, &self.state.metadata_fields);
            let settles =
                writes.deletion.is_some() || writes.deal.is_some() || writes.contact.is_some();
            if let Some(deletion) = writes.deletion {
                plan.deletions.push((stored.id, deletion));
            }
            if let Some(deal) = writes.deal {
                plan.deals_from_bodies.push((stored.id, deal));
            }
            if let Some(contact) = writes.contact {
                plan.contacts_from_bodies.push((stored.id, contact));
            }
            if !settles {
                plan.nothing.push(stored.id);
            }
        }
        plan
    }
}

/// The mirror table of an entity; `None` for notes, chats, unsorted, tasks, companies, ...: kept
/// in the events table, no row.
fn mirror_entity(entity: &Entity) -> Option<MirrorEntity> {
    match entity {
        Entity::Lead => Some(MirrorEntity::Deal),
        Entity::Contact => Some(MirrorEntity::Contact),
        _ => None,
    }
}

/// What a webhook body settles alone (webhook-only mode): the row it carries and, for a delete or
/// restore, the deletion record (a restore body carries the entity like an update: both apply).
/// Nothing for an entity without a mirror table or a body without an id.
pub(crate) fn body_writes(
    event: &WebhookEvent,
    event_hash: &str,
    metadata_fields: &[MetadataField],
) -> EventWrites {
    let mut writes = EventWrites::default();
    let (Some(entity), Some(id)) = (mirror_entity(&event.entity), event.entity_id()) else {
        return writes;
    };
    if matches!(event.action, Action::Delete | Action::Restore) {
        writes.deletion = Some(DeletionRecord {
            entity,
            amocrm_id: id.to_owned(),
            event_hash: event_hash.to_owned(),
            deleted: matches!(event.action, Action::Delete),
        });
        if matches!(event.action, Action::Delete) {
            return writes;
        }
    }
    match entity {
        MirrorEntity::Deal => writes.deal = mapping::deal_from_webhook(event, metadata_fields),
        MirrorEntity::Contact => writes.contact = mapping::contact_from_webhook(event),
    }
    writes
}
