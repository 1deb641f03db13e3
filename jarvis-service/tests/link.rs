//! The linker against real PostgreSQL and SQLite, with the business's `clients` and
//! `conversations` tables beside the mirror: phone forms that must and must not match, e-mails in
//! another case, several matches, failing queries and their retry, values set by another service,
//! talks and messages, and the backfill.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use jarvis_service::config::LinkSettings;
use jarvis_service::link::{ConversationInputs, Linker, Links};
use jarvis_store::{DealUpsert, DynStore, Known, PgStore, SqliteStore, Store, StoredEvent};
use serde_json::json;
use uuid::Uuid;

const CLIENT_A: &str = "00000000-0000-0000-0000-00000000000a";
const CLIENT_B: &str = "00000000-0000-0000-0000-00000000000b";
const CLIENT_C: &str = "00000000-0000-0000-0000-00000000000c";
const CLIENT_US: &str = "00000000-0000-0000-0000-0000000000d0";
const THEIRS: &str = "00000000-0000-0000-0000-000000000099";
const CONVERSATION: &str = "00000000-0000-0000-0000-0000000000c1";

struct Db {
    url: String,
    store: DynStore,
    postgres: Option<PgStore>,
    sqlite: Option<SqliteStore>,
    _dir: Option<tempfile::TempDir>,
}

impl Db {
    async fn postgres() -> Option<Db> {
        let url = jarvis_store::testing::fresh_postgres_url().await?;
        let store = PgStore::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        let db = Db {
            url,
            store: Arc::new(store.clone()),
            postgres: Some(store),
            sqlite: None,
            _dir: None,
        };
        db.with_business_tables().await;
        Some(db)
    }

    async fn sqlite() -> Db {
        let (url, dir) = jarvis_store::testing::fresh_sqlite_url();
        let store = SqliteStore::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        let db = Db {
            url,
            store: Arc::new(store.clone()),
            postgres: None,
            sqlite: Some(store),
            _dir: Some(dir),
        };
        db.with_business_tables().await;
        db
    }

    async fn exec(&self, sql: &str) {
        if let Some(pg) = &self.postgres {
            sqlx::raw_sql(sql).execute(pg.pool()).await.unwrap();
        } else if let Some(lite) = &self.sqlite {
            sqlx::raw_sql(sql).execute(lite.pool()).await.unwrap();
        }
    }

    /// The business's tables: `clients(id uuid, phone text, email text)` as in the README, and
    /// `conversations` keyed by amoCRM's talk id.
    async fn with_business_tables(&self) {
        let uuid = if self.postgres.is_some() {
            "uuid"
        } else {
            "text"
        };
        self.exec(&format!(
            "CREATE TABLE clients (id {uuid} PRIMARY KEY, phone text, email text);
            INSERT INTO clients VALUES
                ('{CLIENT_A}', '+79123456789', 'Ivan.Petrov@Example.RU'),
                ('{CLIENT_C}', '+79990001122', NULL),
                ('{CLIENT_B}', '+79990001122', NULL),
                ('{CLIENT_US}', '+19123456789', NULL);
            CREATE TABLE conversations (id {uuid} PRIMARY KEY, amocrm_talk_id text,
                amocrm_lead_id text);
            INSERT INTO conversations VALUES ('{CONVERSATION}', '8841', NULL);"
        ))
        .await;
    }

    /// The README's queries for this backend, exactly as written there.
    fn settings(&self) -> LinkSettings {
        let client = if self.postgres.is_some() {
            readme_sql("-- JARVIS_LINK_CLIENT_SQL (PostgreSQL)")
        } else {
            readme_sql("-- JARVIS_LINK_CLIENT_SQL (SQLite)")
        };
        LinkSettings {
            client_sql: Some(client),
            conversation_sql: Some(readme_sql(
                "-- JARVIS_LINK_CONVERSATION_SQL (PostgreSQL and SQLite)",
            )),
            overwrite: false,
            timeout: Duration::from_secs(2),
            rentprog_key: "rentprog_id".into(),
        }
    }

    fn linker(&self, settings: LinkSettings) -> Linker {
        Linker::new(self.store.clone(), settings).expect("queries are configured")
    }

    async fn client_of(&self, deal: &str) -> Option<String> {
        let deal = self.store.get_deal(deal).await.unwrap().unwrap();
        deal.client_id.map(|id| id.to_string())
    }
}

/// The SQL of the README's code block that starts with `marker`.
fn readme_sql(marker: &str) -> String {
    let readme = include_str!("../../README.md");
    let start = readme
        .find(marker)
        .unwrap_or_else(|| panic!("the README has no `{marker}` block"));
    let block = &readme[start..];
    let end = block.find("```").expect("the block is closed");
    block[..end].trim().to_owned()
}

