//! [`Store`] on PostgreSQL 13+ (plain SQL, no extensions, so Neon and managed servers work).

mod gaps;
mod ingest;
mod link;
mod url;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};

use self::url::connect_options;
use sqlx::types::Json;
use sqlx::{Postgres, QueryBuilder, Row};

use crate::batch::{collapse, distinct_events, require_migrated, rounds, sql_limit, usage_rows};
use crate::{
    ApiUsage, BatchWrites, ClaimSettled, Contact, ContactUpsert, Deal, DealUpsert, Error,
    FailOutcome, InsertOutcome, MirrorEntity, NewEvent, PoolSettings, QueueStats, RejectedWebhook,
    Requeue, Result, SettleOutcome, SettlePlan, SettledEvent, StateEntry, Stats, Store,
    StoredEvent, StoredRejected, StoredTokens, UpsertOutcome, cut_rejected_body,
};

/// Which events a claim takes (`$1`: how many): due, unleased, oldest first, none another claimer
/// is taking (SKIP LOCKED).
const PICK_DUE: &str = "WHERE NOT processed AND dead_at IS NULL AND next_attempt_at <= now()
      AND (locked_until IS NULL OR locked_until <= now())
    ORDER BY next_attempt_at, id
    LIMIT $1
    FOR UPDATE SKIP LOCKED";

/// Set in a claiming transaction: the claim walks the claimable index in its order and stops at
/// the batch's size. Left to its estimates, the planner gathers every entry of the index's range
/// in a bitmap and sorts what it finds; but events leave that partial index only when vacuum
/// removes their entries, so under a steady stream most entries are of events claimed since, and
/// a bitmap scan visits every one of their table pages again, on every claim (1,000–1,600 entries
/// for 200 live events, a third of a 15–25 ms claim). An index scan marks such entries dead as it
/// meets them, so the next claim skips them.
const WALK_CLAIMABLE: &str = "SET LOCAL enable_bitmapscan = off";

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

const EVENT_COLUMNS: &str = "id, ts, event_type, entity_type, amocrm_entity_id, event_hash, payload, \
     account_id, processed, attempts, next_attempt_at, locked_until, last_error, processed_at, dead_at";

const DEAL_COLUMNS: &str = "id, client_id, conversation_id, amocrm_deal_id, pipeline_id, status_id, \
     price, name, responsible_user_id, custom_fields, deal_full_data, contact_custom_fields, \
     main_contact_id, metadata, created_at, updated_at, closed_at, is_deleted, synced_at";

const CONTACT_COLUMNS: &str = "id, amocrm_contact_id, name, first_name, last_name, \
     responsible_user_id, custom_fields, contact_full_data, metadata, created_at, updated_at, \
     is_deleted, synced_at";

/// The PostgreSQL store. Cloning shares the pool.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    /// The event inserts' own connections: their statement and lock timeouts are the ingest bound,
    /// and the worker's queries on `pool` cannot hold up a webhook's commit.
    ingest_pool: PgPool,
    /// The connection event inserts keep between groups.
    ingest_kept: ingest::Kept,
    /// Group commit of event inserts (see `ingest`).
    ingest: ingest::Ingest,
}

