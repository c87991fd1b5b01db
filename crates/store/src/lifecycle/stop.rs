//! **stop**: an unfinished task ended from outside its run. *Cancel* (a client's
//! `POST /api/tasks/{id}/cancel`) makes it `CANCELLED`; *expire* (its deadline passed)
//! makes it `FAILED`, saying so. Its unfinished service requests end with it
//! (`CANCELLED`, or `FAILED` with the deadline as their error); those that completed or
//! failed keep their outcome. The transaction notifies [`crate::notify::TASKS_STOPPED`]
//! with the task's id, so that whichever process runs the task drops its calls once the
//! stop commits. See the state machine in [`super`].
//!
//! A run that finishes at the same moment locks the task first or second: either the
//! run settles it and the stop finds it final, or the stop ends it and the run's
//! outcomes find their service requests no longer `IN_PROGRESS` and change nothing.

use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use orchestrator_core::{Status, TenantName};
use uuid::Uuid;

use super::{fence, lock};
use crate::leases::Fence;
use crate::schema::{service_requests, tasks};
use crate::{StoreError, TaskRow, notify};

/// What a stop found.
#[derive(Debug, Clone, PartialEq)]
pub enum Stop {
    /// The task was unfinished and is now final, as returned.
    Stopped(Box<TaskRow>),
    /// The task had already finished: nothing changed.
    AlreadyFinal(Status),
    /// Expire only: the task has no deadline, or it has not passed; nothing changed.
    NotDue,
    /// No such task (in the caller's tenant, for a cancel).
    NotFound,
}

/// The error of a task failed at its deadline, and of its service requests that had
/// not finished by then.
pub fn deadline_message(deadline_seconds: Option<i32>) -> String {
    match deadline_seconds {
        Some(seconds) => {
            format!("the task's deadline passed: it was not finished within {seconds} s")
        }
        None => "the task's deadline passed".to_owned(),
    }
}

/// Cancels a task of `tenant`: an unfinished one becomes `CANCELLED` with its unfinished
/// service requests. Call inside a transaction (the caller adds its audit row to it);
/// the task's row stays locked until it ends, and the notification is sent when it
/// commits.
pub async fn cancel(
    conn: &mut AsyncPgConnection,
    tenant: &TenantName,
    task_id: Uuid,
) -> Result<Stop, StoreError> {
    let Some(task) = lock::tasks(conn, &[task_id])
        .await?
        .remove(&task_id)
        .filter(|row| row.tenant == tenant.as_str())
    else {
        return Ok(Stop::NotFound);
    };
    if task.status.is_terminal() {
        return Ok(Stop::AlreadyFinal(task.status));
    }
    end(conn, &[task_id], Status::Cancelled, None).await?;
    reread(conn, task_id).await
}

/// Fails a task whose deadline has passed, in a transaction of its own (with the fence
/// of the worker's lease, when a worker asks). A task without a deadline, or whose
/// deadline is still ahead, is left as it is.
pub async fn expire(
    conn: &mut AsyncPgConnection,
    task_id: Uuid,
    fence: Option<&Fence>,
) -> Result<Stop, StoreError> {
    conn.transaction::<_, StoreError, _>(async |conn| {
        if fence::fenced_out(conn, std::iter::once(fence)).await?[0] {
            return Err(fence::fenced_error(fence));
        }
        let Some(task) = lock::tasks(conn, &[task_id]).await?.remove(&task_id) else {
            return Ok(Stop::NotFound);
        };
        if task.status.is_terminal() {
            return Ok(Stop::AlreadyFinal(task.status));
        }
        if task.deadline_at.is_none_or(|at| at > chrono::Utc::now()) {
            return Ok(Stop::NotDue);
        }
        let reason = deadline_message(task.deadline_seconds);
        end(conn, &[task_id], Status::Failed, Some(&reason)).await?;
        reread(conn, task_id).await
    })
    .await
}

/// Ends unfinished tasks (locked by the caller) and their unfinished service requests
/// with `status` and `reason`, and notifies [`notify::TASKS_STOPPED`]. Also what
/// [`super::start`] does to tasks whose deadline passed while they waited.
pub(super) async fn end(
    conn: &mut AsyncPgConnection,
    task_ids: &[Uuid],
    status: Status,
    reason: Option<&str>,
) -> Result<(), StoreError> {
    if task_ids.is_empty() {
        return Ok(());
    }
    diesel::update(service_requests::table)
        .filter(service_requests::task_id.eq_any(task_ids))
        .filter(
            service_requests::status
                .eq_any([Status::Pending.as_str(), Status::InProgress.as_str()]),
        )
        .set((
            service_requests::status.eq(status.as_str()),
            service_requests::error_message.eq(reason),
            service_requests::completed_at.eq(diesel::dsl::now),
            service_requests::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    diesel::update(tasks::table)
        .filter(tasks::task_id.eq_any(task_ids))
        .set((
            tasks::status.eq(status.as_str()),
            tasks::error_message.eq(reason),
            tasks::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    crate::webhooks::enqueue(conn, task_ids).await?;
    notify::tasks_stopped(conn, task_ids).await
}

async fn reread(conn: &mut AsyncPgConnection, task_id: Uuid) -> Result<Stop, StoreError> {
    let row = tasks::table
        .filter(tasks::task_id.eq(task_id))
        .select(TaskRow::as_select())
        .get_result(conn)
        .await?;
    Ok(Stop::Stopped(Box::new(row)))
}
