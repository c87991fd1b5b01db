//! Filling a database with many finished tasks, to measure the dashboard at size (the
//! `seed-tasks` binary and `make bench-dashboard`). Never used by the services.
//!
//! Rows are generated inside PostgreSQL (`INSERT ... SELECT generate_series`), a batch
//! per statement, so a million tasks and their three million service requests take a
//! few minutes rather than a million round trips.

use diesel::sql_types::{BigInt, Bool};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::StoreError;

/// What to seed.
#[derive(Debug, Clone, Copy)]
pub struct SeedPlan {
    /// Seed until the table holds this many tasks (tasks already there count).
    pub total: i64,
    /// Tasks per statement.
    pub batch: i64,
    /// Time between two consecutive tasks' `created_at`; the last one is now.
    pub spacing_ms: i64,
    /// Also three service requests per task (revenue, rebates, specialty).
    pub service_requests: bool,
}

/// Seeds tasks numbered `first..=last` of a plan; see [`SeedPlan`].
///
/// Task `n` is created `(total - n) * spacing_ms` before now and finished 1 to 7 s
/// later; one in twenty `FAILED` (its revenue call failed), the others `COMPLETED`.
/// Names cycle through ten titles and four regions and end with `#n`, so searches can
/// be common ("forecast": a tenth of the tasks), rare ("#123456") or find nothing.
pub async fn seed_batch(
    conn: &mut AsyncPgConnection,
    plan: &SeedPlan,
    first: i64,
    last: i64,
) -> Result<(), StoreError> {
    diesel::sql_query(SEED_SQL)
        .bind::<BigInt, _>(first)
        .bind::<BigInt, _>(last)
        .bind::<BigInt, _>(plan.total)
        .bind::<BigInt, _>(plan.spacing_ms)
        .bind::<Bool, _>(plan.service_requests)
        .execute(conn)
        .await?;
    Ok(())
}

const SEED_SQL: &str = r#"
WITH payload AS (
    SELECT jsonb_build_object('scenario_id', '3fa85f64-5717-4562-b3fc-2c963f66afa6',
                              'business_type_id', '9b2f4e2a-6c4d-4d3e-8f1a-2b3c4d5e6f70') AS call
),
new_tasks AS (
    INSERT INTO tasks (task_id, task_name, task_description, status, created_at, updated_at,
                       payload, error_message)
    SELECT gen_random_uuid(),
           (ARRAY['Quarterly forecast', 'Monthly rebates', 'Specialty review', 'Revenue plan',
                  'Rebate audit', 'Pricing scenario', 'Budget rollup', 'Channel mix',
                  'Contract renewal', 'Market sizing'])[1 + n % 10]
             || ' ' || (ARRAY['EMEA', 'APAC', 'AMER', 'LATAM'])[1 + (n / 10) % 4]
             || ' #' || n,
           'Seeded for the dashboard benchmark',
           CASE WHEN n % 20 = 0 THEN 'FAILED' ELSE 'COMPLETED' END,
           at.created_at,
           at.created_at + make_interval(secs => 1 + n % 7),
           jsonb_build_array(jsonb_build_object('revenue', payload.call, 'rebates', payload.call,
                                                'specialty', payload.call)),
           CASE WHEN n % 20 = 0 THEN
               '1 of 3 service requests failed: revenue (item 0): HTTP 500: {"error": "injected failure"}'
           END
    FROM generate_series($1::bigint, $2::bigint) AS n
    CROSS JOIN payload
    CROSS JOIN LATERAL (
        SELECT now() - make_interval(secs => ($3 - n) * $4 / 1000.0) AS created_at
    ) AS at
    RETURNING task_id, status, created_at, updated_at
)
INSERT INTO service_requests (id, task_id, item_index, service_name, scenario_id,
                              business_type_id, status, attempts, created_at, updated_at,
                              started_at, completed_at, request_payload, response_payload,
                              error_message)
SELECT gen_random_uuid(), t.task_id, 0, s.name,
       '3fa85f64-5717-4562-b3fc-2c963f66afa6', '9b2f4e2a-6c4d-4d3e-8f1a-2b3c4d5e6f70',
       CASE WHEN failed THEN 'FAILED' ELSE 'COMPLETED' END,
       CASE WHEN failed THEN 5 ELSE 1 END,
       t.created_at, t.updated_at,
       t.created_at + interval '5 ms' * s.rank,
       t.updated_at - interval '300 ms' * s.rank,
       payload.call,
       CASE WHEN NOT failed THEN jsonb_build_object('service', s.name, 'scenario_id',
                                                    '3fa85f64-5717-4562-b3fc-2c963f66afa6') END,
       CASE WHEN failed THEN 'HTTP 500: {"error": "injected failure"}' END
FROM new_tasks AS t
CROSS JOIN payload
CROSS JOIN (VALUES ('revenue', 1), ('rebates', 2), ('specialty', 3)) AS s(name, rank)
CROSS JOIN LATERAL (SELECT t.status = 'FAILED' AND s.name = 'revenue' AS failed) AS f
WHERE $5
"#;

/// Vacuums and analyses the seeded tables (and the event log their triggers wrote), as
/// autovacuum would soon after such a load: up-to-date statistics for the planner and a
/// visibility map for index-only scans.
pub async fn vacuum(conn: &mut AsyncPgConnection) -> Result<(), StoreError> {
    diesel::sql_query("VACUUM (ANALYZE) tasks, service_requests, task_events")
        .execute(conn)
        .await?;
    Ok(())
}