impl PgStore {
    /// Connects with [`PoolSettings::default`]; fails if the server cannot be reached within the
    /// acquire timeout. Honours everything the URL carries, including
    /// `?options=-c%20search_path%3Dschema`.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, PoolSettings::default()).await
    }

    /// Connects with the given pool settings: opens the connections a start needs (see
    /// [`PgStore::warm_up`]), which also checks that the server answers.
    pub async fn connect_with(url: &str, settings: PoolSettings) -> Result<Self> {
        let options = connect_options(url)?;
        let pool = main_pool(&settings, &options);
        let store = Self::with_pools(pool, options, &settings);
        store.warm_up().await?;
        Ok(store)
    }

    /// Opens two connections in the main pool (one if it may hold only one) and one for event
    /// inserts, side by side, and waits (a few milliseconds at most) until they are back in their
    /// pools: a start's statements, then the worker and the readiness check, each find one idle.
    ///
    /// A new session costs the server a process and, with TLS, a handshake: about 12 ms each on a
    /// small machine. One after the other, as a start's statements and its first webhook would
    /// open them, they made most of its time to ready. And sqlx gives a connection back to its pool
    /// from a spawned task, after a ping: a statement right after another finds none idle and opens
    /// one more, unless a second one is already there.
    async fn warm_up(&self) -> Result<()> {
        let spare = self.pool.options().get_max_connections() > 1;
        let (first, second, ingest) = tokio::join!(
            self.pool.acquire(),
            async {
                if spare {
                    self.pool.acquire().await.map(Some)
                } else {
                    Ok(None)
                }
            },
            self.ingest_pool.acquire(),
        );
        let first = first?;
        // The other two only save later statements a new session; should one fail (the insert
        // pool's shorter acquire timeout while a serverless database wakes up, say), that shows
        // where it is used.
        let opened = 1 + usize::from(matches!(second, Ok(Some(_))));
        let ingest_opened = usize::from(ingest.is_ok());
        drop((first, second, ingest));
        for _ in 0..5 {
            if self.pool.num_idle() >= opened && self.ingest_pool.num_idle() >= ingest_opened {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(())
    }

    /// Builds the store without connecting: for a service that must start (and answer 503) while the
    /// database is down. Only the URL is checked here.
    pub fn connect_lazy(url: &str, settings: PoolSettings) -> Result<Self> {
        let options = connect_options(url)?;
        let pool = main_pool(&settings, &options);
        Ok(Self::with_pools(pool, options, &settings))
    }

    fn with_pools(pool: PgPool, options: PgConnectOptions, settings: &PoolSettings) -> Self {
        let ingest_settings = settings
            .clone()
            .max_connections(INGEST_CONNECTIONS)
            .acquire_timeout(settings.acquire_timeout.min(settings.ingest_timeout));
        let ingest_timeout = settings.ingest_timeout.min(settings.statement_timeout);
        Self {
            pool,
            // A ping before every acquire would double the round trips of the one-statement insert
            // path; a dead connection fails one insert (the caller spools or retries) and is
            // replaced. The main pool checks its connections, so that after an outage the worker
            // and the status queries do not each meet a dead one first.
            //
            // A lock is waited for a quarter of the bound: a mirror row another writer holds
            // (webhooks settled as they are stored write deals) or a deadlock fails the group early
            // enough to store its events pending, or spool them, before the deadline.
            //
            // And it never scans a table whole: see [`KEYED_ONLY`].
            ingest_pool: pool_options(
                &ingest_settings,
                format!(
                    "{}; {KEYED_ONLY}",
                    set_timeouts(ingest_timeout, ingest_timeout / 4)
                ),
            )
            .test_before_acquire(false)
            .connect_lazy_with(options),
            ingest_kept: ingest::Kept::default(),
            ingest: ingest::Ingest::new(settings.ingest_timeout),
        }
    }

    /// Wraps a pool built elsewhere (sharing it with other code); event inserts use it too, with
    /// the default ingest timeout.
    pub fn from_pool(pool: PgPool) -> Self {
        Self {
            ingest_pool: pool.clone(),
            pool,
            ingest_kept: ingest::Kept::never(),
            ingest: ingest::Ingest::new(PoolSettings::default().ingest_timeout),
        }
    }

    /// The connection pool, for queries of the caller's own.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.ingest_kept.close();
        self.ingest_pool.close().await;
        self.pool.close().await;
    }

    /// Stores distinct rows through the group commit (sharing a statement and a commit with
    /// concurrent callers; answered after the commit); `total` counts the events asked for.
    async fn ingest_rows(
        &self,
        rows: Vec<ingest::EventRow>,
        total: usize,
    ) -> Result<InsertOutcome> {
        if rows.is_empty() {
            return Ok(InsertOutcome {
                duplicates: total as u64,
                ..InsertOutcome::default()
            });
        }
        let writer = ingest::EventWriter {
            pool: self.ingest_pool.clone(),
            kept: self.ingest_kept.clone(),
        };
        let written = self.ingest.insert(&writer, rows).await?;
        Ok(InsertOutcome {
            stored: written.stored,
            duplicates: total as u64 - written.stored,
            settled: written.settled,
        })
    }

    async fn upsert_deal_round(
        executor: &mut sqlx::PgConnection,
        deals: &[&(&DealUpsert, u64)],
    ) -> Result<u64> {
        let sql = mirror_upsert_sql("amocrm_deals", "amocrm_deal_id", DEAL_KNOWN_COLUMNS);
        let rows = bind_deals(sqlx::query(&sql), deals)
            .fetch_all(executor)
            .await?;
        let applied = rows
            .iter()
            .map(|row| row.try_get::<String, _>(0))
            .collect::<sqlx::Result<Vec<_>>>()?;
        Ok(applied_weight(deals, &applied, |deal| &deal.amocrm_deal_id))
    }

    async fn upsert_contact_round(
        executor: &mut sqlx::PgConnection,
        contacts: &[&(&ContactUpsert, u64)],
    ) -> Result<u64> {
        let mut ids = Vec::with_capacity(contacts.len());
        let mut names = KnownColumn::default();
        let mut first_names = KnownColumn::default();
        let mut last_names = KnownColumn::default();
        let mut responsible_user_ids = KnownColumn::default();
        let mut custom_fields = KnownColumn::default();
        let mut full_data = KnownColumn::default();
        let mut created_at = KnownColumn::default();
        let mut common = CommonColumns::default();
        for (contact, _) in contacts.iter().copied() {
            ids.push(contact.amocrm_contact_id.as_str());
            names.push(&contact.name, |v| v.as_str());
            first_names.push(&contact.first_name, |v| v.as_str());
            last_names.push(&contact.last_name, |v| v.as_str());
            responsible_user_ids.push(&contact.responsible_user_id, |v| *v);
            custom_fields.push(&contact.custom_fields, Json);
            full_data.push(&contact.contact_full_data, Json);
            created_at.push(&contact.created_at, |v| *v);
            common.push(
                contact.updated_at,
                &contact.metadata_keys,
                &contact.metadata,
                contact.is_deleted,
            );
        }
        let sql = mirror_upsert_sql(
            "amocrm_contacts",
            "amocrm_contact_id",
            CONTACT_KNOWN_COLUMNS,
        );
        let query = sqlx::query(&sql).bind(ids);
        let query = names.bind(query);
        let query = first_names.bind(query);
        let query = last_names.bind(query);
        let query = responsible_user_ids.bind(query);
        let query = custom_fields.bind(query);
        let query = full_data.bind(query);
        let query = created_at.bind(query);
        let rows = common.bind(query).fetch_all(executor).await?;
        let applied = rows
            .iter()
            .map(|row| row.try_get::<String, _>(0))
            .collect::<sqlx::Result<Vec<_>>>()?;
        Ok(applied_weight(contacts, &applied, |contact| {
            &contact.amocrm_contact_id
        }))
    }

    /// The statements of [`Store::settle_batch`], inside the caller's transaction.
    async fn settle_in(
        tx: &mut sqlx::PgConnection,
        writes: &BatchWrites,
        completed_already: bool,
    ) -> Result<SettleOutcome> {
        let contacts = Self::apply_contacts(tx, &writes.contacts).await?;
        follow_contact_fields(tx, &writes.followed_contacts()).await?;
        let deals = Self::apply_deals(tx, &writes.deals).await?;
        if !writes.deletions.is_empty() {
            record_deletions(tx, &writes.deletions).await?;
        }
        if !completed_already && !writes.completed.is_empty() {
            sqlx::query(
                "UPDATE amocrm_webhook_events
                SET processed = true, processed_at = now(), locked_until = NULL
                WHERE id = ANY($1)",
            )
            .bind(&writes.completed)
            .execute(&mut *tx)
            .await?;
        }
        Ok(SettleOutcome::of(writes, contacts, deals))
    }

    /// Applies deal states by the mirror rule in as few statements as the batch allows (one, unless
    /// an entity has states that cannot be collapsed); returns how many states applied.
    async fn apply_deals(executor: &mut sqlx::PgConnection, deals: &[DealUpsert]) -> Result<u64> {
        let collapsed = collapse(deals);
        let mut applied = 0;
        for round in rounds(&collapsed.states, |(deal, _)| &deal.amocrm_deal_id) {
            applied += Self::upsert_deal_round(executor, &round).await?;
        }
        Ok(applied)
    }

    /// As [`apply_deals`](Self::apply_deals), for contacts.
    async fn apply_contacts(
        executor: &mut sqlx::PgConnection,
        contacts: &[ContactUpsert],
    ) -> Result<u64> {
        let collapsed = collapse(contacts);
        let mut applied = 0;
        for round in rounds(&collapsed.states, |(contact, _)| &contact.amocrm_contact_id) {
            applied += Self::upsert_contact_round(executor, &round).await?;
        }
        Ok(applied)
    }
}

/// Copies the contacts' stored fields into the deals they are the main contact of, in one
/// statement (see [`Store::follow_contact_fields`]).
async fn follow_contact_fields(conn: &mut sqlx::PgConnection, ids: &[&str]) -> Result<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    // A stored state of the contact (a bare deleted marker has no time) is what its deals show.
    let changed = sqlx::query(
        "UPDATE amocrm_deals d SET contact_custom_fields = c.custom_fields, synced_at = now()
        FROM amocrm_contacts c
        WHERE c.amocrm_contact_id = ANY($1) AND c.updated_at IS NOT NULL
          AND d.main_contact_id = c.amocrm_contact_id
          AND d.contact_custom_fields IS DISTINCT FROM c.custom_fields",
    )
    .bind(ids)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(changed)
}

