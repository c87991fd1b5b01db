//! Bulk operations (`bulk_operations`): a re-drive or cancel of every task of a tenant
//! that a filter selects, carried out in the background at a bounded rate by whichever
//! API replica holds the operation's claim.
//!
//! The row is the operation's whole state: its filter, the tasks in scope (those the
//! filter selected when it was made, up to `last_task`), how far it got
//! (`done_through`, in `tasks.id` order) and its counts. Each task is handled in one
//! transaction with the row's progress ([`begin_step`] locks the row, checks the
//! operation is still running and still this replica's, and renews the claim;
//! [`end_step`] records the task), so a task is counted once, a stop takes effect
//! between two tasks, and a replica that dies leaves the operation to another once its
//! claim expires.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool, Integer, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use orchestrator_core::{BulkAction, ServiceName, Status, TaskFilter, TenantName};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::StoreError;
use crate::schema::bulk_operations;

/// The states of an operation.
pub const RUNNING: &str = "RUNNING";
pub const COMPLETED: &str = "COMPLETED";
pub const CANCELLED: &str = "CANCELLED";

/// A row of `bulk_operations`.
#[derive(Debug, Clone, PartialEq, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = bulk_operations, check_for_backend(diesel::pg::Pg))]
pub struct BulkRow {
    pub id: Uuid,
    pub tenant: String,
    pub action: String,
    pub filter: serde_json::Value,
    pub state: String,
    pub matched: i64,
    pub last_task: i64,
    pub done_through: i64,
    pub acted: i64,
    pub skipped: i64,
    pub rate_per_second: i32,
    pub actor: String,
    pub request_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl BulkRow {
    pub fn action(&self) -> Result<BulkAction, StoreError> {
        BulkAction::parse(&self.action).map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    /// The filter as stored.
    pub fn task_filter(&self) -> Result<TaskFilter, StoreError> {
        let stored: StoredFilter = serde_json::from_value(self.filter.clone())
            .map_err(|e| StoreError::Corrupt(format!("bulk filter: {e}")))?;
        stored.into_filter()
    }
}

/// A filter as the row keeps it (and as the API shows it): statuses spelt out, times in
/// UTC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredFilter {
    pub statuses: Vec<String>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    pub service: Option<String>,
    pub error_contains: Option<String>,
    pub task_name_prefix: Option<String>,
}

impl From<&TaskFilter> for StoredFilter {
    fn from(filter: &TaskFilter) -> Self {
        Self {
            statuses: filter
                .statuses
                .iter()
                .map(|s| s.as_str().to_owned())
                .collect(),
            created_after: filter.created_after,
            created_before: filter.created_before,
            service: filter.service.as_ref().map(|s| s.as_str().to_owned()),
            error_contains: filter.error_contains.clone(),
            task_name_prefix: filter.task_name_prefix.clone(),
        }
    }
}

impl StoredFilter {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    fn into_filter(self) -> Result<TaskFilter, StoreError> {
        let corrupt = |e: &dyn std::fmt::Display| StoreError::Corrupt(format!("bulk filter: {e}"));
        Ok(TaskFilter {
            statuses: self
                .statuses
                .iter()
                .map(|s| Status::parse(s).map_err(|e| corrupt(&e)))
                .collect::<Result<_, _>>()?,
            created_after: self.created_after,
            created_before: self.created_before,
            service: self
                .service
                .map(|s| ServiceName::parse(&s).map_err(|e| corrupt(&e)))
                .transpose()?,
            error_contains: self.error_contains,
            task_name_prefix: self.task_name_prefix,
        })
    }
}

/// The conditions of a filter on `tasks t`, binding `$1` to `$7`: tenant, statuses,
/// created after, created before, service, error text, name prefix.
const MATCHES: &str = "t.tenant = $1 AND t.status = ANY($2) \
     AND ($3::timestamptz IS NULL OR t.created_at >= $3) \
     AND ($4::timestamptz IS NULL OR t.created_at < $4) \
     AND ($5::text IS NULL OR EXISTS (SELECT 1 FROM service_requests sr \
          WHERE sr.task_id = t.task_id AND sr.service_name = $5 AND sr.status <> 'COMPLETED')) \
     AND ($6::text IS NULL OR strpos(lower(t.error_message), lower($6)) > 0) \
     AND ($7::text IS NULL OR starts_with(t.task_name, $7))";

macro_rules! bind_filter {
    ($query:expr, $tenant:expr, $filter:expr) => {
        $query
            .bind::<Text, _>($tenant.as_str())
            .bind::<Array<Text>, _>(
                $filter
                    .statuses
                    .iter()
                    .map(|s| s.as_str().to_owned())
                    .collect::<Vec<_>>(),
            )
            .bind::<Nullable<Timestamptz>, _>($filter.created_after)
            .bind::<Nullable<Timestamptz>, _>($filter.created_before)
            .bind::<Nullable<Text>, _>($filter.service.as_ref().map(|s| s.as_str().to_owned()))
            .bind::<Nullable<Text>, _>($filter.error_contains.clone())
            .bind::<Nullable<Text>, _>($filter.task_name_prefix.clone())
    };
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    matched: i64,
    #[diesel(sql_type = BigInt)]
    last_task: i64,
}

/// How many of the tenant's tasks the filter selects now, and the last of them
/// (`tasks.id`, 0 when none).
pub async fn count_matching(
    conn: &mut AsyncPgConnection,
    tenant: &TenantName,
    filter: &TaskFilter,
) -> Result<(i64, i64), StoreError> {
    let query = diesel::sql_query(format!(
        "SELECT count(*) AS matched, COALESCE(max(t.id), 0) AS last_task FROM tasks t WHERE {MATCHES}"
    ));
    let count: Count = bind_filter!(query, tenant, filter).get_result(conn).await?;
    Ok((count.matched, count.last_task))
}

/// A bulk operation to make.
#[derive(Debug, Clone)]
pub struct NewBulk<'a> {
    pub id: Uuid,
    pub tenant: &'a TenantName,
    pub action: BulkAction,
    pub filter: &'a TaskFilter,
    pub rate_per_second: i32,
    pub actor: &'a str,
    pub request_id: Option<&'a str>,
}

