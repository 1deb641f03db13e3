//! Settings from environment variables and an optional TOML file.
//!
//! Every setting is one entry of [`SETTINGS`]: its environment variable, the kind of value, its default
//! and a line of help. The TOML file uses the same names in lower case (`database_url = "..."`), with
//! typed values (numbers, booleans, lists); the environment wins over the file. `--help` and
//! `jarvis config check` are generated from the same table, so adding a setting is one entry there
//! plus the line in [`Sources::settings`] that reads it into [`Settings`].

use std::collections::BTreeMap;
use std::fmt;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};

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

/// One `key=field` entry of `JARVIS_METADATA_FIELDS` (the mapping lives with the mirror's code).
pub use jarvis_store::mirror::{FieldRef, MetadataField};

/// Parses `rentprog_id=771001,source=UTM_SOURCE` into metadata mappings.
pub fn parse_metadata_fields(spec: &str) -> anyhow::Result<Vec<MetadataField>> {
    let mut out = Vec::new();
    // Errors name the entry by position: settings' values are never echoed.
    for (number, part) in spec
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .enumerate()
        .map(|(index, part)| (index + 1, part))
    {
        let Some((key, field)) = part.split_once('=') else {
            bail!("JARVIS_METADATA_FIELDS entry {number} is not of the form key=field_id_or_code");
        };
        let (key, field) = (key.trim(), field.trim());
        if key.is_empty() || field.is_empty() {
            bail!("JARVIS_METADATA_FIELDS entry {number} has an empty key or field");
        }
        let field = match field.parse::<u64>() {
            Ok(id) => FieldRef::Id(id.into()),
            Err(_) => FieldRef::Code(field.to_string()),
        };
        out.push(MetadataField {
            key: key.to_string(),
            field,
        });
    }
    Ok(out)
}

/// The kind of value a setting holds: how the TOML file may write it and how it is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A string.
    Text,
    /// A string never printed (`config check` masks it).
    Secret,
    /// A whole number (TOML integer; a quoted number is accepted too).
    Number,
    /// `true` / `false` (TOML boolean; `true`, `false`, `1`, `0`, `yes`, `no` as text).
    Bool,
    /// Comma-separated items (a TOML array of strings or numbers, or one comma-separated string).
    List,
}

/// One setting: its environment variable (the TOML key is the same in lower case), kind, default and
/// what it does.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    pub name: &'static str,
    pub kind: Kind,
    /// The value used when neither the environment nor the file sets it (`None`: unset).
    pub default: Option<&'static str>,
    pub help: &'static str,
}

impl Setting {
    /// The TOML key.
    pub fn key(&self) -> String {
        self.name.to_ascii_lowercase()
    }
}

const fn setting(
    name: &'static str,
    kind: Kind,
    default: Option<&'static str>,
    help: &'static str,
) -> Setting {
    Setting {
        name,
        kind,
        default,
        help,
    }
}

