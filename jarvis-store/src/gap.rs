//! Gaps in what the service has seen, and the state of their catch-up through amoCRM's events feed.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Why a span of time may hold changes the service never received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GapKind {
    /// No instance was running: from the last heartbeat (or clean stop) to the next start.
    Downtime,
    /// The database refused writes and webhooks were answered 503.
    DatabaseRefused,
    /// amoCRM had switched the webhook off (or it was missing): from the last accepted delivery.
    WebhookDisabled,
    /// Asked for by hand (`jarvis catch-up --since`).
    Manual,
    /// A kind written by a newer version.
    Other(String),
}

impl GapKind {
    /// The name kept in `jarvis_gaps.kind`.
    pub fn as_str(&self) -> &str {
        match self {
            GapKind::Downtime => "downtime",
            GapKind::DatabaseRefused => "database_refused",
            GapKind::WebhookDisabled => "webhook_disabled",
            GapKind::Manual => "manual",
            GapKind::Other(other) => other,
        }
    }
}

impl FromStr for GapKind {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "downtime" => GapKind::Downtime,
            "database_refused" => GapKind::DatabaseRefused,
            "webhook_disabled" => GapKind::WebhookDisabled,
            "manual" => GapKind::Manual,
            other => GapKind::Other(other.to_string()),
        })
    }
}

impl fmt::Display for GapKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A gap as stored in `jarvis_gaps`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gap {
    /// The row id.
    pub id: i64,
    /// Why the gap exists.
    pub kind: GapKind,
    /// Start of the span (inclusive).
    pub from: DateTime<Utc>,
    /// End of the span (inclusive).
    pub to: DateTime<Utc>,
    /// When the gap was recorded.
    pub detected_at: DateTime<Utc>,
    /// Events-feed pages read and recorded; a restarted catch-up reads page `pages_done + 1` next.
    pub pages_done: u32,
    /// Feed events read so far.
    pub events_read: u64,
    /// Set once every page has been read.
    pub read_done_at: Option<DateTime<Utc>>,
    /// Set once every entity the gap touched has been queued for the worker.
    pub caught_up_at: Option<DateTime<Utc>>,
}

/// The kind of entity a gap touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GapEntityType {
    /// A lead (`lead`).
    Lead,
    /// A contact (`contact`).
    Contact,
}

impl GapEntityType {
    /// The name kept in `jarvis_gap_entities.entity_type`.
    pub fn as_str(self) -> &'static str {
        match self {
            GapEntityType::Lead => "lead",
            GapEntityType::Contact => "contact",
        }
    }

    /// The type named `name`, if it is one.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "lead" => Some(GapEntityType::Lead),
            "contact" => Some(GapEntityType::Contact),
            _ => None,
        }
    }
}

/// One entity a gap's events touched (a row of `jarvis_gap_entities`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GapEntity {
    /// Whether it is a lead or a contact.
    pub entity_type: GapEntityType,
    /// amoCRM's id of the entity.
    pub entity_id: u64,
    /// Whether the newest event about it in the gap deleted it.
    pub deleted: bool,
    /// Unix seconds of that newest event; an older one never overrides it.
    pub last_event_at: i64,
}