/// Makes the operation, with the tasks the filter selects now in its scope. Call in
/// the transaction that also writes its audit event.
pub async fn create(
    conn: &mut AsyncPgConnection,
    new: &NewBulk<'_>,
) -> Result<BulkRow, StoreError> {
    let (matched, last_task) = count_matching(conn, new.tenant, new.filter).await?;
    let filter = StoredFilter::from(new.filter).to_json();
    // Nothing to do is done at once.
    let (state, finished_at) = if matched == 0 {
        (COMPLETED, Some(Utc::now()))
    } else {
        (RUNNING, None)
    };
    Ok(diesel::insert_into(bulk_operations::table)
        .values((
            bulk_operations::id.eq(new.id),
            bulk_operations::tenant.eq(new.tenant.as_str()),
            bulk_operations::action.eq(new.action.as_str()),
            bulk_operations::filter.eq(&filter),
            bulk_operations::state.eq(state),
            bulk_operations::matched.eq(matched),
            bulk_operations::last_task.eq(last_task),
            bulk_operations::rate_per_second.eq(new.rate_per_second),
            bulk_operations::actor.eq(new.actor),
            bulk_operations::request_id.eq(new.request_id),
            bulk_operations::finished_at.eq(finished_at),
        ))
        .returning(BulkRow::as_returning())
        .get_result(conn)
        .await?)
}

/// The tenant's operation.
pub async fn find_in(
    conn: &mut AsyncPgConnection,
    tenant: &TenantName,
    id: Uuid,
) -> Result<Option<BulkRow>, StoreError> {
    Ok(bulk_operations::table
        .filter(bulk_operations::id.eq(id))
        .filter(bulk_operations::tenant.eq(tenant.as_str()))
        .select(BulkRow::as_select())
        .get_result(conn)
        .await
        .optional()?)
}

/// What stopping an operation found.
#[derive(Debug, Clone, PartialEq)]
pub enum StopBulk {
    /// It was running and is now `CANCELLED`; tasks it handled stay handled.
    Stopped(BulkRow),
    /// It had ended already (`COMPLETED` or `CANCELLED`).
    AlreadyEnded(BulkRow),
    NotFound,
}

/// Stops the tenant's running operation. It waits for the task being handled, if any,
/// to commit (that task's step holds the row), and no task is handled after it.
pub async fn stop(
    conn: &mut AsyncPgConnection,
    tenant: &TenantName,
    id: Uuid,
) -> Result<StopBulk, StoreError> {
    let stopped: Option<BulkRow> = diesel::update(bulk_operations::table)
        .filter(bulk_operations::id.eq(id))
        .filter(bulk_operations::tenant.eq(tenant.as_str()))
        .filter(bulk_operations::state.eq(RUNNING))
        .set((
            bulk_operations::state.eq(CANCELLED),
            bulk_operations::finished_at.eq(diesel::dsl::now),
            bulk_operations::updated_at.eq(diesel::dsl::now),
            bulk_operations::claimed_by.eq(None::<String>),
            bulk_operations::claimed_until.eq(None::<DateTime<Utc>>),
        ))
        .returning(BulkRow::as_returning())
        .get_result(conn)
        .await
        .optional()?;
    if let Some(row) = stopped {
        return Ok(StopBulk::Stopped(row));
    }
    Ok(match find_in(conn, tenant, id).await? {
        Some(row) => StopBulk::AlreadyEnded(row),
        None => StopBulk::NotFound,
    })
}

