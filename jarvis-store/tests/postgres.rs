//! PostgreSQL-only behaviour: many workers and instances sharing one queue, the column contract other
//! services read, and connection handling.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use jarvis_store::{PgStore, PoolSettings, Store, testing};
use tokio::sync::Barrier;

use common::event;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claimers_get_each_event_exactly_once() {
    const EVENTS: usize = 10_000;
    const CLAIMERS: usize = 8;
    let Some(store) = testing::postgres_store().await else {
        return;
    };
    let events: Vec<_> = (0..EVENTS).map(|i| event(&format!("hash-{i}"))).collect();
    for batch in events.chunks(1_000) {
        assert_eq!(store.insert_events(batch).await.unwrap().stored, 1_000);
    }

    let claimed_total = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..CLAIMERS)
        .map(|_| {
            let store = store.clone();
            let claimed_total = claimed_total.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                while claimed_total.load(Ordering::SeqCst) < EVENTS {
                    let batch = store
                        .claim_events(50, Duration::from_secs(120))
                        .await
                        .unwrap();
                    if batch.is_empty() {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    }
                    let ids: Vec<i64> = batch.iter().map(|e| e.id).collect();
                    store.complete_events(&ids).await.unwrap();
                    claimed_total.fetch_add(ids.len(), Ordering::SeqCst);
                    mine.extend(ids);
                }
                mine
            })
        })
        .collect();

    let mut all = Vec::new();
    let mut busy_workers = 0;
    for worker in workers {
        let mine = tokio::time::timeout(Duration::from_secs(120), worker)
            .await
            .expect("claimers finish")
            .unwrap();
        busy_workers += usize::from(!mine.is_empty());
        all.extend(mine);
    }
    let distinct: HashSet<i64> = all.iter().copied().collect();
    assert_eq!(all.len(), EVENTS, "an event was handed out twice");
    assert_eq!(distinct.len(), EVENTS);
    assert!(busy_workers > 1, "the work was not shared");
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.backlog, stats.processed), (0, EVENTS as u64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_event_inserted_concurrently_is_stored_once() {
    const TASKS: usize = 16;
    let Some(store) = testing::postgres_store().await else {
        return;
    };
    for round in 0..10 {
        let barrier = Arc::new(Barrier::new(TASKS));
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let store = store.clone();
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    store
                        .insert_events(&[event(&format!("same-{round}"))])
                        .await
                        .unwrap()
                })
            })
            .collect();
        let (mut stored, mut duplicates) = (0, 0);
        for task in tasks {
            let outcome = task.await.unwrap();
            stored += outcome.stored;
            duplicates += outcome.duplicates;
        }
        assert_eq!((stored, duplicates), (1, TASKS as u64 - 1));
    }
    assert_eq!(store.stats().await.unwrap().backlog, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_worker_loses_its_lease_when_it_expires() {
    let Some(url) = testing::fresh_postgres_url().await else {
        return;
    };
    let survivor = PgStore::connect(&url).await.unwrap();
    survivor.migrate().await.unwrap();
    survivor.insert_events(&[event("orphan")]).await.unwrap();

    // Another instance claims the event and then disappears: its connections are gone.
    let doomed = PgStore::connect(&url).await.unwrap();
    let lease = Duration::from_millis(500);
    let taken = doomed.claim_events(10, lease).await.unwrap();
    assert_eq!(taken.len(), 1);
    doomed.close().await;
    drop(doomed);

    assert!(survivor.claim_events(10, lease).await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(600)).await;
    let retaken = survivor.claim_events(10, lease).await.unwrap();
    assert_eq!(retaken.len(), 1);
    assert_eq!(retaken[0].id, taken[0].id);
    survivor.complete_events(&[retaken[0].id]).await.unwrap();
    assert_eq!(survivor.stats().await.unwrap().processed, 1);
}

#[tokio::test]
async fn url_options_select_the_schema() {
    let Some(url) = testing::fresh_postgres_url().await else {
        return;
    };
    let schema = url.rsplit("%3D").next().unwrap().to_string();
    assert!(schema.starts_with(testing::SCHEMA_PREFIX));
    let store = jarvis_store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    let pg = PgStore::connect(&url).await.unwrap();
    let current: String = sqlx::query_scalar("SELECT current_schema()")
        .fetch_one(pg.pool())
        .await
        .unwrap();
    assert_eq!(current, schema);
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables
        WHERE table_schema = $1 AND table_name LIKE 'amocrm_%'",
    )
    .bind(&schema)
    .fetch_one(pg.pool())
    .await
    .unwrap();
    assert_eq!(tables, 7);
}

