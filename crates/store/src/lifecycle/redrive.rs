//! **redrive**: a `FAILED` or `CANCELLED` task back to `IN_PROGRESS`, its failed and
//! cancelled service requests to `PENDING`, the failure kept in `task_redrives`, its
//! deadline (if it has one) counted again from now. See the state machine in
//! [`super`].

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use orchestrator_core::{Status, TenantName};
use serde_json::Value;
use uuid::Uuid;

use super::lock;
use crate::StoreError;
use crate::schema::{service_requests, tasks};

/// What a re-drive found.
#[derive(Debug, Clone, PartialEq)]
pub enum Redrive {
    /// The task was `FAILED` or `CANCELLED`: it is `IN_PROGRESS` again and these many
    /// failed or cancelled service requests are `PENDING`, their attempts kept.
    Reopened {
        service_requests: usize,
        /// The task's W3C `traceparent`: the re-drive joins the task's trace.
        traceparent: Option<String>,
    },
    /// Only a `FAILED` or `CANCELLED` task can be re-driven.
    NotFailed(Status),
    /// No such task in the caller's tenant (another tenant's task is not found either).
    NotFound,
}

/// Reopens a `FAILED` or `CANCELLED` task for another run of what did not complete:
/// its failed and cancelled service requests go
/// back to `PENDING` (attempts of earlier runs stay counted; their last error is
/// cleared), the task to `IN_PROGRESS`. The task row is locked until the caller's
/// transaction ends, so the caller can hand the task on (publish it) before anyone
/// processes it; call inside a transaction. Only a task of `tenant` is re-driven.
pub async fn redrive(
    conn: &mut AsyncPgConnection,
    tenant: &TenantName,
    task_id: Uuid,
) -> Result<Redrive, StoreError> {
    let Some((status, traceparent)) = lock::tasks(conn, &[task_id])
        .await?
        .remove(&task_id)
        .filter(|row| row.tenant == tenant.as_str())
        .map(|row| (row.status, row.traceparent))
    else {
        return Ok(Redrive::NotFound);
    };
    if !status.can_be_redriven() {
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
        .filter(
            service_requests::status.eq_any([Status::Failed.as_str(), Status::Cancelled.as_str()]),
        )
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
            // A deadline bounds each run: the new one gets as long as the first.
            tasks::deadline_at.eq(diesel::dsl::sql::<
                diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>,
            >(
                "now() + tasks.deadline_seconds * interval '1 second'"
            )),
        ))
        .execute(conn)
        .await?;
    Ok(Redrive::Reopened {
        service_requests: reopened,
        traceparent,
    })
}
