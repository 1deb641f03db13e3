//! Tasks: `GET/POST/PATCH /api/v4/tasks`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{AccountId, ListItem, TaskId, TaskTypeId, UserId, keep_raw, unix_to_utc};
use crate::resources::EntityType;

/// A task. [`Task::raw`] holds the whole object.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(remote = "Self")]
#[non_exhaustive]
pub struct Task {
    /// The task's id.
    pub id: TaskId,
    /// Who created it.
    #[serde(default)]
    pub created_by: Option<UserId>,
    /// Who changed it last.
    #[serde(default)]
    pub updated_by: Option<UserId>,
    /// Unix seconds.
    #[serde(default)]
    pub created_at: Option<i64>,
    /// Unix seconds.
    #[serde(default)]
    pub updated_at: Option<i64>,
    /// Who has to do it.
    #[serde(default)]
    pub responsible_user_id: Option<UserId>,
    /// The responsible user's group.
    #[serde(default)]
    pub group_id: Option<u64>,
    /// The lead (contact, company, customer) the task is about, if any.
    #[serde(default)]
    pub entity_id: Option<u64>,
    /// `leads`, `contacts`, `companies` or `customers`.
    #[serde(default)]
    pub entity_type: Option<String>,
    /// Whether it is done.
    #[serde(default)]
    pub is_completed: bool,
    /// The task type.
    #[serde(default)]
    pub task_type_id: Option<TaskTypeId>,
    /// What to do.
    #[serde(default)]
    pub text: String,
    /// Length in seconds, from `complete_till` back.
    #[serde(default)]
    pub duration: Option<i64>,
    /// Deadline, Unix seconds.
    #[serde(default)]
    pub complete_till: Option<i64>,
    /// The outcome, once completed.
    #[serde(default)]
    pub result: Option<TaskResult>,
    /// The account.
    #[serde(default)]
    pub account_id: Option<AccountId>,
    #[serde(skip)]
    raw: Value,
}
keep_raw!(Task);

impl ListItem for Task {
    const KEY: &'static str = "tasks";
}

impl Task {
    /// The deadline as a date-time.
    pub fn complete_till_utc(&self) -> Option<DateTime<Utc>> {
        self.complete_till.and_then(unix_to_utc)
    }
}

/// A task's outcome (`result`); amoCRM sends `[]` for none, read as empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TaskResult {
    /// What came of the task.
    pub text: Option<String>,
}

impl<'de> Deserialize<'de> for TaskResult {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        Ok(TaskResult {
            text: value.get("text").and_then(Value::as_str).map(str::to_owned),
        })
    }
}

/// The entity a task is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskEntity {
    /// `leads`, `contacts`, `companies` or `customers`.
    pub entity_type: EntityType,
    /// Its id.
    pub entity_id: u64,
}

impl From<super::LeadId> for TaskEntity {
    fn from(id: super::LeadId) -> Self {
        TaskEntity {
            entity_type: EntityType::Leads,
            entity_id: id.0,
        }
    }
}

impl From<super::ContactId> for TaskEntity {
    fn from(id: super::ContactId) -> Self {
        TaskEntity {
            entity_type: EntityType::Contacts,
            entity_id: id.0,
        }
    }
}

impl From<super::CompanyId> for TaskEntity {
    fn from(id: super::CompanyId) -> Self {
        TaskEntity {
            entity_type: EntityType::Companies,
            entity_id: id.0,
        }
    }
}

/// A task to create ([`Tasks::create`](crate::resources::tasks::Tasks::create)) or changes to
/// one ([`Tasks::update`](crate::resources::tasks::Tasks::update)).
///
/// ```
/// use amocrm_client::{LeadId, TaskInput, TaskTypeId};
///
/// let due = chrono::Utc::now() + chrono::Duration::hours(2);
/// let task = TaskInput::new("Call the client back", due)
///     .for_entity(LeadId(17657))
///     .task_type(TaskTypeId::CALL);
/// # let _ = task;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[must_use]
pub struct TaskInput {
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    complete_till: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    task_type_id: Option<TaskTypeId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    entity_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    entity_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    responsible_user_id: Option<UserId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_by: Option<UserId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    is_completed: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<TaskResult>,
}

impl TaskInput {
    /// A task with its text and deadline, the two fields amoCRM requires.
    pub fn new(text: impl Into<String>, complete_till: DateTime<Utc>) -> Self {
        TaskInput {
            text: Some(text.into()),
            complete_till: Some(complete_till.timestamp()),
            ..TaskInput::default()
        }
    }

    /// Changes to an existing task: nothing set yet.
    pub fn changes() -> Self {
        TaskInput::default()
    }

    /// What to do.
    pub fn text(mut self, text: impl Into<String>) -> Self {
        self.text = Some(text.into());
        self
    }

    /// The deadline.
    pub fn complete_till(mut self, at: DateTime<Utc>) -> Self {
        self.complete_till = Some(at.timestamp());
        self
    }

    /// The task type (default: [`TaskTypeId::CALL`]).
    pub fn task_type(mut self, task_type: TaskTypeId) -> Self {
        self.task_type_id = Some(task_type);
        self
    }

    /// The lead (contact, company) the task is about.
    pub fn for_entity(mut self, entity: impl Into<TaskEntity>) -> Self {
        let entity = entity.into();
        self.entity_id = Some(entity.entity_id);
        self.entity_type = Some(entity.entity_type.as_str());
        self
    }

    /// Who has to do it.
    pub fn responsible_user(mut self, user: UserId) -> Self {
        self.responsible_user_id = Some(user);
        self
    }

    /// How long it takes, in seconds (ending at the deadline).
    pub fn duration(mut self, seconds: i64) -> Self {
        self.duration = Some(seconds);
        self
    }

    /// Who created it.
    pub fn created_by(mut self, user: UserId) -> Self {
        self.created_by = Some(user);
        self
    }

    /// Marks the task done with an outcome (`is_completed` and `result.text`).
    pub fn complete(mut self, result: impl Into<String>) -> Self {
        self.is_completed = Some(true);
        self.result = Some(TaskResult {
            text: Some(result.into()),
        });
        self
    }
}
