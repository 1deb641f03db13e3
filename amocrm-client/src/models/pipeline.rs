//! Pipelines and their stages: `GET /api/v4/leads/pipelines`.

use serde::Deserialize;
use serde_json::Value;

use super::{AccountId, ListItem, PipelineId, StatusId, keep_raw, null_as_default};

/// A pipeline with its stages. [`Pipeline::raw`] holds the whole object.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(remote = "Self")]
#[non_exhaustive]
pub struct Pipeline {
    pub id: PipelineId,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub sort: Option<i64>,
    #[serde(default)]
    pub is_main: bool,
    #[serde(default)]
    pub is_unsorted_on: bool,
    #[serde(default)]
    pub is_archive: bool,
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

    pub fn status(&self, id: StatusId) -> Option<&Status> {
        self.statuses().iter().find(|s| s.id == id)
    }
}

/// A pipeline stage. 142 ("won") and 143 ("lost") exist in every pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[non_exhaustive]
pub struct Status {
    pub id: StatusId,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub sort: Option<i64>,
    #[serde(default)]
    pub is_editable: bool,
    #[serde(default)]
    pub pipeline_id: Option<PipelineId>,
    #[serde(default)]
    pub color: Option<String>,
    /// 0: an ordinary stage, 1: "incoming leads".
    #[serde(rename = "type", default)]
    pub status_type: Option<i64>,
    #[serde(default)]
    pub account_id: Option<AccountId>,
}

impl ListItem for Status {
    const KEY: &'static str = "statuses";
}

impl Status {
    pub const WON: StatusId = StatusId(142);
    pub const LOST: StatusId = StatusId(143);
}