/// A deal whose main contact has these phones and e-mails (API shape, as the worker stores it).
fn deal(id: &str, contact: &str, phones: &[&str], emails: &[&str]) -> DealUpsert {
    let values = |list: &[&str]| {
        list.iter()
            .map(|v| json!({"value": v, "enum_code": "WORK"}))
            .collect::<Vec<_>>()
    };
    DealUpsert {
        amocrm_deal_id: id.into(),
        main_contact_id: Known::Value(contact.into()),
        contact_custom_fields: Known::Value(json!([
            {"field_id": 640101, "field_code": "PHONE", "field_type": "multitext", "values": values(phones)},
            {"field_id": 640103, "field_code": "EMAIL", "field_type": "multitext", "values": values(emails)},
        ])),
        updated_at: Some(Utc::now()),
        ..DealUpsert::default()
    }
}

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
    phone_forms_match_and_others_do_not,
    several_matches_take_the_first_in_the_querys_order,
    a_failing_query_leaves_the_deal_unlinked_and_it_is_tried_again,
    a_value_set_by_another_service_is_kept_unless_overwriting,
    a_talk_links_the_conversation_and_a_contact_change_the_client,
    backfill_links_in_batches_and_can_run_again,
    the_backfill_command_prints_progress_and_can_run_again,
);

async fn phone_forms_match_and_others_do_not(db: &Db) {
    let deals = [
        deal("1", "c1", &["8 (912) 345-67-89"], &[]),
        deal("2", "c2", &["+7 912 345 67 89"], &[]),
        deal("3", "c3", &["+7(912)3456789", "not a phone"], &[]),
        // The same digits in another country are another number.
        deal("4", "c4", &["+1 912 345 6789"], &[]),
        // Short numbers are not phone numbers.
        deal("5", "c5", &["345-67-89", "112"], &[]),
        // The table keeps the address in mixed case.
        deal("6", "c6", &[], &["IVAN.PETROV@example.ru"]),
        deal("7", "c7", &["+7 900 000 00 00"], &["nobody@example.ru"]),
    ];
    db.store.upsert_deals(&deals).await.unwrap();
    let linker = db.linker(db.settings());
    let report = linker
        .backfill(None, 100, |_| {})
        .await
        .expect("backfill runs");
    assert_eq!(report.report.failed, 0);
    for (deal, expected) in [
        ("1", Some(CLIENT_A)),
        ("2", Some(CLIENT_A)),
        ("3", Some(CLIENT_A)),
        ("4", Some(CLIENT_US)),
        ("5", None),
        ("6", Some(CLIENT_A)),
        ("7", None),
    ] {
        assert_eq!(db.client_of(deal).await.as_deref(), expected, "deal {deal}");
    }
}

async fn several_matches_take_the_first_in_the_querys_order(db: &Db) {
    db.store
        .upsert_deals(&[deal("1", "c1", &["8 999 000-11-22"], &[])])
        .await
        .unwrap();
    let linker = db.linker(db.settings());
    let deal = db.store.links().deal_links("1").await.unwrap().unwrap();
    let report = linker.link_deal(&deal, Links::Client, None).await;
    assert_eq!(report.clients_linked, 1);
    // B and C share the phone; ORDER BY id picks B.
    assert_eq!(db.client_of("1").await.as_deref(), Some(CLIENT_B));
}

async fn a_failing_query_leaves_the_deal_unlinked_and_it_is_tried_again(db: &Db) {
    let metrics = jarvis_service::telemetry::metrics_handle();
    db.store
        .upsert_deals(&[deal("1", "c1", &["+7 912 345 67 89"], &[])])
        .await
        .unwrap();
    let broken = LinkSettings {
        client_sql: Some("SELECT id FROM clientz WHERE phone = $1".into()),
        ..db.settings()
    };
    let deal = db.store.links().deal_links("1").await.unwrap().unwrap();
    let report = db.linker(broken).link_deal(&deal, Links::Both, None).await;
    assert_eq!(report.failed, 1);
    assert_eq!(report.queries, 2, "the conversation query still ran");
    let state = db.store.links().deal_links("1").await.unwrap().unwrap();
    assert_eq!(state.client_id, None);
    assert!(state.link_failed_at.is_some(), "marked for another attempt");
    let rendered = metrics.render();
    assert!(
        rendered
            .lines()
            .any(|l| l.starts_with("jarvis_link_failures_total")
                && l.contains("link=\"client\"")
                && l.contains("kind=\"query\"")),
        "{rendered}"
    );

    // A talk's pass, which links only the conversation, leaves the client's failure marked.
    let talk = ConversationInputs {
        talk_id: Some("8841".into()),
        chat_id: None,
        contact_id: None,
        lead_id: "1".into(),
    };
    let state = db.store.links().deal_links("1").await.unwrap().unwrap();
    let report = db
        .linker(db.settings())
        .link_deal(&state, Links::Conversation, Some(&talk))
        .await;
    assert_eq!((report.conversations_linked, report.failed), (1, 0));
    let state = db.store.links().deal_links("1").await.unwrap().unwrap();
    assert!(state.link_failed_at.is_some());

    // The operator fixes the query. The worker's idle pass only takes failures a minute old, and
    // starts at most once a minute.
    let fixed = Arc::new(db.linker(db.settings()));
    let pass = fixed.retry_failed_if_due().expect("the first pass is due");
    assert_eq!(pass.await.unwrap().deals, 0, "the failure is too recent");
    assert!(
        fixed.retry_failed_if_due().is_none(),
        "not again within a minute"
    );
    // A pass over failures up to now links the deal and clears the mark.
    let report = fixed
        .retry_failed(Utc::now() + chrono::Duration::seconds(5))
        .await;
    assert_eq!((report.deals, report.clients_linked), (1, 1));
    let state = db.store.links().deal_links("1").await.unwrap().unwrap();
    assert_eq!(
        state.client_id.map(|id| id.to_string()).as_deref(),
        Some(CLIENT_A)
    );
    assert!(state.link_failed_at.is_none());
    assert_eq!(
        fixed
            .retry_failed(Utc::now() + chrono::Duration::seconds(5))
            .await
            .deals,
        0
    );
}

