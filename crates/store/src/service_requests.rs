//! Queries on `service_requests`, and the transitions of a task that go with them.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use orchestrator_core::{PlannedServiceRequest, Status};
use serde_json::Value;
use uuid::Uuid;

use crate::batch;
use crate::leases::Fence;
use crate::schema::{service_request_attempts, service_requests, tasks};
use crate::{AttemptRow, ServiceRequestRow, StoreError};

/// What starting a task found.
#[derive(Debug, Clone, PartialEq)]
pub enum StartedTask {
    /// The task is (now) `IN_PROGRESS`; these service requests still need to run.
    Running(Vec<ServiceRequestRow>),
    /// The task had already finished; nothing to do.
    AlreadyFinished(Status),
    /// The stored request can no longer run (the planner refused it, e.g. it names a
    /// service no longer configured): the task is now `FAILED` with this reason.
    Rejected(String),
    NotFound,
}

/// Starts (or resumes) processing a task with the given plan, in one transaction (a
/// batch of one of [`batch::start_tasks`]): creates its service requests unless they
/// exist, moves the task from `PENDING` to `IN_PROGRESS`, and
/// returns the service requests that have not finished yet, now `IN_PROGRESS`.
///
/// Running it twice creates nothing twice and never reopens a finished task. With a
/// `fence`, refused once the partition's lease has moved on (see [`leases`]).
pub async fn start_task(
    conn: &mut AsyncPgConnection,
    task_id: Uuid,
    planned: &[PlannedServiceRequest],
    fence: Option<&Fence>,
) -> Result<StartedTask, StoreError> {
    let request = batch::StartRequest {
        task_id,
        fence: fence.cloned(),
    };
    let plan = |_: &crate::TaskRow| Ok(planned.to_vec());
    only(batch::start_tasks(conn, std::slice::from_ref(&request), &plan).await?)
}

/// How one service request ended.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishedServiceRequest {
    /// `COMPLETED` or `FAILED`.
    pub status: Status,
    /// Attempts made in this run; added to those of earlier runs.
    pub attempts: i32,
    pub response_payload: Option<Value>,
    pub error_message: Option<String>,
    pub started_at: DateTime<Utc>,
    pub completed_at: DateTime<Utc>,
    /// The attempts of this run that failed, in order (the last one too, when the
    /// request failed for good). Stored in `service_request_attempts`; a request that
    /// succeeds at once has none, and writes nothing there.
    pub failed_attempts: Vec<FailedAttempt>,
}

/// One failed HTTP attempt of a service request.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedAttempt {
    /// 1 for the first attempt of this run; stored counting over all runs.
    pub number: i32,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i64,
    /// The service's HTTP status, when it answered.
    pub status_code: Option<i32>,
    pub error: String,
}

/// Records how a service request ended. Returns false (and changes nothing) when it was
/// not `IN_PROGRESS`, e.g. because another run already recorded it. With a `fence`,
/// refused once the partition's lease has moved on.
pub async fn record_finished(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    finished: &FinishedServiceRequest,
    fence: Option<&Fence>,
) -> Result<bool, StoreError> {
    let request = batch::RecordRequest {
        id,
        finished: finished.clone(),
        fence: fence.cloned(),
    };
    only(batch::record_many(conn, std::slice::from_ref(&request)).await?)
}

/// A task's service requests, by item then service name.
pub async fn list_for_task(
    conn: &mut AsyncPgConnection,
    task_id: Uuid,
) -> Result<Vec<ServiceRequestRow>, StoreError> {
    Ok(service_requests::table
        .filter(service_requests::task_id.eq(task_id))
        .order((
            service_requests::item_index.asc(),
            service_requests::service_name.asc(),
        ))
        .select(ServiceRequestRow::as_select())
        .load(conn)
        .await?)
}

/// Settles a task from its service requests (a batch of one of [`batch::finish_many`]
/// without outcomes) (see [`orchestrator_core::settle_task`]) and
/// returns its status afterwards. A task already finished is left as it is. With a
/// `fence`, refused once the partition's lease has moved on.
pub async fn settle(
    conn: &mut AsyncPgConnection,
    task_id: Uuid,
    fence: Option<&Fence>,
) -> Result<Option<Status>, StoreError> {
    let request = batch::FinishRequest {
        task_id,
        outcomes: Vec::new(),
        fence: fence.cloned(),
    };
    only(batch::finish_many(conn, std::slice::from_ref(&request)).await?)
}