/// Other services read these two tables: names and types must not drift.
#[tokio::test]
async fn column_contract_of_events_and_deals() {
    let Some(store) = testing::postgres_store().await else {
        return;
    };
    let columns = |table: &'static str| {
        let pool = store.pool().clone();
        async move {
            sqlx::query_as::<_, (String, String, String)>(
                "SELECT column_name::text, data_type::text, is_nullable::text
                FROM information_schema.columns
                WHERE table_schema = current_schema() AND table_name = $1
                ORDER BY ordinal_position",
            )
            .bind(table)
            .fetch_all(&pool)
            .await
            .unwrap()
            .into_iter()
            .map(|(name, data_type, _)| format!("{name} {data_type}"))
            .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        columns("amocrm_webhook_events").await,
        [
            "id bigint",
            "ts timestamp with time zone",
            "event_type text",
            "entity_type text",
            "amocrm_entity_id text",
            "event_hash text",
            "payload jsonb",
            "account_id integer",
            "processed boolean",
            "attempts integer",
            "next_attempt_at timestamp with time zone",
            "locked_until timestamp with time zone",
            "last_error text",
            "processed_at timestamp with time zone",
            "dead_at timestamp with time zone",
        ]
    );
    assert_eq!(
        columns("amocrm_deals").await,
        [
            "id uuid",
            "client_id uuid",
            "conversation_id uuid",
            "amocrm_deal_id text",
            "pipeline_id bigint",
            "status_id bigint",
            "price bigint",
            "name text",
            "responsible_user_id bigint",
            "custom_fields jsonb",
            "deal_full_data jsonb",
            "contact_custom_fields jsonb",
            "metadata jsonb",
            "created_at timestamp with time zone",
            "updated_at timestamp with time zone",
            "closed_at timestamp with time zone",
            "is_deleted boolean",
            "synced_at timestamp with time zone",
            // Added by this service after the contract columns.
            "main_contact_id text",
            "linked_client_id uuid",
            "client_linked_for text",
            "linked_conversation_id uuid",
            "conversation_linked_for text",
            "link_failed_at timestamp with time zone",
        ]
    );
    let unique: Vec<String> = sqlx::query_scalar(
        "SELECT indexdef FROM pg_indexes
        WHERE schemaname = current_schema() AND indexdef LIKE 'CREATE UNIQUE INDEX%'
          AND tablename IN ('amocrm_webhook_events', 'amocrm_deals')",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert!(
        unique.iter().any(|def| def.contains("(event_hash)")),
        "{unique:?}"
    );
    assert!(
        unique.iter().any(|def| def.contains("(amocrm_deal_id)")),
        "{unique:?}"
    );
    let metadata_default: String = sqlx::query_scalar(
        "SELECT column_default FROM information_schema.columns
        WHERE table_schema = current_schema() AND table_name = 'amocrm_deals'
          AND column_name = 'metadata' AND is_nullable = 'NO'",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert!(metadata_default.starts_with("'{}'"), "{metadata_default}");
    // The mirror tables leave room on their pages for updates that stay there (HOT).
    for table in ["amocrm_deals", "amocrm_contacts"] {
        let options: Option<Vec<String>> = sqlx::query_scalar(
            "SELECT reloptions FROM pg_class
            WHERE relname = $1 AND relnamespace = current_schema()::regnamespace",
        )
        .bind(table)
        .fetch_one(store.pool())
        .await
        .unwrap();
        assert_eq!(options, Some(vec!["fillfactor=70".to_owned()]), "{table}");
    }
}

#[tokio::test]
async fn an_unreachable_server_fails_fast_without_leaking_the_password() {
    let url = "postgres://jarvis:s3cret-password@127.0.0.1:1/test";
    let settings = PoolSettings::default().acquire_timeout(Duration::from_secs(1));
    let started = std::time::Instant::now();
    let error = PgStore::connect_with(url, settings).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(error.is_unavailable(), "{error:?}");
    let text = format!("{error} {error:?}");
    assert!(!text.contains("s3cret"), "{text}");

    // A lazy store starts, and its operations fail the same way.
    let lazy = PgStore::connect_lazy(
        url,
        PoolSettings::default().acquire_timeout(Duration::from_millis(500)),
    )
    .unwrap();
    let error = lazy.ping().await.unwrap_err();
    assert!(error.is_unavailable(), "{error:?}");
    assert!(!format!("{error} {error:?}").contains("s3cret"));
}

#[tokio::test]
async fn urls_are_checked_without_echoing_them() {
    let error = jarvis_store::connect("mysql://root:s3cret@localhost/db")
        .await
        .err()
        .unwrap();
    assert!(matches!(error, jarvis_store::Error::UnsupportedUrl));
    assert!(!error.to_string().contains("s3cret"));

    let error = PgStore::connect("postgres://user:s3cret@localhost:notaport/db")
        .await
        .unwrap_err();
    assert!(
        matches!(error, jarvis_store::Error::InvalidUrl(_)),
        "{error:?}"
    );
    assert!(
        !format!("{error} {error:?}").contains("s3cret"),
        "{error:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_instance_at_a_time_holds_an_exclusive_key() {
    let Some(url) = testing::fresh_postgres_url().await else {
        return;
    };
    let first = PgStore::connect(&url).await.unwrap();
    let second = PgStore::connect(&url).await.unwrap();

    let mut held = first
        .try_exclusive("geodrive")
        .await
        .unwrap()
        .expect("free key is granted");
    assert!(held.is_held().await);
    assert!(
        second.try_exclusive("geodrive").await.unwrap().is_none(),
        "second holder refused"
    );
    // Another key, and the same key in another schema, are independent.
    assert!(
        second
            .try_exclusive("other-account")
            .await
            .unwrap()
            .is_some()
    );
    let Some(elsewhere) = testing::fresh_postgres_url().await else {
        return;
    };
    let elsewhere = PgStore::connect(&elsewhere).await.unwrap();
    assert!(elsewhere.try_exclusive("geodrive").await.unwrap().is_some());

    // Giving it up (or dying: the connection closes either way) lets the next instance take over.
    drop(held);
    let mut taken_over = None;
    for _ in 0..50 {
        taken_over = second.try_exclusive("geodrive").await.unwrap();
        if taken_over.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        taken_over.is_some(),
        "the key is released when its holder goes away"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_batches_sharing_commits_get_their_own_outcomes() {
    let Some(store) = testing::postgres_store().await else {
        return;
    };
    common::concurrent_batches_get_their_own_outcomes(Arc::new(store)).await;
}

/// A server certificate the client cannot verify is a settings problem, reported as such at once,
/// not an outage to wait out. The test server's certificate is self-signed (or it has no TLS at
/// all): neither passes `verify-full` against the public roots.
#[tokio::test]
async fn a_refused_certificate_fails_at_once_with_its_reason() {
    if testing::postgres_store().await.is_none() {
        return;
    }
    let base = testing::test_database_url();
    let separator = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{separator}sslmode=verify-full");
    let started = std::time::Instant::now();
    let error = PgStore::connect_with(
        &url,
        PoolSettings::default().acquire_timeout(Duration::from_secs(20)),
    )
    .await
    .unwrap_err();
    assert!(matches!(error, jarvis_store::Error::Tls(_)), "{error:?}");
    assert!(!error.is_unavailable(), "{error}");
    assert!(error.to_string().contains("sslrootcert"), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

/// A toy transaction pooler: every client connection is served by two server sessions and moves to
/// the other one after each transaction (each `ReadyForQuery` saying idle), as PgBouncer in
/// transaction mode may. Trust authentication only.
mod pooler {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    const SSL_REQUEST: i32 = 80_877_103;
    const GSS_REQUEST: i32 = 80_877_104;

    pub async fn start(target: String) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(serve(client, target.clone()));
            }
        });
        port
    }

    /// The startup message, after declining TLS and GSS requests.
    async fn startup(client: &mut TcpStream) -> std::io::Result<Vec<u8>> {
        loop {
            let length = client.read_i32().await?;
            let mut message = length.to_be_bytes().to_vec();
            message.resize(length as usize, 0);
            client.read_exact(&mut message[4..]).await?;
            let code = i32::from_be_bytes(message[4..8].try_into().unwrap());
            if code == SSL_REQUEST || code == GSS_REQUEST {
                client.write_all(b"N").await?;
                continue;
            }
            return Ok(message);
        }
    }

    /// One tagged message, whole.
    async fn message(stream: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
        let tag = stream.read_u8().await?;
        let length = stream.read_i32().await?;
        let mut raw = vec![tag];
        raw.extend_from_slice(&length.to_be_bytes());
        raw.resize(1 + length as usize, 0);
        stream.read_exact(&mut raw[5..]).await?;
        Ok((tag, raw))
    }

    async fn serve(mut client: TcpStream, target: String) -> std::io::Result<()> {
        let hello = startup(&mut client).await?;
        let mut sessions = [
            TcpStream::connect(&target).await?,
            TcpStream::connect(&target).await?,
        ];
        for (index, session) in sessions.iter_mut().enumerate() {
            session.write_all(&hello).await?;
            loop {
                let (tag, raw) = message(session).await?;
                if index == 0 {
                    client.write_all(&raw).await?;
                }
                if tag == b'Z' {
                    break;
                }
            }
        }
        let mut current = 0;
        loop {
            loop {
                let (tag, raw) = message(&mut client).await?;
                if tag == b'X' {
                    return Ok(());
                }
                sessions[current].write_all(&raw).await?;
                if tag == b'S' || tag == b'Q' {
                    break;
                }
            }
            loop {
                let (tag, raw) = message(&mut sessions[current]).await?;
                client.write_all(&raw).await?;
                if tag == b'Z' {
                    if raw[5] == b'I' {
                        current = 1 - current;
                    }
                    break;
                }
            }
        }
    }
}

/// Behind a transaction pooler the worker's session state (its lock, its leases' meaning) is not
/// kept: the store says so, for the session check and for the lock, while a direct connection passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_pooler_is_recognised() {
    let Some(url) = testing::fresh_postgres_url().await else {
        return;
    };
    let mut through = url::Url::parse(&url).unwrap();
    let target = format!(
        "{}:{}",
        through.host_str().unwrap(),
        through.port().unwrap_or(5432)
    );
    through.set_port(Some(pooler::start(target).await)).unwrap();
    let pooled = PgStore::connect(through.as_str()).await.unwrap();
    let error = pooled.check_session().await.unwrap_err();
    assert!(
        matches!(error, jarvis_store::Error::TransactionPooler),
        "{error:?}"
    );
    assert!(error.to_string().contains("pooler"), "{error}");
    let error = pooled.try_exclusive("geodrive").await.unwrap_err();
    assert!(
        matches!(error, jarvis_store::Error::TransactionPooler),
        "{error:?}"
    );

    let direct = PgStore::connect(&url).await.unwrap();
    direct.check_session().await.unwrap();
    let mut guard = direct.try_exclusive("geodrive").await.unwrap().unwrap();
    assert!(guard.is_held().await);
}

/// A batch is settled all or nothing: when PostgreSQL refuses one row, no row is written and no
/// event is marked processed, so the events come back and nothing is half-applied.
#[tokio::test]
async fn a_refused_batch_settles_nothing() {
    let Some(store) = testing::postgres_store().await else {
        return;
    };
    store.insert_events(&[event("atomic-1")]).await.unwrap();
    let claimed = store
        .claim_events(1, Duration::from_secs(60))
        .await
        .unwrap();
    let good = common::full_deal("1", common::at(1));
    let mut refused = common::deal("2", Some(common::at(1)));
    // PostgreSQL text cannot hold a NUL character.
    refused.name = String::from("bad\0name").into();
    let writes = jarvis_store::BatchWrites {
        contacts: vec![common::contact("9", Some(common::at(1)))],
        deals: vec![good, refused],
        completed: vec![claimed[0].id],
        ..Default::default()
    };
    let error = store.settle_batch(&writes).await.unwrap_err();
    assert!(error.is_bad_data(), "{error}");
    assert!(store.get_deal("1").await.unwrap().is_none());
    assert!(store.get_contact("9").await.unwrap().is_none());
    assert!(
        !store
            .get_event(claimed[0].id)
            .await
            .unwrap()
            .unwrap()
            .processed
    );
}

/// `claim_and_settle` marks its batch processed as it claims it: when PostgreSQL then refuses a
/// row, that marking is rolled back with everything else and the event can be claimed again.
#[tokio::test]
async fn a_refused_claim_and_settle_leaves_the_event_pending() {
    let Some(store) = testing::postgres_store().await else {
        return;
    };
    store.insert_events(&[event("atomic-2")]).await.unwrap();
    let mut plan = |events: &[jarvis_store::StoredEvent]| {
        let mut refused = common::deal("3", Some(common::at(1)));
        // PostgreSQL text cannot hold a NUL character.
        refused.name = String::from("bad\0name").into();
        jarvis_store::BatchWrites {
            deals: vec![refused],
            completed: events.iter().map(|e| e.id).collect(),
            ..Default::default()
        }
    };
    let error = store
        .claim_and_settle(10, Duration::from_secs(60), &mut plan)
        .await
        .unwrap_err();
    assert!(error.is_bad_data(), "{error}");
    assert!(store.get_deal("3").await.unwrap().is_none());
    let again = store
        .claim_events(10, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert!(!again[0].processed);
    assert!(again[0].processed_at.is_none());
}

/// A start on a current schema skips the migrator; a schema that is anything else still meets it:
/// a migration edited after it ran is refused, one missing from the record is applied again.
#[tokio::test]
async fn migrate_on_a_current_schema_skips_only_what_the_migrator_would_skip() {
    let Some(url) = testing::fresh_postgres_url().await else {
        return;
    };
    let store = PgStore::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    let direct = sqlx::PgPool::connect(&url).await.unwrap();
    let last: i64 = sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations")
        .fetch_one(&direct)
        .await
        .unwrap();

    sqlx::query("UPDATE _sqlx_migrations SET checksum = '\\x00'::bytea WHERE version = $1")
        .bind(last)
        .execute(&direct)
        .await
        .unwrap();
    let error = store.migrate().await.unwrap_err().to_string();
    assert!(error.contains("modified"), "{error}");

    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = $1")
        .bind(last)
        .execute(&direct)
        .await
        .unwrap();
    assert!(store.check_migrated().await.is_err());
    store.migrate().await.unwrap();
    store.check_migrated().await.unwrap();
    let recorded: i64 =
        sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE version = $1")
            .bind(last)
            .fetch_one(&direct)
            .await
            .unwrap();
    assert_eq!(recorded, 1);
    direct.close().await;
}

/// Only the main pool's first connection decides whether a connect succeeds: the others opened at
/// the same time are a head start, and the insert pool's shorter acquire timeout (the webhook's
/// deadline) running out while the server is slow to accept must not fail the start.
#[tokio::test]
async fn connect_succeeds_when_only_the_head_start_connections_time_out() {
    let Some(url) = testing::fresh_postgres_url().await else {
        return;
    };
    let settings = PoolSettings::default().ingest_timeout(Duration::from_millis(1));
    let store = PgStore::connect_with(&url, settings).await.unwrap();
    store.ping().await.unwrap();
    store.close().await;
}

/// A round of deal states updates the stored deals through a join; a deal another transaction
/// inserts after the statement's snapshot goes through the conflict path, which waits for that
/// transaction and then merges by the same rule (columns the state does not know stay as stored).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deal_inserted_meanwhile_by_another_writer_is_merged_by_the_mirror_rule() {
    use chrono::{TimeZone, Utc};
    use jarvis_store::{DealUpsert, Known};
    let Some(store) = testing::postgres_store().await else {
        return;
    };
    let at = |s: i64| Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap();
    let state = move |id: &str, status: i64, updated: i64| DealUpsert {
        amocrm_deal_id: id.to_owned(),
        status_id: Known::Value(status),
        updated_at: Some(at(updated)),
        ..DealUpsert::default()
    };
    // Stored before: one deal the round updates, one it leaves alone (its state is older).
    store
        .upsert_deals(&[
            DealUpsert {
                name: Known::Value("stored".into()),
                ..state("1", 10, 100)
            },
            DealUpsert {
                name: Known::Value("newer".into()),
                ..state("2", 10, 500)
            },
        ])
        .await
        .unwrap();

    // Another writer inserts deal 3 and has not committed when the round runs.
    let mut other = store.pool().begin().await.unwrap();
    sqlx::query(
        "INSERT INTO amocrm_deals (amocrm_deal_id, name, price, status_id, updated_at)
        VALUES ('3', 'from elsewhere', 7, 10, $1)",
    )
    .bind(at(100))
    .execute(&mut *other)
    .await
    .unwrap();
    let round = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .upsert_deals(&[
                    state("1", 20, 200),
                    state("2", 20, 200),
                    state("3", 20, 200),
                ])
                .await
        })
    };
    // The round's insert of deal 3 waits for the other writer's row lock (bounded poll).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
            WHERE wait_event = 'transactionid' AND query LIKE 'WITH input AS MATERIALIZED%'
                AND datname = current_database()",
        )
        .fetch_one(store.pool())
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(
            !round.is_finished(),
            "the round did not wait for the other writer"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "the round never waited for the other writer"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    other.commit().await.unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(10), round)
        .await
        .expect("the round finishes once the other writer commits")
        .unwrap()
        .unwrap();
    assert_eq!((outcome.applied, outcome.stale), (2, 1));

    let one = store.get_deal("1").await.unwrap().unwrap();
    assert_eq!(
        (one.status_id, one.name.as_deref()),
        (Some(20), Some("stored"))
    );
    assert_eq!(one.updated_at, Some(at(200)));
    let two = store.get_deal("2").await.unwrap().unwrap();
    assert_eq!(
        (two.status_id, two.name.as_deref()),
        (Some(10), Some("newer"))
    );
    let three = store.get_deal("3").await.unwrap().unwrap();
    assert_eq!(
        (three.status_id, three.name.as_deref(), three.price),
        (Some(20), Some("from elsewhere"), Some(7))
    );
    assert_eq!(three.updated_at, Some(at(200)));
}

