//! **redrive**: a `FAILED` task back to `IN_PROGRESS`, its failed service requests to
//! `PENDING`, the failure kept in `task_redrives`. See the state machine in [`super`].

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
    /// The task was `FAILED`: it is `IN_PROGRESS` again and these many failed service
    /// requests are `PENDING`, their attempts kept.
    Reopened { service_requests: usize },
    /// Only a `FAILED` task can be re-driven.
    NotFailed(Status),
    /// No such task in the caller's tenant (another tenant's task is not found either).
    NotFound,
}

/// Reopens a `FAILED` task for another run of its failed service requests: they go
/// back to `PENDING` (attempts of earlier runs stay counted; their last error is
/// cleared), the task to `IN_PROGRESS`. The task row is locked until the caller's
/// transaction ends, so the caller can hand the task on (publish it) before anyone
/// processes it; call inside a transaction. Only a task of `tenant` is re-driven.
pub async fn redrive(
    conn: &mut AsyncPgConnection,
    tenant: &TenantName,
    task_id: Uuid,
) -> Result<Redrive, StoreError> {
    let Some(status) = lock::tasks(conn, &[task_id])
        .await?
        .remove(&task_id)
        .filter(|row| row.tenant == tenant.as_str())
        .map(|row| row.status)
    else {
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