/// The one answer of a batch of one.
fn only<T>(answers: Vec<Result<T, StoreError>>) -> Result<T, StoreError> {
    answers.into_iter().next().unwrap_or_else(|| {
        Err(StoreError::Corrupt(
            "a batch of one answered nothing".into(),
        ))
    })
}

/// The recorded failed attempts of a task's service requests, by service request, each
/// oldest first.
pub async fn failed_attempts_for_task(
    conn: &mut AsyncPgConnection,
    task_id: Uuid,
) -> Result<Vec<AttemptRow>, StoreError> {
    Ok(service_request_attempts::table
        .inner_join(service_requests::table)
        .filter(service_requests::task_id.eq(task_id))
        .order((
            service_request_attempts::service_request_id,
            service_request_attempts::attempt,
        ))
        .select(AttemptRow::as_select())
        .load(conn)
        .await?)
}

/// What a re-drive found.
#[derive(Debug, Clone, PartialEq)]
pub enum Redrive {
    /// The task was `FAILED`: it is `IN_PROGRESS` again and these many failed service
    /// requests are `PENDING`, their attempts kept.
    Reopened {
        service_requests: usize,
    },
    /// Only a `FAILED` task can be re-driven.
    NotFailed(Status),
    NotFound,
}

/// Reopens a `FAILED` task for another run of its failed service requests: they go
/// back to `PENDING` (attempts of earlier runs stay counted; their last error is
/// cleared), the task to `IN_PROGRESS`. The task row is locked until the caller's
/// transaction ends, so the caller can hand the task on (publish it) before anyone
/// processes it; call inside a transaction.
pub async fn redrive(conn: &mut AsyncPgConnection, task_id: Uuid) -> Result<Redrive, StoreError> {
    let Some(status) = lock_task_status(conn, task_id).await? else {
        return Ok(Redrive::NotFound);
    };
    if status != Status::Failed {
        return Ok(Redrive::NotFailed(status));
    }
    // The failure being re-driven stays visible: when it happened (the settle's
    // `updated_at`, which nothing changes while the task is FAILED) and its error.
    diesel::sql_query(
        "INSERT INTO task_redrives (task_id, redrive, failed_at, error_message) \
         SELECT t.task_id, \
                COALESCE((SELECT max(r.redrive) FROM task_redrives r WHERE r.task_id = t.task_id), 0) + 1, \
                t.updated_at, t.error_message \
         FROM tasks t WHERE t.task_id = $1",
    )
    .bind::<diesel::sql_types::Uuid, _>(task_id)
    .execute(conn)
    .await?;
    let reopened = diesel::update(service_requests::table)
        .filter(service_requests::task_id.eq(task_id))
        .filter(service_requests::status.eq(Status::Failed.as_str()))
        .set((
            service_requests::status.eq(Status::Pending.as_str()),
            service_requests::error_message.eq(None::<String>),
            service_requests::response_payload.eq(None::<Value>),
            service_requests::started_at.eq(None::<DateTime<Utc>>),
            service_requests::completed_at.eq(None::<DateTime<Utc>>),
            service_requests::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    diesel::update(tasks::table)
        .filter(tasks::task_id.eq(task_id))
        .set((
            tasks::status.eq(Status::InProgress.as_str()),
            tasks::error_message.eq(None::<String>),
            tasks::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    Ok(Redrive::Reopened {
        service_requests: reopened,
    })
}

/// Locks the task's row until the transaction ends and returns its status (`None`
/// when there is no such task). Every status change of a task goes through this lock,
/// so concurrent runs, settles and re-drives of one task are serialised.
async fn lock_task_status(
    conn: &mut AsyncPgConnection,
    task_id: Uuid,
) -> Result<Option<Status>, StoreError> {
    let status: Option<String> = tasks::table
        .filter(tasks::task_id.eq(task_id))
        .select(tasks::status)
        .for_update()
        .get_result(conn)
        .await
        .optional()?;
    status
        .map(|status| Status::parse(&status).map_err(|e| StoreError::Corrupt(e.to_string())))
        .transpose()
}
