//! Queries on `service_requests`, and the transitions of a task that go with them.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use orchestrator_core::{
    PlannedServiceRequest, ServiceName, ServiceRequestOutcome, Settlement, Status, settle_task,
};
use serde_json::Value;
use uuid::Uuid;

use crate::leases::{self, Fence};
use crate::schema::{service_requests, tasks};
use crate::{ServiceRequestRow, StoreError};

#[derive(Insertable)]
#[diesel(table_name = service_requests)]
struct NewServiceRequest<'a> {
    id: Uuid,
    task_id: Uuid,
    item_index: i32,
    service_name: &'a str,
    scenario_id: Uuid,
    business_type_id: Uuid,
    request_payload: &'a Value,
}

/// Why a task could not be started.
#[derive(Debug, Clone, PartialEq)]
pub enum StartedTask {
    /// The task is (now) `IN_PROGRESS`; these service requests still need to run.
    Running(Vec<ServiceRequestRow>),
    /// The task had already finished; nothing to do.
    AlreadyFinished(Status),
    NotFound,
}

/// Starts (or resumes) processing a task, in one transaction: creates its service
/// requests unless they exist, moves the task from `PENDING` to `IN_PROGRESS`, and
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
    conn.transaction::<_, StoreError, _>(async |conn| {
        if let Some(fence) = fence {
            leases::check_fence(conn, fence).await?;
        }
        let Some(status) = lock_task_status(conn, task_id).await? else {
            return Ok(StartedTask::NotFound);
        };
        if status.is_terminal() {
            return Ok(StartedTask::AlreadyFinished(status));
        }

        let rows: Vec<NewServiceRequest<'_>> = planned
            .iter()
            .map(|sr| NewServiceRequest {
                id: sr.id,
                task_id,
                item_index: sr.item_index,
                service_name: sr.service_name.as_str(),
                scenario_id: sr.scenario_id,
                business_type_id: sr.business_type_id,
                request_payload: &sr.request_payload,
            })
            .collect();
        diesel::insert_into(service_requests::table)
            .values(&rows)
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;

        if status == Status::Pending {
            diesel::update(tasks::table)
                .filter(tasks::task_id.eq(task_id))
                .set((
                    tasks::status.eq(Status::InProgress.as_str()),
                    tasks::updated_at.eq(diesel::dsl::now),
                ))
                .execute(conn)
                .await?;
        }

        let mut unfinished: Vec<ServiceRequestRow> = diesel::update(service_requests::table)
            .filter(service_requests::task_id.eq(task_id))
            .filter(
                service_requests::status
                    .eq_any([Status::Pending.as_str(), Status::InProgress.as_str()]),
            )
            .set((
                service_requests::status.eq(Status::InProgress.as_str()),
                service_requests::started_at.eq(diesel::dsl::sql(
                    "COALESCE(service_requests.started_at, now())",
                )),
                service_requests::updated_at.eq(diesel::dsl::now),
            ))
            .returning(ServiceRequestRow::as_returning())
            .get_results(conn)
            .await?;
        unfinished
            .sort_by(|a, b| (a.item_index, &a.service_name).cmp(&(b.item_index, &b.service_name)));
        Ok(StartedTask::Running(unfinished))
    })
    .await
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
    match fence {
        None => write_finished(conn, id, finished).await,
        Some(fence) => {
            conn.transaction::<_, StoreError, _>(async |conn| {
                leases::check_fence(conn, fence).await?;
                write_finished(conn, id, finished).await
            })
            .await
        }
    }
}

async fn write_finished(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    finished: &FinishedServiceRequest,
) -> Result<bool, StoreError> {
    let updated = diesel::update(service_requests::table)
        .filter(service_requests::id.eq(id))
        .filter(service_requests::status.eq(Status::InProgress.as_str()))
        .set((
            service_requests::status.eq(finished.status.as_str()),
            service_requests::attempts.eq(service_requests::attempts + finished.attempts),
            service_requests::response_payload.eq(&finished.response_payload),
            service_requests::error_message.eq(&finished.error_message),
            service_requests::started_at.eq(finished.started_at),
            service_requests::completed_at.eq(finished.completed_at),
            service_requests::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    Ok(updated == 1)
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

/// Settles a task from its service requests (see [`orchestrator_core::settle_task`]) and
/// returns its status afterwards. A task already finished is left as it is. With a
/// `fence`, refused once the partition's lease has moved on.
pub async fn settle(
    conn: &mut AsyncPgConnection,
    task_id: Uuid,
    fence: Option<&Fence>,
) -> Result<Option<Status>, StoreError> {
    conn.transaction::<_, StoreError, _>(async |conn| {
        if let Some(fence) = fence {
            leases::check_fence(conn, fence).await?;
        }
        let Some(status) = lock_task_status(conn, task_id).await? else {
            return Ok(None);
        };
        if status.is_terminal() {
            return Ok(Some(status));
        }

        let rows: Vec<(i32, String, String, Option<String>)> = service_requests::table
            .filter(service_requests::task_id.eq(task_id))
            .select((
                service_requests::item_index,
                service_requests::service_name,
                service_requests::status,
                service_requests::error_message,
            ))
            .load(conn)
            .await?;
        let outcomes = rows
            .into_iter()
            .map(|(item_index, service_name, status, error_message)| {
                Ok(ServiceRequestOutcome {
                    item_index,
                    service_name: ServiceName::parse(&service_name)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    status: Status::parse(&status)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    error_message,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;

        let (new_status, error_message) = match settle_task(&outcomes) {
            Settlement::Running => return Ok(Some(status)),
            Settlement::Completed => (Status::Completed, None),
            Settlement::Failed { error_message } => (Status::Failed, Some(error_message)),
        };
        diesel::update(tasks::table)
            .filter(tasks::task_id.eq(task_id))
            .set((
                tasks::status.eq(new_status.as_str()),
                tasks::error_message.eq(error_message),
                tasks::updated_at.eq(diesel::dsl::now),
            ))
            .execute(conn)
            .await?;
        Ok(Some(new_status))
    })
    .await
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