/// Event inserts one after another go through one session: the connection is kept between groups
/// instead of going back to the pool (and its ping) after each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consecutive_inserts_share_one_session() {
    let Some(url) = testing::fresh_postgres_url().await else {
        return;
    };
    let name = format!("jarvis_kept_{}", std::process::id());
    let store = PgStore::connect(&format!("{url}&application_name={name}"))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    for i in 0..20 {
        insert_one(&store, &format!("kept-{i}")).await;
    }
    let sessions: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
        WHERE application_name = $1 AND query LIKE 'INSERT INTO amocrm_webhook_events%'",
    )
    .bind(&name)
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(sessions, 1);
    // Closing gives the kept connection back: the close finishes.
    tokio::time::timeout(Duration::from_secs(10), store.close())
        .await
        .expect("the store closes with a kept connection");
}

/// A kept connection the server has closed fails the one insert that meets it (at once, not at the
/// deadline), and the next insert opens a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_connection_the_server_closed_is_replaced() {
    let Some(url) = testing::fresh_postgres_url().await else {
        return;
    };
    let name = format!("jarvis_closed_{}", std::process::id());
    let store = PgStore::connect(&format!("{url}&application_name={name}"))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    insert_one(&store, "before").await;
    let terminated: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
        WHERE application_name = $1 AND query LIKE 'INSERT INTO amocrm_webhook_events%'",
    )
    .bind(&name)
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(terminated, [true]);
    let failed = tokio::time::timeout(
        Duration::from_secs(2),
        store.insert_events(&[event("on the closed session")]),
    )
    .await
    .expect("the insert fails at once");
    assert!(
        matches!(failed, Err(ref e) if !matches!(e, jarvis_store::Error::TimedOut)),
        "{failed:?}"
    );
    insert_one(&store, "after").await;
    assert_eq!(store.stats().await.unwrap().backlog, 2);
}

