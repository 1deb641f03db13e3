//! Settings from environment variables and an optional TOML file.
//!
//! Every setting has one environment variable (the README lists them in a table); the TOML file uses the
//! same names in lower case (`database_url = "..."`). The environment wins over the file.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

/// Default SQLite file used when `DATABASE_URL` is unset.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://jarvis.db";
/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:3000";

/// A secret string whose `Debug` and `Display` print nothing of it.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Where a metadata key's value comes from: a lead custom field, by id or by code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldRef {
    Id(u64),
    Code(String),
}

/// One `key=field` entry of `JARVIS_METADATA_FIELDS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataField {
    pub key: String,
    pub field: FieldRef,
}

/// Parses `rentprog_id=771001,source=UTM_SOURCE` into metadata mappings.
pub fn parse_metadata_fields(spec: &str) -> anyhow::Result<Vec<MetadataField>> {
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((key, field)) = part.split_once('=') else {
            bail!("JARVIS_METADATA_FIELDS entry `{part}` is not of the form key=field_id_or_code");
        };
        let (key, field) = (key.trim(), field.trim());
        if key.is_empty() || field.is_empty() {
            bail!("JARVIS_METADATA_FIELDS entry `{part}` has an empty key or field");
        }
        let field = match field.parse::<u64>() {
            Ok(id) => FieldRef::Id(id),
            Err(_) => FieldRef::Code(field.to_string()),
        };
        out.push(MetadataField {
            key: key.to_string(),
            field,
        });
    }
    Ok(out)
}

/// The raw, optional form of every setting, as read from the file and the environment.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    database_url: Option<String>,
    jarvis_listen: Option<String>,
    amocrm_webhook_secret: Option<String>,
    amocrm_subdomain: Option<String>,
    amocrm_domain: Option<String>,
    amocrm_base_url: Option<String>,
    amocrm_account_id: Option<String>,
    amocrm_long_lived_token: Option<String>,
    amocrm_client_id: Option<String>,
    amocrm_client_secret: Option<String>,
    amocrm_redirect_uri: Option<String>,
    amocrm_rate_per_second: Option<String>,
    amocrm_rate_per_minute: Option<String>,
    amocrm_rate_per_hour: Option<String>,
    amocrm_max_retries: Option<String>,
    jarvis_api_token: Option<String>,
    jarvis_metadata_fields: Option<String>,
    jarvis_public_url: Option<String>,
    jarvis_webhook_settings: Option<String>,
    jarvis_batch_window_ms: Option<String>,
    jarvis_claim_batch: Option<String>,
    jarvis_lease_secs: Option<String>,
    jarvis_max_attempts: Option<String>,
    jarvis_max_body_bytes: Option<String>,
    jarvis_log_format: Option<String>,
    jarvis_startup_wait_secs: Option<String>,
}

/// The names of every setting, as environment variables (upper case) and TOML keys (lower case).
pub const SETTING_NAMES: &[&str] = &[
    "DATABASE_URL",
    "JARVIS_LISTEN",
    "AMOCRM_WEBHOOK_SECRET",
    "AMOCRM_SUBDOMAIN",
    "AMOCRM_DOMAIN",
    "AMOCRM_BASE_URL",
    "AMOCRM_ACCOUNT_ID",
    "AMOCRM_LONG_LIVED_TOKEN",
    "AMOCRM_CLIENT_ID",
    "AMOCRM_CLIENT_SECRET",
    "AMOCRM_REDIRECT_URI",
    "AMOCRM_RATE_PER_SECOND",
    "AMOCRM_RATE_PER_MINUTE",
    "AMOCRM_RATE_PER_HOUR",
    "AMOCRM_MAX_RETRIES",
    "JARVIS_API_TOKEN",
    "JARVIS_METADATA_FIELDS",
    "JARVIS_PUBLIC_URL",
    "JARVIS_WEBHOOK_SETTINGS",
    "JARVIS_BATCH_WINDOW_MS",
    "JARVIS_CLAIM_BATCH",
    "JARVIS_LEASE_SECS",
    "JARVIS_MAX_ATTEMPTS",
    "JARVIS_MAX_BODY_BYTES",
    "JARVIS_LOG_FORMAT",
    "JARVIS_STARTUP_WAIT_SECS",
];

