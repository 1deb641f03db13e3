//! Links to the business's tables, on both backends: the operator's queries run with typed binds,
//! read-only and under a timeout; their answers are written without taking over values that others
//! set; the deals still to link are listed for the backfill.

mod common;

use std::time::Duration;

use jarvis_store::{
    DealUpsert, Error, Known, LinkBind, LinkColumn, LinkFailure, LinkOutcome, LinkScan, PgStore,
    SqliteStore, Store,
};
use serde_json::json;
use uuid::Uuid;

use common::{at, deal};

/// A store with the business's own `clients` table beside the mirror, and its SQL dialect.
struct Db {
    store: Box<dyn Store>,
    postgres: Option<PgStore>,
    sqlite: Option<SqliteStore>,
    _dir: Option<tempfile::TempDir>,
}

const PG_CLIENT_SQL: &str =
    "SELECT id FROM clients WHERE phone = ANY($1) OR lower(email) = ANY($2) ORDER BY id LIMIT 1";
const SQLITE_CLIENT_SQL: &str = "SELECT id FROM clients
    WHERE phone IN (SELECT value FROM json_each($1))
       OR lower(email) IN (SELECT value FROM json_each($2))
    ORDER BY id LIMIT 1";

impl Db {
    async fn postgres() -> Option<Db> {
        let store = jarvis_store::testing::postgres_store().await?;
        Some(Db {
            store: Box::new(store.clone()),
            postgres: Some(store),
            sqlite: None,
            _dir: None,
        })
    }

    async fn sqlite() -> Db {
        let (store, dir) = jarvis_store::testing::sqlite_store().await;
        Db {
            store: Box::new(store.clone()),
            postgres: None,
            sqlite: Some(store),
            _dir: Some(dir),
        }
    }

    fn is_postgres(&self) -> bool {
        self.postgres.is_some()
    }

    async fn exec(&self, sql: &str) {
        if let Some(pg) = &self.postgres {
            sqlx::raw_sql(sql).execute(pg.pool()).await.unwrap();
        } else if let Some(lite) = &self.sqlite {
            sqlx::raw_sql(sql).execute(lite.pool()).await.unwrap();
        }
    }

    async fn count(&self, table: &str) -> i64 {
        let sql = format!("SELECT count(*) FROM {table}");
        if let Some(pg) = &self.postgres {
            sqlx::query_scalar(&sql).fetch_one(pg.pool()).await.unwrap()
        } else {
            let lite = self.sqlite.as_ref().unwrap();
            sqlx::query_scalar(&sql)
                .fetch_one(lite.pool())
                .await
                .unwrap()
        }
    }

    /// `clients(id uuid, phone text, email text)` with three clients, two sharing a phone.
    async fn with_clients(&self) {
        let id_type = if self.is_postgres() { "uuid" } else { "text" };
        self.exec(&format!(
            "CREATE TABLE clients (id {id_type} PRIMARY KEY, phone text, email text);
            INSERT INTO clients VALUES
                ('00000000-0000-0000-0000-00000000000a', '+79123456789', 'Ivan.Petrov@Example.RU'),
                ('00000000-0000-0000-0000-00000000000c', '+79990001122', 'twin-c@example.ru'),
                ('00000000-0000-0000-0000-00000000000b', '+79990001122', 'twin-b@example.ru'),
                ('00000000-0000-0000-0000-00000000000d', '+16502530000', 'us@example.com');"
        ))
        .await;
    }

    fn client_sql(&self) -> &'static str {
        if self.is_postgres() {
            PG_CLIENT_SQL
        } else {
            SQLITE_CLIENT_SQL
        }
    }

    /// A query that runs for a long time on this backend.
    fn slow_sql(&self) -> &'static str {
        if self.is_postgres() {
            "SELECT id FROM clients, pg_sleep(5) LIMIT 1"
        } else {
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n)
            SELECT id FROM clients, (SELECT max(i) FROM (SELECT i FROM n LIMIT 1000000000)) LIMIT 1"
        }
    }
}

fn uuid(last: &str) -> Uuid {
    Uuid::parse_str(&format!("00000000-0000-0000-0000-00000000000{last}")).unwrap()
}

