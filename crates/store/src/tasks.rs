//! Queries on `tasks`.

use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use orchestrator_core::Status;
use serde_json::Value;
use uuid::Uuid;

use crate::schema::{task_redrives, tasks};
use crate::{RedriveRow, StoreError, TaskCursor, TaskRow};

/// A task to insert; it starts `PENDING`.
#[derive(Debug, Insertable)]
#[diesel(table_name = tasks)]
pub struct NewTask<'a> {
    pub task_id: Uuid,
    pub task_name: &'a str,
    pub task_description: Option<&'a str>,
    pub payload: &'a Value,
    pub idempotency_key: Option<&'a str>,
}

/// The result of inserting a task that may carry an idempotency key.
#[derive(Debug, Clone, PartialEq)]
pub enum InsertedTask {
    Created(TaskRow),
    /// A task with the same idempotency key already existed; nothing was inserted.
    Existing(TaskRow),
}

/// Inserts a task, or finds the one stored earlier under the same idempotency key.
pub async fn insert(
    conn: &mut AsyncPgConnection,
    new_task: &NewTask<'_>,
) -> Result<InsertedTask, StoreError> {
    insert_many(conn, std::slice::from_ref(new_task))
        .await?
        .pop()
        .ok_or_else(|| StoreError::Corrupt("an insert answered nothing".into()))
}

/// Inserts many tasks in one statement (one transaction, one commit): the API's group
/// commit. Answers in the order given. Tasks whose idempotency key was taken (by an
/// earlier request, or an earlier entry of `new_tasks`) come back as the stored task.
pub async fn insert_many(
    conn: &mut AsyncPgConnection,
    new_tasks: &[NewTask<'_>],
) -> Result<Vec<InsertedTask>, StoreError> {
    if new_tasks.is_empty() {
        return Ok(Vec::new());
    }
    let created: Vec<TaskRow> = diesel::insert_into(tasks::table)
        .values(new_tasks)
        .on_conflict(tasks::idempotency_key)
        .do_nothing()
        .returning(TaskRow::as_returning())
        .get_results(conn)
        .await?;
    answer_inserted(conn, new_tasks, created).await
}

/// Answers each of `new_tasks` in order from the rows a multi-row insert created: the
/// created row, or else the task stored earlier under the same idempotency key.
pub(crate) async fn answer_inserted(
    conn: &mut AsyncPgConnection,
    new_tasks: &[NewTask<'_>],
    created: Vec<TaskRow>,
) -> Result<Vec<InsertedTask>, StoreError> {
    let mut created: std::collections::HashMap<Uuid, TaskRow> =
        created.into_iter().map(|row| (row.task_id, row)).collect();
    let mut answers = Vec::with_capacity(new_tasks.len());
    for new_task in new_tasks {
        match created.remove(&new_task.task_id) {
            Some(row) => answers.push(InsertedTask::Created(row)),
            None => {
                let key = new_task.idempotency_key.ok_or_else(|| {
                    StoreError::Corrupt("insert skipped without an idempotency key".into())
                })?;
                let existing = tasks::table
                    .filter(tasks::idempotency_key.eq(key))
                    .select(TaskRow::as_select())
                    .get_result(conn)
                    .await?;
                answers.push(InsertedTask::Existing(existing));
            }
        }
    }
    Ok(answers)
}

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

/// One page of tasks, newest first, optionally of one status, after `cursor`.
///
/// Fetches `limit + 1` rows so the caller can tell whether another page follows.
pub async fn list_page(
    conn: &mut AsyncPgConnection,
    status: Option<Status>,
    cursor: Option<TaskCursor>,
    limit: i64,
) -> Result<Vec<TaskRow>, StoreError> {
    let mut query = tasks::table.select(TaskRow::as_select()).into_boxed();
    if let Some(status) = status {
        query = query.filter(tasks::status.eq(status.as_str()));
    }
    if let Some(cursor) = cursor {
        // A row comparison, so PostgreSQL can start the index scan at the cursor
        // instead of filtering its way down from the newest task.
        query = query.filter(
            sql::<Bool>("(tasks.created_at, tasks.id) < (")
                .bind::<Timestamptz, _>(cursor.created_at)
                .sql(", ")
                .bind::<BigInt, _>(cursor.id)
                .sql(")"),
        );
    }
    Ok(query
        .order((tasks::created_at.desc(), tasks::id.desc()))
        .limit(limit + 1)
        .load(conn)
        .await?)
}

/// Tasks that were accepted but not finished, oldest first, after `after`: work to
/// resume. Keyset-paged like [`list_page`] so a large backlog is read in batches.
pub async fn unfinished(
    conn: &mut AsyncPgConnection,
    after: Option<TaskCursor>,
    limit: i64,
) -> Result<Vec<(TaskCursor, Uuid)>, StoreError> {
    let mut query = tasks::table
        .filter(tasks::status.eq_any([Status::Pending.as_str(), Status::InProgress.as_str()]))
        .select((tasks::created_at, tasks::id, tasks::task_id))
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(
            sql::<Bool>("(tasks.created_at, tasks.id) > (")
                .bind::<Timestamptz, _>(after.created_at)
                .sql(", ")
                .bind::<BigInt, _>(after.id)
                .sql(")"),
        );
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