/// Takes the oldest running operation that no live replica holds, for `owner`, until
/// `claim_secs` from now.
pub async fn claim(
    conn: &mut AsyncPgConnection,
    owner: &str,
    claim_secs: i32,
) -> Result<Option<BulkRow>, StoreError> {
    let row: Option<BulkRow> = diesel::sql_query(
        "UPDATE bulk_operations SET claimed_by = $1, \
           claimed_until = now() + $2 * interval '1 second' \
         WHERE id = (SELECT id FROM bulk_operations \
                     WHERE state = 'RUNNING' AND (claimed_until IS NULL OR claimed_until < now()) \
                     ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED) \
         RETURNING id, tenant, action, filter, state, matched, last_task, done_through, acted, \
           skipped, rate_per_second, actor, request_id, created_at, updated_at, finished_at",
    )
    .bind::<Text, _>(owner)
    .bind::<Integer, _>(claim_secs)
    .get_result(conn)
    .await
    .optional()?;
    Ok(row)
}

/// The next tasks in scope after `after` (`tasks.id`): their row id and task id.
pub async fn next_tasks(
    conn: &mut AsyncPgConnection,
    row: &BulkRow,
    after: i64,
    limit: i64,
) -> Result<Vec<(i64, Uuid)>, StoreError> {
    let tenant = TenantName::parse(&row.tenant).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let filter = row.task_filter()?;
    let query = diesel::sql_query(format!(
        "SELECT t.id, t.task_id FROM tasks t WHERE {MATCHES} \
           AND t.id > $8 AND t.id <= $9 ORDER BY t.id LIMIT $10"
    ));
    let rows: Vec<TaskRef> = bind_filter!(query, tenant, filter)
        .bind::<BigInt, _>(after)
        .bind::<BigInt, _>(row.last_task)
        .bind::<BigInt, _>(limit)
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(|r| (r.id, r.task_id)).collect())
}

#[derive(QueryableByName)]
struct TaskRef {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    task_id: Uuid,
}

/// Starts the step of one task, inside its transaction: locks the operation's row
/// until the step commits, renews `owner`'s claim, and says whether the operation is
/// still running and still `owner`'s (false: end the step without acting, roll it
/// back and let go of the operation).
pub async fn begin_step(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    owner: &str,
    claim_secs: i32,
) -> Result<bool, StoreError> {
    let held = diesel::sql_query(
        "UPDATE bulk_operations SET claimed_until = now() + $3 * interval '1 second' \
         WHERE id = $1 AND state = 'RUNNING' AND claimed_by = $2",
    )
    .bind::<diesel::sql_types::Uuid, _>(id)
    .bind::<Text, _>(owner)
    .bind::<Integer, _>(claim_secs)
    .execute(conn)
    .await?;
    Ok(held == 1)
}

/// Ends the step of task `task` (its `tasks.id`): handled, acted on or skipped.
pub async fn end_step(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    task: i64,
    acted: bool,
) -> Result<(), StoreError> {
    diesel::sql_query(
        "UPDATE bulk_operations SET done_through = $2, \
           acted = acted + CASE WHEN $3 THEN 1 ELSE 0 END, \
           skipped = skipped + CASE WHEN $3 THEN 0 ELSE 1 END, updated_at = now() \
         WHERE id = $1",
    )
    .bind::<diesel::sql_types::Uuid, _>(id)
    .bind::<BigInt, _>(task)
    .bind::<Bool, _>(acted)
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks the operation `COMPLETED` once no task in scope is left, if it is still
/// running and `owner`'s; the tasks that left the filter's statuses before their turn
/// are counted as skipped. Returns whether it did.
pub async fn complete(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    owner: &str,
) -> Result<bool, StoreError> {
    let done = diesel::sql_query(
        "UPDATE bulk_operations SET state = 'COMPLETED', finished_at = now(), updated_at = now(), \
           done_through = last_task, skipped = GREATEST(matched - acted, skipped), \
           claimed_by = NULL, claimed_until = NULL \
         WHERE id = $1 AND state = 'RUNNING' AND claimed_by = $2",
    )
    .bind::<diesel::sql_types::Uuid, _>(id)
    .bind::<Text, _>(owner)
    .execute(conn)
    .await?;
    Ok(done == 1)
}

/// Lets go of `owner`'s claim (the replica is stopping): another replica may carry on
/// at once.
pub async fn release(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    owner: &str,
) -> Result<(), StoreError> {
    diesel::update(bulk_operations::table)
        .filter(bulk_operations::id.eq(id))
        .filter(bulk_operations::claimed_by.eq(owner))
        .set((
            bulk_operations::claimed_by.eq(None::<String>),
            bulk_operations::claimed_until.eq(None::<DateTime<Utc>>),
        ))
        .execute(conn)
        .await?;
    Ok(())
}
