//! The store's one error type.
//!
//! No variant carries a connection URL: URLs hold passwords, and these texts end up in logs and in
//! HTTP answers.

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong in a store operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL names neither PostgreSQL nor SQLite.
    #[error("unsupported database URL: expected postgres://, postgresql:// or sqlite:")]
    UnsupportedUrl,

    /// The URL names a backend this build leaves out (the crate's `postgres` / `sqlite` features).
    #[error("this build has no {0} support: enable the jarvis-store feature `{0}`")]
    BackendNotBuilt(&'static str),

    /// The URL names a supported database but could not be understood.
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),

    /// The schema has not been created (or is older than this build expects); run `migrate`.
    #[error("database is not migrated: run the migrations first")]
    NotMigrated,

    /// The database refused or failed an operation, or could not be reached.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),

    /// Applying the embedded migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),

    /// PostgreSQL keeps `account_id` as `INT`; both backends refuse what does not fit.
    #[error("account id {0} is out of range for a 32-bit integer")]
    AccountIdOutOfRange(i64),

    /// [`Store::fail_event`](crate::Store::fail_event) named an event that does not exist.
    #[error("event {0} not found")]
    EventNotFound(i64),

    /// The TLS connection to the database could not be set up: a certificate that is refused (unknown
    /// issuer, wrong host name, expired), a CA file that cannot be used, or a server without TLS
    /// when the URL requires it. Settings, not an outage: retrying does not help.
    #[error(
        "TLS with the database failed: {0} (check sslmode= and sslrootcert= in DATABASE_URL: \
         verify-full needs the CA that signed the server's certificate and the host name it names)"
    )]
    Tls(String),

    /// Two statements on one connection ran in different database sessions: a connection pooler in
    /// transaction mode stands between the service and PostgreSQL.
    #[error(
        "the database connection goes through a pooler in transaction mode (two statements on one \
         connection ran in different sessions): the worker needs session locks; point DATABASE_URL \
         at the server directly (on Neon: the host without `-pooler`), or run only \
         `serve --http-only` through the pooler"
    )]
    TransactionPooler,

    /// A stored value could not be read back (for example malformed JSON written by another tool).
    #[error("cannot decode column `{column}`: {reason}")]
    Decode {
        /// The column read.
        column: &'static str,
        /// What was wrong with the value.
        reason: String,
    },

    /// An operator's link query (`JARVIS_LINK_CLIENT_SQL`, ...) failed; `message` is the database's.
    #[error("link query failed ({}): {message}", failure.as_str())]
    LinkQuery {
        /// What kind of failure it was.
        failure: crate::link::LinkFailure,
        /// The database's message.
        message: String,
    },
    /// The database did not answer within the bound set for the operation (see
    /// [`PoolSettings::ingest_timeout`](crate::PoolSettings)).
    #[error("the database did not answer in time")]
    TimedOut,
}

impl Error {
    /// The data itself cannot be stored (a value the database refuses, e.g. a NUL character in
    /// PostgreSQL text, or an account id out of range): retrying the same data will fail again.
    pub fn is_bad_data(&self) -> bool {
        match self {
            Error::AccountIdOutOfRange(_) => true,
            // SQLSTATE class 22: data exception.
            Error::Database(sqlx::Error::Database(db)) => {
                db.code().is_some_and(|code| code.starts_with("22"))
            }
            _ => false,
        }
    }

    /// True when the connection itself failed (or no answer came in time), as opposed to a statement
    /// the server refused: another statement on it would fail the same way.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn is_connection_lost(&self) -> bool {
        matches!(
            self,
            Error::TimedOut
                | Error::Database(
                    sqlx::Error::Io(_)
                        | sqlx::Error::PoolTimedOut
                        | sqlx::Error::PoolClosed
                        | sqlx::Error::WorkerCrashed
                )
        )
    }

    /// True when the database could not be reached or did not answer in time: worth answering 503 and
    /// retrying later, as opposed to a bug or bad data.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Error::Database(error) => {
                matches!(
                    error,
                    sqlx::Error::Io(_)
                        | sqlx::Error::PoolTimedOut
                        | sqlx::Error::PoolClosed
                        | sqlx::Error::WorkerCrashed
                ) || is_timeout(error)
            }
            Error::TimedOut => true,
            _ => false,
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Self {
        if is_undefined_table(&error) {
            return Error::NotMigrated;
        }
        if let Some(reason) = tls_failure(&error) {
            return Error::Tls(reason);
        }
        match error {
            // sqlx's configuration errors describe the bad part of the URL, never the URL itself.
            sqlx::Error::Configuration(reason) => Error::InvalidUrl(reason.to_string()),
            other => Error::Database(other),
        }
    }
}

/// Why TLS could not be set up, when that is what failed: sqlx's own TLS errors, and rustls's
/// verdict on the server's certificate, which reaches sqlx as an I/O error during the handshake.
fn tls_failure(error: &sqlx::Error) -> Option<String> {
    match error {
        sqlx::Error::Tls(reason) => Some(reason.to_string()),
        #[cfg(feature = "postgres")]
        sqlx::Error::Io(io) => match io.get_ref()?.downcast_ref::<rustls::Error>()? {
            refused @ (rustls::Error::InvalidCertificate(_)
            | rustls::Error::NoCertificatesPresented
            | rustls::Error::UnsupportedNameType
            | rustls::Error::PeerIncompatible(_)) => Some(refused.to_string()),
            _ => None,
        },
        _ => None,
    }
}

/// A missing table means the schema was never created: PostgreSQL's `undefined_table` (42P01), or
/// SQLite's "no such table".
fn is_undefined_table(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => {
            db.code().as_deref() == Some("42P01") || db.message().starts_with("no such table")
        }
        _ => false,
    }
}

/// PostgreSQL cancelled the statement (`statement_timeout`, 57014) or gave up waiting for a lock
/// (`lock_timeout`, 55P03), or SQLite's write lock stayed busy (5, 517): the database is slow or
/// busy, not the data wrong.
fn is_timeout(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => {
            matches!(db.code().as_deref(), Some("57014" | "55P03" | "5" | "517"))
        }
        _ => false,
    }
}

/// Checked conversion for the `account_id INT` column.
pub(crate) fn account_id_to_i32(account_id: Option<i64>) -> Result<Option<i32>> {
    account_id
        .map(|id| i32::try_from(id).map_err(|_| Error::AccountIdOutOfRange(id)))
        .transpose()
}
