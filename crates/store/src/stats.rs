//! What the data looks like, for the API's metrics: table and index sizes, tasks per
//! status, and how long the oldest unfinished tasks have waited. Each read is bounded
//! whatever the size of the tables: sizes come from the catalogue, counts from the
//! folded `task_status_counts`, the oldest task from one probe of `tasks_unfinished_idx`.

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::StoreError;

/// A table of the schema and its size on disk.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct TableSize {
    #[diesel(sql_type = Text)]
    pub table: String,
    /// The table with its TOAST, without indexes.
    #[diesel(sql_type = BigInt)]
    pub table_bytes: i64,
    #[diesel(sql_type = BigInt)]
    pub index_bytes: i64,
}

/// The sizes of the schema's tables (not of diesel's migration bookkeeping).
pub async fn table_sizes(conn: &mut AsyncPgConnection) -> Result<Vec<TableSize>, StoreError> {
    Ok(diesel::sql_query(
        "SELECT c.relname::text AS table,
                pg_table_size(c.oid) AS table_bytes,
                pg_indexes_size(c.oid) AS index_bytes
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = current_schema() AND c.relkind = 'r'
            AND c.relname NOT LIKE '\\_\\_diesel%'
          ORDER BY c.relname",
    )
    .load(conn)
    .await?)
}

/// Tasks of a status, every tenant together.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct StatusTotal {
    #[diesel(sql_type = Text)]
    pub status: String,
    #[diesel(sql_type = BigInt)]
    pub tasks: i64,
}

/// Tasks per status over every tenant.
pub async fn tasks_per_status(
    conn: &mut AsyncPgConnection,
) -> Result<Vec<StatusTotal>, StoreError> {
    Ok(diesel::sql_query(
        "SELECT status, sum(delta)::bigint AS tasks FROM task_status_counts GROUP BY status",
    )
    .load(conn)
    .await?)
}

/// When the oldest unfinished task of each unfinished status was submitted.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct OldestUnfinished {
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub pending: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub in_progress: Option<DateTime<Utc>>,
    /// The database's clock, to measure the ages against.
    #[diesel(sql_type = Timestamptz)]
    pub now: DateTime<Utc>,
}

pub async fn oldest_unfinished(
    conn: &mut AsyncPgConnection,
) -> Result<OldestUnfinished, StoreError> {
    Ok(diesel::sql_query(
        "SELECT (SELECT min(created_at) FROM tasks WHERE status = 'PENDING') AS pending,
                (SELECT min(created_at) FROM tasks WHERE status = 'IN_PROGRESS') AS in_progress,
                now() AS now",
    )
    .get_result(conn)
    .await?)
}

/// Most outbox rows [`outbox_backlog`] counts: past this the exact figure no longer
/// matters and counting would read a large table.
pub const OUTBOX_COUNT_CAP: i64 = 1_000_000;

#[derive(QueryableByName)]
struct Backlog {
    #[diesel(sql_type = BigInt)]
    tasks: i64,
}

/// Tasks accepted in Kafka mode and not yet published (rows of `task_outbox`), up to
/// [`OUTBOX_COUNT_CAP`].
pub async fn outbox_backlog(conn: &mut AsyncPgConnection) -> Result<i64, StoreError> {
    let backlog: Backlog = diesel::sql_query(
        "SELECT count(*) AS tasks FROM (SELECT 1 FROM task_outbox LIMIT $1) AS waiting",
    )
    .bind::<BigInt, _>(OUTBOX_COUNT_CAP)
    .get_result(conn)
    .await?;
    Ok(backlog.tasks)
}
