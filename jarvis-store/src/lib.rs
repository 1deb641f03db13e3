//! Durable storage for the amoCRM integration: the webhook events queue, the deals and contacts mirror,
//! OAuth tokens, rejected bodies and API usage.
//!
//! [`Store`] is the one interface; [`PgStore`] (PostgreSQL 13+, Neon-compatible) and [`SqliteStore`]
//! (an embedded file, the zero-setup default) implement it. [`connect`] picks one from a URL;
//! [`PoolSettings`] tunes the pool. With the `test-support` feature, `testing` hands out fresh
//! PostgreSQL schemas and SQLite files for tests.
//!
//! With the `webhook` feature, `NewEvent::from_webhook` turns an `amocrm-webhook` event into a queue
//! row; with `mirror` (on by default), the `mirror` module builds deal and contact rows from webhook
//! events and API answers, and keeps `amocrm-client`'s OAuth tokens in a store (`mirror::DbTokenStore`):
//! everything an in-process mirror needs.
//!
//! # The mirror rule
//!
//! A row of `amocrm_deals` / `amocrm_contacts` holds the newest known state of its entity:
//!
//! - **Which state is newer**: amoCRM's `updated_at`. A state applies when the row has no
//!   `updated_at` yet or when its own is not older; for equal seconds the state applied later wins
//!   (in API mode that is the later answer of the API, so two changes within one second end as
//!   amoCRM shows them; in webhook-only mode two different bodies of one entity within one second
//!   cannot be told apart and the one processed last wins). A state without `updated_at` (old and
//!   digital-pipeline bodies) is applied as the newest and keeps the stored `updated_at`, so any later
//!   timed state replaces it.
//! - **What a state writes**: each column of [`DealUpsert`] / [`ContactUpsert`] is a [`Known`]:
//!   a value or NULL replaces the stored value (a value amoCRM cleared is cleared here), `Unknown`
//!   keeps it. The sources decide once, in the `mirror` module (feature `mirror`), what they know:
//!   an API answer knows every column, a webhook body knows what it carries (no `closed_at`, no main contact, no
//!   full data), a body without the entity's `name` (a digital-pipeline hook) knows no custom fields.
//!   Both backends apply it the same way: no per-column guessing in SQL.
//! - **`metadata`**: the keys the state recomputes (`metadata_keys`, those produced by
//!   `JARVIS_METADATA_FIELDS`) are removed and set again from the state (absent when the field is
//!   empty or gone); every other key (e.g. from [`Store::set_deal_metadata`]) is kept.
//! - **Deletes and restores**: a delete body has no `updated_at`, so it cannot be ordered by time.
//!   [`Store::record_deletion`] keeps every delete and restore event of an entity (by `event_hash`,
//!   so a replay counts once) and the row is deleted while its deletes outnumber its restores:
//!   the same answer in whatever order they arrive. A restore body also applies its columns as a
//!   timed state. [`Store::mark_deal_deleted`] sets the flag outright, for a source that knows
//!   (the API no longer returns the lead).
//!
//! ```no_run
//! # async fn demo() -> jarvis_store::Result<()> {
//! use jarvis_store::{connect, Store};
//! let store = connect("sqlite://jarvis.db").await?;
//! store.migrate().await?;
//! let stats = store.stats().await?;
//! println!("backlog: {}", stats.backlog);
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod batch;
mod error;
pub mod gap;
mod group_commit;
pub mod link;
#[cfg(feature = "mirror")]
pub mod mirror;
pub mod model;
#[cfg(feature = "postgres")]
mod postgres;
mod settings;
mod settle;
#[cfg(feature = "sqlite")]
mod sqlite;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
#[cfg(feature = "webhook")]
mod webhook;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

pub use error::{Error, Result};
pub use gap::{Gap, GapEntity, GapEntityType, GapKind};
pub use link::{DealLinks, LinkBind, LinkColumn, LinkFailure, LinkOutcome, LinkScan, LinkStore};
pub use model::*;
#[cfg(feature = "postgres")]
pub use postgres::PgStore;
pub use settings::PoolSettings;
pub use settle::{
    BatchWrites, ClaimSettled, DeletionRecord, EventWrites, SettleOutcome, SettlePlan, SettledEvent,
};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;

/// Re-exported so that implementors of [`Store`] need no direct dependency on `async-trait`.
pub use async_trait::async_trait;

