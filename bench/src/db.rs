//! Fresh databases for one measurement, and reading back what the service stored.

use anyhow::Context;
use clap::ValueEnum;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Postgres => "PostgreSQL",
            Backend::Sqlite => "SQLite",
        }
    }
}

/// A database URL for a new schema or file; the `TempDir` (SQLite) must outlive its use.
pub async fn fresh(backend: Backend) -> anyhow::Result<(String, Option<tempfile::TempDir>)> {
    match backend {
        Backend::Postgres => {
            let url = jarvis_store::testing::fresh_postgres_url()
                .await
                .context("PostgreSQL unreachable (JARVIS_TEST_DATABASE_URL)")?;
            Ok((url, None))
        }
        Backend::Sqlite => {
            let (url, dir) = jarvis_store::testing::fresh_sqlite_url();
            Ok((url, Some(dir)))
        }
    }
}

/// Rows in the events table.
pub async fn count_events(url: &str) -> anyhow::Result<u64> {
    let sql = "SELECT count(*) FROM amocrm_webhook_events";
    let n: i64 = if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await?;
        let n = sqlx::query_scalar(sql).fetch_one(&pool).await?;
        pool.close().await;
        n
    } else {
        let pool = sqlx::PgPool::connect(url).await?;
        let n = sqlx::query_scalar(sql).fetch_one(&pool).await?;
        pool.close().await;
        n
    };
    Ok(n as u64)
}

/// `SHOW server_version` of the test server, for the report header.
pub async fn postgres_version() -> Option<String> {
    let url = jarvis_store::testing::test_database_url();
    let pool = sqlx::PgPool::connect(&url).await.ok()?;
    let version: Option<String> = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&pool)
        .await
        .ok();
    pool.close().await;
    version
}

/// Transactions committed in the URL's database so far (`pg_stat_database`); `None` on SQLite. The
/// server counts a backend's commits when it reports its statistics, at the latest when it exits.
pub async fn commits(url: &str) -> anyhow::Result<Option<i64>> {
    if url.starts_with("sqlite:") {
        return Ok(None);
    }
    let pool = sqlx::PgPool::connect(url).await?;
    let n = sqlx::query_scalar(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(&pool)
    .await?;
    pool.close().await;
    Ok(Some(n))
}
