//! Pool settings shared by both backends.

use std::time::Duration;

/// How a store's connection pool behaves.
///
/// ```
/// use std::time::Duration;
/// let settings = jarvis_store::PoolSettings::default()
///     .max_connections(32)
///     .acquire_timeout(Duration::from_secs(2));
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
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

impl PoolSettings {
    pub fn max_connections(mut self, max_connections: u32) -> Self {
        self.max_connections = max_connections.max(1);
        self
    }

    pub fn acquire_timeout(mut self, acquire_timeout: Duration) -> Self {
        self.acquire_timeout = acquire_timeout;
        self
    }
}