/// Everything the service persists. Implementations are cheap to clone and safe to share across tasks.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates or upgrades the schema. Idempotent.
    async fn migrate(&self) -> Result<()>;

    /// Checks the database answers (for `/readyz`).
    async fn ping(&self) -> Result<()>;

    /// Checks every embedded migration has been applied; [`Error::NotMigrated`] otherwise.
    async fn check_migrated(&self) -> Result<()>;

    // ---- events queue -------------------------------------------------------------------------------

    /// Stores a batch of events in one transaction, skipping those whose `event_hash` is already stored
    /// (or repeated in the batch).
    async fn insert_events(&self, events: &[NewEvent]) -> Result<InsertOutcome>;

    /// Stores events as [`insert_events`](Self::insert_events) does and settles, in the same
    /// transaction, the new ones that come with their writes: their rows written by the mirror
    /// rule (in the order of [`BatchWrites`], events in their order) and the events stored
    /// processed, so no worker has to claim them. A body that carries all that is mirrored
    /// (webhook-only mode) is then one write per event instead of two (insert, then claim and
    /// complete). An event already stored writes nothing; events without writes are stored
    /// pending. `settled` in the outcome counts the events settled.
    ///
    /// The writes never cost an event its storage: if they fail (a mirror row another transaction
    /// holds past the ingest's lock bound, a deadlock, a value the table refuses), the events are
    /// stored pending instead, for the worker. PostgreSQL writes a group of deal states and events
    /// in one statement, each deal once: a deal's later state in the same group is stored pending,
    /// for the worker; contacts and deletions make the group a transaction of several statements.
    /// A state left pending is applied after the states of later groups settled meanwhile: by the
    /// mirror rule that changes nothing unless it has no `updated_at` or the same second as a later
    /// one (then it wins, as the one applied last).
    ///
    /// The default implementation (SQLite's) stores every event pending: its one writer would
    /// make each deal's upsert a round trip of its own while every webhook waits, where the
    /// worker applies a batch's states collapsed (BENCHMARKS.md).
    async fn insert_settled(&self, events: Vec<SettledEvent>) -> Result<InsertOutcome> {
        let events: Vec<NewEvent> = events.into_iter().map(|e| e.event).collect();
        self.insert_events(&events).await
    }

    /// Whether [`insert_settled`](Self::insert_settled) settles events (rather than storing them
    /// all pending): callers need not build the writes otherwise.
    fn settles_inserts(&self) -> bool {
        false
    }

    /// Claims up to `limit` due events (pending, `next_attempt_at <= now`, no live lease), oldest first,
    /// leasing them for `lease`. Concurrent claimers never receive the same event while its lease lives.
    /// The claim also moves `next_attempt_at` to the lease's end, so an event whose worker vanished is
    /// due again exactly when its lease expires. Returned in id order.
    async fn claim_events(&self, limit: usize, lease: Duration) -> Result<Vec<StoredEvent>>;

    /// Marks events processed and drops their leases.
    async fn complete_events(&self, ids: &[i64]) -> Result<()>;

    /// Records a failed attempt: increments `attempts`, sets `last_error` and `next_attempt_at`, drops the
    /// lease. When `attempts` reaches `max_attempts` the event becomes dead instead.
    async fn fail_event(
        &self,
        id: i64,
        error: &str,
        next_attempt_at: DateTime<Utc>,
        max_attempts: u32,
    ) -> Result<FailOutcome>;

    /// Puts an event off until `next_attempt_at` without counting an attempt: for failures that are
    /// not the event's fault (an outage, a rate limit), which must never make it dead. Records
    /// `last_error` and drops the lease.
    async fn postpone_event(
        &self,
        id: i64,
        error: &str,
        next_attempt_at: DateTime<Utc>,
    ) -> Result<()>;

    /// Drops the leases of unfinished events without counting an attempt (graceful shutdown).
    async fn release_events(&self, ids: &[i64]) -> Result<()>;

    /// Makes dead or chosen events pending and due now; resets their attempts. Returns how many.
    async fn requeue(&self, which: Requeue) -> Result<u64>;

    /// One event by id.
    async fn get_event(&self, id: i64) -> Result<Option<StoredEvent>>;

    /// Dead events, newest first.
    async fn dead_events(&self, limit: usize) -> Result<Vec<StoredEvent>>;

    // ---- rejected bodies ----------------------------------------------------------------------------

    /// Keeps a refused body for audit. Returns its id.
    async fn insert_rejected(&self, rejected: &RejectedWebhook) -> Result<i64>;

    /// Rejected bodies, newest first.
    async fn list_rejected(&self, limit: usize) -> Result<Vec<StoredRejected>>;

    // ---- deals and contacts -------------------------------------------------------------------------

    /// Applies many deal states in one transaction by the mirror rule (crate docs): a state older
    /// than the stored row is left (counted as stale); repeats of one deal apply in order.
    async fn upsert_deals(&self, deals: &[DealUpsert]) -> Result<UpsertOutcome>;

    /// Applies a batch's writes and marks its completed events processed, all in one transaction:
    /// all of it or none (see [`BatchWrites`] for the order). Deals and contacts follow the mirror
    /// rule as in [`upsert_deals`](Self::upsert_deals); deletions as in
    /// [`record_deletion`](Self::record_deletion). The number of statements does not grow with the
    /// batch (unless one entity has states that cannot be collapsed into one, see the crate docs).
    ///
    /// The default implementation calls the separate methods one after another, without the
    /// all-or-nothing guarantee; both backends of this crate override it.
    async fn settle_batch(&self, writes: &BatchWrites) -> Result<SettleOutcome> {
        let contacts = self.upsert_contacts(&writes.contacts).await?;
        self.follow_contact_fields(&writes.followed_contacts())
            .await?;
        let deals = self.upsert_deals(&writes.deals).await?;
        for deletion in &writes.deletions {
            self.record_deletion(
                deletion.entity,
                &deletion.amocrm_id,
                &deletion.event_hash,
                deletion.deleted,
            )
            .await?;
        }
        self.complete_events(&writes.completed).await?;
        Ok(SettleOutcome {
            contacts,
            deals,
            completed: writes.completed.len() as u64,
        })
    }

    /// Claims up to `limit` due events (as [`claim_events`](Self::claim_events) picks them) and
    /// settles them with what `plan` makes of them ([`settle_batch`](Self::settle_batch)), in one
    /// transaction: a worker that needs nothing but the events themselves (webhook-only mode) turns a
    /// batch into its rows in a constant number of statements and one commit, and the events are
    /// written once more (processed) instead of twice (leased, then processed). The batch's rows stay
    /// locked for the transaction, so no other claimer takes them meanwhile. PostgreSQL marks the
    /// events processed in the statement that claims them (one write per event, no separate row
    /// lock) and puts back, in the same transaction, those the plan leaves out.
    ///
    /// Claimed events that `plan` leaves out of `completed` are leased for `lease` in the same
    /// transaction and returned, to be processed one by one. On an error nothing is written and no
    /// event is leased: they are due as before. The default implementation (SQLite's: its one writer
    /// must not wait while `plan` runs, or every receiver's insert would) claims with leases, then
    /// calls [`settle_batch`](Self::settle_batch) in a second transaction; after an error there it
    /// releases the leases.
    async fn claim_and_settle(
        &self,
        limit: usize,
        lease: Duration,
        plan: &mut SettlePlan<'_>,
    ) -> Result<ClaimSettled> {
        settle::claim_then_settle(self, limit, lease, plan).await
    }

    /// Marks a deal deleted (`true`) or restored (`false`) outright, creating a bare row if none
    /// exists: for a source that knows the current state (the API).
    async fn mark_deal_deleted(&self, amocrm_deal_id: &str, deleted: bool) -> Result<()>;

    /// Records a delete (`deleted = true`) or restore event of a deal or contact, once per
    /// `event_hash`, and sets the row's `is_deleted` to whether its recorded deletes outnumber its
    /// restores (creating a bare row if none exists). Returns the flag set.
    async fn record_deletion(
        &self,
        entity: MirrorEntity,
        amocrm_id: &str,
        event_hash: &str,
        deleted: bool,
    ) -> Result<bool>;

    /// Merges keys into a deal's `metadata` without losing the others. Returns false if no such deal.
    async fn set_deal_metadata(
        &self,
        amocrm_deal_id: &str,
        metadata: &Map<String, Value>,
    ) -> Result<bool>;

    /// The row of a deal by amoCRM's lead id, if stored.
    async fn get_deal(&self, amocrm_deal_id: &str) -> Result<Option<Deal>>;

    /// Sets `contact_custom_fields` of every deal whose main contact is this contact (its fields
    /// changed; `None`: it has none now); the deals' amoCRM `updated_at` is not involved. Returns how many deals changed.
    async fn set_main_contact_fields(
        &self,
        amocrm_contact_id: &str,
        custom_fields: Option<&Value>,
    ) -> Result<u64>;

    /// Copies each listed contact's stored custom fields (none included) into `contact_custom_fields`
    /// of every deal it is the main contact of, as
    /// [`set_main_contact_fields`](Self::set_main_contact_fields) does for one. The stored row is
    /// read, so an older body never wins over newer fields; a bare deleted marker (no
    /// `updated_at`) holds no state of the contact and is skipped. Returns how many deals changed.
    ///
    /// The default implementation reads and writes contact by contact; both backends of this crate
    /// do it in one statement.
    async fn follow_contact_fields(&self, amocrm_contact_ids: &[&str]) -> Result<u64> {
        let mut changed = 0;
        for id in amocrm_contact_ids {
            if let Some(contact) = self.get_contact(id).await?
                && contact.updated_at.is_some()
            {
                changed += self
                    .set_main_contact_fields(id, contact.custom_fields.as_ref())
                    .await?;
            }
        }
        Ok(changed)
    }

    /// Applies many contact states by the mirror rule, like [`upsert_deals`](Self::upsert_deals).
    async fn upsert_contacts(&self, contacts: &[ContactUpsert]) -> Result<UpsertOutcome>;

    /// Marks a contact deleted or restored outright, creating a bare row if none exists.
    async fn mark_contact_deleted(&self, amocrm_contact_id: &str, deleted: bool) -> Result<()>;

    /// Merges keys into a contact's `metadata` without losing the others. Returns false if no such
    /// contact.
    async fn set_contact_metadata(
        &self,
        amocrm_contact_id: &str,
        metadata: &Map<String, Value>,
    ) -> Result<bool>;

    /// The row of a contact by amoCRM's contact id, if stored.
    async fn get_contact(&self, amocrm_contact_id: &str) -> Result<Option<Contact>>;

    // ---- OAuth tokens -------------------------------------------------------------------------------

    /// The token pair saved for an account key (the subdomain), if any.
    async fn load_tokens(&self, account: &str) -> Result<Option<StoredTokens>>;

    /// Saves a token pair atomically (one statement; the previous pair is replaced as a whole).
    async fn save_tokens(&self, account: &str, tokens: &StoredTokens) -> Result<()>;

    // ---- API usage and stats ------------------------------------------------------------------------

    /// Adds request counts to the per-minute usage table.
    async fn record_api_usage(&self, usage: &[ApiUsage]) -> Result<()>;

    /// Total API requests recorded since `since`.
    async fn api_usage_since(&self, since: DateTime<Utc>) -> Result<u64>;

    /// Queue and mirror figures, counted over whole tables: for occasional use (`jarvis status`).
    async fn stats(&self) -> Result<Stats>;

    /// The backlog, its oldest event and the dead events, from the queue's partial indexes: cheap
    /// enough for every metrics scrape however long the history grows.
    async fn queue_stats(&self) -> Result<QueueStats>;

    // ---- gaps and catch-up ---------------------------------------------------------------------------

    /// Records a gap to catch up (`jarvis_gaps`). Returns its id.
    async fn open_gap(&self, kind: &GapKind, from: DateTime<Utc>, to: DateTime<Utc>)
    -> Result<i64>;

    /// Gaps not caught up yet, oldest first.
    async fn open_gaps(&self) -> Result<Vec<Gap>>;

    /// Records one events-feed page of a gap's catch-up in one transaction: the entities it touched
    /// (merged with those of earlier pages, the newest event deciding `deleted`), `page` as the last
    /// page done, `events` more events read, and, when `last`, that reading is finished.
    async fn record_gap_page(
        &self,
        gap_id: i64,
        page: u32,
        events: u64,
        entities: &[GapEntity],
        last: bool,
    ) -> Result<()>;

    /// The entities a gap touched, leads first, by id.
    async fn gap_entities(&self, gap_id: i64) -> Result<Vec<GapEntity>>;

    /// Marks a gap caught up (its entities are queued).
    async fn close_gap(&self, gap_id: i64) -> Result<()>;

    /// Moves the named instant forward to `at` (never back) in `jarvis_marks`; returns the value it
    /// had before.
    async fn advance_mark(&self, name: &str, at: DateTime<Utc>) -> Result<Option<DateTime<Utc>>>;

    /// The named instant, if set.
    async fn get_mark(&self, name: &str) -> Result<Option<DateTime<Utc>>>;

    // ---- coordination -------------------------------------------------------------------------------

    /// Tries to become the only holder of `key` among every process using this database, e.g. the one
    /// worker that spends an amoCRM account's API budget. `None` if another process holds it.
    ///
    /// PostgreSQL: a session advisory lock (scoped to the current schema) on a connection of its own,
    /// released when the guard is dropped or the process dies. SQLite: always granted, one file being
    /// served by one host.
    async fn try_exclusive(&self, key: &str) -> Result<Option<ExclusiveGuard>>;

    /// Fails with [`Error::TransactionPooler`] when statements on one connection do not run in one
    /// database session (a pooler in transaction mode between the service and PostgreSQL): session
    /// locks, which the worker relies on, mean nothing there. SQLite: always fine.
    async fn check_session(&self) -> Result<()>;

    // ---- leases -------------------------------------------------------------------------------------

    /// Extends to `lease` from now the leases of those `ids` whose lease is still alive and that are
    /// not settled; returns those ids. An event missing from the answer may be another worker's by now.
    async fn extend_leases(&self, ids: &[i64], lease: Duration) -> Result<Vec<i64>>;

    // ---- rejected bodies retention ------------------------------------------------------------------

    /// Deletes the rejected bodies received before `older_than`, then the oldest ones until the kept
    /// bodies add up to at most `max_total_bytes`. Returns how many rows were deleted.
    async fn prune_rejected(&self, older_than: DateTime<Utc>, max_total_bytes: u64) -> Result<u64>;

    // ---- shared state -------------------------------------------------------------------------------

    /// Writes a value of `jarvis_state` (replacing the previous one).
    async fn set_state(&self, key: &str, value: &Value) -> Result<()>;

    /// Reads a value of `jarvis_state`.
    async fn get_state(&self, key: &str) -> Result<Option<StateEntry>>;

    /// Removes a value of `jarvis_state`; true if there was one.
    async fn clear_state(&self, key: &str) -> Result<bool>;

    // ---- links to the business's tables ------------------------------------------------------------

    /// Running the business's link queries and writing `client_id` / `conversation_id`.
    fn links(&self) -> &dyn LinkStore;
}