/// Webhook settings subscribed by `webhooks register` unless `JARVIS_WEBHOOK_SETTINGS` says otherwise.
pub const DEFAULT_WEBHOOK_SETTINGS: &[&str] = &[
    "add_lead",
    "update_lead",
    "delete_lead",
    "restore_lead",
    "status_lead",
    "responsible_lead",
    "note_lead",
    "add_contact",
    "update_contact",
    "delete_contact",
    "restore_contact",
    "add_company",
    "update_company",
    "delete_company",
    "add_unsorted",
    "delete_unsorted",
    "add_talk",
    "update_talk",
    "add_message",
];

/// How amoCRM is reached, when it is.
#[derive(Debug, Clone)]
pub enum AmoAuth {
    /// A private integration's long-lived token.
    LongLived(Secret),
    /// OAuth2 with tokens kept in the database.
    OAuth {
        client_id: String,
        client_secret: Secret,
        redirect_uri: String,
    },
}

/// amoCRM account and API settings.
#[derive(Debug, Clone)]
pub struct AmoSettings {
    pub subdomain: Option<String>,
    pub domain: String,
    pub base_url: Option<String>,
    /// `None`: webhook-only mode (no API calls).
    pub auth: Option<AmoAuth>,
    /// The OAuth client, when configured (also without tokens yet, for `auth url` / `auth exchange`).
    pub oauth_client: Option<(String, Secret, String)>,
    pub rate_per_second: u32,
    pub rate_per_minute: Option<u32>,
    pub rate_per_hour: Option<u32>,
    pub max_retries: u32,
}

impl AmoSettings {
    /// The key under which this account's OAuth tokens are stored.
    pub fn account_key(&self) -> String {
        self.subdomain
            .clone()
            .or_else(|| self.base_url.clone())
            .unwrap_or_else(|| "default".to_string())
    }
}

/// Worker tuning.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub batch_window: Duration,
    pub claim_batch: usize,
    pub lease: Duration,
    pub max_attempts: u32,
}

/// Every setting, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub database_url: String,
    pub listen: SocketAddr,
    pub webhook_secret: Option<Secret>,
    pub account_id: Option<u64>,
    pub amocrm: AmoSettings,
    pub api_token: Option<Secret>,
    pub metadata_fields: Vec<MetadataField>,
    pub public_url: Option<String>,
    pub webhook_settings: Vec<String>,
    pub worker: WorkerSettings,
    pub max_body_bytes: usize,
    pub log_json: bool,
    /// How long `serve` waits for an unreachable database at start.
    pub startup_wait: Duration,
}

impl Settings {
    /// Reads the optional TOML file, then the environment on top of it.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let env: BTreeMap<String, String> = std::env::vars().collect();
        let file_text = match file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading configuration file {}", path.display()))?,
            ),
            None => None,
        };
        Self::from_sources(file_text.as_deref(), &env)
    }

    /// Builds settings from a TOML text and an environment map (testable without touching the process).
    pub fn from_sources(
        file: Option<&str>,
        env: &BTreeMap<String, String>,
    ) -> anyhow::Result<Self> {
        let mut raw: RawSettings = match file {
            Some(text) => toml::from_str(text).context("parsing the configuration file")?,
            None => RawSettings::default(),
        };
        let get = |name: &str| env.get(name).filter(|v| !v.trim().is_empty()).cloned();
        macro_rules! overlay {
            ($($field:ident),*) => {
                $( if let Some(v) = get(&stringify!($field).to_ascii_uppercase()) { raw.$field = Some(v); } )*
            };
        }
        overlay!(
            database_url,
            jarvis_listen,
            amocrm_webhook_secret,
            amocrm_subdomain,
            amocrm_domain,
            amocrm_base_url,
            amocrm_account_id,
            amocrm_long_lived_token,
            amocrm_client_id,
            amocrm_client_secret,
            amocrm_redirect_uri,
            amocrm_rate_per_second,
            amocrm_rate_per_minute,
            amocrm_rate_per_hour,
            amocrm_max_retries,
            jarvis_api_token,
            jarvis_metadata_fields,
            jarvis_public_url,
            jarvis_webhook_settings,
            jarvis_batch_window_ms,
            jarvis_claim_batch,
            jarvis_lease_secs,
            jarvis_max_attempts,
            jarvis_max_body_bytes,
            jarvis_log_format,
            jarvis_startup_wait_secs
        );
        raw.into_settings()
    }
}

