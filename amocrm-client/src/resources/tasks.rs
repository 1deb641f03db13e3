//! `client.tasks()`: tasks of users, usually about a lead, contact or company.

use http::Method;

use crate::client::{Client, Query};
use crate::error::Result;
use crate::models::{Task, TaskId, TaskInput, TaskTypeId, UserId};

use super::leads::{single_patch, with_ids};
use super::write::{BatchWrite, SingleWrite, to_values};
use super::{EntityType, ListRequest, MAX_PAGE_SIZE, Order, TimeRange, get_one, push_extra};

/// Filters for `GET /api/v4/tasks`. Empty fields are not sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TasksFilter {
    /// `filter[id][]`.
    pub ids: Vec<TaskId>,
    /// `filter[responsible_user_id][]`.
    pub responsible_user_ids: Vec<UserId>,
    /// `filter[is_completed]`: only done (`true`) or only open (`false`) tasks.
    pub is_completed: Option<bool>,
    /// `filter[task_type][]`.
    pub task_types: Vec<TaskTypeId>,
    /// `filter[entity_type]`: tasks about leads, contacts, ...
    pub entity_type: Option<EntityType>,
    /// `filter[entity_id][]` (with `entity_type`).
    pub entity_ids: Vec<u64>,
    /// `filter[updated_at][from|to]`.
    pub updated_at: Option<TimeRange>,
    /// `order[..]` (`created_at`, `complete_till`, `id`).
    pub order: Option<Order>,
    /// Items per page, at most 250 (the default here).
    pub limit: Option<u32>,
    /// Any other parameter, sent as given.
    pub extra: Vec<(String, String)>,
}

impl TasksFilter {
    fn to_query(&self) -> Query {
        let mut query = Query::new();
        query.push_all("filter[id]", &self.ids);
        query.push_all("filter[responsible_user_id]", &self.responsible_user_ids);
        if let Some(done) = self.is_completed {
            query.push("filter[is_completed]", u8::from(done));
        }
        query.push_all("filter[task_type]", &self.task_types);
        if let Some(entity) = self.entity_type {
            query.push("filter[entity_type]", entity);
        }
        query.push_all("filter[entity_id]", &self.entity_ids);
        if let Some(range) = &self.updated_at {
            range.push(&mut query, "filter[updated_at]");
        }
        if let Some(order) = &self.order {
            order.push(&mut query);
        }
        push_extra(&mut query, &self.extra);
        query
    }
}

/// Task endpoints: see [`Client::tasks`].
#[derive(Debug, Clone, Copy)]
pub struct Tasks<'a> {
    client: &'a Client,
}

impl Client {
    /// Tasks: list, get, create, update, complete.
    pub fn tasks(&self) -> Tasks<'_> {
        Tasks { client: self }
    }
}

impl<'a> Tasks<'a> {
    /// `GET /api/v4/tasks` with filters; stream it or fetch pages.
    pub fn list(&self, filter: TasksFilter) -> ListRequest<Task> {
        ListRequest::new(
            self.client,
            "/api/v4/tasks",
            "api/v4/tasks",
            filter.to_query(),
            Some(filter.limit.unwrap_or(MAX_PAGE_SIZE)),
            MAX_PAGE_SIZE,
        )
    }

    /// `GET /api/v4/tasks/{id}`; [`Error::NotFound`](crate::Error::NotFound) if there is none.
    pub async fn get(&self, id: TaskId) -> Result<Task> {
        get_one(
            self.client,
            "/api/v4/tasks/{id}",
            format!("api/v4/tasks/{id}"),
            Query::new(),
        )
        .await
    }

    /// `POST /api/v4/tasks`: creates tasks, 50 a request by default, answering their ids in
    /// the order given.
    ///
    /// Retried only on 429; a failure after sending is
    /// [`Error::MaybeApplied`](crate::Error::MaybeApplied): the tasks may exist.
    pub fn create(&self, tasks: impl IntoIterator<Item = TaskInput>) -> BatchWrite<'a, TaskId> {
        BatchWrite::new(
            self.client,
            Method::POST,
            "/api/v4/tasks",
            "api/v4/tasks",
            "tasks",
            to_values(tasks),
        )
    }

    /// `PATCH /api/v4/tasks`: changes several tasks. Retried like a read.
    pub fn update_many(
        &self,
        changes: impl IntoIterator<Item = (TaskId, TaskInput)>,
    ) -> BatchWrite<'a, TaskId> {
        BatchWrite::new(
            self.client,
            Method::PATCH,
            "/api/v4/tasks",
            "api/v4/tasks",
            "tasks",
            with_ids(changes),
        )
    }

    /// `PATCH /api/v4/tasks/{id}`: changes one task. Retried like a read.
    pub fn update(&self, id: TaskId, changes: TaskInput) -> SingleWrite<'a, TaskId> {
        single_patch(
            self.client,
            "/api/v4/tasks/{id}",
            "api/v4/tasks",
            id.0,
            &changes,
        )
    }

    /// Completes a task with its outcome: `PATCH /api/v4/tasks/{id}` with
    /// `{"is_completed": true, "result": {"text": ..}}`. Retried like a read.
    pub fn complete(&self, id: TaskId, result: impl Into<String>) -> SingleWrite<'a, TaskId> {
        self.update(id, TaskInput::changes().complete(result))
    }
}
