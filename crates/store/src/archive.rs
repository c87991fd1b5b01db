//! Archives of finished tasks: each task as one JSON document (a line of an archive
//! file) holding its row, its service requests with their attempts, and its re-drives,
//! as PostgreSQL writes them (`to_jsonb` of each row, so a column added later is
//! archived without a change here), and the way back in.
//!
//! A document:
//! `{"task": {...}, "service_requests": [...], "attempts": [...], "redrives": [...]}`.

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Jsonb, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::StoreError;

/// The SELECT list that builds a task's document from `tasks t`.
const DOCUMENT: &str = "jsonb_build_object(
    'task', to_jsonb(t),
    'service_requests', COALESCE((SELECT jsonb_agg(to_jsonb(s) ORDER BY s.item_index, s.service_name)
                                    FROM service_requests s WHERE s.task_id = t.task_id), '[]'::jsonb),
    'attempts', COALESCE((SELECT jsonb_agg(to_jsonb(a) ORDER BY a.service_request_id, a.attempt)
                            FROM service_request_attempts a
                            JOIN service_requests s ON s.id = a.service_request_id
                           WHERE s.task_id = t.task_id), '[]'::jsonb),
    'redrives', COALESCE((SELECT jsonb_agg(to_jsonb(r) ORDER BY r.redrive)
                            FROM task_redrives r WHERE r.task_id = t.task_id), '[]'::jsonb)
)::text";

/// One archived task.
#[derive(Debug, Clone, QueryableByName)]
pub struct ArchivedTask {
    /// `tasks.id`: where a page ends.
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Timestamptz)]
    pub updated_at: DateTime<Utc>,
    /// Service requests in the document.
    #[diesel(sql_type = BigInt)]
    pub service_requests: i64,
    /// The document, one line of JSON.
    #[diesel(sql_type = Text)]
    pub document: String,
}

/// The documents of the tasks `ids`, in `id` order.
pub async fn documents(
    conn: &mut AsyncPgConnection,
    ids: &[i64],
) -> Result<Vec<ArchivedTask>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(diesel::sql_query(format!(
        "SELECT t.id, t.updated_at,
                (SELECT count(*) FROM service_requests s WHERE s.task_id = t.task_id) AS service_requests,
                {DOCUMENT} AS document
           FROM tasks t WHERE t.id = ANY($1) ORDER BY t.id"
    ))
    .bind::<Array<BigInt>, _>(ids)
    .load(conn)
    .await?)
}

/// A page of `tenant`'s tasks that finished before `before`, oldest first, after
/// `after` (the last task of the previous page: its `updated_at` and `id`). Reads only.
pub async fn finished_page(
    conn: &mut AsyncPgConnection,
    tenant: &str,
    before: DateTime<Utc>,
    after: Option<(DateTime<Utc>, i64)>,
    limit: i64,
) -> Result<Vec<ArchivedTask>, StoreError> {
    // No task finished before 1970: the first page starts there.
    let (after_at, after_id) = after.unwrap_or((DateTime::<Utc>::UNIX_EPOCH, 0));
    Ok(diesel::sql_query(format!(
        "SELECT t.id, t.updated_at,
                (SELECT count(*) FROM service_requests s WHERE s.task_id = t.task_id) AS service_requests,
                {DOCUMENT} AS document
           FROM tasks t
          WHERE t.tenant = $1
            AND t.status IN ('COMPLETED', 'FAILED', 'CANCELLED')
            AND t.updated_at < $2
            AND (t.updated_at, t.id) > ($3, $4)
          ORDER BY t.updated_at, t.id
          LIMIT $5"
    ))
    .bind::<Text, _>(tenant)
    .bind::<Timestamptz, _>(before)
    .bind::<Timestamptz, _>(after_at)
    .bind::<BigInt, _>(after_id)
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await?)
}

/// What a restore did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, QueryableByName)]
pub struct Restored {
    /// Tasks put back.
    #[diesel(sql_type = BigInt)]
    pub tasks: i64,
    /// Tasks left alone: the same task is there already (or another task now holds its
    /// idempotency key).
    #[diesel(sql_type = BigInt)]
    pub skipped: i64,
}

/// Puts archived tasks back, with their service requests, attempts and re-drives, in one
/// statement; a task already present is left as it is. A restored task's `updated_at` is
/// the time of the restore, so the retention job keeps it for a whole period again
/// (its `created_at` and its service requests' times are the original ones).
pub async fn restore(
    conn: &mut AsyncPgConnection,
    documents: &[serde_json::Value],
) -> Result<Restored, StoreError> {
    if documents.is_empty() {
        return Ok(Restored::default());
    }
    Ok(diesel::sql_query(
        "WITH docs AS (SELECT doc FROM unnest($1::jsonb[]) AS doc),
         tasks_in AS (
             INSERT INTO tasks
             SELECT r.* FROM docs,
                    LATERAL jsonb_populate_record(NULL::tasks,
                        jsonb_set(doc->'task', '{updated_at}', to_jsonb(now()))) AS r
             ON CONFLICT DO NOTHING
             RETURNING task_id
         ),
         requests_in AS (
             INSERT INTO service_requests
             SELECT r.* FROM docs, jsonb_array_elements(doc->'service_requests') AS s,
                    LATERAL jsonb_populate_record(NULL::service_requests, s) AS r
              WHERE r.task_id IN (SELECT task_id FROM tasks_in)
             RETURNING id
         ),
         attempts_in AS (
             INSERT INTO service_request_attempts
             SELECT r.* FROM docs, jsonb_array_elements(doc->'attempts') AS a,
                    LATERAL jsonb_populate_record(NULL::service_request_attempts, a) AS r
              WHERE r.service_request_id IN (SELECT id FROM requests_in)
         ),
         redrives_in AS (
             INSERT INTO task_redrives
             SELECT r.* FROM docs, jsonb_array_elements(doc->'redrives') AS d,
                    LATERAL jsonb_populate_record(NULL::task_redrives, d) AS r
              WHERE r.task_id IN (SELECT task_id FROM tasks_in)
         )
         SELECT (SELECT count(*) FROM tasks_in) AS tasks,
                (SELECT count(*) FROM docs) - (SELECT count(*) FROM tasks_in) AS skipped",
    )
    .bind::<Array<Jsonb>, _>(documents)
    .get_result(conn)
    .await?)
}