/// Every setting. Add new ones at the end; `--help`, `config check`, the TOML reader and the tests
/// (README table, `deploy/jarvis.example.toml`) all follow this table.
pub const SETTINGS: &[Setting] = &[
    setting(
        "DATABASE_URL",
        Kind::Text,
        Some(DEFAULT_DATABASE_URL),
        "postgres://... for PostgreSQL (on Neon the direct host, not -pooler), sqlite://path for the embedded store",
    ),
    setting(
        "JARVIS_LISTEN",
        Kind::Text,
        Some(DEFAULT_LISTEN),
        "HTTP listen address (host:port)",
    ),
    setting(
        "AMOCRM_WEBHOOK_SECRET",
        Kind::Secret,
        None,
        "Secret path segment of /amocrm/webhook/{secret}, at least 16 characters (required by serve)",
    ),
    setting(
        "AMOCRM_SUBDOMAIN",
        Kind::Text,
        None,
        "Account subdomain (geodrive for geodrive.amocrm.ru); also the key of stored OAuth tokens",
    ),
    setting(
        "AMOCRM_DOMAIN",
        Kind::Text,
        Some("amocrm.ru"),
        "amocrm.ru, amocrm.com or kommo.com",
    ),
    setting(
        "AMOCRM_BASE_URL",
        Kind::Text,
        None,
        "Full API base URL; overrides subdomain and domain (e.g. a test server)",
    ),
    setting(
        "AMOCRM_ACCOUNT_ID",
        Kind::Number,
        None,
        "When set, bodies from another account[id] are refused (400, kept)",
    ),
    setting(
        "AMOCRM_LONG_LIVED_TOKEN",
        Kind::Secret,
        None,
        "Long-lived token of a private integration (enables API mode)",
    ),
    setting(
        "AMOCRM_CLIENT_ID",
        Kind::Text,
        None,
        "OAuth2 integration id (with the secret and redirect URI, enables API mode)",
    ),
    setting("AMOCRM_CLIENT_SECRET", Kind::Secret, None, "OAuth2 secret"),
    setting(
        "AMOCRM_REDIRECT_URI",
        Kind::Text,
        None,
        "OAuth2 redirect URI, as registered in amoCRM",
    ),
    setting(
        "AMOCRM_RATE_PER_SECOND",
        Kind::Number,
        Some("7"),
        "Requests per second to amoCRM (shared by all requests of the account)",
    ),
    setting(
        "AMOCRM_RATE_PER_MINUTE",
        Kind::Number,
        None,
        "Optional per-minute budget (e.g. 250; 0 means none)",
    ),
    setting(
        "AMOCRM_RATE_PER_HOUR",
        Kind::Number,
        None,
        "Optional per-hour budget (e.g. 7000; 0 means none)",
    ),
    setting(
        "AMOCRM_MAX_RETRIES",
        Kind::Number,
        Some("3"),
        "Retries of one request on 429, 5xx and transport errors",
    ),
    setting(
        "JARVIS_API_TOKEN",
        Kind::Secret,
        None,
        "Bearer token of POST /amocrm/process-webhook and GET /status; unset disables both",
    ),
    setting(
        "JARVIS_METADATA_FIELDS",
        Kind::List,
        None,
        "key=field_id_or_code,... copied from lead custom fields into metadata (rentprog_id=771001)",
    ),
    setting(
        "JARVIS_PUBLIC_URL",
        Kind::Text,
        None,
        "Public base URL, used by webhooks register / remove",
    ),
    setting(
        "JARVIS_WEBHOOK_SETTINGS",
        Kind::List,
        Some(
            "add_lead,update_lead,delete_lead,restore_lead,status_lead,responsible_lead,note_lead,\
             add_contact,update_contact,delete_contact,restore_contact,add_company,update_company,\
             delete_company,add_unsorted,delete_unsorted,add_talk,update_talk,add_message",
        ),
        "Events subscribed by webhooks register",
    ),
    setting(
        "JARVIS_BATCH_WINDOW_MS",
        Kind::Number,
        Some("300"),
        "Least time between two worker batches while events keep coming; after an idle spell the worker claims at once (API mode: once arrivals pause, see JARVIS_BATCH_QUIET_MS) (milliseconds)",
    ),
    setting(
        "JARVIS_BATCH_QUIET_MS",
        Kind::Number,
        Some("10"),
        "API mode, after an idle spell: the worker claims once no event has arrived for this long and none is being stored (at most JARVIS_BATCH_WINDOW_MS after the first), so a burst is fetched together; 0 claims at the first event (milliseconds)",
    ),
    setting(
        "JARVIS_CLAIM_BATCH",
        Kind::Number,
        Some("1000"),
        "Most events one worker batch takes",
    ),
    setting(
        "JARVIS_LEASE_SECS",
        Kind::Number,
        Some("60"),
        "How long a claimed event stays with its worker before another may take it (seconds)",
    ),
    setting(
        "JARVIS_MAX_ATTEMPTS",
        Kind::Number,
        Some("10"),
        "Failed attempts (permanent errors) before an event is dead; 429s and outages only delay",
    ),
    setting(
        "JARVIS_MAX_BODY_BYTES",
        Kind::Number,
        Some("1048576"),
        "Largest webhook body accepted (larger: 413, first bytes kept)",
    ),
    setting(
        "JARVIS_LOG_FORMAT",
        Kind::Text,
        Some("text"),
        "text or json log lines; filter with RUST_LOG",
    ),
    setting(
        "JARVIS_STARTUP_WAIT_SECS",
        Kind::Number,
        Some("30"),
        "How long serve retries a database that is not reachable yet at start (seconds)",
    ),
    setting(
        "JARVIS_REJECTED_RETENTION_DAYS",
        Kind::Number,
        Some("30"),
        "Refused bodies older than this are deleted (days; the worker prunes every 10 minutes)",
    ),
    setting(
        "JARVIS_REJECTED_MAX_BYTES",
        Kind::Number,
        Some("268435456"),
        "Most bytes of refused bodies kept in all (256 MiB); the oldest go first",
    ),
    setting(
        "JARVIS_WEBHOOK_CHECK_SECS",
        Kind::Number,
        Some("600"),
        "How often (and at start) the webhook is checked in amoCRM (API mode, with JARVIS_PUBLIC_URL); \
         missing or disabled: subscribed again (seconds)",
    ),
    setting(
        "JARVIS_LINK_CLIENT_SQL",
        Kind::Text,
        None,
        "Query on your own tables giving a deal's client_id from $1 phones, $2 e-mails, $3 contact id, $4 lead id, $5 RentProg id; unset: no client links",
    ),
    setting(
        "JARVIS_LINK_CONVERSATION_SQL",
        Kind::Text,
        None,
        "Query on your own tables giving a deal's conversation_id from $1 talk id, $2 chat id, $3 contact id, $4 lead id; unset: no conversation links",
    ),
    setting(
        "JARVIS_LINK_OVERWRITE",
        Kind::Bool,
        Some("false"),
        "true: a link found replaces a client_id / conversation_id that another service set",
    ),
    setting(
        "JARVIS_LINK_TIMEOUT_MS",
        Kind::Number,
        Some("2000"),
        "Statement timeout of each link query (milliseconds)",
    ),
    setting(
        "JARVIS_LINK_RENTPROG_KEY",
        Kind::Text,
        Some("rentprog_id"),
        "The metadata key whose value is bound as the RentProg id ($5 of the client query)",
    ),
    setting(
        "JARVIS_ANSWER_DEADLINE_MS",
        Kind::Number,
        Some("1500"),
        "Every webhook is answered within this many ms: 200 once committed (or spooled), else 503; also the event insert's statement and lock timeout (amoCRM waits 2 s)",
    ),
    setting(
        "JARVIS_DB_POOL_SIZE",
        Kind::Number,
        Some("16"),
        "Database connections of the pool (event inserts have 8 more of their own on PostgreSQL)",
    ),
    setting(
        "JARVIS_DB_ACQUIRE_TIMEOUT_MS",
        Kind::Number,
        Some("5000"),
        "Longest wait for a free database connection, in ms (event inserts wait at most the answer deadline)",
    ),
    setting(
        "JARVIS_DB_STATEMENT_TIMEOUT_MS",
        Kind::Number,
        Some("30000"),
        "PostgreSQL statement_timeout and lock_timeout of every other statement (the worker's), in ms; migrations run without it",
    ),
    setting(
        "JARVIS_SPOOL_DIR",
        Kind::Text,
        None,
        "Local directory for webhook bodies the database cannot commit in time; unset: jarvis-spool next to a SQLite file, none for PostgreSQL; `off` disables",
    ),
    setting(
        "JARVIS_SPOOL_MAX_BYTES",
        Kind::Number,
        Some("1073741824"),
        "The spool answers 503 rather than grow past this many bytes",
    ),
    setting(
        "JARVIS_HEADER_READ_TIMEOUT_MS",
        Kind::Number,
        Some("5000"),
        "A client must send a request's header within this many ms, or the connection is closed",
    ),
    setting(
        "JARVIS_BODY_READ_TIMEOUT_MS",
        Kind::Number,
        Some("10000"),
        "A webhook body must arrive within this many ms, or the answer is 408",
    ),
    setting(
        "JARVIS_IDLE_TIMEOUT_MS",
        Kind::Number,
        Some("5000"),
        "A keep-alive connection with no request is closed after this many ms (the header read timeout also bounds the wait)",
    ),
    setting(
        "JARVIS_MAX_CONNECTIONS",
        Kind::Number,
        Some("512"),
        "HTTP connections open at once; more clients wait in the listen backlog (keep under the open-files limit)",
    ),
    setting(
        "JARVIS_SHUTDOWN_GRACE_SECS",
        Kind::Number,
        Some("10"),
        "On SIGTERM/SIGINT, how long requests in flight get to be answered before every connection is closed",
    ),
];