/// A store on a pool shared with other code keeps no connection for its inserts: with a pool of
/// one, the next query still gets the connection at once.
#[tokio::test]
async fn a_shared_pool_of_one_serves_inserts_and_queries_in_turn() {
    let Some(url) = testing::fresh_postgres_url().await else {
        return;
    };
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(2))
        .connect(&url)
        .await
        .unwrap();
    let store = PgStore::from_pool(pool);
    store.migrate().await.unwrap();
    for i in 0..3 {
        insert_one(&store, &format!("shared-{i}")).await;
        assert_eq!(store.stats().await.unwrap().backlog, i + 1);
    }
}

/// Stores one new event.
async fn insert_one(store: &PgStore, hash: &str) {
    let stored = store.insert_events(&[event(hash)]).await.unwrap().stored;
    assert_eq!(stored, 1, "{hash}");
}

fn settled_deal(hash: &str, id: &str, price: i64) -> jarvis_store::SettledEvent {
    use jarvis_store::{DealUpsert, EventWrites, Known};
    jarvis_store::SettledEvent {
        event: event(hash),
        writes: Some(EventWrites {
            deal: Some(DealUpsert {
                amocrm_deal_id: id.to_owned(),
                price: Known::Value(price),
                ..DealUpsert::default()
            }),
            ..EventWrites::default()
        }),
    }
}

