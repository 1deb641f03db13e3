//! Deciding, from a claimed batch, what needs fetching and what can be settled from the bodies
//! alone: in API mode every lead or contact event waits for its entity's fetch; in webhook-only
//! mode rows come from the bodies and deletes and restores are recorded.

use std::collections::{BTreeMap, HashMap};

use amocrm_webhook::{Action, Entity, WebhookEvent};
use jarvis_store::{ContactUpsert, DealUpsert, MirrorEntity, StoredEvent};

use super::Worker;
use super::settle::Settle;
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
    /// Deletes and restores to record (webhook-only mode).
    pub(super) deletions: Vec<Deletion>,
    /// Events with nothing to mirror.
    pub(super) nothing: Vec<i64>,
    pub(super) settled: HashMap<i64, Settle>,
}

/// A delete or restore event of a mirrored entity.
pub(super) struct Deletion {
    pub(super) event: i64,
    pub(super) entity: MirrorEntity,
    pub(super) id: String,
    pub(super) event_hash: String,
    pub(super) deleted: bool,
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
            let id = event.entity_id().map(str::to_owned);
            // A catch-up event names an entity without its data: only a fetch can apply it, and
            // catch-up runs in API mode only; a later switch to webhook-only mode leaves it be.
            if !api && crate::catch_up::is_catch_up(&stored.event_type) {
                plan.nothing.push(stored.id);
                continue;
            }
            let entity = match event.entity {
                Entity::Lead => MirrorEntity::Deal,
                Entity::Contact => MirrorEntity::Contact,
                // Notes, chats, unsorted, tasks, companies, ...: kept in the events table, no row.
                _ => {
                    plan.nothing.push(stored.id);
                    continue;
                }
            };
            let Some(id) = id else {
                plan.nothing.push(stored.id);
                continue;
            };
            if api && let Ok(numeric) = id.parse::<u64>() {
                let fetch = match entity {
                    MirrorEntity::Deal => &mut plan.leads_to_fetch,
                    MirrorEntity::Contact => &mut plan.contacts_to_fetch,
                };
                fetch.entry(numeric).or_default().push(stored.id);
                continue;
            }
            if matches!(event.action, Action::Delete | Action::Restore) {
                plan.deletions.push(Deletion {
                    event: stored.id,
                    entity,
                    id: id.clone(),
                    event_hash: stored.event_hash.clone(),
                    deleted: matches!(event.action, Action::Delete),
                });
                if matches!(event.action, Action::Delete) {
                    continue;
                }
            }
            // A restore body carries the entity like an update: both apply.
            match entity {
                MirrorEntity::Deal => {
                    match mapping::deal_from_webhook(&event, &self.state.metadata_fields) {
                        Some(deal) => plan.deals_from_bodies.push((stored.id, deal)),
                        None => plan.nothing.push(stored.id),
                    }
                }
                MirrorEntity::Contact => match mapping::contact_from_webhook(&event) {
                    Some(contact) => plan.contacts_from_bodies.push((stored.id, contact)),
                    None => plan.nothing.push(stored.id),
                },
            }
        }
        plan
    }
}
