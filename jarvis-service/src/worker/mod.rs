//! The worker: claims due events, coalesces them by entity, fetches what the bodies lack in as few API
//! calls as possible, upserts the mirror tables and settles every event (processed, retried or dead).
//!
//! API economy (API mode): one batch makes at most `ceil(leads / 250)` lead requests (with their contacts
//! embedded; deletes and restores join them), `ceil(contacts / 250)` requests for the contacts whose
//! events are in the batch, and `ceil(main contacts / 250)` for main contacts whose fields are not stored
//! yet. Notes, chats and other events without a mirror table, and every event in webhook-only mode, need
//! no request.
//!
//! What each source knows of a row is decided in [`crate::mapping`]; the store applies it by its mirror
//! rule. In API mode every lead or contact event (deletes and restores included) is confirmed against
//! the API: the entity is fetched with the others of its batch and its row takes the API's state, or
//! is marked deleted when the API no longer returns it. So the last event processed for an entity
//! leaves it as amoCRM shows it, whatever the order, duplication or lateness of deliveries. In
//! webhook-only mode rows take what the bodies carry, and deletes and restores are counted per
//! entity ([`jarvis_store::Store::record_deletion`]); those events need no request.
//!
//! A batch goes through three steps, each in its own file: `plan.rs` decides what needs fetching and
//! what the bodies settle alone, `fetch.rs` makes the amoCRM calls and upserts what they return, and
//! `settle.rs` records what became of every event. This module runs the loop (the account lock,
//! claiming, waking, leases) and carries a batch through the steps. [`catch_up`] is the task that
//! runs beside the worker and queues the entities of gaps for it.

mod fetch;
mod plan;
mod settle;

pub mod catch_up;

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use jarvis_store::{ContactUpsert, DealUpsert, StoredEvent};
use tokio::sync::watch;

use tracing::Instrument;

use crate::activity::WorkerLock;
use crate::amo;
use crate::config::WorkerSettings;
use crate::state::AppState;
use crate::task::panic_message;
use crate::telemetry::{compact_ids, names};

pub use fetch::FetchError;
use plan::Plan;
pub(crate) use plan::body_writes;
pub(crate) use settle::record_processed;
use settle::{Settle, settle_once, settle_store};
pub use settle::{backoff, transient_delay};

/// How often an idle worker looks for events that came due (retries) or were stored by other instances.
const IDLE_POLL: Duration = Duration::from_secs(1);
/// How often a standby worker asks whether the account is free, and a working one checks it still holds it.
const EXCLUSIVE_CHECK: Duration = Duration::from_secs(5);
/// How often refused bodies past their retention or the size cap are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

pub struct Worker {
    state: AppState,
    settings: WorkerSettings,
    stop: watch::Receiver<bool>,
    /// Reports amoCRM refusing access (401/402/403, refused refresh) and clears it on success.
    access: tokio::sync::Mutex<amo::AccessMonitor>,
}

/// What a one-transaction batch reports once committed.
struct Planned {
    ids: Vec<i64>,
    /// When the completed events were received (for the processing lag).
    received: Vec<DateTime<Utc>>,
    deals: usize,
    contacts: usize,
    /// The batch's events, kept for the linker when there is one.
    events: Vec<StoredEvent>,
}

/// How a batch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchEnd {
    /// Every event was settled.
    Finished,
    /// The account lock was lost: another instance may work for the account now.
    LockLost,
    /// The leases could not be renewed before they ran out: another worker may take the events.
    LeasesLost,
}

impl Worker {
    pub fn new(state: AppState, settings: WorkerSettings, stop: watch::Receiver<bool>) -> Self {
        let access = tokio::sync::Mutex::new(amo::AccessMonitor::new(state.store.clone()));
        Self {
            state,
            settings,
            stop,
            access,
        }
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Sleeps, or returns early (true) when asked to stop.
    async fn sleep_or_stop(&mut self, duration: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(duration) => {}
            _ = self.stop.wait_for(|s| *s) => {}
        }
        self.stopping()
    }