/// Records deletes and restores set-wise, in three statements whatever their number: the
/// entities' locks (taken in one order, so two batches cannot deadlock), the records, then each
/// entity's flag from all its records (as [`Store::record_deletion`] does one at a time).
async fn record_deletions(
    tx: &mut sqlx::PgConnection,
    deletions: &[crate::DeletionRecord],
) -> Result<()> {
    let entities: Vec<&str> = deletions.iter().map(|d| d.entity.as_str()).collect();
    let ids: Vec<&str> = deletions.iter().map(|d| d.amocrm_id.as_str()).collect();
    let hashes: Vec<&str> = deletions.iter().map(|d| d.event_hash.as_str()).collect();
    let deleted: Vec<bool> = deletions.iter().map(|d| d.deleted).collect();
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtext('amocrm_deletions:' || e || ':' || i))
        FROM (SELECT DISTINCT e, i FROM UNNEST($1::text[], $2::text[]) AS u(e, i) ORDER BY e, i) s",
    )
    .bind(&entities)
    .bind(&ids)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO amocrm_deletions (entity_type, amocrm_id, event_hash, deleted)
        SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bool[])
        ON CONFLICT DO NOTHING",
    )
    .bind(&entities)
    .bind(&ids)
    .bind(&hashes)
    .bind(&deleted)
    .execute(&mut *tx)
    .await?;
    for entity in [MirrorEntity::Deal, MirrorEntity::Contact] {
        let of_entity: Vec<&str> = deletions
            .iter()
            .filter(|d| d.entity == entity)
            .map(|d| d.amocrm_id.as_str())
            .collect();
        if of_entity.is_empty() {
            continue;
        }
        let (table, key) = match entity {
            MirrorEntity::Deal => ("amocrm_deals", "amocrm_deal_id"),
            MirrorEntity::Contact => ("amocrm_contacts", "amocrm_contact_id"),
        };
        sqlx::query(&format!(
            "INSERT INTO {table} AS t ({key}, is_deleted, synced_at)
            SELECT amocrm_id,
                count(*) FILTER (WHERE deleted) > count(*) FILTER (WHERE NOT deleted), now()
            FROM amocrm_deletions WHERE entity_type = $1 AND amocrm_id = ANY($2)
            GROUP BY amocrm_id
            ON CONFLICT ({key}) DO UPDATE
            SET is_deleted = EXCLUDED.is_deleted, synced_at = now()"
        ))
        .bind(entity.as_str())
        .bind(&of_entity)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// The states of a round that applied (the keys the upsert returned), counted with those they stand for.
fn applied_weight<S>(
    round: &[&(&S, u64)],
    returned: &[String],
    key: impl Fn(&S) -> &String,
) -> u64 {
    let returned: std::collections::HashSet<&str> = returned.iter().map(String::as_str).collect();
    round
        .iter()
        .filter(|(state, _)| returned.contains(key(state).as_str()))
        .map(|(_, weight)| weight)
        .sum()
}

/// The [`Known`](crate::Known) columns of `amocrm_deals` with their PostgreSQL types, in bind order.
const DEAL_KNOWN_COLUMNS: &[(&str, &str)] = &[
    ("pipeline_id", "int8"),
    ("status_id", "int8"),
    ("price", "int8"),
    ("name", "text"),
    ("responsible_user_id", "int8"),
    ("custom_fields", "jsonb"),
    ("deal_full_data", "jsonb"),
    ("contact_custom_fields", "jsonb"),
    ("main_contact_id", "text"),
    ("created_at", "timestamptz"),
    ("closed_at", "timestamptz"),
];

/// The [`Known`](crate::Known) columns of `amocrm_contacts`, in bind order.
const CONTACT_KNOWN_COLUMNS: &[(&str, &str)] = &[
    ("name", "text"),
    ("first_name", "text"),
    ("last_name", "text"),
    ("responsible_user_id", "int8"),
    ("custom_fields", "jsonb"),
    ("contact_full_data", "jsonb"),
    ("created_at", "timestamptz"),
];

/// One statement applying a round of states (each entity once) by the mirror rule.
///
/// Binds: `$1` the keys, then per known column a `bool[]` (known?) and the values, then
/// `updated_at`, `metadata_keys` (jsonb arrays), `metadata` and `is_deleted`. A new row takes the
/// values as given (an unknown column starts NULL); a stored row takes each known column, keeps the
/// others, and is left alone when the state is older (the WHERE).
///
/// Stored rows are updated through a join with the input, and only keys not stored yet go through
/// `INSERT ... ON CONFLICT`. An `ON CONFLICT DO UPDATE` sees the input row only as `EXCLUDED`, which
/// cannot carry the known flags, so it has to look the row up in the input again: a scan of the
/// whole input per conflicting row, quadratic in the round (900 lookups in a round of 900 took
/// about 33 ms of the server's CPU, more than the rest of the batch's writes). That path now serves
/// only a key another transaction inserted after this statement's snapshot. Both parts run in one
/// statement and touch disjoint keys; an update racing with another writer is re-evaluated on the
/// row's newest version, as for any `UPDATE`.
fn mirror_upsert_sql(table: &str, key: &str, columns: &[(&str, &str)]) -> String {
    format!(
        "WITH {} SELECT {key} FROM updated UNION ALL SELECT {key} FROM inserted",
        mirror_upsert_ctes(table, key, columns, 1, None)
    )
}

/// The common table expressions of [`mirror_upsert_sql`] (`input`, `updated`, `inserted`), their
/// parameters numbered from `first`. With `only_new`, the input takes one more parameter, each
/// state's event hash, and keeps the states whose hash the named expression returns (the events
/// the statement's own INSERT stored).
fn mirror_upsert_ctes(
    table: &str,
    key: &str,
    columns: &[(&str, &str)],
    first: usize,
    only_new: Option<&str>,
) -> String {
    let mut unnest = vec![format!("${first}::text[]")];
    let mut names = vec![key.to_owned()];
    let mut next = first + 1;
    for (column, sql_type) in columns {
        unnest.push(format!("${next}::bool[]"));
        unnest.push(format!("${}::{sql_type}[]", next + 1));
        names.push(format!("known_{column}"));
        names.push((*column).to_owned());
        next += 2;
    }
    for (column, sql_type) in [
        ("updated_at", "timestamptz"),
        ("metadata_keys", "jsonb"),
        ("metadata", "jsonb"),
        ("is_deleted", "bool"),
    ] {
        unnest.push(format!("${next}::{sql_type}[]"));
        names.push(column.to_owned());
        next += 1;
    }
    let filter = match only_new {
        Some(inserted) => {
            unnest.push(format!("${next}::text[]"));
            names.push("event_hash".to_owned());
            format!("WHERE u.event_hash IN (SELECT event_hash FROM {inserted})")
        }
        None => String::new(),
    };
    let plain: Vec<&str> = columns.iter().map(|(column, _)| *column).collect();
    let plain = plain.join(", ");
    let merged: Vec<String> = columns
        .iter()
        .map(|(column, _)| {
            format!("CASE WHEN i.known_{column} THEN i.{column} ELSE t.{column} END")
        })
        .collect();
    let merged = merged.join(", ");
    // What a stored row `t` becomes from its input row `i`, and whether `i` is recent enough (the
    // mirror rule): the same for the join and for the conflict path.
    let targets = format!("({plain}, updated_at, metadata, is_deleted)");
    let values = format!(
        "{merged}, COALESCE(i.updated_at, t.updated_at),
            (t.metadata - ARRAY(SELECT jsonb_array_elements_text(i.metadata_keys))) || i.metadata,
            COALESCE(i.is_deleted, t.is_deleted)"
    );
    let newer = |input: &str| {
        format!(
            "(t.updated_at IS NULL OR {input}.updated_at IS NULL \
             OR {input}.updated_at >= t.updated_at)"
        )
    };
    format!(
        "input AS MATERIALIZED (
            SELECT * FROM UNNEST({unnest}) AS u({names}) {filter}
        ),
        updated AS (
            UPDATE {table} AS t SET {targets} = ({values}), synced_at = now()
            FROM input i
            WHERE t.{key} = i.{key} AND {newer_input}
            RETURNING t.{key}
        ),
        inserted AS (
            INSERT INTO {table} AS t ({key}, {plain}, updated_at, metadata, is_deleted, synced_at)
            SELECT {key}, {plain}, updated_at, metadata, COALESCE(is_deleted, false), now()
            FROM input n
            WHERE NOT EXISTS (SELECT 1 FROM {table} s WHERE s.{key} = n.{key})
            ON CONFLICT ({key}) DO UPDATE
            SET {targets} = (SELECT {values} FROM input i WHERE i.{key} = EXCLUDED.{key}),
                synced_at = now()
            WHERE {newer_excluded}
            RETURNING t.{key}
        )",
        unnest = unnest.join(", "),
        names = names.join(", "),
        newer_input = newer("i"),
        newer_excluded = newer("EXCLUDED"),
    )
}

type PgQuery<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;