/// Cuts a refused body to [`REJECTED_BODY_KEEP`] bytes; gives the kept part, the full length and the
/// full body's SHA-256 (lowercase hex).
pub(crate) fn cut_rejected_body(body: &[u8]) -> (&[u8], i64, String) {
    use sha2::Digest;
    let digest = hex::encode(sha2::Sha256::digest(body));
    let kept = &body[..body.len().min(REJECTED_BODY_KEEP)];
    (kept, i64::try_from(body.len()).unwrap_or(i64::MAX), digest)
}

/// Holds what [`Store::try_exclusive`] granted until dropped.
pub struct ExclusiveGuard {
    hold: Box<dyn ExclusiveHold>,
}

/// Backend side of an [`ExclusiveGuard`].
#[async_trait::async_trait]
pub(crate) trait ExclusiveHold: Send + Sync {
    async fn is_held(&mut self) -> bool;
}

impl ExclusiveGuard {
    pub(crate) fn new(hold: impl ExclusiveHold + 'static) -> Self {
        Self {
            hold: Box::new(hold),
        }
    }

    /// Whether the right is still held (false once the connection that holds it is lost).
    pub async fn is_held(&mut self) -> bool {
        self.hold.is_held().await
    }
}

impl std::fmt::Debug for ExclusiveGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExclusiveGuard")
    }
}

/// A shared store.
pub type DynStore = Arc<dyn Store>;

/// Opens a store from a URL: `postgres://` / `postgresql://` give [`PgStore`], `sqlite:` gives
/// [`SqliteStore`] (the file is created if missing). Does not migrate; use [`Store::migrate`], and
/// expect [`Error::NotMigrated`] from operations on an unmigrated database.
pub async fn connect(url: &str) -> Result<DynStore> {
    connect_with(url, PoolSettings::default()).await
}

/// [`connect`] with explicit pool settings.
pub async fn connect_with(url: &str, settings: PoolSettings) -> Result<DynStore> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        #[cfg(feature = "postgres")]
        return Ok(Arc::new(PgStore::connect_with(url, settings).await?));
        #[cfg(not(feature = "postgres"))]
        return Err(Error::BackendNotBuilt("postgres"));
    }
    if url.starts_with("sqlite:") {
        #[cfg(feature = "sqlite")]
        return Ok(Arc::new(SqliteStore::connect_with(url, settings).await?));
        #[cfg(not(feature = "sqlite"))]
        return Err(Error::BackendNotBuilt("sqlite"));
    }
    let _ = settings;
    Err(Error::UnsupportedUrl)
}

/// The README's examples, compiled and run as doc tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