    pub async fn run(mut self) {
        tracing::info!(
            api = self.state.client.is_some(),
            batch_window_ms = self.settings.batch_window.as_millis() as u64,
            "worker started"
        );
        // Behind a transaction pooler leases and the account lock mean nothing: refuse to work.
        match self.state.store.check_session().await {
            Err(e @ jarvis_store::Error::TransactionPooler) => {
                tracing::error!(error = %e, "the worker does not start");
                return;
            }
            Err(e) => tracing::warn!(error = %e, "checking the database session failed; going on"),
            Ok(()) => {}
        }
        let mut usage = self.state.client.clone().map(amo::UsageRecorder::new);
        let mut pruned_at: Option<std::time::Instant> = None;
        // In API mode one worker per account across every instance spends the account's API budget, so
        // its rate limit holds fleet-wide; the others stand by and take over if it goes away.
        let needs_exclusive = self.state.client.is_some();
        if !needs_exclusive {
            self.state.activity.set_worker(WorkerLock::NotNeeded);
        }
        let mut exclusive: Option<jarvis_store::ExclusiveGuard> = None;
        let mut checked_at = std::time::Instant::now();
        // When the last batch was claimed, and whether it was full (more may be waiting).
        let mut last_batch: Option<(std::time::Instant, bool)> = None;
        // Set after a one-transaction batch failed: the next batch goes step by step.
        let mut one_by_one = false;
        while !self.stopping() {
            if pruned_at.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
                pruned_at = Some(std::time::Instant::now());
                self.prune_rejected().await;
            }
            if needs_exclusive {
                let due = exclusive.is_none() || checked_at.elapsed() >= EXCLUSIVE_CHECK;
                if due {
                    checked_at = std::time::Instant::now();
                    // Bounded: a half-open connection must not stall the worker.
                    if let Some(guard) = exclusive.as_mut()
                        && !tokio::time::timeout(Duration::from_secs(5), guard.is_held())
                            .await
                            .unwrap_or(false)
                    {
                        tracing::warn!("lost the account's worker lock; standing by");
                        metrics::counter!(names::WORKER_LOCK_LOST).increment(1);
                        self.lock_state(false);
                        exclusive = None;
                    }
                }
                if exclusive.is_none() {
                    match self
                        .state
                        .store
                        .try_exclusive(&self.state.account_key)
                        .await
                    {
                        Err(e @ jarvis_store::Error::TransactionPooler) => {
                            tracing::error!(error = %e, "the worker stops");
                            break;
                        }
                        Ok(Some(guard)) => {
                            tracing::info!(account = %self.state.account_key, "this instance works for the account");
                            self.lock_state(true);
                            exclusive = Some(guard);
                        }
                        Ok(None) => {
                            tracing::debug!("another instance works for the account; standing by");
                            self.lock_state(false);
                            if self.sleep_or_stop(EXCLUSIVE_CHECK).await {
                                break;
                            }
                            continue;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot take the account's worker lock; retrying");
                            if self.sleep_or_stop(IDLE_POLL).await {
                                break;
                            }
                            continue;
                        }
                    }
                }
            }
            if let Some(recorder) = usage.as_mut() {
                recorder.flush(&self.state.store).await;
            }
            // Adaptive batching: soon after an idle spell, gathering only when the last batch was
            // recent (or the rate limiter would make the next request wait anyway).
            if let Some(wait) = self.gather_wait(last_batch) {
                if self.sleep_or_stop(wait).await {
                    break;
                }
                continue;
            }
            if self.after_idle(last_batch) && self.gather_arrivals().await {
                break;
            }
            let claimed_at = std::time::Instant::now();
            // Webhook-only mode: bodies are all a batch needs, so it is claimed, written and completed
            // in one transaction; what that cannot settle goes the general way below.
            if self.state.client.is_none() && !one_by_one {
                match self.claim_and_settle().await {
                    Ok(0) => {}
                    Ok(claimed) => {
                        last_batch = Some((claimed_at, claimed >= self.settings.claim_batch));
                        continue;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "settling a batch in one transaction failed; settling it step by step");
                        one_by_one = true;
                        continue;
                    }
                }
                if self.idle_wait().await {
                    break;
                }
                continue;
            }
            one_by_one = false;
            let claimed = match self
                .state
                .store
                .claim_events(self.settings.claim_batch, self.settings.lease)
                .await
            {
                Ok(events) => events,
                Err(e) => {
                    tracing::warn!(error = %e, "claiming events failed; retrying");
                    if self.sleep_or_stop(IDLE_POLL).await {
                        break;
                    }
                    continue;
                }
            };
            if claimed.is_empty() {
                if self.idle_wait().await {
                    break;
                }
                continue;
            }
            last_batch = Some((claimed_at, claimed.len() >= self.settings.claim_batch));
            // A started batch is finished, also on shutdown, so no lease is left behind; unless the
            // account lock or the leases are lost, when going on would duplicate another's work.
            let end = self
                .process_held(&claimed, claimed_at, exclusive.as_mut())
                .await;
            if end != BatchEnd::Finished {
                metrics::counter!(names::BATCHES_ABANDONED).increment(1);
            }
            if end == BatchEnd::LockLost {
                metrics::counter!(names::WORKER_LOCK_LOST).increment(1);
                self.lock_state(false);
                exclusive = None;
            }
        }
        if let Some(recorder) = usage.as_mut() {
            recorder.flush(&self.state.store).await;
        }
        metrics::gauge!(names::WORKER_LOCK_HELD).set(0.0);
        self.state.activity.set_worker(WorkerLock::NotRunning);
        tracing::info!("worker stopped");
    }

    /// Runs [`process_guarded`](Self::process_guarded) while keeping what it relies on: every third
    /// of the lease it checks the account lock (when one is held) and renews the batch's leases. When
    /// the lock is lost, or the leases cannot be renewed before they run out, the batch is dropped
    /// where it stands (an API request in flight included) and its events are left to whoever takes
    /// them next: better a batch redone than two workers on one event.
    pub async fn process_held(
        &self,
        events: &[StoredEvent],
        claimed_at: std::time::Instant,
        mut exclusive: Option<&mut jarvis_store::ExclusiveGuard>,
    ) -> BatchEnd {
        let lease = self.settings.lease;
        let every = (lease / 3).max(Duration::from_millis(100));
        let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
        // The leases were taken at the claim, a moment before `claimed_at`.
        let mut held_until = claimed_at + lease;
        let work = self.process_guarded(events);
        tokio::pin!(work);
        loop {
            tokio::select! {
                () = &mut work => return BatchEnd::Finished,
                () = tokio::time::sleep(every) => {}
            }
            if let Some(guard) = exclusive.as_deref_mut() {
                let held = tokio::time::timeout(every, guard.is_held())
                    .await
                    .unwrap_or(false);
                if !held {
                    tracing::warn!(
                        events = ids.len(),
                        "lost the account's worker lock mid-batch; dropping the batch"
                    );
                    return BatchEnd::LockLost;
                }
            }
            let renew_started = std::time::Instant::now();
            match tokio::time::timeout(every, self.state.store.extend_leases(&ids, lease)).await {
                Ok(Ok(_)) => held_until = renew_started + lease,
                Ok(Err(e)) => tracing::warn!(error = %e, "renewing the batch's leases failed"),
                Err(_) => tracing::warn!("renewing the batch's leases timed out"),
            }
            // Stop while the leases still hold, with a margin for a request about to be sent.
            if std::time::Instant::now() + every >= held_until {
                tracing::warn!(
                    events = ids.len(),
                    "cannot renew the batch's leases before they run out; dropping the batch"
                );
                return BatchEnd::LeasesLost;
            }
        }
    }

    /// Deletes refused bodies past their retention, then the oldest beyond the size cap.
    async fn prune_rejected(&self) {
        let retention = chrono::Duration::from_std(self.settings.rejected_retention)
            .unwrap_or(chrono::Duration::MAX);
        let older_than = Utc::now()
            .checked_sub_signed(retention)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        match self
            .state
            .store
            .prune_rejected(older_than, self.settings.rejected_max_bytes)
            .await
        {
            Ok(0) => {}
            Ok(deleted) => {
                metrics::counter!(names::REJECTED_PRUNED).increment(deleted);
                tracing::info!(
                    deleted,
                    "deleted refused bodies past retention or the size cap"
                );
            }
            Err(e) => tracing::warn!(error = %e, "pruning refused bodies failed; will retry"),
        }
    }

    /// [`process`](Self::process), with a bug contained: if processing the batch panics, each of
    /// its events is processed on its own, and an event that panics alone fails like any event
    /// that cannot be processed (an attempt counted, dead after the last) while the rest go
    /// through. Without this one bad event would stop the worker on every claim of its batch.
    pub async fn process_guarded(&self, events: &[StoredEvent]) {
        let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
        let span =
            tracing::info_span!("batch", events = events.len(), event_ids = %compact_ids(&ids));
        self.process_guarded_inner(events).instrument(span).await
    }

    /// Records whether this instance holds the account's worker lock (gauge and status page); the
    /// standby state keeps the time it began.
    fn lock_state(&self, held: bool) {
        let now = Utc::now();
        let next = match (held, self.state.activity.worker()) {
            (true, WorkerLock::Held { since }) => WorkerLock::Held { since },
            (true, _) => WorkerLock::Held { since: now },
            (false, WorkerLock::Standby { since }) => WorkerLock::Standby { since },
            (false, _) => WorkerLock::Standby { since: now },
        };
        self.state.activity.set_worker(next);
        metrics::gauge!(names::WORKER_LOCK_HELD).set(if held { 1.0 } else { 0.0 });
    }

    async fn process_guarded_inner(&self, events: &[StoredEvent]) {
        let poisoned = isolate_panics(events, |batch| Box::pin(self.process(batch))).await;
        if poisoned.is_empty() {
            return;
        }
        let received = poisoned
            .iter()
            .map(|(e, _)| (e.id, e.received_at))
            .collect();
        let attempts = poisoned.iter().map(|(e, _)| (e.id, e.attempts)).collect();
        let settled = poisoned
            .into_iter()
            .map(|(event, message)| {
                tracing::error!(event = event.id, panic = %message, "processing this event panicked");
                let error = format!("processing panicked: {message}");
                (event.id, Settle::Permanent(error))
            })
            .collect();
        self.settle(settled, &received, &attempts).await;
    }

    /// Processes one claimed batch and settles every event in it.
    pub async fn process(&self, events: &[StoredEvent]) {
        let received: HashMap<i64, DateTime<Utc>> =
            events.iter().map(|e| (e.id, e.received_at)).collect();
        let attempts: HashMap<i64, i32> = events.iter().map(|e| (e.id, e.attempts)).collect();
        let started = std::time::Instant::now();
        let api_before = self.api_requests();
        let mut plan = self.plan(events);
        let deals = plan.deals_from_bodies.len() + plan.leads_to_fetch.len();
        let contacts = plan.contacts_from_bodies.len() + plan.contacts_to_fetch.len();
        self.execute(&mut plan).await;
        let failed = plan
            .settled
            .values()
            .filter(|s| !matches!(s, Settle::Done))
            .count();
        self.settle(plan.settled, &received, &attempts).await;
        let elapsed = started.elapsed();
        metrics::histogram!(names::WORKER_BATCH_DURATION).record(elapsed.as_secs_f64());
        tracing::info!(
            events = events.len(),
            deals,
            contacts,
            failed,
            api_requests = self.api_requests().saturating_sub(api_before),
            duration_ms = elapsed.as_millis() as u64,
            "worker batch done"
        );
        // After settling, so the business's link queries never hold up the events.
        if let Some(linker) = &self.state.linker {
            linker.after_batch(events).await;
        }
    }

    /// How long to let events gather before the next claim, if at all.
    ///
    /// A batch right after an idle spell is claimed at once: one change alone is mirrored in the time
    /// of one fetch. After a batch that was not full, the next one waits until the batching window
    /// (`JARVIS_BATCH_WINDOW_MS`) has passed since the last claim, so a burst or a steady stream
    /// becomes one batch (and one request per 250 entities) per window, never more than that; a full
    /// batch means a backlog, worked through without pause. In API mode the claim also waits while
    /// the rate limiter would hold the next request back anyway, so what arrives meanwhile joins it.
    fn gather_wait(&self, last_batch: Option<(std::time::Instant, bool)>) -> Option<Duration> {
        let mut until = match last_batch {
            Some((claimed_at, false)) => Some(claimed_at + self.settings.batch_window),
            _ => None,
        };
        if let Some(client) = &self.state.client {
            let ready = client.rate_limiter().ready_at().into_std();
            until = Some(until.map_or(ready, |at| at.max(ready)));
        }
        // Read after the others: a time "now" already passed is no wait.
        let now = std::time::Instant::now();
        until
            .and_then(|at| at.checked_duration_since(now))
            .filter(|wait| !wait.is_zero())
    }

    /// Whether the worker comes back from an idle spell: no batch within the last batch window.
    fn after_idle(&self, last_batch: Option<(std::time::Instant, bool)>) -> bool {
        last_batch.is_none_or(|(claimed_at, _)| claimed_at.elapsed() >= self.settings.batch_window)
    }

    /// API mode, after an idle spell: waits while events keep arriving, each within
    /// `batch_quiet` of the one before (or while webhooks are being stored), and at most
    /// `batch_window` in all. A lone change waits
    /// `batch_quiet` (its latency); a burst is claimed once it is in, so its leads share requests
    /// instead of its first change being fetched alone. Returns true when asked to stop.
    async fn gather_arrivals(&mut self) -> bool {
        let quiet = self.settings.batch_quiet;
        if self.state.client.is_none() || quiet.is_zero() {
            return false;
        }
        let cap = tokio::time::Instant::now() + self.settings.batch_window;
        let wake = self.state.wake.clone();
        loop {
            let quiet_until = (tokio::time::Instant::now() + quiet).min(cap);
            tokio::select! {
                _ = wake.notified() => {
                    if tokio::time::Instant::now() >= cap {
                        return false;
                    }
                }
                _ = tokio::time::sleep_until(quiet_until) => {
                    // Quiet, unless webhooks are being stored right now: their events join this
                    // batch (a burst's commits may come more than the quiet time apart).
                    let storing = self.state.storing.load(std::sync::atomic::Ordering::SeqCst);
                    if storing == 0 || tokio::time::Instant::now() >= cap {
                        return false;
                    }
                }
                _ = self.stop.wait_for(|s| *s) => return true,
            }
        }
    }

    /// Waits for new events (a webhook stored, or the idle poll for retries coming due). Returns
    /// true when asked to stop.
    async fn idle_wait(&mut self) -> bool {
        if let Some(linker) = &self.state.linker {
            linker.retry_failed_if_due();
        }
        tokio::select! {
            _ = self.state.wake.notified() => false,
            _ = tokio::time::sleep(IDLE_POLL) => false,
            _ = self.stop.wait_for(|s| *s) => true,
        }
    }

    /// Webhook-only mode: claims a batch and writes its rows and completes its events in one
    /// transaction ([`jarvis_store::Store::claim_and_settle`]). Events the bodies cannot settle
    /// (an undecodable payload) come back leased and are processed step by step. Returns how many
    /// events were claimed; an error (or a panic while planning) leaves every event as it was.
    async fn claim_and_settle(&self) -> Result<usize, String> {
        use futures::FutureExt;
        let started = std::time::Instant::now();
        let mut planned: Option<Planned> = None;
        let keep_events = self.state.linker.is_some();
        let mut plan = |events: &[StoredEvent]| {
            let (writes, summary) = self.plan_writes(events, keep_events);
            planned = Some(summary);
            writes
        };
        let work = self.state.store.claim_and_settle(
            self.settings.claim_batch,
            self.settings.lease,
            &mut plan,
        );
        let outcome = match std::panic::AssertUnwindSafe(work).catch_unwind().await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(panic) => return Err(format!("planning panicked: {}", panic_message(&*panic))),
        };
        let Some(planned) = planned.filter(|_| outcome.claimed > 0) else {
            return Ok(0);
        };
        record_processed(&self.state, planned.received.iter(), Utc::now());
        let elapsed = started.elapsed();
        metrics::histogram!(names::WORKER_BATCH_DURATION).record(elapsed.as_secs_f64());
        let span = tracing::info_span!("batch", events = outcome.claimed, event_ids = %compact_ids(&planned.ids));
        span.in_scope(|| {
            tracing::info!(
                events = outcome.claimed,
                deals = planned.deals,
                contacts = planned.contacts,
                failed = outcome.leased.len(),
                api_requests = 0,
                duration_ms = elapsed.as_millis() as u64,
                "worker batch done"
            )
        });
        if !outcome.leased.is_empty() {
            self.process_guarded(&outcome.leased).await;
        }
        if let Some(linker) = &self.state.linker {
            linker.after_batch(&planned.events).await;
        }
        Ok(outcome.claimed)
    }

    /// The writes that settle a batch from its bodies alone (webhook-only mode), and what to report
    /// of it. Events the plan fails are left out of `completed`.
    fn plan_writes(
        &self,
        events: &[StoredEvent],
        keep_events: bool,
    ) -> (jarvis_store::BatchWrites, Planned) {
        let plan = self.plan(events);
        // Fetches are planned in API mode only; an event waiting for one would be left out too.
        let mut completed: Vec<i64> = plan
            .nothing
            .iter()
            .chain(plan.deals_from_bodies.iter().map(|(id, _)| id))
            .chain(plan.contacts_from_bodies.iter().map(|(id, _)| id))
            .chain(plan.deletions.iter().map(|(id, _)| id))
            .copied()
            .filter(|id| !plan.settled.contains_key(id))
            .collect();
        completed.sort_unstable();
        completed.dedup();
        let done: std::collections::HashSet<i64> = completed.iter().copied().collect();
        let summary = Planned {
            ids: events.iter().map(|e| e.id).collect(),
            received: events
                .iter()
                .filter(|e| done.contains(&e.id))
                .map(|e| e.received_at)
                .collect(),
            deals: plan.deals_from_bodies.len(),
            contacts: plan.contacts_from_bodies.len(),
            events: if keep_events {
                events.to_vec()
            } else {
                Vec::new()
            },
        };
        let writes = jarvis_store::BatchWrites {
            contacts: plan
                .contacts_from_bodies
                .into_iter()
                .map(|(_, c)| c)
                .collect(),
            deals: plan.deals_from_bodies.into_iter().map(|(_, d)| d).collect(),
            deletions: plan.deletions.into_iter().map(|(_, d)| d).collect(),
            completed,
        };
        (writes, summary)
    }

    /// Requests this process's amoCRM client has sent so far (0 in webhook-only mode).
    fn api_requests(&self) -> u64 {
        self.state
            .client
            .as_ref()
            .map(|c| c.usage().total_requests())
            .unwrap_or(0)
    }

    /// Carries out a plan: writes what the bodies carry, fetches the rest and records deletes and
    /// restores, noting what became of each event in `plan.settled`.
    async fn execute(&self, plan: &mut Plan) {
        let store = &self.state.store;
        for id in plan.nothing.drain(..) {
            plan.settled.insert(id, Settle::Done);
        }

        // Contacts first: their bodies carry custom fields that deals in this batch may use.
        if !plan.contacts_from_bodies.is_empty() {
            let rows: Vec<ContactUpsert> = plan
                .contacts_from_bodies
                .iter()
                .map(|(_, c)| c.clone())
                .collect();
            let mut result = store.upsert_contacts(&rows).await.map(|_| ());
            if result.is_ok() {
                result = self.follow_contact_fields(&rows).await;
            }
            for (id, _) in plan.contacts_from_bodies.drain(..) {
                settle_once(&mut plan.settled, id, settle_store(&result));
            }
        }

        if !plan.deals_from_bodies.is_empty() {
            let rows: Vec<DealUpsert> = plan
                .deals_from_bodies
                .iter()
                .map(|(_, d)| d.clone())
                .collect();
            let result = store.upsert_deals(&rows).await;
            for (id, _) in plan.deals_from_bodies.drain(..) {
                settle_once(&mut plan.settled, id, settle_store(&result));
            }
        }

        // Contacts before leads: the leads' main contacts are then read fresh from the store.
        if !plan.contacts_to_fetch.is_empty() {
            let outcome = self.sync_contacts(&plan.contacts_to_fetch).await;
            for ids in std::mem::take(&mut plan.contacts_to_fetch).into_values() {
                for id in ids {
                    let settle = match &outcome {
                        Ok(()) => Settle::Done,
                        Err(e) => e.to_settle(),
                    };
                    plan.settled.insert(id, settle);
                }
            }
        }

        if !plan.leads_to_fetch.is_empty() {
            let outcome = self.sync_leads(&plan.leads_to_fetch).await;
            self.note_access(&outcome).await;
            for ids in std::mem::take(&mut plan.leads_to_fetch).into_values() {
                for id in ids {
                    let settle = match &outcome {
                        Ok(()) => Settle::Done,
                        Err(e) => e.to_settle(),
                    };
                    plan.settled.insert(id, settle);
                }
            }
        }

        for (event, deletion) in plan.deletions.drain(..) {
            let result = store
                .record_deletion(
                    deletion.entity,
                    &deletion.amocrm_id,
                    &deletion.event_hash,
                    deletion.deleted,
                )
                .await;
            settle_once(&mut plan.settled, event, settle_store(&result));
        }
    }
}