/// The shortest webhook secret accepted: it is all that keeps strangers from posting events.
pub const MIN_WEBHOOK_SECRET_CHARS: usize = 16;

/// The names of every setting, as environment variables (upper case) and TOML keys (lower case).
pub fn setting_names() -> impl Iterator<Item = &'static str> {
    SETTINGS.iter().map(|s| s.name)
}

fn spec(name: &str) -> &'static Setting {
    SETTINGS
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("{name} is not in config::SETTINGS"))
}

/// Where a setting's effective value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Default,
    File,
    Environment,
    Unset,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Origin::Default => "default",
            Origin::File => "file",
            Origin::Environment => "environment",
            Origin::Unset => "unset",
        })
    }
}

/// The settings as given, before validation: text values from the file and the environment.
#[derive(Clone, Default)]
pub struct Sources {
    given: BTreeMap<&'static str, (String, Origin)>,
}

impl fmt::Debug for Sources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values may be secrets: show only which settings are given.
        f.debug_set().entries(self.given.keys()).finish()
    }
}

/// One TOML value as the text the environment would give, checked against the setting's kind.
fn toml_text(setting: &Setting, value: &toml::Value) -> anyhow::Result<String> {
    use toml::Value as V;
    let key = setting.key();
    let kind_name = |v: &V| v.type_str();
    Ok(match (setting.kind, value) {
        (Kind::Text | Kind::Secret, V::String(s)) => s.clone(),
        (Kind::Number, V::Integer(n)) => n.to_string(),
        // Older files quoted numbers; they keep working and are checked like the environment's text.
        (Kind::Number, V::String(s)) => s.clone(),
        (Kind::Bool, V::Boolean(b)) => b.to_string(),
        (Kind::Bool, V::String(s)) => s.clone(),
        (Kind::List, V::String(s)) => s.clone(),
        (Kind::List, V::Array(items)) => {
            let mut parts = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    V::String(s) => parts.push(s.clone()),
                    V::Integer(n) => parts.push(n.to_string()),
                    other => bail!(
                        "`{key}` in the configuration file must list strings, got a {}",
                        kind_name(other)
                    ),
                }
            }
            parts.join(",")
        }
        (kind, other) => {
            let wanted = match kind {
                Kind::Text | Kind::Secret => "a string",
                Kind::Number => "a whole number",
                Kind::Bool => "true or false",
                Kind::List => "a list of strings",
            };
            bail!(
                "`{key}` in the configuration file must be {wanted}, got a {}",
                kind_name(other)
            )
        }
    })
}

/// A TOML error without the quoted line or any value from it (they may be secrets): the line
/// number, the key on that line, and the parser's complaint with quoted parts left out.
fn toml_error(text: &str, error: &toml::de::Error) -> anyhow::Error {
    let line = error
        .span()
        .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
    let key = line
        .and_then(|line| text.lines().nth(line - 1))
        .and_then(|line| line.split_once('='))
        .map(|(key, _)| key.trim())
        .filter(|key| {
            !key.is_empty()
                && key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        });
    let message = without_quoted(error.message());
    let place = match (line, key) {
        (Some(line), Some(key)) => format!(" at line {line} (`{key}`)"),
        (Some(line), None) => format!(" at line {line}"),
        _ => String::new(),
    };
    anyhow::anyhow!("parsing the configuration file{place}: {message}")
}

/// `text` with every `...` and "..." part replaced by an ellipsis.
fn without_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut quote: Option<char> = None;
    for c in text.chars() {
        match quote {
            Some(open) if c == open => quote = None,
            Some(_) => {}
            None if c == '`' || c == '"' => {
                quote = Some(c);
                out.push('…');
            }
            None => out.push(c),
        }
    }
    out
}

/// The known key closest to an unknown one, when it is close enough to be a typo.
fn closest_key(unknown: &str) -> Option<String> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut prev = row[0];
            row[0] = i + 1;
            for (j, cb) in b.iter().enumerate() {
                let next = (prev + usize::from(ca != *cb))
                    .min(row[j] + 1)
                    .min(row[j + 1] + 1);
                prev = row[j + 1];
                row[j + 1] = next;
            }
        }
        row[b.len()]
    }
    SETTINGS
        .iter()
        .map(|s| s.key())
        .map(|k| (distance(unknown, &k), k))
        .filter(|(d, _)| *d <= 3)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