/// Binds a round of deal states to `query`, as [`mirror_upsert_ctes`] numbers their parameters
/// (the key, then each known column's flags and values, then the common columns).
fn bind_deals<'q>(query: PgQuery<'q>, deals: &[&(&'q DealUpsert, u64)]) -> PgQuery<'q> {
    let mut ids = Vec::with_capacity(deals.len());
    let mut pipeline_ids = KnownColumn::default();
    let mut status_ids = KnownColumn::default();
    let mut prices = KnownColumn::default();
    let mut names = KnownColumn::default();
    let mut responsible_user_ids = KnownColumn::default();
    let mut custom_fields = KnownColumn::default();
    let mut full_data = KnownColumn::default();
    let mut contact_custom_fields = KnownColumn::default();
    let mut main_contact_ids = KnownColumn::default();
    let mut created_at = KnownColumn::default();
    let mut closed_at = KnownColumn::default();
    let mut common = CommonColumns::default();
    for (deal, _) in deals.iter().copied() {
        ids.push(deal.amocrm_deal_id.as_str());
        pipeline_ids.push(&deal.pipeline_id, |v| *v);
        status_ids.push(&deal.status_id, |v| *v);
        prices.push(&deal.price, |v| *v);
        names.push(&deal.name, |v| v.as_str());
        responsible_user_ids.push(&deal.responsible_user_id, |v| *v);
        custom_fields.push(&deal.custom_fields, Json);
        full_data.push(&deal.deal_full_data, Json);
        contact_custom_fields.push(&deal.contact_custom_fields, Json);
        main_contact_ids.push(&deal.main_contact_id, |v| v.as_str());
        created_at.push(&deal.created_at, |v| *v);
        closed_at.push(&deal.closed_at, |v| *v);
        common.push(
            deal.updated_at,
            &deal.metadata_keys,
            &deal.metadata,
            deal.is_deleted,
        );
    }
    let query = query.bind(ids);
    let query = pipeline_ids.bind(query);
    let query = status_ids.bind(query);
    let query = prices.bind(query);
    let query = names.bind(query);
    let query = responsible_user_ids.bind(query);
    let query = custom_fields.bind(query);
    let query = full_data.bind(query);
    let query = contact_custom_fields.bind(query);
    let query = main_contact_ids.bind(query);
    let query = created_at.bind(query);
    let query = closed_at.bind(query);
    common.bind(query)
}

/// The statement that stores a group of events and writes, by the mirror rule, the deal states
/// of those it stored (see `ingest`): the events' eight columns first (`$1` to `$8`, as the plain
/// insert binds them), then the deals as [`bind_deals`] binds them, then each deal state's event
/// hash. Returns the hashes of the events stored.
fn insert_with_deals_sql() -> &'static str {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "WITH ins AS ({}), {} SELECT event_hash FROM ins",
            ingest::INSERT_EVENTS,
            mirror_upsert_ctes(
                "amocrm_deals",
                "amocrm_deal_id",
                DEAL_KNOWN_COLUMNS,
                9,
                Some("ins")
            )
        )
    });
    &SQL
}

/// One [`Known`](crate::Known) column of a round: whether each state knows it, and its values.
struct KnownColumn<T> {
    known: Vec<bool>,
    values: Vec<Option<T>>,
}

impl<T> Default for KnownColumn<T> {
    fn default() -> Self {
        Self {
            known: Vec::new(),
            values: Vec::new(),
        }
    }
}

impl<'q, T> KnownColumn<T>
where
    T: 'q + Send + sqlx::Type<Postgres> + sqlx::postgres::PgHasArrayType,
    Vec<Option<T>>: sqlx::Encode<'q, Postgres>,
{
    fn push<S>(&mut self, column: &'q crate::Known<S>, value: impl Fn(&'q S) -> T) {
        self.known.push(column.is_known());
        self.values.push(column.value().map(value));
    }

    fn bind(self, query: PgQuery<'q>) -> PgQuery<'q> {
        query.bind(self.known).bind(self.values)
    }
}

/// The columns every mirror table shares, in bind order after the known columns. JSON columns are
/// bound by reference and serialized straight into the statement: no copy of each value first.
#[derive(Default)]
struct CommonColumns<'q> {
    updated_at: Vec<Option<DateTime<Utc>>>,
    metadata_keys: Vec<Json<&'q [String]>>,
    metadata: Vec<Json<&'q Map<String, Value>>>,
    is_deleted: Vec<Option<bool>>,
}

impl<'q> CommonColumns<'q> {
    fn push(
        &mut self,
        updated_at: Option<DateTime<Utc>>,
        metadata_keys: &'q [String],
        metadata: &'q Map<String, Value>,
        is_deleted: Option<bool>,
    ) {
        self.updated_at.push(updated_at);
        self.metadata_keys.push(Json(metadata_keys));
        self.metadata.push(Json(metadata));
        self.is_deleted.push(is_deleted);
    }

    fn bind(self, query: PgQuery<'q>) -> PgQuery<'q> {
        query
            .bind(self.updated_at)
            .bind(self.metadata_keys)
            .bind(self.metadata)
            .bind(self.is_deleted)
    }
}

/// Connections of the event-insert pool: one per group-commit writer, and as many again for the
/// parallel retry of a failed group.
const INGEST_CONNECTIONS: u32 = 8;

/// The main pool (the worker's and every other query's): statements and locks bounded by the
/// statement timeout, connections checked before use.
fn main_pool(settings: &PoolSettings, options: &PgConnectOptions) -> PgPool {
    pool_options(
        settings,
        set_timeouts(settings.statement_timeout, settings.statement_timeout),
    )
    .test_before_acquire(true)
    .connect_lazy_with(options.clone())
}

/// Pool options whose connections run `sets` (their statement and lock bounds, from
/// [`set_timeouts`]) once, after they open, rather than as startup parameters, which poolers refuse.
fn pool_options(settings: &PoolSettings, sets: String) -> PgPoolOptions {
    PgPoolOptions::new()
        .after_connect(move |conn, _meta| {
            let sets = sets.clone();
            Box::pin(async move {
                sqlx::Executor::execute(conn, sets.as_str()).await?;
                Ok(())
            })
        })
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout)
        .idle_timeout(Duration::from_secs(300))
}

/// Every statement under `statement_timeout`, and at most `lock_timeout` waited for a lock (never
/// longer than a statement may run).
fn set_timeouts(statement_timeout: Duration, lock_timeout: Duration) -> String {
    format!(
        "SET statement_timeout = {}; SET lock_timeout = {}",
        statement_timeout.as_millis().max(1),
        lock_timeout.min(statement_timeout).as_millis().max(1)
    )
}

/// What the ingest connections set besides their bounds. Their statements (the events' insert,
/// the deal states settled with it, the writes of a settling transaction) find mirror rows only
/// by a unique key or an indexed column, so they never need to read a table whole. PostgreSQL
/// keeps the generic plan of a prepared statement until the table's statistics change; one made
/// while a mirror table was young (a few hundred rows, one autovacuum minute after a start) joins
/// the group's states to a scan of the whole table, twice, and keeps doing so as the table grows:
/// on 610 deals that was a third of the settling statement's time, and the ingest connection is
/// the one writer every webhook waits on. Switching sequential scans off makes the planner take
/// the unique indexes whatever the statistics say (a statement with no index to use still runs,
/// scanning).
const KEYED_ONLY: &str = "SET enable_seqscan = off";