/// One statement stores a group and writes each deal once: a deal's later state in the same group
/// is stored pending and left to the worker, which applies it after the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deal_repeated_in_a_group_is_written_once_and_its_later_state_waits() {
    let Some(store) = testing::postgres_store().await else {
        return;
    };
    let outcome = store
        .insert_settled(vec![
            settled_deal("first", "10", 100),
            settled_deal("other", "11", 110),
            settled_deal("second", "10", 200),
        ])
        .await
        .unwrap();
    assert_eq!((outcome.stored, outcome.settled), (3, 2));
    assert_eq!(
        store.get_deal("10").await.unwrap().unwrap().price,
        Some(100)
    );
    assert_eq!(
        store.get_deal("11").await.unwrap().unwrap().price,
        Some(110)
    );
    let waiting = store
        .claim_events(10, Duration::from_secs(60))
        .await
        .unwrap();
    let waiting: Vec<&str> = waiting.iter().map(|e| e.event_hash.as_str()).collect();
    assert_eq!(waiting, ["second"]);
}

/// A deal row another transaction holds past the ingest's lock bound does not hold the webhooks
/// up: their events are stored pending, for the worker, within the bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_mirror_row_leaves_the_events_pending() {
    let Some(url) = testing::fresh_postgres_url().await else {
        return;
    };
    // The ingest waits a quarter of its timeout for a lock: 100 ms here.
    let settings = PoolSettings::default().ingest_timeout(Duration::from_millis(400));
    let store = PgStore::connect_with(&url, settings).await.unwrap();
    store.migrate().await.unwrap();
    store
        .insert_settled(vec![settled_deal("seed", "10", 1)])
        .await
        .unwrap();
    let mut holder = store.pool().begin().await.unwrap();
    sqlx::query("SELECT 1 FROM amocrm_deals WHERE amocrm_deal_id = '10' FOR UPDATE")
        .execute(&mut *holder)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let outcome = store
        .insert_settled(vec![settled_deal("blocked", "10", 2)])
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    assert_eq!((outcome.stored, outcome.settled), (1, 0));
    holder.rollback().await.unwrap();
    assert_eq!(store.get_deal("10").await.unwrap().unwrap().price, Some(1));
    let waiting = store
        .claim_events(10, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].event_hash, "blocked");
    assert!(!waiting[0].processed);
}