impl Sources {
    /// Reads a TOML text (typed values, unknown keys refused) and the environment on top of it.
    pub fn read(file: Option<&str>, env: &BTreeMap<String, String>) -> anyhow::Result<Self> {
        let mut given = BTreeMap::new();
        if let Some(text) = file {
            let table: toml::Table =
                toml::from_str(text).map_err(|error| toml_error(text, &error))?;
            for (key, value) in &table {
                let Some(setting) = SETTINGS.iter().find(|s| s.key() == *key) else {
                    let hint = closest_key(key)
                        .map(|k| format!(" (did you mean `{k}`?)"))
                        .unwrap_or_default();
                    bail!(
                        "unknown setting `{key}` in the configuration file{hint}; \
                         `jarvis --help` lists every setting"
                    );
                };
                given.insert(setting.name, (toml_text(setting, value)?, Origin::File));
            }
        }
        for setting in SETTINGS {
            if let Some(value) = env.get(setting.name).filter(|v| !v.trim().is_empty()) {
                given.insert(setting.name, (value.clone(), Origin::Environment));
            }
        }
        Ok(Self { given })
    }

    /// The effective text of a setting (given or default) and where it comes from.
    pub fn effective(&self, name: &str) -> (Option<&str>, Origin) {
        let setting = spec(name);
        match self.given.get(setting.name) {
            Some((value, origin)) => (Some(value.as_str()), *origin),
            None => match setting.default {
                Some(default) => (Some(default), Origin::Default),
                None => (None, Origin::Unset),
            },
        }
    }

    fn text(&self, name: &str) -> Option<String> {
        self.effective(name).0.map(str::to_owned)
    }

    fn describe(&self, name: &str) -> String {
        match self.effective(name).1 {
            Origin::File => format!("{name} (`{}` in the file)", spec(name).key()),
            _ => name.to_owned(),
        }
    }

