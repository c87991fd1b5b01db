//! The Kafka-mode outbox: tasks stored but not yet known to be published.
//!
//! In Kafka mode the API inserts a task and its row in `task_outbox` in one
//! statement (`lifecycle::accept::insert_many_queued`), publishes the task's record, and once the broker acknowledged it deletes
//! the row ([`mark_published`], batched by the API). A row left behind means the
//! record may never have reached the broker (the API died in between, or its mark was
//! lost): the API's sweeper publishes such tasks again ([`lock_stranded`]) once they are
//! older than its grace period, and drops rows whose task has moved on without it
//! ([`drop_settled`]).
//!
//! It is a table of its own rather than a column of `tasks` because marking is the
//! hot path: one mark per accepted task. On `tasks` it was an `UPDATE` that changed an
//! indexed column, so PostgreSQL wrote a new entry into each of the table's indexes
//! (the trigram GIN among them) and the status-count trigger ran. Here it is a `DELETE`
//! from a table with one index that holds only the tasks of the last moments, so the
//! sweeper's queries scan it whole without an index of their own.
//!
//! No foreign key ties a row to its task: it would cost a lookup of the task for every
//! accepted task. A row whose task is gone is dropped by [`drop_settled`] instead.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use orchestrator_core::Status;
use uuid::Uuid;

use crate::StoreError;
use crate::schema::{self, task_outbox};

/// Takes tasks out of the outbox: the broker acknowledged their records. Returns how
/// many were still in it.
pub async fn mark_published(
    conn: &mut AsyncPgConnection,
    task_ids: &[Uuid],
) -> Result<usize, StoreError> {
    if task_ids.is_empty() {
        return Ok(0);
    }
    Ok(
        diesel::delete(task_outbox::table.filter(task_outbox::task_id.eq_any(task_ids)))
            .execute(conn)
            .await?,
    )
}

/// Removes a task whose record the broker did not take, so a client told 503 finds
/// nothing half-done. Only a task still in the outbox (never marked published) and
/// still `PENDING` is removed; returns whether it was.
pub async fn forget_unpublished(
    conn: &mut AsyncPgConnection,
    task_id: Uuid,
) -> Result<bool, StoreError> {
    conn.transaction::<_, StoreError, _>(async |conn| {
        let unpublished = diesel::delete(task_outbox::table.find(task_id))
            .execute(conn)
            .await?;
        if unpublished == 0 {
            return Ok(false);
        }
        let deleted = diesel::delete(schema::tasks::table)
            .filter(schema::tasks::task_id.eq(task_id))
            .filter(schema::tasks::status.eq(Status::Pending.as_str()))
            .execute(conn)
            .await?;
        Ok(deleted == 1)
    })
    .await
}

/// A task whose record must be published again.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct StrandedTask {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    pub task_id: Uuid,
    /// Its W3C trace context, for the record's header.
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    pub traceparent: Option<String>,
}

/// Locks up to `limit` outbox rows created before `created_before` whose task is still
/// `PENDING` (their API process died between storing and publishing them, or their
/// mark was lost), oldest first, and returns their tasks. Rows locked by another
/// sweeper are skipped, so API replicas never publish the same task at once; the task
/// rows are not locked, so workers are never held up. Call inside a transaction that
/// marks them afterwards.
pub async fn lock_stranded(
    conn: &mut AsyncPgConnection,
    created_before: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<StrandedTask>, StoreError> {
    let rows: Vec<StrandedTask> = diesel::sql_query(
        "SELECT task_outbox.task_id, tasks.traceparent FROM task_outbox \
         JOIN tasks ON tasks.task_id = task_outbox.task_id \
         WHERE task_outbox.created_at < $1 AND tasks.status = 'PENDING' \
         ORDER BY task_outbox.created_at \
         LIMIT $2 \
         FOR UPDATE OF task_outbox SKIP LOCKED",
    )
    .bind::<Timestamptz, _>(created_before)
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await?;
    Ok(rows)
}

/// Deletes outbox rows created before `created_before` whose task is gone or no longer
/// `PENDING`: its record evidently reached a worker (or the task was deleted), but the
/// mark was lost. Without this they would pile up. Rows another sweeper holds are
/// skipped. Returns how many were deleted.
pub async fn drop_settled(
    conn: &mut AsyncPgConnection,
    created_before: DateTime<Utc>,
) -> Result<usize, StoreError> {
    Ok(diesel::sql_query(
        "DELETE FROM task_outbox WHERE task_id IN ( \
           SELECT o.task_id FROM task_outbox AS o \
           WHERE o.created_at < $1 AND NOT EXISTS ( \
             SELECT 1 FROM tasks WHERE tasks.task_id = o.task_id AND tasks.status = 'PENDING') \
           FOR UPDATE SKIP LOCKED)",
    )
    .bind::<Timestamptz, _>(created_before)
    .execute(conn)
    .await?)
}
