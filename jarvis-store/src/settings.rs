//! Pool settings shared by both backends.

use std::time::Duration;

/// How a store's connection pool behaves.
///
/// ```
/// use std::time::Duration;
/// let settings = jarvis_store::PoolSettings::default()
///     .max_connections(32)
///     .acquire_timeout(Duration::from_secs(2))
///     .statement_timeout(Duration::from_secs(10))
///     .ingest_timeout(Duration::from_millis(1500));
/// assert_eq!(settings.max_connections, 32);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolSettings {
    /// Most connections open at once. PostgreSQL default 16. For SQLite this sizes the pool of readers;
    /// writes always go through one connection, SQLite having a single writer anyway.
    pub max_connections: u32,
    /// How long an operation waits for a connection before failing, so that an unreachable database
    /// turns into a quick error (and a 503) rather than a hang.
    pub acquire_timeout: Duration,
    /// The longest any one statement may run on PostgreSQL (`statement_timeout` and `lock_timeout`
    /// on every connection), the worker's included. SQLite waits at most 5 s for its write lock.
    pub statement_timeout: Duration,
    /// The bound on storing one webhook's events: the wait for the group commit's answer, the group's
    /// write, and the statement and lock timeouts of the event insert. A caller that must answer
    /// sooner puts its own, shorter, bound around the insert.
    pub ingest_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(30),
            ingest_timeout: Duration::from_secs(5),
        }
    }
}

impl PoolSettings {
    /// Sets [`PoolSettings::max_connections`] (at least 1).
    pub fn max_connections(mut self, max_connections: u32) -> Self {
        self.max_connections = max_connections.max(1);
        self
    }

    /// Sets [`PoolSettings::acquire_timeout`].
    pub fn acquire_timeout(mut self, acquire_timeout: Duration) -> Self {
        self.acquire_timeout = acquire_timeout;
        self
    }

    /// Sets [`PoolSettings::statement_timeout`] (at least 1 ms: PostgreSQL reads 0 as "none").
    pub fn statement_timeout(mut self, statement_timeout: Duration) -> Self {
        self.statement_timeout = statement_timeout.max(Duration::from_millis(1));
        self
    }

    /// Sets [`PoolSettings::ingest_timeout`] (at least 1 ms).
    pub fn ingest_timeout(mut self, ingest_timeout: Duration) -> Self {
        self.ingest_timeout = ingest_timeout.max(Duration::from_millis(1));
        self
    }
}