/// [`EVENT_COLUMNS`] of the table aliased `e`.
fn prefixed_event_columns() -> String {
    EVENT_COLUMNS
        .split(", ")
        .map(|column| format!("e.{column}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn event_from_row(row: &PgRow) -> Result<StoredEvent> {
    Ok(StoredEvent {
        id: row.try_get("id")?,
        received_at: row.try_get("ts")?,
        event_type: row.try_get("event_type")?,
        entity_type: row.try_get("entity_type")?,
        amocrm_entity_id: row.try_get("amocrm_entity_id")?,
        event_hash: row.try_get("event_hash")?,
        payload: crate::Payload::from_raw(
            row.try_get::<sqlx::types::Json<Box<serde_json::value::RawValue>>, _>("payload")?
                .0,
        ),
        account_id: row.try_get::<Option<i32>, _>("account_id")?.map(i64::from),
        processed: row.try_get("processed")?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        locked_until: row.try_get("locked_until")?,
        last_error: row.try_get("last_error")?,
        processed_at: row.try_get("processed_at")?,
        dead_at: row.try_get("dead_at")?,
    })
}

fn deal_from_row(row: &PgRow) -> Result<Deal> {
    Ok(Deal {
        id: row.try_get("id")?,
        client_id: row.try_get("client_id")?,
        conversation_id: row.try_get("conversation_id")?,
        amocrm_deal_id: row.try_get("amocrm_deal_id")?,
        pipeline_id: row.try_get("pipeline_id")?,
        status_id: row.try_get("status_id")?,
        price: row.try_get("price")?,
        name: row.try_get("name")?,
        responsible_user_id: row.try_get("responsible_user_id")?,
        custom_fields: row.try_get("custom_fields")?,
        deal_full_data: row.try_get("deal_full_data")?,
        contact_custom_fields: row.try_get("contact_custom_fields")?,
        main_contact_id: row.try_get("main_contact_id")?,
        metadata: row.try_get("metadata")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        closed_at: row.try_get("closed_at")?,
        is_deleted: row.try_get("is_deleted")?,
        synced_at: row.try_get("synced_at")?,
    })
}

fn contact_from_row(row: &PgRow) -> Result<Contact> {
    Ok(Contact {
        id: row.try_get("id")?,
        amocrm_contact_id: row.try_get("amocrm_contact_id")?,
        name: row.try_get("name")?,
        first_name: row.try_get("first_name")?,
        last_name: row.try_get("last_name")?,
        responsible_user_id: row.try_get("responsible_user_id")?,
        custom_fields: row.try_get("custom_fields")?,
        contact_full_data: row.try_get("contact_full_data")?,
        metadata: row.try_get("metadata")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        is_deleted: row.try_get("is_deleted")?,
        synced_at: row.try_get("synced_at")?,
    })
}

fn count(row: &PgRow, column: &str) -> Result<u64> {
    Ok(row.try_get::<i64, _>(column)?.max(0) as u64)
}

/// A session advisory lock, held as long as its dedicated connection lives.
struct AdvisoryLock {
    connection: sqlx::PgConnection,
    /// The server process (session) that holds the lock.
    backend_pid: i32,
}

#[async_trait::async_trait]
impl crate::ExclusiveHold for AdvisoryLock {
    async fn is_held(&mut self) -> bool {
        match backend_pid(&mut self.connection).await {
            Ok(pid) if pid == self.backend_pid => true,
            Ok(_) => {
                // Another session answered on this connection: the lock is somewhere else now.
                tracing::error!("{}", Error::TransactionPooler);
                false
            }
            Err(_) => false,
        }
    }
}

/// The session's server process id, by a simple query: no prepared statement, which a transaction
/// pooler could lose between two statements before the ids could be compared.
async fn backend_pid(connection: &mut sqlx::PgConnection) -> sqlx::Result<i32> {
    // A bare string runs as a simple query.
    sqlx::Executor::fetch_one(connection, "SELECT pg_backend_pid()")
        .await?
        .try_get(0)
}

/// A prepared statement the session does not know (SQLSTATE 26000) is what a transaction pooler
/// without prepared statement support produces when it moves a connection to another session.
fn pooler_or_error(error: sqlx::Error) -> Error {
    match &error {
        sqlx::Error::Database(db) if db.code().as_deref() == Some("26000") => {
            Error::TransactionPooler
        }
        _ => Error::from(error),
    }
}

/// Whether statements on `connection` keep running in the session `pid`: a few separate statements
/// (each its own transaction, where a transaction pooler may switch sessions) must all answer `pid`.
async fn same_session(connection: &mut sqlx::PgConnection, pid: i32) -> Result<()> {
    for _ in 0..SESSION_PROBES {
        if backend_pid(connection).await.map_err(pooler_or_error)? != pid {
            return Err(Error::TransactionPooler);
        }
    }
    Ok(())
}

/// Statements [`same_session`] sends: each one a pooler under load has a good chance to move.
const SESSION_PROBES: usize = 3;

#[async_trait::async_trait]
impl Store for PgStore {
    async fn open_gap(
        &self,
        kind: &crate::GapKind,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<i64> {
        gaps::open_gap(&self.pool, kind, from, to).await
    }

    async fn open_gaps(&self) -> Result<Vec<crate::Gap>> {
        gaps::open_gaps(&self.pool).await
    }

    async fn record_gap_page(
        &self,
        gap_id: i64,
        page: u32,
        events: u64,
        entities: &[crate::GapEntity],
        last: bool,
    ) -> Result<()> {
        gaps::record_gap_page(&self.pool, gap_id, page, events, entities, last).await
    }

    async fn gap_entities(&self, gap_id: i64) -> Result<Vec<crate::GapEntity>> {
        gaps::gap_entities(&self.pool, gap_id).await
    }

    async fn close_gap(&self, gap_id: i64) -> Result<()> {
        gaps::close_gap(&self.pool, gap_id).await
    }

    async fn advance_mark(&self, name: &str, at: DateTime<Utc>) -> Result<Option<DateTime<Utc>>> {
        gaps::advance_mark(&self.pool, name, at).await
    }

    async fn get_mark(&self, name: &str) -> Result<Option<DateTime<Utc>>> {
        gaps::get_mark(&self.pool, name).await
    }

    fn links(&self) -> &dyn crate::LinkStore {
        self
    }

    async fn try_exclusive(&self, key: &str) -> Result<Option<crate::ExclusiveGuard>> {
        // Detached: the connection never goes back to the pool, so dropping the guard closes it and the
        // server releases the lock; the same happens if this process dies.
        let mut connection = self.pool.acquire().await?.detach();
        let (granted, backend_pid): (bool, i32) = sqlx::query_as(
            "SELECT pg_try_advisory_lock(hashtextextended(current_schema() || ':jarvis:' || $1, 0)),
                pg_backend_pid()",
        )
        .bind(key)
        .fetch_one(&mut connection)
        .await
        .map_err(pooler_or_error)?;
        if granted {
            // Behind a transaction pooler the lock stays with a session other clients use next.
            if let Err(error) = same_session(&mut connection, backend_pid).await {
                use sqlx::Connection;
                let _ = connection.close().await;
                return Err(error);
            }
            Ok(Some(crate::ExclusiveGuard::new(AdvisoryLock {
                connection,
                backend_pid,
            })))
        } else {
            use sqlx::Connection;
            let _ = connection.close().await;
            Ok(None)
        }
    }

    async fn check_session(&self) -> Result<()> {
        let mut connection = self.pool.acquire().await?;
        let pid = backend_pid(&mut connection)
            .await
            .map_err(pooler_or_error)?;
        same_session(&mut connection, pid).await
    }

    async fn extend_leases(&self, ids: &[i64], lease: Duration) -> Result<Vec<i64>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut held: Vec<i64> = sqlx::query_scalar(
            "UPDATE amocrm_webhook_events
            SET locked_until = now() + $2::interval, next_attempt_at = now() + $2::interval
            WHERE id = ANY($1) AND NOT processed AND locked_until > now()
            RETURNING id",
        )
        .bind(ids)
        .bind(lease)
        .fetch_all(&self.pool)
        .await?;
        held.sort_unstable();
        Ok(held)
    }

    async fn prune_rejected(&self, older_than: DateTime<Utc>, max_total_bytes: u64) -> Result<u64> {
        let old = sqlx::query("DELETE FROM amocrm_rejected_webhooks WHERE received_at < $1")
            .bind(older_than)
            .execute(&self.pool)
            .await?
            .rows_affected();
        // Newest first: a body goes once the newer ones and itself exceed the cap.
        let over = sqlx::query(
            "DELETE FROM amocrm_rejected_webhooks WHERE id IN (
                SELECT id FROM (
                    SELECT id, sum(octet_length(body)) OVER (ORDER BY received_at DESC, id DESC)
                        AS running
                    FROM amocrm_rejected_webhooks
                ) sized
                WHERE running > $1
            )",
        )
        .bind(i64::try_from(max_total_bytes).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(old + over)
    }

    async fn set_state(&self, key: &str, value: &Value) -> Result<()> {
        sqlx::query(
            "INSERT INTO jarvis_state (key, value, updated_at) VALUES ($1, $2, now())
            ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get_state(&self, key: &str) -> Result<Option<StateEntry>> {
        let row = sqlx::query("SELECT value, updated_at FROM jarvis_state WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            Ok(StateEntry {
                value: row.try_get("value")?,
                updated_at: row.try_get("updated_at")?,
            })
        })
        .transpose()
    }

    async fn clear_state(&self, key: &str) -> Result<bool> {
        let deleted = sqlx::query("DELETE FROM jarvis_state WHERE key = $1")
            .bind(key)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(deleted > 0)
    }

    async fn migrate(&self) -> Result<()> {
        // Most starts find the schema current. One query on the pool's open connection tells so,
        // where the migrator needs a connection of its own (a new session, on a remote server a TLS
        // handshake), an advisory lock and several statements: about 25 ms of a 60 ms start.
        let recorded: std::result::Result<Vec<(i64, Vec<u8>, bool)>, _> =
            sqlx::query_as("SELECT version, checksum, success FROM _sqlx_migrations")
                .fetch_all(&self.pool)
                .await;
        if recorded.is_ok_and(|recorded| crate::batch::migrations_current(&MIGRATOR, &recorded)) {
            return Ok(());
        }
        // A migration may rewrite a large table: the pool's statement timeout is for everyday work,
        // so migrations get a connection of their own without it.
        let options = (*self.pool.connect_options()).clone();
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(self.pool.options().get_acquire_timeout())
            .connect_with(options)
            .await?;
        let result = MIGRATOR.run(&pool).await;
        pool.close().await;
        result?;
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        // Callers bound the ping (`/readyz`); a connection it was cut off on is dropped rather than
        // returned, where the pool's check of it could wait on a stalled server for good.
        let mut conn = ingest::Detached(Some(self.pool.acquire().await?));
        sqlx::query("SELECT 1")
            .execute(&mut **conn.0.as_mut().expect("held until the end"))
            .await?;
        conn.0.take();
        Ok(())
    }

    async fn check_migrated(&self) -> Result<()> {
        let applied: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&self.pool)
                .await?;
        require_migrated(&MIGRATOR, &applied)
    }

    async fn insert_events(&self, events: &[NewEvent]) -> Result<InsertOutcome> {
        let distinct = distinct_events(events);
        let mut rows = Vec::with_capacity(distinct.len());
        for event in distinct {
            rows.push(ingest::EventRow::new(event.clone(), None)?);
        }
        self.ingest_rows(rows, events.len()).await
    }

    fn settles_inserts(&self) -> bool {
        true
    }

    async fn insert_settled(&self, events: Vec<SettledEvent>) -> Result<InsertOutcome> {
        let total = events.len();
        let mut seen = std::collections::HashSet::with_capacity(total);
        let mut rows = Vec::with_capacity(total);
        for SettledEvent { event, writes } in events {
            if seen.insert(event.event_hash.clone()) {
                rows.push(ingest::EventRow::new(event, writes)?);
            }
        }
        self.ingest_rows(rows, total).await
    }

    async fn claim_events(&self, limit: usize, lease: Duration) -> Result<Vec<StoredEvent>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // SKIP LOCKED hands rows another claimer is taking to nobody else; moving next_attempt_at to
        // the lease's end keeps leased rows out of the claimable index range until the lease expires.
        let sql = format!(
            "WITH picked AS MATERIALIZED (
                SELECT id FROM amocrm_webhook_events {PICK_DUE}
            )
            UPDATE amocrm_webhook_events e
            SET locked_until = now() + $2::interval, next_attempt_at = now() + $2::interval
            FROM picked WHERE e.id = picked.id
            RETURNING {}",
            prefixed_event_columns()
        );
        let rows = sqlx::query(&sql)
            .bind(sql_limit(limit))
            .bind(lease)
            .fetch_all(&self.pool)
            .await?;
        let mut events = rows
            .iter()
            .map(event_from_row)
            .collect::<Result<Vec<_>>>()?;
        events.sort_by_key(|event| event.id);
        Ok(events)
    }

    async fn complete_events(&self, ids: &[i64]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "UPDATE amocrm_webhook_events
            SET processed = true, processed_at = now(), locked_until = NULL
            WHERE id = ANY($1)",
        )
        .bind(ids)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn fail_event(
        &self,
        id: i64,
        error: &str,
        next_attempt_at: DateTime<Utc>,
        max_attempts: u32,
    ) -> Result<FailOutcome> {
        let dead: Option<bool> = sqlx::query_scalar(
            "UPDATE amocrm_webhook_events
            SET attempts = attempts + 1, last_error = $2, locked_until = NULL,
                next_attempt_at = $3,
                dead_at = CASE WHEN attempts + 1 >= $4 THEN now() ELSE NULL END
            WHERE id = $1
            RETURNING dead_at IS NOT NULL",
        )
        .bind(id)
        .bind(error)
        .bind(next_attempt_at)
        .bind(i64::from(max_attempts))
        .fetch_optional(&self.pool)
        .await?;
        match dead {
            None => Err(Error::EventNotFound(id)),
            Some(true) => Ok(FailOutcome::Dead),
            Some(false) => Ok(FailOutcome::Retrying),
        }
    }

    async fn postpone_event(
        &self,
        id: i64,
        error: &str,
        next_attempt_at: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE amocrm_webhook_events
            SET last_error = $2, next_attempt_at = $3, locked_until = NULL
            WHERE id = $1 AND NOT processed",
        )
        .bind(id)
        .bind(error)
        .bind(next_attempt_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn release_events(&self, ids: &[i64]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "UPDATE amocrm_webhook_events
            SET locked_until = NULL, next_attempt_at = now()
            WHERE id = ANY($1) AND NOT processed AND locked_until IS NOT NULL",
        )
        .bind(ids)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn requeue(&self, which: Requeue) -> Result<u64> {
        let result = match which {
            Requeue::Dead => {
                sqlx::query(
                    "UPDATE amocrm_webhook_events
                    SET dead_at = NULL, attempts = 0, next_attempt_at = now(), locked_until = NULL
                    WHERE dead_at IS NOT NULL AND NOT processed",
                )
                .execute(&self.pool)
                .await?
            }
            Requeue::Ids(ids) => {
                sqlx::query(
                    "UPDATE amocrm_webhook_events
                    SET processed = false, processed_at = NULL, dead_at = NULL, attempts = 0,
                        next_attempt_at = now(), locked_until = NULL
                    WHERE id = ANY($1)",
                )
                .bind(ids)
                .execute(&self.pool)
                .await?
            }
        };
        Ok(result.rows_affected())
    }

    async fn get_event(&self, id: i64) -> Result<Option<StoredEvent>> {
        let row = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM amocrm_webhook_events WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(event_from_row).transpose()
    }

    async fn dead_events(&self, limit: usize) -> Result<Vec<StoredEvent>> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM amocrm_webhook_events
            WHERE dead_at IS NOT NULL AND NOT processed
            ORDER BY dead_at DESC, id DESC
            LIMIT $1"
        ))
        .bind(sql_limit(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn insert_rejected(&self, rejected: &RejectedWebhook) -> Result<i64> {
        let (kept, length, sha256) = cut_rejected_body(&rejected.body);
        let id = sqlx::query_scalar(
            "INSERT INTO amocrm_rejected_webhooks
                (body, content_type, reason, received_at, body_length, body_sha256)
            VALUES ($1, $2, $3, $4, $5, $6)
            RETURNING id",
        )
        .bind(kept)
        .bind(&rejected.content_type)
        .bind(&rejected.reason)
        .bind(rejected.received_at)
        .bind(length)
        .bind(sha256)
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    async fn list_rejected(&self, limit: usize) -> Result<Vec<StoredRejected>> {
        let rows = sqlx::query(
            "SELECT id, body, content_type, reason, received_at, body_length, body_sha256
            FROM amocrm_rejected_webhooks
            ORDER BY received_at DESC, id DESC
            LIMIT $1",
        )
        .bind(sql_limit(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(StoredRejected {
                    id: row.try_get("id")?,
                    rejected: RejectedWebhook {
                        body: row.try_get("body")?,
                        content_type: row.try_get("content_type")?,
                        reason: row.try_get("reason")?,
                        received_at: row.try_get("received_at")?,
                    },
                    body_length: row
                        .try_get::<Option<i64>, _>("body_length")?
                        .map(|length| length.max(0) as u64),
                    body_sha256: row.try_get("body_sha256")?,
                })
            })
            .collect()
    }

    async fn upsert_deals(&self, deals: &[DealUpsert]) -> Result<UpsertOutcome> {
        if deals.is_empty() {
            return Ok(UpsertOutcome::default());
        }
        let mut tx = self.pool.begin().await?;
        let applied = Self::apply_deals(&mut tx, deals).await?;
        tx.commit().await?;
        Ok(UpsertOutcome {
            applied,
            stale: deals.len() as u64 - applied,
        })
    }

    async fn settle_batch(&self, writes: &BatchWrites) -> Result<SettleOutcome> {
        if writes.is_empty() {
            return Ok(SettleOutcome::default());
        }
        let mut tx = self.pool.begin().await?;
        let outcome = Self::settle_in(&mut tx, writes, false).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    async fn claim_and_settle(
        &self,
        limit: usize,
        lease: Duration,
        plan: &mut SettlePlan<'_>,
    ) -> Result<ClaimSettled> {
        if limit == 0 {
            return Ok(ClaimSettled::default());
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query(WALK_CLAIMABLE).execute(&mut *tx).await?;
        // The batch is completed as it is claimed: one write per event, whose row locks are the
        // batch's lease (claimers skip locked rows). What the plan does not complete is put back
        // below, in the same transaction; a failure rolls everything back.
        let rows = sqlx::query(&format!(
            "WITH picked AS MATERIALIZED (
                SELECT id FROM amocrm_webhook_events {PICK_DUE}
            )
            UPDATE amocrm_webhook_events e
            SET processed = true, processed_at = now(), locked_until = NULL
            FROM picked WHERE e.id = picked.id
            RETURNING {}",
            prefixed_event_columns()
        ))
        .bind(sql_limit(limit))
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(ClaimSettled::default());
        }
        let mut events = crate::settle::cpu_bound(|| {
            rows.iter()
                .map(|row| {
                    // As the plan must see them: not yet processed.
                    event_from_row(row).map(|event| StoredEvent {
                        processed: false,
                        processed_at: None,
                        ..event
                    })
                })
                .collect::<Result<Vec<_>>>()
        })?;
        events.sort_by_key(|event| event.id);
        let claimed = events.len();
        let writes = crate::settle::plan_batch(&events, plan);
        let settled = Self::settle_in(&mut tx, &writes, true).await?;
        let mut leased = crate::settle::left_over(events, &writes);
        if !leased.is_empty() {
            let ids: Vec<i64> = leased.iter().map(|e| e.id).collect();
            let until: Vec<(i64, DateTime<Utc>)> = sqlx::query_as(
                "UPDATE amocrm_webhook_events
                SET processed = false, processed_at = NULL,
                    locked_until = now() + $2::interval, next_attempt_at = now() + $2::interval
                WHERE id = ANY($1)
                RETURNING id, locked_until",
            )
            .bind(&ids)
            .bind(lease)
            .fetch_all(&mut *tx)
            .await?;
            for event in &mut leased {
                if let Some((_, at)) = until.iter().find(|(id, _)| *id == event.id) {
                    event.locked_until = Some(*at);
                    event.next_attempt_at = *at;
                }
            }
        }
        tx.commit().await?;
        Ok(ClaimSettled {
            claimed,
            settled,
            leased,
        })
    }

    async fn mark_deal_deleted(&self, amocrm_deal_id: &str, deleted: bool) -> Result<()> {
        sqlx::query(
            "INSERT INTO amocrm_deals (amocrm_deal_id, is_deleted, synced_at) VALUES ($1, $2, now())
            ON CONFLICT (amocrm_deal_id) DO UPDATE SET is_deleted = EXCLUDED.is_deleted, synced_at = now()",
        )
        .bind(amocrm_deal_id)
        .bind(deleted)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn record_deletion(
        &self,
        entity: MirrorEntity,
        amocrm_id: &str,
        event_hash: &str,
        deleted: bool,
    ) -> Result<bool> {
        let (table, key) = match entity {
            MirrorEntity::Deal => ("amocrm_deals", "amocrm_deal_id"),
            MirrorEntity::Contact => ("amocrm_contacts", "amocrm_contact_id"),
        };
        let mut tx = self.pool.begin().await?;
        // Records of one entity take turns, so each counts every event recorded before it (two
        // concurrent ones would otherwise each miss the other's uncommitted event).
        sqlx::query(
            "SELECT pg_advisory_xact_lock(hashtext('amocrm_deletions:' || $1 || ':' || $2))",
        )
        .bind(entity.as_str())
        .bind(amocrm_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO amocrm_deletions (entity_type, amocrm_id, event_hash, deleted)
            VALUES ($1, $2, $3, $4)
            ON CONFLICT DO NOTHING",
        )
        .bind(entity.as_str())
        .bind(amocrm_id)
        .bind(event_hash)
        .bind(deleted)
        .execute(&mut *tx)
        .await?;
        let flag: bool = sqlx::query_scalar(&format!(
            "INSERT INTO {table} AS t ({key}, is_deleted, synced_at)
            SELECT $2, counts.deleted, now() FROM (
                SELECT count(*) FILTER (WHERE deleted) > count(*) FILTER (WHERE NOT deleted)
                    AS deleted
                FROM amocrm_deletions WHERE entity_type = $1 AND amocrm_id = $2
            ) counts
            ON CONFLICT ({key}) DO UPDATE
            SET is_deleted = EXCLUDED.is_deleted, synced_at = now()
            RETURNING is_deleted"
        ))
        .bind(entity.as_str())
        .bind(amocrm_id)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(flag)
    }

    async fn set_deal_metadata(
        &self,
        amocrm_deal_id: &str,
        metadata: &Map<String, Value>,
    ) -> Result<bool> {
        let result = sqlx::query(
            "UPDATE amocrm_deals SET metadata = metadata || $2 WHERE amocrm_deal_id = $1",
        )
        .bind(amocrm_deal_id)
        .bind(Value::Object(metadata.clone()))
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() > 0)
    }

    async fn set_main_contact_fields(
        &self,
        amocrm_contact_id: &str,
        custom_fields: Option<&Value>,
    ) -> Result<u64> {
        let changed = sqlx::query(
            "UPDATE amocrm_deals SET contact_custom_fields = $2, synced_at = now()
            WHERE main_contact_id = $1 AND contact_custom_fields IS DISTINCT FROM $2",
        )
        .bind(amocrm_contact_id)
        .bind(custom_fields)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(changed)
    }

    async fn follow_contact_fields(&self, amocrm_contact_ids: &[&str]) -> Result<u64> {
        let mut conn = self.pool.acquire().await?;
        follow_contact_fields(&mut conn, amocrm_contact_ids).await
    }

    async fn get_deal(&self, amocrm_deal_id: &str) -> Result<Option<Deal>> {
        let row = sqlx::query(&format!(
            "SELECT {DEAL_COLUMNS} FROM amocrm_deals WHERE amocrm_deal_id = $1"
        ))
        .bind(amocrm_deal_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(deal_from_row).transpose()
    }

    async fn upsert_contacts(&self, contacts: &[ContactUpsert]) -> Result<UpsertOutcome> {
        if contacts.is_empty() {
            return Ok(UpsertOutcome::default());
        }
        let mut tx = self.pool.begin().await?;
        let applied = Self::apply_contacts(&mut tx, contacts).await?;
        tx.commit().await?;
        Ok(UpsertOutcome {
            applied,
            stale: contacts.len() as u64 - applied,
        })
    }

    async fn mark_contact_deleted(&self, amocrm_contact_id: &str, deleted: bool) -> Result<()> {
        sqlx::query(
            "INSERT INTO amocrm_contacts (amocrm_contact_id, is_deleted, synced_at) VALUES ($1, $2, now())
            ON CONFLICT (amocrm_contact_id) DO UPDATE
            SET is_deleted = EXCLUDED.is_deleted, synced_at = now()",
        )
        .bind(amocrm_contact_id)
        .bind(deleted)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn set_contact_metadata(
        &self,
        amocrm_contact_id: &str,
        metadata: &Map<String, Value>,
    ) -> Result<bool> {
        let result = sqlx::query(
            "UPDATE amocrm_contacts SET metadata = metadata || $2 WHERE amocrm_contact_id = $1",
        )
        .bind(amocrm_contact_id)
        .bind(Value::Object(metadata.clone()))
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() > 0)
    }

    async fn get_contact(&self, amocrm_contact_id: &str) -> Result<Option<Contact>> {
        let row = sqlx::query(&format!(
            "SELECT {CONTACT_COLUMNS} FROM amocrm_contacts WHERE amocrm_contact_id = $1"
        ))
        .bind(amocrm_contact_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(contact_from_row).transpose()
    }

    async fn load_tokens(&self, account: &str) -> Result<Option<StoredTokens>> {
        let row = sqlx::query(
            "SELECT access_token, refresh_token, token_type, expires_at, updated_at
            FROM amocrm_oauth_tokens WHERE account = $1",
        )
        .bind(account)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(StoredTokens {
                access_token: row.try_get("access_token")?,
                refresh_token: row.try_get("refresh_token")?,
                token_type: row.try_get("token_type")?,
                expires_at: row.try_get("expires_at")?,
                updated_at: row.try_get("updated_at")?,
            })
        })
        .transpose()
    }

    async fn save_tokens(&self, account: &str, tokens: &StoredTokens) -> Result<()> {
        sqlx::query(
            "INSERT INTO amocrm_oauth_tokens
                (account, access_token, refresh_token, token_type, expires_at, updated_at)
            VALUES ($1, $2, $3, $4, $5, $6)
            ON CONFLICT (account) DO UPDATE SET
                access_token = EXCLUDED.access_token,
                refresh_token = EXCLUDED.refresh_token,
                token_type = EXCLUDED.token_type,
                expires_at = EXCLUDED.expires_at,
                updated_at = EXCLUDED.updated_at",
        )
        .bind(account)
        .bind(&tokens.access_token)
        .bind(&tokens.refresh_token)
        .bind(&tokens.token_type)
        .bind(tokens.expires_at)
        .bind(tokens.updated_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn record_api_usage(&self, usage: &[ApiUsage]) -> Result<()> {
        let rows = usage_rows(usage);
        if rows.is_empty() {
            return Ok(());
        }
        let mut query = QueryBuilder::<Postgres>::new(
            "INSERT INTO amocrm_api_usage (minute, endpoint, status, count) ",
        );
        query.push_values(&rows, |mut values, row| {
            values
                .push_bind(row.minute)
                .push_bind(&row.endpoint)
                .push_bind(row.status)
                .push_bind(row.count);
        });
        query.push(
            " ON CONFLICT (minute, endpoint, status)
            DO UPDATE SET count = amocrm_api_usage.count + EXCLUDED.count",
        );
        query.build().execute(&self.pool).await?;
        Ok(())
    }

    async fn api_usage_since(&self, since: DateTime<Utc>) -> Result<u64> {
        let total: i64 = sqlx::query_scalar(
            "SELECT COALESCE(sum(count), 0)::int8 FROM amocrm_api_usage WHERE minute >= $1",
        )
        .bind(since)
        .fetch_one(&self.pool)
        .await?;
        Ok(total.max(0) as u64)
    }

    async fn queue_stats(&self) -> Result<QueueStats> {
        // Each subquery repeats a partial index's predicate, so it reads that index only.
        let row = sqlx::query(
            "SELECT
                (SELECT count(*) FROM amocrm_webhook_events
                    WHERE NOT processed AND dead_at IS NULL) AS backlog,
                (SELECT min(ts) FROM amocrm_webhook_events
                    WHERE NOT processed AND dead_at IS NULL) AS oldest_pending_at,
                (SELECT count(*) FROM amocrm_webhook_events
                    WHERE dead_at IS NOT NULL AND NOT processed) AS dead",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(QueueStats {
            backlog: count(&row, "backlog")?,
            oldest_pending_at: row.try_get("oldest_pending_at")?,
            dead: count(&row, "dead")?,
        })
    }

    async fn stats(&self) -> Result<Stats> {
        let row = sqlx::query(
            "SELECT
                count(*) FILTER (WHERE NOT processed AND dead_at IS NULL) AS backlog,
                min(ts) FILTER (WHERE NOT processed AND dead_at IS NULL) AS oldest_pending_at,
                count(*) FILTER (WHERE NOT processed AND dead_at IS NOT NULL) AS dead,
                count(*) FILTER (WHERE processed) AS processed,
                count(*) FILTER (WHERE NOT processed AND dead_at IS NULL
                    AND (attempts > 0 OR last_error IS NOT NULL)) AS retrying,
                max(ts) AS last_event_at,
                (SELECT count(*) FROM amocrm_rejected_webhooks) AS rejected,
                (SELECT count(*) FROM amocrm_deals) AS deals,
                (SELECT count(*) FROM amocrm_contacts) AS contacts
            FROM amocrm_webhook_events",
        )
        .fetch_one(&self.pool)
        .await?;
        let by_type = sqlx::query(
            "SELECT event_type, count(*) AS events FROM amocrm_webhook_events
            GROUP BY event_type ORDER BY event_type",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| Ok((row.try_get("event_type")?, count(row, "events")?)))
        .collect::<Result<Vec<_>>>()?;
        Ok(Stats {
            backlog: count(&row, "backlog")?,
            oldest_pending_at: row.try_get("oldest_pending_at")?,
            dead: count(&row, "dead")?,
            processed: count(&row, "processed")?,
            retrying: count(&row, "retrying")?,
            rejected: count(&row, "rejected")?,
            last_event_at: row.try_get("last_event_at")?,
            deals: count(&row, "deals")?,
            contacts: count(&row, "contacts")?,
            by_type,
        })
    }
}
