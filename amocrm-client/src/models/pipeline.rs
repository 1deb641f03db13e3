//! Pipelines and their stages: `GET /api/v4/leads/pipelines`.

use serde::Deserialize;
use serde_json::Value;

use super::{AccountId, ListItem, PipelineId, StatusId, keep_raw, null_as_default};

/// A pipeline with its stages. [`Pipeline::raw`] holds the whole object.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(remote = "Self")]
#[non_exhaustive]
pub struct Pipeline {
    /// The pipeline's id.
    pub id: PipelineId,
    /// Its name.
    #[serde(default)]
    pub name: String,
    /// Position among pipelines.
    #[serde(default)]
    pub sort: Option<i64>,
    /// Whether it is the main pipeline.
    #[serde(default)]
    pub is_main: bool,
    /// Whether its incoming leads stage is on.
    #[serde(default)]
    pub is_unsorted_on: bool,
    /// Whether it is archived.
    #[serde(default)]
    pub is_archive: bool,
    /// The account.
    #[serde(default)]
    pub account_id: Option<AccountId>,
    #[serde(rename = "_embedded", default)]
    embedded: PipelineEmbedded,
    #[serde(skip)]
    raw: Value,
}
keep_raw!(Pipeline);

impl ListItem for Pipeline {
    const KEY: &'static str = "pipelines";
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
struct PipelineEmbedded {
    #[serde(default, deserialize_with = "null_as_default")]
    statuses: Vec<Status>,
}

impl Pipeline {
    /// The stages, in the order amoCRM sent them.
    pub fn statuses(&self) -> &[Status] {
        &self.embedded.statuses
    }

    /// The stage with this id.
    pub fn status(&self, id: StatusId) -> Option<&Status> {
        self.statuses().iter().find(|s| s.id == id)
    }
}

/// A pipeline stage. 142 ("won") and 143 ("lost") exist in every pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[non_exhaustive]
pub struct Status {
    /// The stage's id.
    pub id: StatusId,
    /// Its name.
    #[serde(default)]
    pub name: String,
    /// Position in the pipeline.
    #[serde(default)]
    pub sort: Option<i64>,
    /// Whether it can be changed.
    #[serde(default)]
    pub is_editable: bool,
    /// Its pipeline.
    #[serde(default)]
    pub pipeline_id: Option<PipelineId>,
    /// Colour (hex).
    #[serde(default)]
    pub color: Option<String>,
    /// 0: an ordinary stage, 1: "incoming leads".
    #[serde(rename = "type", default)]
    pub status_type: Option<i64>,
    /// The account.
    #[serde(default)]
    pub account_id: Option<AccountId>,
}

impl ListItem for Status {
    const KEY: &'static str = "statuses";
}

impl Status {
    /// "Closed - won", in every pipeline.
    pub const WON: StatusId = StatusId(142);
    /// "Closed - lost", in every pipeline.
    pub const LOST: StatusId = StatusId(143);
}