async fn a_value_set_by_another_service_is_kept_unless_overwriting(db: &Db) {
    db.store
        .upsert_deals(&[deal("1", "c1", &["+7 912 345 67 89"], &[])])
        .await
        .unwrap();
    db.exec(&format!(
        "UPDATE amocrm_deals SET client_id = '{THEIRS}' WHERE amocrm_deal_id = '1'"
    ))
    .await;
    // The main contact changes: the query would now find client A.
    db.store
        .upsert_deals(&[deal("1", "c2", &["+7 912 345 67 89"], &[])])
        .await
        .unwrap();
    let deal_now = db.store.links().deal_links("1").await.unwrap().unwrap();
    let report = db
        .linker(db.settings())
        .link_deal(&deal_now, Links::Both, None)
        .await;
    assert_eq!(report.clients_linked, 0);
    assert_eq!(db.client_of("1").await.as_deref(), Some(THEIRS));

    let overwrite = LinkSettings {
        overwrite: true,
        ..db.settings()
    };
    let report = db
        .linker(overwrite)
        .link_deal(&deal_now, Links::Both, None)
        .await;
    assert_eq!(report.clients_linked, 1);
    assert_eq!(db.client_of("1").await.as_deref(), Some(CLIENT_A));
}

/// A stored event as the worker claims it, from a webhook fixture.
fn stored_event(id: i64, fixture: &str) -> StoredEvent {
    let path = format!(
        "{}/../amocrm-webhook/tests/fixtures/{fixture}",
        env!("CARGO_MANIFEST_DIR")
    );
    let body = std::fs::read(path).unwrap();
    let event = amocrm_webhook::Parser::default()
        .parse(Some("application/x-www-form-urlencoded"), &body)
        .unwrap()
        .events
        .remove(0);
    let now = Utc::now();
    StoredEvent {
        id,
        received_at: now,
        event_type: event.event_type(),
        entity_type: event.section.clone(),
        amocrm_entity_id: event.entity_id().map(str::to_owned),
        event_hash: event.event_hash(),
        payload: jarvis_store::Payload::from_json(&event).unwrap(),
        account_id: event.account_id().map(|id| id.get() as i64),
        processed: true,
        attempts: 0,
        next_attempt_at: now,
        locked_until: None,
        last_error: None,
        processed_at: Some(now),
        dead_at: None,
    }
}

async fn a_talk_links_the_conversation_and_a_contact_change_the_client(db: &Db) {
    // The lead of the fixtures, its main contact without a known phone yet.
    db.store
        .upsert_deals(&[deal("31840021", "52110077", &[], &[])])
        .await
        .unwrap();
    let linker = db.linker(db.settings());
    let report = linker
        .after_batch(&[stored_event(1, "lead_status.form")])
        .await;
    assert_eq!((report.deals, report.clients_linked), (1, 0));
    let deal = db.store.get_deal("31840021").await.unwrap().unwrap();
    assert_eq!((deal.client_id, deal.conversation_id), (None, None));

    // The talk starts: the conversation query gets its talk id.
    let report = linker
        .after_batch(&[stored_event(2, "talk_add.form")])
        .await;
    assert_eq!(report.conversations_linked, 1);
    let conversation = db
        .store
        .get_deal("31840021")
        .await
        .unwrap()
        .unwrap()
        .conversation_id;
    assert_eq!(conversation, Some(Uuid::parse_str(CONVERSATION).unwrap()));
    // A message of the same talk changes nothing and runs no query.
    let report = linker
        .after_batch(&[stored_event(3, "message_add.form")])
        .await;
    assert_eq!((report.queries, report.conversations_linked), (0, 0));

    // The contact's phone arrives (its fields follow to the deal): the client is found.
    db.store
        .set_main_contact_fields(
            "52110077",
            Some(&json!([{"field_code": "PHONE", "values": [{"value": "+7 (912) 345-67-89"}]}])),
        )
        .await
        .unwrap();
    let report = linker
        .after_batch(&[stored_event(4, "contact_update.form")])
        .await;
    assert_eq!(report.clients_linked, 1);
    assert_eq!(db.client_of("31840021").await.as_deref(), Some(CLIENT_A));
}