fn client_binds(phones: &[&str], emails: &[&str]) -> Vec<LinkBind> {
    vec![
        LinkBind::TextList(phones.iter().map(|p| p.to_string()).collect()),
        LinkBind::TextList(emails.iter().map(|e| e.to_string()).collect()),
        LinkBind::Text(Some("52110077".into())),
        LinkBind::Text(Some("31840021".into())),
        LinkBind::Text(None),
    ]
}

const TIMEOUT: Duration = Duration::from_secs(2);

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(db) = super::Db::postgres().await else { return };
                    super::$name(&db).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = super::Db::sqlite().await;
                    super::$name(&db).await;
                }
            )*
        }
    };
}

both!(
    the_readme_query_matches_by_phone_or_email_in_any_case,
    several_matches_give_the_first_row_in_the_querys_order,
    a_query_may_use_any_of_the_binds,
    failing_queries_are_link_errors_with_the_databases_message,
    a_slow_query_is_cancelled_at_its_timeout,
    queries_cannot_write,
    a_value_set_by_someone_else_is_kept_unless_overwriting,
    the_linkers_own_value_follows_the_query,
    deals_to_link_are_listed_in_pages,
);

async fn the_readme_query_matches_by_phone_or_email_in_any_case(db: &Db) {
    db.with_clients().await;
    let links = db.store.links();
    let by_phone = links
        .run_link_query(
            db.client_sql(),
            &client_binds(&["+79123456789"], &[]),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(by_phone, Some(uuid("a")));
    // The table keeps the address in mixed case; the linker binds it lower-cased.
    let by_email = links
        .run_link_query(
            db.client_sql(),
            &client_binds(&[], &["ivan.petrov@example.ru"]),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(by_email, Some(uuid("a")));
    let none = links
        .run_link_query(
            db.client_sql(),
            &client_binds(&["+79000000000"], &["nobody@example.ru"]),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(none, None);
    let empty = links
        .run_link_query(db.client_sql(), &client_binds(&[], &[]), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(empty, None, "no inputs match nothing");
}

async fn several_matches_give_the_first_row_in_the_querys_order(db: &Db) {
    db.with_clients().await;
    // Clients b and c share a phone: ORDER BY id makes b the answer, whatever the insert order.
    let found = db
        .store
        .links()
        .run_link_query(
            db.client_sql(),
            &client_binds(&["+79990001122"], &[]),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(found, Some(uuid("b")));
    // Without LIMIT the first row still wins; the others are ignored.
    let descending = db
        .client_sql()
        .replace("ORDER BY id LIMIT 1", "ORDER BY id DESC");
    let found = db
        .store
        .links()
        .run_link_query(&descending, &client_binds(&["+79990001122"], &[]), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(found, Some(uuid("c")));
}

async fn a_query_may_use_any_of_the_binds(db: &Db) {
    db.with_clients().await;
    let links = db.store.links();
    // Only $4 (the lead id), typed text: compared as text.
    let sql = "SELECT '00000000-0000-0000-0000-00000000000e' WHERE $4 = '31840021'";
    let found = links
        .run_link_query(sql, &client_binds(&[], &[]), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(found, Some(uuid("e")));
    // NULL binds are NULL, and a NULL answer is no link.
    let sql = "SELECT NULL WHERE $5 IS NULL";
    assert_eq!(
        links
            .run_link_query(sql, &client_binds(&[], &[]), TIMEOUT)
            .await
            .unwrap(),
        None
    );
    let sql = "SELECT '00000000-0000-0000-0000-00000000000f' WHERE $5 IS NULL AND $3 = '52110077'";
    assert_eq!(
        links
            .run_link_query(sql, &client_binds(&[], &[]), TIMEOUT)
            .await
            .unwrap(),
        Some(uuid("f"))
    );
}

fn failure_of(result: jarvis_store::Result<Option<Uuid>>) -> (LinkFailure, String) {
    match result {
        Err(Error::LinkQuery { failure, message }) => (failure, message),
        other => panic!("expected a link query error, got {other:?}"),
    }
}

async fn failing_queries_are_link_errors_with_the_databases_message(db: &Db) {
    db.with_clients().await;
    let links = db.store.links();
    let binds = client_binds(&["+79123456789"], &[]);
    let (failure, message) = failure_of(
        links
            .run_link_query("SELEC id FROM clients", &binds, TIMEOUT)
            .await,
    );
    assert_eq!(failure, LinkFailure::Query);
    assert!(
        message.contains("syntax error") || message.contains("SELEC"),
        "{message}"
    );
    // A missing table is the operator's mistake, not an unmigrated store.
    let (failure, message) = failure_of(
        links
            .run_link_query("SELECT id FROM customers", &binds, TIMEOUT)
            .await,
    );
    assert_eq!(failure, LinkFailure::Query);
    assert!(message.contains("customers"), "{message}");
    // An answer that is not a UUID.
    let (failure, message) = failure_of(
        links
            .run_link_query("SELECT phone FROM clients LIMIT 1", &binds, TIMEOUT)
            .await,
    );
    assert_eq!(failure, LinkFailure::Value);
    assert!(message.contains("not a UUID"), "{message}");
    // The store goes on working.
    db.store
        .upsert_deals(&[deal("1", Some(at(0)))])
        .await
        .unwrap();
    assert!(db.store.get_deal("1").await.unwrap().is_some());
}

async fn a_slow_query_is_cancelled_at_its_timeout(db: &Db) {
    db.with_clients().await;
    // Every pooled connection carries the pool's own statement timeout; the link query's must not
    // replace it.
    let pool_timeout: Option<String> = match &db.postgres {
        Some(pg) => Some(
            sqlx::query_scalar("SHOW statement_timeout")
                .fetch_one(pg.pool())
                .await
                .unwrap(),
        ),
        None => None,
    };
    let started = std::time::Instant::now();
    let (failure, _) = failure_of(
        db.store
            .links()
            .run_link_query(
                db.slow_sql(),
                &client_binds(&[], &[]),
                Duration::from_millis(200),
            )
            .await,
    );
    assert_eq!(failure, LinkFailure::Timeout);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "cancelled after {took:?}");
    // The timeout was the query's own: the next store operation has no such limit left behind.
    let fast = db
        .store
        .links()
        .run_link_query(
            db.client_sql(),
            &client_binds(&["+79123456789"], &[]),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(fast, Some(uuid("a")));
    if let Some(pg) = &db.postgres {
        for _ in 0..4 {
            let timeout: String = sqlx::query_scalar("SHOW statement_timeout")
                .fetch_one(pg.pool())
                .await
                .unwrap();
            assert_eq!(Some(timeout), pool_timeout);
        }
    }
}

async fn queries_cannot_write(db: &Db) {
    db.with_clients().await;
    let binds = client_binds(&[], &[]);
    let writes = if db.is_postgres() {
        vec![
            "WITH gone AS (DELETE FROM clients RETURNING id) SELECT id FROM gone LIMIT 1",
            "INSERT INTO clients VALUES ('00000000-0000-0000-0000-0000000000ff', NULL, NULL) RETURNING id",
        ]
    } else {
        vec![
            "DELETE FROM clients RETURNING id",
            "INSERT INTO clients VALUES ('00000000-0000-0000-0000-0000000000ff', NULL, NULL) RETURNING id",
        ]
    };
    for sql in writes {
        let (failure, message) =
            failure_of(db.store.links().run_link_query(sql, &binds, TIMEOUT).await);
        assert_eq!(failure, LinkFailure::Query, "{sql}");
        assert!(message.contains("read"), "{message}");
    }
    assert_eq!(db.count("clients").await, 4);
    // The store itself still writes (on SQLite an in-use connection must not stay query-only).
    db.store
        .upsert_deals(&[deal("1", Some(at(0)))])
        .await
        .unwrap();
}

async fn a_value_set_by_someone_else_is_kept_unless_overwriting(db: &Db) {
    let links = db.store.links();
    db.store
        .upsert_deals(&[deal("1", Some(at(0)))])
        .await
        .unwrap();
    // Another service sets the client itself.
    let theirs = uuid("9");
    db.exec(&format!(
        "UPDATE amocrm_deals SET client_id = '{theirs}' WHERE amocrm_deal_id = '1'"
    ))
    .await;
    let outcome = links
        .apply_link(
            "1",
            LinkColumn::Client,
            Some(uuid("a")),
            Some("52110077"),
            false,
        )
        .await
        .unwrap();
    assert_eq!(outcome, LinkOutcome::KeptOther);
    let state = links.deal_links("1").await.unwrap().unwrap();
    assert_eq!(state.client_id, Some(theirs));
    assert!(state.set_by_someone_else(LinkColumn::Client));
    // Nothing found never removes it either.
    let outcome = links
        .apply_link("1", LinkColumn::Client, None, Some("52110077"), true)
        .await
        .unwrap();
    assert_eq!(outcome, LinkOutcome::Unchanged);
    assert_eq!(
        db.store.get_deal("1").await.unwrap().unwrap().client_id,
        Some(theirs)
    );
    // JARVIS_LINK_OVERWRITE=true.
    let outcome = links
        .apply_link(
            "1",
            LinkColumn::Client,
            Some(uuid("a")),
            Some("52110077"),
            true,
        )
        .await
        .unwrap();
    assert_eq!(outcome, LinkOutcome::Linked);
    let deal = db.store.get_deal("1").await.unwrap().unwrap();
    assert_eq!(deal.client_id, Some(uuid("a")));
    assert_eq!(
        links
            .apply_link("404", LinkColumn::Client, Some(uuid("a")), None, false)
            .await
            .unwrap(),
        LinkOutcome::NoDeal
    );
}

async fn the_linkers_own_value_follows_the_query(db: &Db) {
    let links = db.store.links();
    db.store
        .upsert_deals(&[deal("1", Some(at(0)))])
        .await
        .unwrap();
    for column in [LinkColumn::Client, LinkColumn::Conversation] {
        let outcome = links
            .apply_link("1", column, Some(uuid("a")), Some("first"), false)
            .await
            .unwrap();
        assert_eq!(outcome, LinkOutcome::Linked);
        let state = links.deal_links("1").await.unwrap().unwrap();
        assert_eq!(state.value(column), Some(uuid("a")));
        assert_eq!(state.ours(column), Some(uuid("a")));
        assert_eq!(state.linked_for(column), Some("first"));
        assert!(!state.set_by_someone_else(column));
        // Computed again for another main contact or talk: the linker's own value is replaced...
        let outcome = links
            .apply_link("1", column, Some(uuid("b")), Some("second"), false)
            .await
            .unwrap();
        assert_eq!(outcome, LinkOutcome::Linked);
        // ... or removed when nothing matches any more.
        let outcome = links
            .apply_link("1", column, None, Some("third"), false)
            .await
            .unwrap();
        assert_eq!(outcome, LinkOutcome::Cleared);
        let state = links.deal_links("1").await.unwrap().unwrap();
        assert_eq!((state.value(column), state.ours(column)), (None, None));
        assert_eq!(state.linked_for(column), Some("third"));
    }
    // The mirror's own upserts leave the links alone.
    links
        .apply_link("1", LinkColumn::Client, Some(uuid("c")), None, false)
        .await
        .unwrap();
    db.store
        .upsert_deals(&[DealUpsert {
            name: Known::Value("renamed".into()),
            ..deal("1", Some(at(10)))
        }])
        .await
        .unwrap();
    assert_eq!(
        db.store.get_deal("1").await.unwrap().unwrap().client_id,
        Some(uuid("c"))
    );
}

async fn deals_to_link_are_listed_in_pages(db: &Db) {
    let links = db.store.links();
    let deals: Vec<DealUpsert> = (1..=5)
        .map(|i| DealUpsert {
            main_contact_id: Known::Value(format!("c{i}")),
            metadata: common::map(json!({"rentprog_id": format!("RP-{i}")})),
            ..deal(&format!("d{i}"), Some(at(i * 100)))
        })
        .collect();
    db.store.upsert_deals(&deals).await.unwrap();
    db.store.mark_deal_deleted("d5", true).await.unwrap();
    // d1: linked, for its main contact. d2: linked by someone else.
    links
        .apply_link("d1", LinkColumn::Client, Some(uuid("a")), Some("c1"), false)
        .await
        .unwrap();
    db.exec("UPDATE amocrm_deals SET client_id = '00000000-0000-0000-0000-000000000009' WHERE amocrm_deal_id = 'd2'")
        .await;
    let scan = |after: Option<&str>, limit| LinkScan {
        client: true,
        after: after.map(str::to_owned),
        limit,
        ..LinkScan::default()
    };
    let ids = |deals: Vec<jarvis_store::DealLinks>| {
        deals
            .into_iter()
            .map(|d| d.amocrm_deal_id)
            .collect::<Vec<_>>()
    };
    // d2's main contact was never linked for: listed (the caller decides whether to overwrite).
    let first = links.deals_to_link(&scan(None, 2)).await.unwrap();
    assert_eq!(first[0].metadata["rentprog_id"], "RP-2");
    assert_eq!(ids(first), ["d2", "d3"]);
    let second = links.deals_to_link(&scan(Some("d3"), 2)).await.unwrap();
    assert_eq!(ids(second), ["d4"], "deleted deals are left out");
    // d1's main contact changes: its link is due again.
    db.store
        .upsert_deals(&[DealUpsert {
            main_contact_id: Known::Value("c9".into()),
            ..deal("d1", Some(at(1000)))
        }])
        .await
        .unwrap();
    assert_eq!(
        ids(links.deals_to_link(&scan(None, 10)).await.unwrap()),
        ["d1", "d2", "d3", "d4"]
    );
    // --since: changed in amoCRM at or after.
    let since = LinkScan {
        since: Some(at(300)),
        ..scan(None, 10)
    };
    assert_eq!(
        ids(links.deals_to_link(&since).await.unwrap()),
        ["d1", "d3", "d4"]
    );
    // Conversations: every deal without one.
    let conversations = LinkScan {
        conversation: true,
        limit: 10,
        ..LinkScan::default()
    };
    assert_eq!(
        ids(links.deals_to_link(&conversations).await.unwrap()),
        ["d1", "d2", "d3", "d4"]
    );
    // Failed attempts, for the retry pass.
    links.set_link_failed("d3", true).await.unwrap();
    let failed = |before| LinkScan {
        failed_before: Some(before),
        limit: 10,
        ..LinkScan::default()
    };
    let later = chrono::Utc::now() + chrono::Duration::seconds(5);
    let earlier = chrono::Utc::now() - chrono::Duration::seconds(60);
    assert_eq!(
        ids(links.deals_to_link(&failed(later)).await.unwrap()),
        ["d3"]
    );
    assert!(
        links
            .deals_to_link(&failed(earlier))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        links
            .deal_links("d3")
            .await
            .unwrap()
            .unwrap()
            .link_failed_at
            .is_some()
    );
    links.set_link_failed("d3", false).await.unwrap();
    assert!(
        links
            .deals_to_link(&failed(later))
            .await
            .unwrap()
            .is_empty()
    );
    // By main contact, for contact changes.
    assert_eq!(
        ids(links.deal_links_by_main_contact("c9").await.unwrap()),
        ["d1"]
    );
}

/// An in-memory database has no second connection to open: the pragma is switched on around the
/// query, and the connection must come back able to write.
#[tokio::test]
async fn in_memory_sqlite_runs_queries_read_only_and_keeps_writing() {
    let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
    store.migrate().await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE clients (id text PRIMARY KEY, phone text, email text);
        INSERT INTO clients VALUES ('00000000-0000-0000-0000-00000000000a', '+79123456789', NULL);",
    )
    .execute(store.pool())
    .await
    .unwrap();
    let links = store.links();
    let binds = client_binds(&["+79123456789"], &[]);
    let (failure, _) = failure_of(
        links
            .run_link_query("DELETE FROM clients RETURNING id", &binds, TIMEOUT)
            .await,
    );
    assert_eq!(failure, LinkFailure::Query);
    let found = links
        .run_link_query(SQLITE_CLIENT_SQL, &binds, TIMEOUT)
        .await
        .unwrap();
    assert_eq!(found, Some(uuid("a")));
    store.upsert_deals(&[deal("1", Some(at(0)))]).await.unwrap();
    links
        .apply_link("1", LinkColumn::Client, found, None, false)
        .await
        .unwrap();
    assert_eq!(
        store.get_deal("1").await.unwrap().unwrap().client_id,
        Some(uuid("a"))
    );
}