/// Runs `process` over `events`; if it panics, runs it again over each event alone and gives back
/// the events that still panic, with the panic's message.
async fn isolate_panics<'a>(
    events: &'a [StoredEvent],
    process: impl Fn(&'a [StoredEvent]) -> futures::future::BoxFuture<'a, ()>,
) -> Vec<(&'a StoredEvent, String)> {
    use futures::FutureExt;
    let run =
        |batch: &'a [StoredEvent]| std::panic::AssertUnwindSafe(process(batch)).catch_unwind();
    let Err(panic) = run(events).await else {
        return Vec::new();
    };
    if let [event] = events {
        return vec![(event, panic_message(&*panic))];
    }
    tracing::error!(
        events = events.len(),
        panic = %panic_message(&*panic),
        "processing a batch panicked; processing its events one by one"
    );
    let mut poisoned = Vec::new();
    for event in events {
        if let Err(panic) = run(std::slice::from_ref(event)).await {
            poisoned.push((event, panic_message(&*panic)));
        }
    }
    poisoned
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn stored(id: i64) -> StoredEvent {
        let now = Utc::now();
        StoredEvent {
            id,
            received_at: now,
            event_type: "lead.update".into(),
            entity_type: "lead".into(),
            amocrm_entity_id: Some(id.to_string()),
            event_hash: format!("hash-{id}"),
            payload: Value::Null.into(),
            account_id: None,
            processed: false,
            attempts: 0,
            next_attempt_at: now,
            locked_until: None,
            last_error: None,
            processed_at: None,
            dead_at: None,
        }
    }

    #[tokio::test]
    async fn a_panicking_event_is_isolated_and_the_rest_are_processed() {
        let events: Vec<StoredEvent> = (1..=5).map(stored).collect();
        let processed = std::sync::Mutex::new(Vec::new());
        let poisoned = isolate_panics(&events, |batch| {
            let processed = &processed;
            Box::pin(async move {
                if batch.iter().any(|e| e.id == 3) {
                    panic!("event 3 trips a bug");
                }
                processed.lock().unwrap().extend(batch.iter().map(|e| e.id));
            })
        })
        .await;

        let poisoned: Vec<_> = poisoned.iter().map(|(e, m)| (e.id, m.as_str())).collect();
        assert_eq!(poisoned, [(3, "event 3 trips a bug")]);
        assert_eq!(*processed.lock().unwrap(), [1, 2, 4, 5]);
    }

    #[tokio::test]
    async fn a_batch_that_does_not_panic_is_processed_once() {
        let events: Vec<StoredEvent> = (1..=3).map(stored).collect();
        let calls = std::sync::Mutex::new(0);
        let poisoned = isolate_panics(&events, |_| {
            let calls = &calls;
            Box::pin(async move {
                *calls.lock().unwrap() += 1;
            })
        })
        .await;
        assert!(poisoned.is_empty());
        assert_eq!(*calls.lock().unwrap(), 1);
    }
}
