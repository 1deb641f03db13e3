//! Reading a PostgreSQL URL: the parameters the driver understands pass through, `channel_binding`
//! is honoured or refused, a CA file is checked before any connection, and anything else is dropped
//! with a warning that names the parameter only (its value may be a secret).

use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;

use crate::{Error, Result};

/// Query parameters sqlx reads from a PostgreSQL URL.
const UNDERSTOOD: &[&str] = &[
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
    "options",
];

/// Connection options from a `postgres://` URL. Errors never quote the URL (it may hold a password).
pub(crate) fn connect_options(url: &str) -> Result<PgConnectOptions> {
    let mut parsed = url::Url::parse(url)
        .map_err(|error| Error::InvalidUrl(format!("cannot parse the PostgreSQL URL: {error}")))?;
    let mut kept: Vec<(String, String)> = Vec::new();
    for (key, value) in parsed.query_pairs() {
        let key = key.into_owned();
        match key.as_str() {
            "channel_binding" => channel_binding(&value)?,
            "sslrootcert" | "ssl-root-cert" | "ssl-ca" => {
                readable_ca_file(&value)?;
                kept.push((key, value.into_owned()));
            }
            understood
                if UNDERSTOOD.contains(&understood) || understood.starts_with("options[") =>
            {
                kept.push((key, value.into_owned()))
            }
            _ => tracing::warn!(
                parameter = %key,
                "ignoring a DATABASE_URL parameter the PostgreSQL driver does not support"
            ),
        }
    }
    if kept.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(&kept);
    }
    PgConnectOptions::from_str(parsed.as_str()).map_err(|error| match error {
        sqlx::Error::Configuration(reason) => Error::InvalidUrl(reason.to_string()),
        _ => Error::InvalidUrl("cannot parse the PostgreSQL URL".into()),
    })
}

/// libpq's `channel_binding`: the driver cannot bind SCRAM authentication to the TLS channel, so
/// `require` is refused rather than silently weakened; `prefer` means "when possible", which here
/// is never, exactly as libpq without channel binding support behaves.
fn channel_binding(value: &str) -> Result<()> {
    match value {
        "disable" | "prefer" => Ok(()),
        "require" => Err(Error::InvalidUrl(
            "channel_binding=require is not supported: the PostgreSQL driver cannot bind \
             authentication to the TLS channel. Remove it (or use channel_binding=prefer) and \
             authenticate the server with sslmode=verify-full (and sslrootcert=<CA file> when its \
             CA is not a public one)"
                .into(),
        )),
        _ => Err(Error::InvalidUrl(
            "channel_binding must be disable, prefer or require".into(),
        )),
    }
}

/// A CA file named by the URL must be readable now: otherwise every connection attempt fails the
/// same way later, looking like an outage.
fn readable_ca_file(path: &str) -> Result<()> {
    match std::fs::read(path) {
        Ok(contents) if contents.is_empty() => Err(Error::InvalidUrl(format!(
            "sslrootcert file {path} is empty"
        ))),
        Ok(_) => Ok(()),
        Err(error) => Err(Error::InvalidUrl(format!(
            "sslrootcert file {path} cannot be read: {error}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use sqlx::postgres::PgSslMode;

    use super::*;

    #[test]
    fn channel_binding_require_is_refused_with_a_way_out() {
        let error = connect_options(
            "postgres://neondb_owner:npg_SeCrEt@ep-x.eu-central-1.aws.neon.tech/neondb?sslmode=require&channel_binding=require",
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("channel_binding=require"), "{error}");
        assert!(error.contains("sslmode=verify-full"), "{error}");
        assert!(!error.contains("npg_SeCrEt"), "{error}");
    }

    #[test]
    fn channel_binding_prefer_and_disable_are_accepted() {
        for value in ["prefer", "disable"] {
            let options = connect_options(&format!(
                "postgres://u:p@db.example.com/app?sslmode=require&channel_binding={value}"
            ))
            .unwrap();
            assert!(matches!(options.get_ssl_mode(), PgSslMode::Require));
        }
        assert!(connect_options("postgres://u@h/db?channel_binding=maybe").is_err());
    }

    #[test]
    fn verify_full_with_a_ca_file_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("root.crt");
        std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\n").unwrap();
        let options = connect_options(&format!(
            "postgres://u@db.example.com/app?sslmode=verify-full&sslrootcert={}",
            ca.display()
        ))
        .unwrap();
        assert!(matches!(options.get_ssl_mode(), PgSslMode::VerifyFull));
    }

    #[test]
    fn a_missing_ca_file_fails_at_once() {
        let error = connect_options(
            "postgres://u:hunter2@db.example.com/app?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("/nonexistent/ca.pem"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
    }

    #[test]
    fn unknown_parameters_are_dropped_and_the_rest_kept() {
        let options = connect_options(
            "postgres://u@h:5433/db?connect_timeout=10&application_name=jarvis&options=-c%20search_path%3Dx",
        )
        .unwrap();
        assert_eq!(options.get_port(), 5433);
        assert_eq!(options.get_application_name(), Some("jarvis"));
        assert_eq!(options.get_options(), Some("-c search_path=x"));
    }
}
