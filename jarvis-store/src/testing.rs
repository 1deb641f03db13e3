//! Fresh databases for tests, of this crate and of crates that use it (feature `test-support`).
//!
//! Each PostgreSQL helper creates a new schema named `jarvis_test_<unix seconds>_<random>` in the
//! database of `JARVIS_TEST_DATABASE_URL` (default [`DEFAULT_TEST_DATABASE_URL`]) and points the
//! connections at it through `search_path`, so tests never see each other's rows. Schemas are left
//! behind, to be inspected after a failure; the first helper call of each process drops those older
//! than [`STALE_AFTER`], so a machine that runs the suites again and again does not pile them up.
//!
//! When PostgreSQL cannot be reached the helpers return `None` and say so on stderr, so a developer
//! without a server can still run the SQLite half of a suite; with `CI=true` they panic instead,
//! because CI must never skip silently.
//!
//! ```no_run
//! # async fn demo() {
//! use jarvis_store::{testing, Store};
//! if let Some(store) = testing::postgres_store().await {
//!     store.ping().await.unwrap();
//! }
//! let (store, _dir) = testing::sqlite_store().await;
//! store.ping().await.unwrap();
//! # }
//! ```

use std::str::FromStr;
use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

use crate::{PgStore, SqliteStore, Store};

/// The server and database used when `JARVIS_TEST_DATABASE_URL` is not set.
pub const DEFAULT_TEST_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Prefix of every schema the helpers create.
pub const SCHEMA_PREFIX: &str = "jarvis_test_";

/// Age after which a test schema is dropped by the next run: no test runs this long.
pub const STALE_AFTER: Duration = Duration::from_secs(6 * 3600);

/// The longest the once-per-process sweep of old schemas may take.
const SWEEP_LIMIT: Duration = Duration::from_secs(60);

/// The URL of the PostgreSQL database tests create their schemas in.
pub fn test_database_url() -> String {
    std::env::var("JARVIS_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_TEST_DATABASE_URL.into())
}

/// Creates a fresh, empty schema and returns its name; `None` (or a panic in CI) when PostgreSQL is
/// unreachable.
pub async fn fresh_postgres_schema() -> Option<String> {
    let url = test_database_url();
    let schema = format!(
        "{SCHEMA_PREFIX}{}_{:08x}",
        chrono::Utc::now().timestamp(),
        uuid::Uuid::new_v4().as_u128() as u32
    );
    let created = async {
        let options = PgConnectOptions::from_str(&url)?;
        let mut connection = PgConnection::connect_with(&options).await?;
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&mut connection)
            .await?;
        Ok::<_, sqlx::Error>(connection)
    };
    let mut connection = match tokio::time::timeout(Duration::from_secs(10), created).await {
        Ok(Ok(connection)) => connection,
        Ok(Err(error)) => return unreachable_postgres(&error.to_string()),
        Err(_) => return unreachable_postgres("timed out"),
    };
    // Best effort, once per process, on its own clock: a slow sweep never fails a test.
    static SWEPT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !SWEPT.swap(true, std::sync::atomic::Ordering::Relaxed) {
        let swept = tokio::time::timeout(SWEEP_LIMIT, drop_stale_schemas(&mut connection)).await;
        match swept {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("could not drop old test schemas: {error}"),
            Err(_) => eprintln!("dropping old test schemas took too long; the next run goes on"),
        }
    }
    let _ = connection.close().await;
    Some(schema)
}

/// Drops the test schemas created more than [`STALE_AFTER`] ago (by their name's timestamp).
async fn drop_stale_schemas(connection: &mut PgConnection) -> sqlx::Result<()> {
    let cutoff = chrono::Utc::now().timestamp() - STALE_AFTER.as_secs() as i64;
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT nspname::text FROM pg_namespace WHERE starts_with(nspname::text, $1)",
    )
    .bind(SCHEMA_PREFIX)
    .fetch_all(&mut *connection)
    .await?;
    for name in names {
        if schema_created_at(&name).is_some_and(|created| created < cutoff) {
            sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                .execute(&mut *connection)
                .await?;
        }
    }
    Ok(())
}

/// The Unix time in a name the helpers made (`jarvis_test_<seconds>_<hex>`); `None` for any other
/// name, which is never dropped.
fn schema_created_at(name: &str) -> Option<i64> {
    let (seconds, random) = name.strip_prefix(SCHEMA_PREFIX)?.split_once('_')?;
    let valid = !seconds.is_empty()
        && seconds.bytes().all(|b| b.is_ascii_digit())
        && random.len() == 8
        && random.bytes().all(|b| b.is_ascii_hexdigit());
    valid.then(|| seconds.parse().ok()).flatten()
}

/// `base_url` with `search_path` set to `schema` through the libpq `options` parameter, which
/// [`PgStore::connect`] (and psql) honour.
pub fn postgres_url_for_schema(base_url: &str, schema: &str) -> String {
    let separator = if base_url.contains('?') { '&' } else { '?' };
    format!("{base_url}{separator}options=-c%20search_path%3D{schema}")
}

/// A URL for a fresh, empty (unmigrated) schema: for code that takes a `DATABASE_URL`.
pub async fn fresh_postgres_url() -> Option<String> {
    let schema = fresh_postgres_schema().await?;
    Some(postgres_url_for_schema(&test_database_url(), &schema))
}

/// A migrated [`PgStore`] on a fresh schema.
pub async fn postgres_store() -> Option<PgStore> {
    let url = fresh_postgres_url().await?;
    let store = PgStore::connect(&url)
        .await
        .expect("connect to the fresh test schema");
    store
        .migrate()
        .await
        .expect("migrate the fresh test schema");
    Some(store)
}

/// A URL for a new SQLite file in a new temporary directory (removed when the `TempDir` drops).
pub fn fresh_sqlite_url() -> (String, tempfile::TempDir) {
    let dir = tempfile::Builder::new()
        .prefix("jarvis-test-")
        .tempdir()
        .expect("create a temporary directory");
    let url = format!("sqlite://{}", dir.path().join("jarvis.db").display());
    (url, dir)
}

/// A migrated [`SqliteStore`] on a new file; keep the `TempDir` alive as long as the store.
pub async fn sqlite_store() -> (SqliteStore, tempfile::TempDir) {
    let (url, dir) = fresh_sqlite_url();
    let store = SqliteStore::connect(&url)
        .await
        .expect("open the test SQLite file");
    store.migrate().await.expect("migrate the test SQLite file");
    (store, dir)
}

fn unreachable_postgres<T>(reason: &str) -> Option<T> {
    if std::env::var("CI").is_ok_and(|value| value == "true") {
        panic!("PostgreSQL for tests is unreachable (JARVIS_TEST_DATABASE_URL): {reason}");
    }
    eprintln!(
        "skipping: PostgreSQL for tests is unreachable ({reason}); set JARVIS_TEST_DATABASE_URL \
         or start a server at {DEFAULT_TEST_DATABASE_URL}"
    );
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_the_helpers_made_have_a_creation_time() {
        assert_eq!(
            schema_created_at("jarvis_test_1764072000_0a1b2c3d"),
            Some(1_764_072_000)
        );
        assert_eq!(schema_created_at("jarvis_test_1764072000"), None);
        assert_eq!(schema_created_at("jarvis_test_x_0a1b2c3d"), None);
        assert_eq!(
            schema_created_at("jarvis_test_1764072000_0a1b2c3d; DROP"),
            None
        );
        assert_eq!(schema_created_at("public"), None);
    }
}