    /// A number that always has a value (its default when not given).
    fn num<T: std::str::FromStr>(&self, name: &str) -> anyhow::Result<T> {
        let text = self
            .text(name)
            .unwrap_or_else(|| panic!("{name} has no default in config::SETTINGS"));
        text.trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("{} must be a whole number", self.describe(name)))
    }

    /// An optional number; `0` and `none` mean unset.
    fn opt_num<T: std::str::FromStr>(&self, name: &str) -> anyhow::Result<Option<T>> {
        match self.text(name) {
            None => Ok(None),
            Some(v) if v.trim() == "0" || v.trim().eq_ignore_ascii_case("none") => Ok(None),
            Some(v) => v
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| anyhow::anyhow!("{} must be a whole number", self.describe(name))),
        }
    }

    /// A boolean setting.
    fn flag(&self, name: &str) -> anyhow::Result<bool> {
        match self
            .text(name)
            .map(|v| v.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("") | Some("false") | Some("0") | Some("no") | Some("off") => Ok(false),
            Some("true") | Some("1") | Some("yes") | Some("on") => Ok(true),
            Some(_) => bail!("{} must be true or false", self.describe(name)),
        }
    }

    /// A comma-separated list, items trimmed, empty items dropped.
    fn list(&self, name: &str) -> Vec<String> {
        self.text(name)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every setting's effective value as shown to people: secrets masked, database passwords hidden.
    pub fn report(&self) -> Vec<(&'static Setting, String, Origin)> {
        SETTINGS
            .iter()
            .map(|setting| {
                let (value, origin) = self.effective(setting.name);
                let shown = match (value, setting.kind) {
                    (None, _) => "-".to_owned(),
                    (Some(v), Kind::Secret) => {
                        format!("******** ({} characters)", v.chars().count())
                    }
                    (Some(v), _) if setting.name == "DATABASE_URL" => {
                        crate::telemetry::redact_url(v)
                    }
                    (Some(v), _) => v.to_owned(),
                };
                (setting, shown, origin)
            })
            .collect()
    }

    /// Validates and builds the typed settings.
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let listen_text = self.text("JARVIS_LISTEN").unwrap_or_default();
        let listen: SocketAddr = listen_text.trim().parse().map_err(|_| {
            anyhow::anyhow!(
                "{} must be an address and port, e.g. 127.0.0.1:3000",
                self.describe("JARVIS_LISTEN")
            )
        })?;

        let webhook_secret = self.text("AMOCRM_WEBHOOK_SECRET");
        if let Some(secret) = &webhook_secret {
            let chars = secret.chars().count();
            if chars < MIN_WEBHOOK_SECRET_CHARS {
                bail!(
                    "AMOCRM_WEBHOOK_SECRET is too short ({chars} of at least \
                     {MIN_WEBHOOK_SECRET_CHARS} characters): it is all that keeps others from posting \
                     events to the webhook URL; use a random string such as `openssl rand -hex 24` gives"
                );
            }
        }

        let client_id = self.text("AMOCRM_CLIENT_ID");
        let client_secret = self.text("AMOCRM_CLIENT_SECRET");
        let redirect_uri = self.text("AMOCRM_REDIRECT_URI");
        let oauth_client = match (client_id, client_secret, redirect_uri) {
            (Some(id), Some(secret), Some(uri)) => Some((id, Secret::new(secret), uri)),
            (None, None, None) => None,
            _ => bail!(
                "OAuth needs all of AMOCRM_CLIENT_ID, AMOCRM_CLIENT_SECRET and AMOCRM_REDIRECT_URI"
            ),
        };
        let auth = match (self.text("AMOCRM_LONG_LIVED_TOKEN"), &oauth_client) {
            (Some(token), _) => Some(AmoAuth::LongLived(Secret::new(token))),
            (None, Some((id, secret, uri))) => Some(AmoAuth::OAuth {
                client_id: id.clone(),
                client_secret: secret.clone(),
                redirect_uri: uri.clone(),
            }),
            (None, None) => None,
        };
        let subdomain = self.text("AMOCRM_SUBDOMAIN");
        let base_url = self.text("AMOCRM_BASE_URL");
        if auth.is_some() && subdomain.is_none() && base_url.is_none() {
            bail!("amoCRM credentials are set but neither AMOCRM_SUBDOMAIN nor AMOCRM_BASE_URL is");
        }
        let rate_per_second: u32 = self.num("AMOCRM_RATE_PER_SECOND")?;
        if rate_per_second == 0 {
            bail!("AMOCRM_RATE_PER_SECOND must be at least 1");
        }
        let metadata_fields =
            parse_metadata_fields(&self.list("JARVIS_METADATA_FIELDS").join(","))?;
        let log_json = match self.text("JARVIS_LOG_FORMAT").as_deref().map(str::trim) {
            None | Some("text") | Some("pretty") => false,
            Some("json") => true,
            Some(_) => bail!(
                "{} must be `text` or `json`",
                self.describe("JARVIS_LOG_FORMAT")
            ),
        };
        let max_attempts: u32 = self.num("JARVIS_MAX_ATTEMPTS")?;
        let claim_batch: usize = self.num("JARVIS_CLAIM_BATCH")?;
        let link = LinkSettings {
            client_sql: self.text("JARVIS_LINK_CLIENT_SQL"),
            conversation_sql: self.text("JARVIS_LINK_CONVERSATION_SQL"),
            overwrite: self.flag("JARVIS_LINK_OVERWRITE")?,
            timeout: Duration::from_millis(self.num::<u64>("JARVIS_LINK_TIMEOUT_MS")?.max(1)),
            rentprog_key: self.text("JARVIS_LINK_RENTPROG_KEY").unwrap_or_default(),
        };
        let database_url = self.text("DATABASE_URL").unwrap_or_default();
        let millis = |name: &str| -> anyhow::Result<Duration> {
            let ms: u64 = self.num(name)?;
            if ms == 0 {
                bail!("{} must be at least 1", self.describe(name));
            }
            Ok(Duration::from_millis(ms))
        };
        let answer_deadline = millis("JARVIS_ANSWER_DEADLINE_MS")?;
        let db_pool = jarvis_store::PoolSettings::default()
            .max_connections(self.num("JARVIS_DB_POOL_SIZE")?)
            .acquire_timeout(millis("JARVIS_DB_ACQUIRE_TIMEOUT_MS")?)
            .statement_timeout(millis("JARVIS_DB_STATEMENT_TIMEOUT_MS")?)
            .ingest_timeout(answer_deadline);
        let spool_dir = match self.text("JARVIS_SPOOL_DIR").as_deref().map(str::trim) {
            Some(off) if off.eq_ignore_ascii_case("off") || off.eq_ignore_ascii_case("none") => {
                None
            }
            Some(dir) => Some(std::path::PathBuf::from(dir)),
            None => default_spool_dir(&database_url),
        };
        let spool_max_bytes: u64 = self.num("JARVIS_SPOOL_MAX_BYTES")?;
        let http = HttpSettings {
            answer_deadline,
            header_read_timeout: millis("JARVIS_HEADER_READ_TIMEOUT_MS")?,
            body_read_timeout: millis("JARVIS_BODY_READ_TIMEOUT_MS")?,
            idle_timeout: millis("JARVIS_IDLE_TIMEOUT_MS")?,
            max_connections: self.num::<usize>("JARVIS_MAX_CONNECTIONS")?.max(1),
            shutdown_grace: Duration::from_secs(self.num("JARVIS_SHUTDOWN_GRACE_SECS")?),
        };
        Ok(Settings {
            db_pool,
            http,
            spool: spool_dir.map(|dir| SpoolSettings {
                dir,
                max_bytes: spool_max_bytes,
            }),
            database_url,
            listen,
            webhook_secret: webhook_secret.map(Secret::new),
            account_id: self.opt_num("AMOCRM_ACCOUNT_ID")?,
            amocrm: AmoSettings {
                subdomain,
                domain: self.text("AMOCRM_DOMAIN").unwrap_or_default(),
                base_url,
                auth,
                oauth_client,
                rate_per_second,
                rate_per_minute: self.opt_num("AMOCRM_RATE_PER_MINUTE")?,
                rate_per_hour: self.opt_num("AMOCRM_RATE_PER_HOUR")?,
                max_retries: self.num("AMOCRM_MAX_RETRIES")?,
            },
            api_token: self.text("JARVIS_API_TOKEN").map(Secret::new),
            metadata_fields,
            public_url: self.text("JARVIS_PUBLIC_URL"),
            webhook_settings: self.list("JARVIS_WEBHOOK_SETTINGS"),
            worker: WorkerSettings {
                batch_window: Duration::from_millis(self.num("JARVIS_BATCH_WINDOW_MS")?),
                batch_quiet: Duration::from_millis(self.num("JARVIS_BATCH_QUIET_MS")?),
                claim_batch: claim_batch.max(1),
                lease: Duration::from_secs(self.num("JARVIS_LEASE_SECS")?),
                max_attempts: max_attempts.max(1),
                rejected_retention: Duration::from_secs(
                    self.num::<u64>("JARVIS_REJECTED_RETENTION_DAYS")?
                        .saturating_mul(86_400),
                ),
                rejected_max_bytes: self.num("JARVIS_REJECTED_MAX_BYTES")?,
            },
            max_body_bytes: self.num("JARVIS_MAX_BODY_BYTES")?,
            log_json,
            startup_wait: Duration::from_secs(self.num("JARVIS_STARTUP_WAIT_SECS")?),
            webhook_check: Duration::from_secs(
                self.num::<u64>("JARVIS_WEBHOOK_CHECK_SECS")?.max(1),
            ),
            link,
        })
    }
}

/// Reads the optional configuration file's text.
pub fn read_file(file: Option<&Path>) -> anyhow::Result<Option<String>> {
    file.map(|path| {
        std::fs::read_to_string(path)
            .with_context(|| format!("reading configuration file {}", path.display()))
    })
    .transpose()
}

