//! Row types: what the tables hold, with core types where the database stores them as text.

use chrono::{DateTime, Utc};
use diesel::deserialize::{FromSql, FromSqlRow};
use diesel::pg::{Pg, PgValue};
use diesel::prelude::*;
use diesel::sql_types::Text;
use orchestrator_core::Status;
use serde_json::Value;
use uuid::Uuid;

use crate::schema::{service_request_attempts, service_requests, task_redrives, tasks};

/// A row of `tasks`.
#[derive(Debug, Clone, PartialEq, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = tasks, check_for_backend(Pg))]
pub struct TaskRow {
    pub id: i64,
    pub task_id: Uuid,
    pub task_name: String,
    pub task_description: Option<String>,
    #[diesel(deserialize_as = DbStatus)]
    pub status: Status,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub payload: Value,
    pub error_message: Option<String>,
    pub idempotency_key: Option<String>,
    /// The tenant of the credential that submitted the task.
    pub tenant: String,
    /// How long the task may take, as submitted (`None`: no deadline).
    pub deadline_seconds: Option<i32>,
    /// When it must be final: accepted (or last re-driven) + `deadline_seconds`.
    pub deadline_at: Option<DateTime<Utc>>,
    /// Where to POST the task's summary when it is final.
    pub callback_url: Option<String>,
    /// The W3C `traceparent` of the request that accepted it: every run of the task
    /// joins that trace (`None`: accepted by a release before traces).
    pub traceparent: Option<String>,
}

impl TaskRow {
    /// Its position in the newest-first order: where the next page starts when this is
    /// the last row of one.
    pub fn cursor(&self) -> crate::TaskCursor {
        crate::TaskCursor {
            created_at: self.created_at,
            id: self.id,
        }
    }
}

/// A task's state without its request: what a transition reads of a task it locks
/// (see [`crate::lifecycle`]). The request (`payload`) only the start reads, as text
/// ([`crate::lifecycle::start::TaskToStart`]); the others never look at it.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = tasks, check_for_backend(Pg))]
pub struct TaskState {
    pub task_id: Uuid,
    #[diesel(deserialize_as = DbStatus)]
    pub status: Status,
    pub created_at: DateTime<Utc>,
    pub tenant: String,
    pub deadline_seconds: Option<i32>,
    pub deadline_at: Option<DateTime<Utc>>,
    pub callback_url: Option<String>,
    pub traceparent: Option<String>,
}

/// A row of `service_requests`.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = service_requests, check_for_backend(Pg))]
pub struct ServiceRequestRow {
    pub id: Uuid,
    pub task_id: Uuid,
    pub item_index: i32,
    pub service_name: String,
    pub scenario_id: Uuid,
    pub business_type_id: Uuid,
    #[diesel(deserialize_as = DbStatus)]
    pub status: Status,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub request_payload: Value,
    pub response_payload: Option<Value>,
    pub error_message: Option<String>,
}

/// A row of `service_request_attempts`: one failed attempt of a service request.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = service_request_attempts, check_for_backend(Pg))]
pub struct AttemptRow {
    pub service_request_id: Uuid,
    /// Counted over all runs of the service request, from 1.
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i64,
    pub status_code: Option<i32>,
    pub error: String,
}

/// A row of `task_redrives`: an earlier failure of a task, and when it was re-driven.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = task_redrives, check_for_backend(Pg))]
pub struct RedriveRow {
    pub task_id: Uuid,
    /// 1 for the task's first re-drive.
    pub redrive: i32,
    pub failed_at: DateTime<Utc>,
    pub redriven_at: DateTime<Utc>,
    pub error_message: Option<String>,
}

/// Reads a status column. A value outside the four (impossible while the CHECK
/// constraint holds) is a deserialization error rather than a silent default.
#[derive(Debug, FromSqlRow)]
pub struct DbStatus(Status);

impl FromSql<Text, Pg> for DbStatus {
    fn from_sql(bytes: PgValue<'_>) -> diesel::deserialize::Result<Self> {
        let text = <String as FromSql<Text, Pg>>::from_sql(bytes)?;
        Ok(DbStatus(Status::parse(&text)?))
    }
}

impl From<DbStatus> for Status {
    fn from(value: DbStatus) -> Self {
        value.0
    }
}