async fn backfill_links_in_batches_and_can_run_again(db: &Db) {
    let deals: Vec<DealUpsert> = (1..=7)
        .map(|i| {
            let phone = if i % 2 == 1 {
                "8 912 345 67 89"
            } else {
                "+7 900 000 00 00"
            };
            deal(&format!("d{i}"), &format!("c{i}"), &[phone], &[])
        })
        .collect();
    db.store.upsert_deals(&deals).await.unwrap();
    db.store.mark_deal_deleted("d7", true).await.unwrap();
    let linker = db.linker(LinkSettings {
        conversation_sql: None,
        ..db.settings()
    });
    let mut batches = Vec::new();
    let progress = linker
        .backfill(None, 2, |p| {
            batches.push((p.batches, p.report.deals, p.last_deal.clone()))
        })
        .await
        .unwrap();
    assert_eq!(
        batches,
        [
            (1, 2, Some("d2".into())),
            (2, 4, Some("d4".into())),
            (3, 6, Some("d6".into())),
        ]
    );
    assert_eq!(progress.report.clients_linked, 3, "d1, d3, d5");
    assert_eq!(
        db.client_of("d7").await,
        None,
        "deleted deals are left alone"
    );

    // Again: the linked deals are not even looked at; the others are asked again (their client may
    // have been added since), and nothing changes.
    let again = linker.backfill(None, 2, |_| {}).await.unwrap();
    assert_eq!(again.report.deals, 3, "d2, d4, d6");
    assert_eq!(again.report.clients_linked, 0);
    for i in [1, 3, 5] {
        assert_eq!(
            db.client_of(&format!("d{i}")).await.as_deref(),
            Some(CLIENT_A)
        );
    }

    // --since: only deals changed in amoCRM since then.
    let future = Utc::now() + chrono::Duration::hours(1);
    let none = linker.backfill(Some(future), 2, |_| {}).await.unwrap();
    assert_eq!(none.report.deals, 0);
}

/// `jarvis link --backfill`, run as an operator runs it.
async fn the_backfill_command_prints_progress_and_can_run_again(db: &Db) {
    let deals: Vec<DealUpsert> = (1..=5)
        .map(|i| {
            let phone = if i <= 3 {
                "8 912 345 67 89"
            } else {
                "+7 900 000 00 00"
            };
            deal(&format!("d{i}"), &format!("c{i}"), &[phone], &[])
        })
        .collect();
    db.store.upsert_deals(&deals).await.unwrap();
    let settings = db.settings();
    let run = |args: &[&str], with_sql: bool| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_jarvis"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", &db.url)
            .args(args);
        if with_sql {
            cmd.env(
                "JARVIS_LINK_CLIENT_SQL",
                settings.client_sql.clone().unwrap(),
            );
        }
        let out = cmd.output().expect("jarvis runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (ok, stdout, stderr) = run(&["link", "--backfill", "--batch", "2"], true);
    assert!(ok, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("batch 1: 2 deals so far (up to d2)"),
        "{stdout}"
    );
    assert!(
        lines[2].starts_with("batch 3: 5 deals so far (up to d5)"),
        "{stdout}"
    );
    assert!(
        lines[3].starts_with("done: 5 deals checked") && lines[3].contains("clients linked 3"),
        "{stdout}"
    );
    for i in 1..=3 {
        assert_eq!(
            db.client_of(&format!("d{i}")).await.as_deref(),
            Some(CLIENT_A)
        );
    }
    assert_eq!(db.client_of("d4").await, None);

    let (ok, stdout, stderr) = run(&["link", "--backfill", "--since", "2000-01-01"], true);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("done: 2 deals checked") && stdout.contains("clients linked 0"),
        "{stdout}"
    );

    let (ok, _, stderr) = run(&["link", "--backfill"], false);
    assert!(!ok);
    assert!(stderr.contains("JARVIS_LINK_CLIENT_SQL"), "{stderr}");
    let (ok, _, stderr) = run(&["link", "--backfill", "--since", "last week"], true);
    assert!(!ok);
    assert!(stderr.contains("--since"), "{stderr}");
}