/// Every setting with its environment variable, default and meaning, for `--help`.
pub fn help_text() -> String {
    let mut out = String::from(
        "Settings (environment variables; in the --config TOML file the same names in lower case, \
         with typed values; the environment wins):\n",
    );
    for s in SETTINGS {
        let default = match s.default {
            Some(d) if d.len() > 60 => format!(" [default: {}...]", &d[..57]),
            Some(d) => format!(" [default: {d}]"),
            None => String::new(),
        };
        let _ = writeln!(out, "  {}{default}\n          {}", s.name, s.help);
    }
    out.push_str("\n`jarvis config check` prints the effective settings, secrets masked.");
    out
}

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
    /// API mode, after an idle spell: how long arrivals must pause before the worker claims.
    pub batch_quiet: Duration,
    pub claim_batch: usize,
    pub lease: Duration,
    pub max_attempts: u32,
    /// How long refused bodies are kept (`JARVIS_REJECTED_RETENTION_DAYS`); the worker prunes them.
    pub rejected_retention: Duration,
    /// Most bytes of refused bodies kept in all (`JARVIS_REJECTED_MAX_BYTES`); the oldest go first.
    pub rejected_max_bytes: u64,
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
    /// How often the service checks its webhook subscription in amoCRM (API mode).
    pub webhook_check: Duration,
    /// Links from deals to the business's own clients and conversations.
    pub link: LinkSettings,
    /// The database pool: size, acquire timeout, statement timeout, and the ingest bound (the
    /// answer deadline).
    pub db_pool: jarvis_store::PoolSettings,
    /// The HTTP server's deadlines and limits.
    pub http: HttpSettings,
    /// Where webhook bodies wait when the database cannot take them in time; `None`: no spool.
    pub spool: Option<SpoolSettings>,
}

/// The HTTP server's deadlines and limits.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Every webhook is answered within this: 200 once committed (or spooled), 503 otherwise.
    pub answer_deadline: Duration,
    /// A client must send a request's whole header within this, or the connection is closed.
    pub header_read_timeout: Duration,
    /// A webhook's body must arrive within this, or the answer is 408.
    pub body_read_timeout: Duration,
    /// A keep-alive connection with no request in flight is closed after this. The wait for the
    /// next request's header also counts against `header_read_timeout`: the smaller one wins.
    pub idle_timeout: Duration,
    /// Connections open at once; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// How long a shutdown waits for in-flight requests before closing what is left.
    pub shutdown_grace: Duration,
}

/// The local spool (see `spool`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolSettings {
    pub dir: std::path::PathBuf,
    /// The spool refuses bodies (503) rather than grow past this.
    pub max_bytes: u64,
}

/// The spool directory when `JARVIS_SPOOL_DIR` is unset: `jarvis-spool` next to a SQLite file, whose
/// disk the operator already trusts with the data; none for PostgreSQL, where the service cannot
/// know whether its own disk outlives a redeploy (an acknowledged body on a disk that vanishes is
/// lost, while a 503 makes amoCRM send it again).
pub fn default_spool_dir(database_url: &str) -> Option<std::path::PathBuf> {
    let path = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))?;
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() || path.contains(":memory:") || database_url.contains("mode=memory") {
        return None;
    }
    let parent = Path::new(path)
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    Some(parent.join("jarvis-spool"))
}

/// Settings of the linker, which fills `client_id` and `conversation_id` of deals from the
/// business's own tables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkSettings {
    /// `JARVIS_LINK_CLIENT_SQL`: returns the client's UUID from `$1` phones, `$2` e-mails, `$3`
    /// contact id, `$4` lead id, `$5` RentProg id.
    pub client_sql: Option<String>,
    /// `JARVIS_LINK_CONVERSATION_SQL`: returns the conversation's UUID from `$1` talk id, `$2` chat
    /// id, `$3` contact id, `$4` lead id.
    pub conversation_sql: Option<String>,
    /// `JARVIS_LINK_OVERWRITE`: replace values that someone else set.
    pub overwrite: bool,
    /// `JARVIS_LINK_TIMEOUT_MS`: statement timeout of each query.
    pub timeout: Duration,
    /// `JARVIS_LINK_RENTPROG_KEY`: the `metadata` key holding the RentProg id.
    pub rentprog_key: String,
}

