//! Retention: finished tasks past their tenant's retention period are removed with every
//! row that hangs off them, in small batches, by one process at a time.
//!
//! A batch is one transaction: [`lock_expired`] locks up to `limit` of a tenant's oldest
//! tasks that finished before the cut-off (`FOR UPDATE SKIP LOCKED`, so a concurrent
//! re-drive or cancel either wins the row before us, and the row no longer qualifies,
//! or waits for this short transaction and then finds no task), the caller may archive
//! them (`crate::archive`), then [`remove`] deletes their
//! service requests, events, webhook deliveries and outbox rows and the tasks. Rows with
//! a foreign key to those (attempts, re-drives, webhook attempts) go by `ON DELETE
//! CASCADE`. The counts per status follow through the `tasks` delete trigger, in the
//! same transaction.
//!
//! A task whose completion webhook is still being delivered is kept until the delivery
//! ends (delivered or given up): removing it would lose the notification.
//!
//! Which process runs the job: [`acquire_lease`] on `job_leases`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::sql_types::{Array, BigInt, Interval, Text, Timestamptz};
use diesel::{OptionalExtension, QueryableByName};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::StoreError;

/// The job name of the retention job in `job_leases`.
pub const RETENTION_JOB: &str = "retention";

/// What one batch removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, QueryableByName)]
pub struct Removed {
    #[diesel(sql_type = BigInt)]
    pub tasks: i64,
    #[diesel(sql_type = BigInt)]
    pub service_requests: i64,
}

impl std::ops::AddAssign for Removed {
    fn add_assign(&mut self, other: Self) {
        self.tasks += other.tasks;
        self.service_requests += other.service_requests;
    }
}

#[derive(QueryableByName)]
struct TenantRow {
    #[diesel(sql_type = Text)]
    tenant: String,
}

#[derive(QueryableByName)]
struct IdRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

#[derive(QueryableByName)]
struct HolderRow {
    #[diesel(sql_type = Text)]
    holder: String,
}

/// Tenants that have finished tasks, in order: one index probe per tenant (a loose scan
/// of `tasks_tenant_ended_at_idx`), however many tasks each has.
pub async fn tenants_with_finished_tasks(
    conn: &mut AsyncPgConnection,
) -> Result<Vec<String>, StoreError> {
    let rows: Vec<TenantRow> = diesel::sql_query(
        "WITH RECURSIVE tenants(tenant) AS (
             (SELECT tenant FROM tasks
               WHERE status IN ('COMPLETED', 'FAILED', 'CANCELLED')
               ORDER BY tenant LIMIT 1)
             UNION ALL
             SELECT (SELECT t.tenant FROM tasks t
                      WHERE t.status IN ('COMPLETED', 'FAILED', 'CANCELLED')
                        AND t.tenant > tenants.tenant
                      ORDER BY t.tenant LIMIT 1)
               FROM tenants WHERE tenants.tenant IS NOT NULL
         )
         SELECT tenant FROM tenants WHERE tenant IS NOT NULL",
    )
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|row| row.tenant).collect())
}

/// Locks up to `limit` of `tenant`'s tasks that finished before `finished_before`, oldest
/// first, for removal in this transaction; their `tasks.id`s. Unfinished tasks are never
/// selected, and a task whose webhook is still being delivered is kept.
pub async fn lock_expired(
    conn: &mut AsyncPgConnection,
    tenant: &str,
    finished_before: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<i64>, StoreError> {
    let rows: Vec<IdRow> = diesel::sql_query(
        "SELECT t.id FROM tasks t
          WHERE t.tenant = $1
            AND t.status IN ('COMPLETED', 'FAILED', 'CANCELLED')
            AND t.updated_at < $2
            AND NOT EXISTS (
                SELECT 1 FROM webhook_deliveries w
                 WHERE w.task_id = t.task_id
                   AND w.delivered_at IS NULL AND w.gave_up_at IS NULL)
          ORDER BY t.updated_at
          LIMIT $3
          FOR UPDATE OF t SKIP LOCKED",
    )
    .bind::<Text, _>(tenant)
    .bind::<Timestamptz, _>(finished_before)
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|row| row.id).collect())
}

/// Removes the tasks `ids` (locked by [`lock_expired`] in this transaction) with
/// everything that hangs off them, in one statement.
pub async fn remove(conn: &mut AsyncPgConnection, ids: &[i64]) -> Result<Removed, StoreError> {
    if ids.is_empty() {
        return Ok(Removed::default());
    }
    let removed: Removed = diesel::sql_query(
        "WITH doomed AS (SELECT id, task_id FROM tasks WHERE id = ANY($1)),
         requests AS (
             DELETE FROM service_requests s USING doomed d
              WHERE s.task_id = d.task_id RETURNING 1
         ),
         events AS (
             DELETE FROM task_events e USING doomed d WHERE e.task_id = d.task_id
         ),
         deliveries AS (
             DELETE FROM webhook_deliveries w USING doomed d WHERE w.task_id = d.task_id
         ),
         outbox AS (
             DELETE FROM task_outbox o USING doomed d WHERE o.task_id = d.task_id
         ),
         gone AS (
             DELETE FROM tasks t USING doomed d WHERE t.id = d.id RETURNING 1
         )
         SELECT (SELECT count(*) FROM gone) AS tasks,
                (SELECT count(*) FROM requests) AS service_requests",
    )
    .bind::<Array<BigInt>, _>(ids)
    .get_result(conn)
    .await?;
    Ok(removed)
}

/// Takes (or renews) the lease on `job` for `ttl` when it is free, expired or already
/// `holder`'s. `Ok(None)`: taken; `Ok(Some(other))`: `other` holds it.
pub async fn acquire_lease(
    conn: &mut AsyncPgConnection,
    job: &str,
    holder: &str,
    ttl: Duration,
) -> Result<Option<String>, StoreError> {
    let taken: Option<HolderRow> = diesel::sql_query(
        "INSERT INTO job_leases (job, holder, expires_at) VALUES ($1, $2, now() + $3)
         ON CONFLICT (job) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
          WHERE job_leases.holder = EXCLUDED.holder OR job_leases.expires_at < now()
         RETURNING holder",
    )
    .bind::<Text, _>(job)
    .bind::<Text, _>(holder)
    .bind::<Interval, _>(crate::leases::interval(ttl))
    .get_result(conn)
    .await
    .optional()?;
    if taken.is_some() {
        return Ok(None);
    }
    let other: Option<HolderRow> =
        diesel::sql_query("SELECT holder FROM job_leases WHERE job = $1")
            .bind::<Text, _>(job)
            .get_result(conn)
            .await
            .optional()?;
    // Released between the two statements: nobody holds it, try again next time.
    Ok(Some(other.map_or_else(String::new, |row| row.holder)))
}

/// Gives the lease on `job` up, if `holder` has it.
pub async fn release_lease(
    conn: &mut AsyncPgConnection,
    job: &str,
    holder: &str,
) -> Result<(), StoreError> {
    diesel::sql_query("DELETE FROM job_leases WHERE job = $1 AND holder = $2")
        .bind::<Text, _>(job)
        .bind::<Text, _>(holder)
        .execute(conn)
        .await?;
    Ok(())
}