/// Settled events are stored processed with their rows written, by the mirror rule; a redelivery
/// writes nothing; events without writes wait for a worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_settled_stores_events_processed_with_their_rows() {
    use common::{at, full_deal};
    use jarvis_store::{EventWrites, InsertOutcome, SettledEvent};
    let Some(store) = testing::postgres_store().await else {
        return;
    };
    let settled = |hash: &str, writes: Option<EventWrites>| SettledEvent {
        event: event(hash),
        writes,
    };
    let deal_writes = |deal| {
        Some(EventWrites {
            deal: Some(deal),
            ..EventWrites::default()
        })
    };
    // Already stored, pending: its writes come again with a redelivery, which writes nothing.
    store.insert_events(&[event("old")]).await.unwrap();
    let mut redelivered = full_deal("20", at(5));
    redelivered.price = 1.into();

    let outcome = store
        .insert_settled(vec![
            settled("deal", deal_writes(full_deal("10", at(1)))),
            settled("note", Some(EventWrites::default())),
            settled("pending", None),
            settled("old", deal_writes(redelivered)),
            settled("deal", deal_writes(full_deal("10", at(1)))),
        ])
        .await
        .unwrap();
    assert_eq!(
        outcome,
        InsertOutcome {
            stored: 3,
            duplicates: 2,
            settled: 2,
        }
    );
    let row = store
        .get_deal("10")
        .await
        .unwrap()
        .expect("written with its event");
    assert_eq!(row.price, Some(125_000));
    assert_eq!(row.updated_at, Some(at(1)));
    assert!(
        store.get_deal("20").await.unwrap().is_none(),
        "a duplicate writes nothing"
    );

    // The settled events are processed; the one without writes and the old one wait for a worker.
    let claimed = store
        .claim_events(10, Duration::from_secs(60))
        .await
        .unwrap();
    let mut waiting: Vec<&str> = claimed.iter().map(|e| e.event_hash.as_str()).collect();
    waiting.sort_unstable();
    assert_eq!(waiting, ["old", "pending"]);
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.processed, 2);

    // A later state of the deal settles by the mirror rule; an older one is left as stale.
    let mut newer = full_deal("10", at(9));
    newer.price = 7.into();
    let mut older = full_deal("10", at(3));
    older.price = 3.into();
    let outcome = store
        .insert_settled(vec![settled("newer", deal_writes(newer))])
        .await
        .unwrap();
    assert_eq!(outcome.settled, 1);
    store
        .insert_settled(vec![settled("older", deal_writes(older))])
        .await
        .unwrap();
    assert_eq!(store.get_deal("10").await.unwrap().unwrap().price, Some(7));
    assert_eq!(store.stats().await.unwrap().processed, 4);
}

