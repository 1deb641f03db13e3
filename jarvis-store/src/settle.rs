//! Settling a worker's batch in one transaction: the mirror writes its events carry, then the
//! events marked processed.

use serde::{Deserialize, Serialize};

use crate::model::{ContactUpsert, DealUpsert, MirrorEntity};

/// A delete or restore event of a mirrored entity, as [`Store::record_deletion`](crate::Store::record_deletion) records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletionRecord {
    /// The table it applies to.
    pub entity: MirrorEntity,
    /// amoCRM's id of the deal or contact.
    pub amocrm_id: String,
    /// The event's `event_hash`: a replayed event counts once.
    pub event_hash: String,
    /// `true` for a delete, `false` for a restore.
    pub deleted: bool,
}

/// Everything one batch of events writes, for [`Store::settle_batch`](crate::Store::settle_batch).
///
/// Applied in this order: `contacts` (then their stored custom fields are copied into the deals
/// they are the main contact of, as [`Store::set_main_contact_fields`](crate::Store::set_main_contact_fields)
/// does), `deals`, `deletions`, and last the `completed` events are marked processed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchWrites {
    /// Contact states, by the mirror rule (repeats of one contact apply in order).
    pub contacts: Vec<ContactUpsert>,
    /// Deal states, by the mirror rule.
    pub deals: Vec<DealUpsert>,
    /// Deletes and restores to record.
    pub deletions: Vec<DeletionRecord>,
    /// Events (`amocrm_webhook_events.id`) to mark processed. With
    /// [`Store::claim_and_settle`](crate::Store::claim_and_settle), only events of the claimed batch.
    pub completed: Vec<i64>,
}

impl BatchWrites {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.contacts.is_empty()
            && self.deals.is_empty()
            && self.deletions.is_empty()
            && self.completed.is_empty()
    }

    /// The contact ids whose stored fields the deals follow, each once.
    pub(crate) fn followed_contacts(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self
            .contacts
            .iter()
            .map(|c| c.amocrm_contact_id.as_str())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The writes of `events` gathered in their order (contacts, deals and deletions each in the
    /// order of the events carrying them), completing nothing.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn gather<'a>(events: impl Iterator<Item = &'a EventWrites>) -> Self {
        let mut writes = BatchWrites::default();
        for event in events {
            writes.contacts.extend(event.contact.iter().cloned());
            writes.deals.extend(event.deal.iter().cloned());
            writes.deletions.extend(event.deletion.iter().cloned());
        }
        writes
    }
}

/// What one event's body settles alone, written with the event by
/// [`Store::insert_settled`](crate::Store::insert_settled): its mirror row and, for a delete or
/// restore, the deletion record. All `None` for an event with nothing to mirror (a note, a chat),
/// which is stored processed all the same.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventWrites {
    /// The contact state the body carries.
    pub contact: Option<ContactUpsert>,
    /// The deal state the body carries.
    pub deal: Option<DealUpsert>,
    /// The delete or restore the event records.
    pub deletion: Option<DeletionRecord>,
}

/// An event to store with what settles it, for [`Store::insert_settled`](crate::Store::insert_settled).
#[derive(Debug, Clone)]
pub struct SettledEvent {
    /// The event's row.
    pub event: crate::NewEvent,
    /// `Some`: stored processed, these writes made in the insert's transaction. `None`: stored
    /// pending, for the worker.
    pub writes: Option<EventWrites>,
}

/// What [`Store::settle_batch`](crate::Store::settle_batch) did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettleOutcome {
    /// Contact states applied / left as stale.
    pub contacts: crate::UpsertOutcome,
    /// Deal states applied / left as stale.
    pub deals: crate::UpsertOutcome,
    /// Events marked processed.
    pub completed: u64,
}

impl SettleOutcome {
    /// The outcome of `writes` when `contacts` contact states and `deals` deal states applied.
    pub(crate) fn of(writes: &BatchWrites, contacts: u64, deals: u64) -> Self {
        let outcome = |states: usize, applied: u64| crate::UpsertOutcome {
            applied,
            stale: states as u64 - applied,
        };
        SettleOutcome {
            contacts: outcome(writes.contacts.len(), contacts),
            deals: outcome(writes.deals.len(), deals),
            completed: writes.completed.len() as u64,
        }
    }
}

/// What [`Store::claim_and_settle`](crate::Store::claim_and_settle) did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClaimSettled {
    /// Events claimed.
    pub claimed: usize,
    /// What settling them wrote.
    pub settled: SettleOutcome,
    /// Claimed events the plan did not complete: leased, for the caller to process on its own.
    pub leased: Vec<crate::StoredEvent>,
}

/// Makes, from a claimed batch, the writes that settle it (see
/// [`Store::claim_and_settle`](crate::Store::claim_and_settle)). It runs while the batch's
/// transaction is open: it must be quick and must not wait on anything.
pub type SettlePlan<'a> = dyn FnMut(&[crate::StoredEvent]) -> BatchWrites + Send + 'a;

/// What `plan` makes of a claimed batch, completing only events of the batch.
pub(crate) fn plan_batch(events: &[crate::StoredEvent], plan: &mut SettlePlan<'_>) -> BatchWrites {
    let mut writes = cpu_bound(|| plan(events));
    let in_batch: std::collections::HashSet<i64> = events.iter().map(|e| e.id).collect();
    writes.completed.retain(|id| in_batch.contains(id));
    writes
}

/// Runs a batch's CPU-bound step (decoding or planning a thousand events takes milliseconds) off the
/// async worker thread when the runtime has others: the webhooks that thread serves move to another
/// one meanwhile, instead of waiting behind the batch. On a current-thread runtime it just runs.
pub(crate) fn cpu_bound<R>(work: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) if runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

/// The claimed events `writes` does not complete.
pub(crate) fn left_over(
    events: Vec<crate::StoredEvent>,
    writes: &BatchWrites,
) -> Vec<crate::StoredEvent> {
    let completed: std::collections::HashSet<i64> = writes.completed.iter().copied().collect();
    events
        .into_iter()
        .filter(|event| !completed.contains(&event.id))
        .collect()
}

/// [`Store::claim_and_settle`](crate::Store::claim_and_settle) in two transactions: claim with
/// leases, plan outside any transaction, settle; the leases are released when settling fails.
pub(crate) async fn claim_then_settle<S: crate::Store + ?Sized>(
    store: &S,
    limit: usize,
    lease: std::time::Duration,
    plan: &mut SettlePlan<'_>,
) -> crate::Result<ClaimSettled> {
    let events = store.claim_events(limit, lease).await?;
    if events.is_empty() {
        return Ok(ClaimSettled::default());
    }
    let writes = plan_batch(&events, plan);
    let settled = match store.settle_batch(&writes).await {
        Ok(settled) => settled,
        Err(error) => {
            let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
            // Best effort: if this fails too, the leases expire and the events come back then.
            let _ = store.release_events(&ids).await;
            return Err(error);
        }
    };
    Ok(ClaimSettled {
        claimed: events.len(),
        settled,
        leased: left_over(events, &writes),
    })
}