impl Settings {
    /// Reads the optional TOML file, then the environment on top of it.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let env: BTreeMap<String, String> = std::env::vars().collect();
        Self::from_sources(read_file(file)?.as_deref(), &env)
    }

    /// Builds settings from a TOML text and an environment map (testable without touching the process).
    pub fn from_sources(
        file: Option<&str>,
        env: &BTreeMap<String, String>,
    ) -> anyhow::Result<Self> {
        Sources::read(file, env)?.settings()
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
        assert_eq!(s.worker.batch_quiet, Duration::from_millis(10));
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
        for name in setting_names() {
            assert!(
                readme.contains(&format!("| `{name}` |")),
                "{name} is missing from the README's table"
            );
        }
    }

    #[test]
    fn toml_values_are_typed() {
        let file = "jarvis_batch_window_ms = 100\n\
                    amocrm_account_id = 29071803\n\
                    jarvis_webhook_settings = [\"add_lead\", \"status_lead\"]\n\
                    jarvis_metadata_fields = [\"rentprog_id=771001\", \"source=UTM_SOURCE\"]\n";
        let s = Settings::from_sources(Some(file), &env(&[])).unwrap();
        assert_eq!(s.worker.batch_window, Duration::from_millis(100));
        assert_eq!(s.account_id, Some(29071803));
        assert_eq!(s.webhook_settings, ["add_lead", "status_lead"]);
        assert_eq!(s.metadata_fields.len(), 2);
        // Files written when numbers had to be quoted keep working.
        let s = Settings::from_sources(Some("jarvis_claim_batch = \"50\""), &env(&[])).unwrap();
        assert_eq!(s.worker.claim_batch, 50);
        let s = Settings::from_sources(None, &env(&[("JARVIS_BATCH_QUIET_MS", "0")])).unwrap();
        assert_eq!(s.worker.batch_quiet, Duration::ZERO);
    }

    #[test]
    fn a_value_of_the_wrong_type_names_its_key() {
        let err = Settings::from_sources(Some("jarvis_lease_secs = true"), &env(&[])).unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("`jarvis_lease_secs`") && msg.contains("whole number"),
            "{msg}"
        );
        let err = Settings::from_sources(Some("jarvis_listen = 3000"), &env(&[])).unwrap_err();
        assert!(format!("{err:#}").contains("`jarvis_listen`"), "{err:#}");
        let err =
            Settings::from_sources(Some("jarvis_lease_secs = \"soon\""), &env(&[])).unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("JARVIS_LEASE_SECS (`jarvis_lease_secs` in the file)"),
            "{msg}"
        );
    }

    #[test]
    fn unknown_keys_are_named_with_the_likely_one() {
        let err = Settings::from_sources(Some("jarvis_batch_windw_ms = 5"), &env(&[])).unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("unknown setting `jarvis_batch_windw_ms`"),
            "{msg}"
        );
        assert!(
            msg.contains("did you mean `jarvis_batch_window_ms`"),
            "{msg}"
        );
        // A table is not a setting either.
        let err =
            Settings::from_sources(Some("[amocrm]\nsubdomain = \"x\""), &env(&[])).unwrap_err();
        assert!(format!("{err:#}").contains("`amocrm`"), "{err:#}");
    }

    #[test]
    fn a_short_webhook_secret_is_refused_without_being_shown() {
        let err = Settings::from_sources(None, &env(&[("AMOCRM_WEBHOOK_SECRET", "abc123secret")]))
            .unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("AMOCRM_WEBHOOK_SECRET is too short (12 of at least 16 characters)"),
            "{msg}"
        );
        assert!(!msg.contains("abc123secret"), "{msg}");
        let ok = "0123456789abcdef";
        let s = Settings::from_sources(None, &env(&[("AMOCRM_WEBHOOK_SECRET", ok)])).unwrap();
        assert_eq!(s.webhook_secret.unwrap().expose(), ok);
    }

    #[test]
    fn errors_never_echo_values() {
        let secret = "s3cr3t-v4lue";
        let file = format!("jarvis_listen = \"127.0.0.1:1\"\namocrm_client_secret = \"{secret}\n");
        let err = format!(
            "{:#}",
            Settings::from_sources(Some(&file), &env(&[])).unwrap_err()
        );
        assert!(!err.contains(secret), "{err}");
        assert!(err.contains("line 2"), "{err}");
        let file = format!("amocrm_client_secret = {secret}\n");
        let err = format!(
            "{:#}",
            Settings::from_sources(Some(&file), &env(&[])).unwrap_err()
        );
        assert!(!err.contains(secret), "{err}");
        assert!(err.contains("amocrm_client_secret"), "{err}");
        let file = format!("jarvis_claim_batch = \"{secret}\"\n");
        let err = format!(
            "{:#}",
            Settings::from_sources(Some(&file), &env(&[])).unwrap_err()
        );
        assert!(!err.contains(secret), "{err}");
        for name in [
            "JARVIS_CLAIM_BATCH",
            "JARVIS_LISTEN",
            "JARVIS_LOG_FORMAT",
            "AMOCRM_RATE_PER_MINUTE",
            "JARVIS_REJECTED_MAX_BYTES",
        ] {
            let err = format!(
                "{:#}",
                Settings::from_sources(None, &env(&[(name, secret)])).unwrap_err()
            );
            assert!(!err.contains(secret), "{name}: {err}");
            assert!(err.contains(name), "{name}: {err}");
        }
        let err = Settings::from_sources(None, &env(&[("JARVIS_METADATA_FIELDS", secret)]))
            .unwrap_err()
            .to_string();
        assert!(!err.contains(secret), "{err}");
    }

    #[test]
    fn rejected_bodies_retention_has_defaults() {
        let s = Settings::from_sources(None, &env(&[])).unwrap();
        assert_eq!(
            s.worker.rejected_retention,
            Duration::from_secs(30 * 86_400)
        );
        assert_eq!(s.worker.rejected_max_bytes, 256 * 1024 * 1024);
        let s = Settings::from_sources(
            None,
            &env(&[
                ("JARVIS_REJECTED_RETENTION_DAYS", "7"),
                ("JARVIS_REJECTED_MAX_BYTES", "1000000"),
            ]),
        )
        .unwrap();
        assert_eq!(s.worker.rejected_retention, Duration::from_secs(7 * 86_400));
        assert_eq!(s.worker.rejected_max_bytes, 1_000_000);
    }

    #[test]
    fn the_report_masks_secrets_and_database_passwords() {
        let sources = Sources::read(
            Some("amocrm_max_retries = 5"),
            &env(&[
                (
                    "DATABASE_URL",
                    "postgres://jarvis:pa55word@db.example.com/jarvis",
                ),
                ("AMOCRM_WEBHOOK_SECRET", "0123456789abcdef-hook"),
                ("JARVIS_API_TOKEN", "api-token-value"),
            ]),
        )
        .unwrap();
        let report = sources.report();
        let text = format!("{report:?}");
        for secret in ["pa55word", "0123456789abcdef-hook", "api-token-value"] {
            assert!(!text.contains(secret), "{secret} shown: {text}");
        }
        let find = |name: &str| report.iter().find(|(s, _, _)| s.name == name).unwrap();
        assert_eq!(find("AMOCRM_MAX_RETRIES").1, "5");
        assert_eq!(find("AMOCRM_MAX_RETRIES").2, Origin::File);
        assert_eq!(find("JARVIS_CLAIM_BATCH").1, "1000");
        assert_eq!(find("JARVIS_CLAIM_BATCH").2, Origin::Default);
        assert_eq!(find("AMOCRM_WEBHOOK_SECRET").1, "******** (21 characters)");
        assert_eq!(find("AMOCRM_WEBHOOK_SECRET").2, Origin::Environment);
        assert_eq!(find("AMOCRM_SUBDOMAIN").2, Origin::Unset);
        assert!(find("DATABASE_URL").1.contains("db.example.com"));
    }

    #[test]
    fn booleans_read_as_booleans() {
        let sources = Sources::default();
        // No boolean setting yet: check the reader on the text forms it accepts.
        for (text, want) in [("true", true), ("yes", true), ("0", false), ("off", false)] {
            let mut s = sources.clone();
            s.given
                .insert("JARVIS_LOG_FORMAT", (text.into(), Origin::Environment));
            assert_eq!(s.flag("JARVIS_LOG_FORMAT").unwrap(), want, "{text}");
        }
        let mut s = sources.clone();
        s.given
            .insert("JARVIS_LOG_FORMAT", ("maybe".into(), Origin::Environment));
        assert!(
            s.flag("JARVIS_LOG_FORMAT")
                .unwrap_err()
                .to_string()
                .contains("true or false")
        );
        let setting = spec("JARVIS_LOG_FORMAT");
        let as_bool = Setting {
            kind: Kind::Bool,
            ..*setting
        };
        assert_eq!(
            toml_text(&as_bool, &toml::Value::Boolean(true)).unwrap(),
            "true"
        );
        assert!(toml_text(&as_bool, &toml::Value::Integer(1)).is_err());
    }

    #[test]
    fn the_default_webhook_settings_match_the_table() {
        let s = Settings::from_sources(None, &env(&[])).unwrap();
        assert_eq!(s.webhook_settings, DEFAULT_WEBHOOK_SETTINGS);
    }

    #[test]
    fn help_names_every_setting_with_its_default() {
        let help = help_text();
        for setting in SETTINGS {
            assert!(help.contains(setting.name), "{} missing", setting.name);
        }
        assert!(
            help.contains("JARVIS_BATCH_WINDOW_MS [default: 300]"),
            "{help}"
        );
    }

    #[test]
    fn deadlines_and_limits_have_defaults_and_can_be_set() {
        let s = Settings::from_sources(None, &env(&[])).unwrap();
        assert_eq!(s.http.answer_deadline, Duration::from_millis(1500));
        assert_eq!(s.db_pool.ingest_timeout, Duration::from_millis(1500));
        assert_eq!(s.http.shutdown_grace, Duration::from_secs(10));
        assert_eq!(
            s.spool,
            Some(SpoolSettings {
                dir: "./jarvis-spool".into(),
                max_bytes: 1 << 30
            })
        );
        let s = Settings::from_sources(
            None,
            &env(&[
                ("DATABASE_URL", "postgres://u@db/x"),
                ("JARVIS_ANSWER_DEADLINE_MS", "300"),
                ("JARVIS_DB_POOL_SIZE", "4"),
                ("JARVIS_DB_STATEMENT_TIMEOUT_MS", "2000"),
                ("JARVIS_MAX_CONNECTIONS", "64"),
            ]),
        )
        .unwrap();
        assert_eq!(s.spool, None, "no spool by default on PostgreSQL");
        assert_eq!(s.db_pool.ingest_timeout, Duration::from_millis(300));
        assert_eq!(s.db_pool.max_connections, 4);
        assert_eq!(s.db_pool.statement_timeout, Duration::from_secs(2));
        assert_eq!(s.http.max_connections, 64);
        let err =
            Settings::from_sources(None, &env(&[("JARVIS_ANSWER_DEADLINE_MS", "0")])).unwrap_err();
        assert!(err.to_string().contains("JARVIS_ANSWER_DEADLINE_MS"));
    }

    #[test]
    fn the_spool_sits_next_to_a_sqlite_file_unless_told_otherwise() {
        assert_eq!(
            default_spool_dir("sqlite:///var/lib/jarvis/jarvis.db?mode=rwc"),
            Some("/var/lib/jarvis/jarvis-spool".into())
        );
        assert_eq!(default_spool_dir("sqlite::memory:"), None);
        assert_eq!(default_spool_dir("postgres://u@h/db"), None);
        let off = Settings::from_sources(None, &env(&[("JARVIS_SPOOL_DIR", "off")])).unwrap();
        assert_eq!(off.spool, None);
        let set = Settings::from_sources(
            None,
            &env(&[
                ("DATABASE_URL", "postgres://u@h/db"),
                ("JARVIS_SPOOL_DIR", "/data/spool"),
            ]),
        )
        .unwrap();
        assert_eq!(
            set.spool.unwrap().dir,
            std::path::PathBuf::from("/data/spool")
        );
    }

    #[test]
    fn metadata_fields_by_id_and_code() {
        let m = parse_metadata_fields("rentprog_id=771001, source = UTM_SOURCE").unwrap();
        assert_eq!(
            m[0],
            MetadataField {
                key: "rentprog_id".into(),
                field: FieldRef::Id(771001.into())
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

    #[test]
    fn link_settings_are_read_and_checked() {
        let s = Settings::from_sources(
            None,
            &env(&[
                (
                    "JARVIS_LINK_CLIENT_SQL",
                    "SELECT id FROM clients WHERE phone = ANY($1)",
                ),
                ("JARVIS_LINK_OVERWRITE", "true"),
                ("JARVIS_LINK_TIMEOUT_MS", "500"),
            ]),
        )
        .unwrap();
        assert_eq!(
            s.link.client_sql.as_deref(),
            Some("SELECT id FROM clients WHERE phone = ANY($1)")
        );
        assert_eq!(s.link.conversation_sql, None);
        assert!(s.link.overwrite);
        assert_eq!(s.link.timeout, Duration::from_millis(500));
        assert_eq!(s.link.rentprog_key, "rentprog_id");

        let defaults = Settings::from_sources(None, &env(&[])).unwrap();
        assert!(!defaults.link.overwrite, "never overwrite unless asked");
        assert_eq!(defaults.link.timeout, Duration::from_secs(2));
        let err =
            Settings::from_sources(None, &env(&[("JARVIS_LINK_OVERWRITE", "maybe")])).unwrap_err();
        assert!(err.to_string().contains("JARVIS_LINK_OVERWRITE"), "{err}");
    }
}