/// A value the deals table refuses (PostgreSQL text cannot hold NUL) fails the writes, not the
/// webhooks: the group's events are stored pending, for the worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_the_mirror_refuses_leaves_the_events_pending() {
    use jarvis_store::{DealUpsert, EventWrites, Known};
    let Some(store) = testing::postgres_store().await else {
        return;
    };
    let refused = jarvis_store::SettledEvent {
        event: event("refused"),
        writes: Some(EventWrites {
            deal: Some(DealUpsert {
                amocrm_deal_id: "10".into(),
                name: Known::Value("Rent\0Camry".into()),
                ..DealUpsert::default()
            }),
            ..EventWrites::default()
        }),
    };
    let outcome = store
        .insert_settled(vec![refused, settled_deal("beside", "11", 1)])
        .await
        .unwrap();
    assert_eq!((outcome.stored, outcome.settled), (2, 0));
    assert!(store.get_deal("10").await.unwrap().is_none());
    assert!(store.get_deal("11").await.unwrap().is_none());
    assert_eq!(store.stats().await.unwrap().backlog, 2);
}

/// Contacts and deletions make a group a transaction of several statements: the contact is
/// written and its fields reach its deal, the delete is recorded, and every event is processed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_and_deletions_settle_in_one_transaction() {
    use common::{at, contact, full_deal};
    use jarvis_store::{DeletionRecord, EventWrites, MirrorEntity, SettledEvent};
    let Some(store) = testing::postgres_store().await else {
        return;
    };
    // Deal 1's main contact is 5000001 (full_deal); deal 3 is about to be deleted.
    store
        .upsert_deals(&[full_deal("1", at(-60)), full_deal("3", at(-60))])
        .await
        .unwrap();
    let phone = serde_json::json!([{ "field_code": "PHONE", "values": [{ "value": "+7 900" }] }]);
    let mut main_contact = contact("5000001", Some(at(1)));
    main_contact.custom_fields = phone.clone().into();
    let outcome = store
        .insert_settled(vec![
            SettledEvent {
                event: event("contact"),
                writes: Some(EventWrites {
                    contact: Some(main_contact),
                    ..EventWrites::default()
                }),
            },
            SettledEvent {
                event: event("delete"),
                writes: Some(EventWrites {
                    deletion: Some(DeletionRecord {
                        entity: MirrorEntity::Deal,
                        amocrm_id: "3".into(),
                        event_hash: "delete".into(),
                        deleted: true,
                    }),
                    ..EventWrites::default()
                }),
            },
            settled_deal("deal", "2", 20),
        ])
        .await
        .unwrap();
    assert_eq!((outcome.stored, outcome.settled), (3, 3));
    assert!(store.get_contact("5000001").await.unwrap().is_some());
    let deal_1 = store.get_deal("1").await.unwrap().unwrap();
    assert_eq!(deal_1.contact_custom_fields, Some(phone));
    assert!(store.get_deal("3").await.unwrap().unwrap().is_deleted);
    assert_eq!(store.get_deal("2").await.unwrap().unwrap().price, Some(20));
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.processed, stats.backlog), (3, 0));
}

