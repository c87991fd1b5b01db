//! Reads of `tasks`. The writes are transitions of the task lifecycle
//! ([`crate::lifecycle`]).

use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::Bool;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use orchestrator_core::{Status, TenantName};
use uuid::Uuid;

use crate::cursor::keyset;
use crate::schema::{task_redrives, tasks};
use crate::{RedriveRow, StoreError, TaskCursor, TaskRow};

/// The task, whatever its tenant: for the processor and for tests. What a client asks
/// for goes through [`find_in`].
pub async fn find(
    conn: &mut AsyncPgConnection,
    task_id: Uuid,
) -> Result<Option<TaskRow>, StoreError> {
    Ok(tasks::table
        .filter(tasks::task_id.eq(task_id))
        .select(TaskRow::as_select())
        .get_result(conn)
        .await
        .optional()?)
}

/// Which of these tasks are final (`COMPLETED`, `FAILED`, `CANCELLED`): one
/// primary-key lookup each.
pub async fn final_among(
    conn: &mut AsyncPgConnection,
    task_ids: &[Uuid],
) -> Result<Vec<Uuid>, StoreError> {
    Ok(tasks::table
        .filter(tasks::task_id.eq_any(task_ids))
        .filter(
            tasks::status.eq_any(
                Status::ALL
                    .into_iter()
                    .filter(|s| s.is_terminal())
                    .map(Status::as_str)
                    .collect::<Vec<_>>(),
            ),
        )
        .select(tasks::task_id)
        .load(conn)
        .await?)
}

/// The task if it belongs to `tenant`. Another tenant's task is `None`, exactly like a
/// missing one, so a client cannot tell that it exists.
pub async fn find_in(
    conn: &mut AsyncPgConnection,
    tenant: &TenantName,
    task_id: Uuid,
) -> Result<Option<TaskRow>, StoreError> {
    Ok(tasks::table
        .filter(tasks::task_id.eq(task_id))
        .filter(tasks::tenant.eq(tenant.as_str()))
        .select(TaskRow::as_select())
        .get_result(conn)
        .await
        .optional()?)
}

/// The task's earlier failures and re-drives, oldest first.
pub async fn redrives(
    conn: &mut AsyncPgConnection,
    task_id: Uuid,
) -> Result<Vec<RedriveRow>, StoreError> {
    Ok(task_redrives::table
        .filter(task_redrives::task_id.eq(task_id))
        .order(task_redrives::redrive)
        .select(RedriveRow::as_select())
        .load(conn)
        .await?)
}

/// One page of a tenant's tasks, newest first, optionally of one status, after `cursor`
/// (`tasks_tenant_newest_first_idx`, `tasks_tenant_status_newest_first_idx`).
///
/// Fetches `limit + 1` rows so the caller can tell whether another page follows.
pub async fn list_page(
    conn: &mut AsyncPgConnection,
    tenant: &TenantName,
    status: Option<Status>,
    cursor: Option<TaskCursor>,
    limit: i64,
) -> Result<Vec<TaskRow>, StoreError> {
    let mut query = tasks::table
        .select(TaskRow::as_select())
        .filter(tasks::tenant.eq(tenant.as_str()))
        .into_boxed();
    if let Some(status) = status {
        query = query.filter(tasks::status.eq(status.as_str()));
    }
    if let Some(cursor) = cursor {
        query = query.filter(keyset("tasks.created_at, tasks.id", "<", cursor));
    }
    Ok(query
        .order((tasks::created_at.desc(), tasks::id.desc()))
        .limit(limit + 1)
        .load(conn)
        .await?)
}

/// Tasks of every tenant that were accepted but not finished, oldest first, after
/// `after`: work to resume (`tasks_unfinished_idx`). Keyset-paged like [`list_page`]
/// so a large backlog is read in batches.
pub async fn unfinished(
    conn: &mut AsyncPgConnection,
    after: Option<TaskCursor>,
    limit: i64,
) -> Result<Vec<(TaskCursor, Uuid)>, StoreError> {
    let mut query = tasks::table
        // Literal, not bound: the planner matches it to the partial index's predicate
        // only when it can see the values, also in a generic prepared plan.
        .filter(sql::<Bool>("tasks.status IN ('PENDING', 'IN_PROGRESS')"))
        .select((tasks::created_at, tasks::id, tasks::task_id))
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(keyset("tasks.created_at, tasks.id", ">", after));
    }
    let rows: Vec<(chrono::DateTime<chrono::Utc>, i64, Uuid)> = query
        .order((tasks::created_at.asc(), tasks::id.asc()))
        .limit(limit)
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(created_at, id, task_id)| (TaskCursor { created_at, id }, task_id))
        .collect())
}