fn parse_num<T: std::str::FromStr>(
    name: &str,
    value: Option<String>,
    default: T,
) -> anyhow::Result<T> {
    match value {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("{name} must be a number, got `{v}`")),
    }
}

fn parse_opt_num<T: std::str::FromStr>(
    name: &str,
    value: Option<String>,
) -> anyhow::Result<Option<T>> {
    match value {
        None => Ok(None),
        Some(v) if v.trim() == "0" || v.trim().eq_ignore_ascii_case("none") => Ok(None),
        Some(v) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| anyhow::anyhow!("{name} must be a number, got `{v}`")),
    }
}

impl RawSettings {
    fn into_settings(self) -> anyhow::Result<Settings> {
        let listen_text = self
            .jarvis_listen
            .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        let listen: SocketAddr = listen_text
            .parse()
            .map_err(|_| anyhow::anyhow!("JARVIS_LISTEN must be host:port, got `{listen_text}`"))?;

        let oauth_client = match (
            &self.amocrm_client_id,
            &self.amocrm_client_secret,
            &self.amocrm_redirect_uri,
        ) {
            (Some(id), Some(secret), Some(uri)) => {
                Some((id.clone(), Secret::new(secret.clone()), uri.clone()))
            }
            (None, None, None) => None,
            _ => bail!(
                "OAuth needs all of AMOCRM_CLIENT_ID, AMOCRM_CLIENT_SECRET and AMOCRM_REDIRECT_URI"
            ),
        };
        let auth = match (&self.amocrm_long_lived_token, &oauth_client) {
            (Some(token), _) => Some(AmoAuth::LongLived(Secret::new(token.clone()))),
            (None, Some((id, secret, uri))) => Some(AmoAuth::OAuth {
                client_id: id.clone(),
                client_secret: secret.clone(),
                redirect_uri: uri.clone(),
            }),
            (None, None) => None,
        };
        if auth.is_some() && self.amocrm_subdomain.is_none() && self.amocrm_base_url.is_none() {
            bail!("amoCRM credentials are set but neither AMOCRM_SUBDOMAIN nor AMOCRM_BASE_URL is");
        }
        let rate_per_second: u32 =
            parse_num("AMOCRM_RATE_PER_SECOND", self.amocrm_rate_per_second, 7)?;
        if rate_per_second == 0 {
            bail!("AMOCRM_RATE_PER_SECOND must be at least 1");
        }
        let metadata_fields = match &self.jarvis_metadata_fields {
            Some(spec) => parse_metadata_fields(spec)?,
            None => Vec::new(),
        };
        let webhook_settings = match &self.jarvis_webhook_settings {
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
            None => DEFAULT_WEBHOOK_SETTINGS
                .iter()
                .map(|s| s.to_string())
                .collect(),
        };
        let log_json = match self.jarvis_log_format.as_deref().map(str::trim) {
            None | Some("text") | Some("pretty") => false,
            Some("json") => true,
            Some(other) => bail!("JARVIS_LOG_FORMAT must be `text` or `json`, got `{other}`"),
        };
        let max_attempts: u32 = parse_num("JARVIS_MAX_ATTEMPTS", self.jarvis_max_attempts, 10)?;
        let claim_batch: usize = parse_num("JARVIS_CLAIM_BATCH", self.jarvis_claim_batch, 1000)?;
        Ok(Settings {
            database_url: self
                .database_url
                .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_string()),
            listen,
            webhook_secret: self.amocrm_webhook_secret.map(Secret::new),
            account_id: parse_opt_num("AMOCRM_ACCOUNT_ID", self.amocrm_account_id)?,
            amocrm: AmoSettings {
                subdomain: self.amocrm_subdomain,
                domain: self
                    .amocrm_domain
                    .unwrap_or_else(|| "amocrm.ru".to_string()),
                base_url: self.amocrm_base_url,
                auth,
                oauth_client,
                rate_per_second,
                rate_per_minute: parse_opt_num(
                    "AMOCRM_RATE_PER_MINUTE",
                    self.amocrm_rate_per_minute,
                )?,
                rate_per_hour: parse_opt_num("AMOCRM_RATE_PER_HOUR", self.amocrm_rate_per_hour)?,
                max_retries: parse_num("AMOCRM_MAX_RETRIES", self.amocrm_max_retries, 3)?,
            },
            api_token: self.jarvis_api_token.map(Secret::new),
            metadata_fields,
            public_url: self.jarvis_public_url,
            webhook_settings,
            worker: WorkerSettings {
                batch_window: Duration::from_millis(parse_num(
                    "JARVIS_BATCH_WINDOW_MS",
                    self.jarvis_batch_window_ms,
                    300,
                )?),
                claim_batch: claim_batch.max(1),
                lease: Duration::from_secs(parse_num(
                    "JARVIS_LEASE_SECS",
                    self.jarvis_lease_secs,
                    60,
                )?),
                max_attempts: max_attempts.max(1),
            },
            max_body_bytes: parse_num(
                "JARVIS_MAX_BODY_BYTES",
                self.jarvis_max_body_bytes,
                1024 * 1024,
            )?,
            log_json,
            startup_wait: Duration::from_secs(parse_num(
                "JARVIS_STARTUP_WAIT_SECS",
                self.jarvis_startup_wait_secs,
                30,
            )?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_need_nothing() {
        let s = Settings::from_sources(None, &env(&[])).unwrap();
        assert_eq!(s.database_url, DEFAULT_DATABASE_URL);
        assert_eq!(s.listen.to_string(), DEFAULT_LISTEN);
        assert!(
            s.amocrm.auth.is_none(),
            "no credentials means webhook-only mode"
        );
        assert_eq!(s.worker.batch_window, Duration::from_millis(300));
        assert_eq!(s.amocrm.rate_per_second, 7);
    }

    #[test]
    fn environment_overrides_file() {
        let file = "database_url = \"sqlite://from-file.db\"\njarvis_listen = \"0.0.0.0:8080\"\n";
        let s = Settings::from_sources(Some(file), &env(&[("JARVIS_LISTEN", "127.0.0.1:9999")]))
            .unwrap();
        assert_eq!(s.database_url, "sqlite://from-file.db");
        assert_eq!(s.listen.to_string(), "127.0.0.1:9999");
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let err = Settings::from_sources(Some("databse_url = \"x\""), &env(&[])).unwrap_err();
        assert!(format!("{err:#}").contains("databse_url"), "{err:#}");
    }

    #[test]
    fn long_lived_token_enables_api_mode_and_is_redacted() {
        let s = Settings::from_sources(
            None,
            &env(&[
                ("AMOCRM_SUBDOMAIN", "geodrive"),
                ("AMOCRM_LONG_LIVED_TOKEN", "tok-123"),
            ]),
        )
        .unwrap();
        assert!(matches!(s.amocrm.auth, Some(AmoAuth::LongLived(_))));
        assert!(!format!("{s:?}").contains("tok-123"));
    }

    #[test]
    fn partial_oauth_is_an_error() {
        let err = Settings::from_sources(None, &env(&[("AMOCRM_CLIENT_ID", "x")])).unwrap_err();
        assert!(err.to_string().contains("AMOCRM_CLIENT_SECRET"));
    }

    #[test]
    fn readme_documents_every_setting() {
        let readme = include_str!("../../README.md");
        for name in SETTING_NAMES {
            assert!(
                readme.contains(&format!("| `{name}` |")),
                "{name} is missing from the README's table"
            );
        }
    }

    #[test]
    fn metadata_fields_by_id_and_code() {
        let m = parse_metadata_fields("rentprog_id=771001, source = UTM_SOURCE").unwrap();
        assert_eq!(
            m[0],
            MetadataField {
                key: "rentprog_id".into(),
                field: FieldRef::Id(771001)
            }
        );
        assert_eq!(
            m[1],
            MetadataField {
                key: "source".into(),
                field: FieldRef::Code("UTM_SOURCE".into())
            }
        );
        assert!(parse_metadata_fields("oops").is_err());
    }
}