/// The settling statement finds deals by their key however its plan was made: groups written
/// while the table was young and after it grew scan the deals table whole not once (a plan that
/// joins the group to a scan of the table would do so twice per group).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settling_finds_deals_by_key_as_the_table_grows() {
    let Some(url) = testing::fresh_postgres_url().await else {
        return;
    };
    let store = PgStore::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    let groups = 24;
    let mut written = 0;
    for group in 0..groups {
        // The first groups meet a young table; every group adds 40 deals and updates 8.
        let batch: Vec<_> = (0..48)
            .map(|i| {
                let id = if i < 8 { i } else { 100 + group * 40 + i };
                settled_deal(&format!("g{group}-{i}"), &id.to_string(), group as i64)
            })
            .collect();
        written += batch.len() as i64;
        let outcome = store.insert_settled(batch).await.unwrap();
        assert_eq!(outcome.settled, 48);
    }
    store.close().await;
    // Each backend reports its table statistics as it exits.
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let (seq_scans, writes) = loop {
        let (seq_scans, writes): (i64, i64) = sqlx::query_as(
            "SELECT seq_scan, n_tup_ins + n_tup_upd FROM pg_stat_user_tables
             WHERE relid = 'amocrm_deals'::regclass",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if writes >= written || std::time::Instant::now() > deadline {
            break (seq_scans, writes);
        }
        sqlx::query("SELECT pg_stat_clear_snapshot()")
            .execute(&pool)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(writes, written, "the statistics never arrived");
    // The migrations build indexes on the table (a scan each, 5 today); a plan that scans the
    // table per group would add two a group.
    assert!(
        seq_scans < groups as i64,
        "{seq_scans} whole-table scans of the deals for {groups} groups"
    );
    pool.close().await;
}
