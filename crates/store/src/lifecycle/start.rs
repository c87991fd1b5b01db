//! **start**: `PENDING` (or `IN_PROGRESS`, on a resume) to `IN_PROGRESS`, with the
//! task's service requests created running. See the state machine in [`super`].

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use orchestrator_core::{PlannedServiceRequest, RawJson, Status};
use uuid::Uuid;

use super::{fence, lock, only};
use crate::leases::Fence;
use crate::schema::{service_requests, tasks};
use crate::{ServiceRequestRow, StoreError, TaskState};

/// A task [`start_tasks`] has locked to start: its state and the request it stored.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskToStart {
    pub state: TaskState,
    /// The stored `payload`, as the JSON text PostgreSQL gives back (a planner reads it
    /// into its own types, e.g. with
    /// [`orchestrator_core::OrchestrationRequest::parse_stored_payload`]).
    pub payload: RawJson,
}

/// What a task's service requests are, from its stored request (read and locked by
/// [`start_tasks`], so the worker needs no read of its own). An `Err` says why the
/// stored request can no longer run (e.g. it names a service this worker no longer
/// knows); the task is then failed with that reason.
pub type Planner<'p> =
    dyn Fn(&TaskToStart) -> Result<Vec<PlannedServiceRequest>, String> + Send + Sync + 'p;

/// A task to start: create its planned service requests and mark it running.
#[derive(Debug, Clone)]
pub struct StartRequest {
    pub task_id: Uuid,
    pub fence: Option<Fence>,
}

/// What starting a task found.
#[derive(Debug, Clone, PartialEq)]
pub enum StartedTask {
    /// The task is (now) `IN_PROGRESS`; these service requests still need to run, and
    /// the task must be final by `deadline_at`, when it has a deadline.
    Running {
        rows: Vec<ServiceRequestRow>,
        deadline_at: Option<DateTime<Utc>>,
        /// When the task was submitted (its `created_at`): the start of its end-to-end
        /// time.
        submitted_at: DateTime<Utc>,
        /// The W3C `traceparent` of the request that accepted it: this run joins that
        /// trace.
        traceparent: Option<String>,
    },
    /// The task's deadline passed before it started (while it waited in the queue, or
    /// between runs): it is now `FAILED` with its unfinished service requests, and no
    /// call is made.
    DeadlinePassed,
    /// The task had already finished; nothing to do.
    AlreadyFinished(Status),
    /// The stored request can no longer run (the planner refused it, e.g. it names a
    /// service no longer configured): the task is now `FAILED` with this reason.
    Rejected(String),
    NotFound,
}

/// Starts (or resumes) processing a task with the given plan, in one transaction (a
/// batch of one of [`start_tasks`]): creates its service requests unless they
/// exist, moves the task from `PENDING` to `IN_PROGRESS`, and
/// returns the service requests that have not finished yet, now `IN_PROGRESS`.
///
/// Running it twice creates nothing twice and never reopens a finished task. With a
/// `fence`, refused once the partition's lease has moved on (see [`crate::leases`]).
pub async fn start_task(
    conn: &mut AsyncPgConnection,
    task_id: Uuid,
    planned: &[PlannedServiceRequest],
    fence: Option<&Fence>,
) -> Result<StartedTask, StoreError> {
    let request = StartRequest {
        task_id,
        fence: fence.cloned(),
    };
    let plan = |_: &TaskToStart| Ok(planned.to_vec());
    only(start_tasks(conn, std::slice::from_ref(&request), &plan).await?)
}

/// Starts many tasks in one transaction: the set-based form of [`start_task`], what
/// the processor's group commit runs. Answers each request in order.
pub async fn start_tasks(
    conn: &mut AsyncPgConnection,
    requests: &[StartRequest],
    plan: &Planner<'_>,
) -> Result<Vec<Result<StartedTask, StoreError>>, StoreError> {
    conn.transaction::<_, StoreError, _>(async |conn| {
        let fenced = fence::fenced_out(conn, requests.iter().map(|r| r.fence.as_ref())).await?;
        let ids: Vec<Uuid> = requests
            .iter()
            .zip(&fenced)
            .filter(|(_, fenced)| !**fenced)
            .map(|(r, _)| r.task_id)
            .collect();
        let found = lock::tasks_to_start(conn, &ids).await?;

        // Plan the tasks that run: found, not finished, fence held. A task twice in the
        // batch (a duplicate record) is planned once and both get the same answer.
        let mut plans: Vec<(Uuid, Vec<PlannedServiceRequest>)> = Vec::new();
        let mut rejected: HashMap<Uuid, String> = HashMap::new();
        let mut pending: Vec<Uuid> = Vec::new();
        let mut expired: HashSet<Uuid> = HashSet::new();
        let mut seen = HashSet::new();
        let now = Utc::now();
        for task_id in &ids {
            let Some(task) = found.get(task_id) else {
                continue;
            };
            if task.state.status.is_terminal() || !seen.insert(*task_id) {
                continue;
            }
            if task.state.deadline_at.is_some_and(|at| at <= now) {
                expired.insert(*task_id);
                continue;
            }
            match plan(task) {
                Ok(planned) => {
                    if task.state.status == Status::Pending {
                        pending.push(*task_id);
                    }
                    plans.push((*task_id, planned));
                }
                Err(reason) => {
                    rejected.insert(*task_id, reason);
                }
            }
        }

        // New rows start running at once: inserting them IN_PROGRESS saves rewriting
        // every row right after it was written. Rows that exist already (another run,
        // a re-drive) are left alone here and read below.
        let planned_rows: Vec<(Uuid, usize)> = plans
            .iter()
            .map(|(task_id, planned)| (*task_id, planned.len()))
            .collect();
        let mut unfinished = insert_started(conn, plans, now).await?;
        // A task all of whose planned rows were just created has exactly those to run;
        // only the others (resumed, re-driven) need their existing rows read.
        let resumed: Vec<Uuid> = planned_rows
            .into_iter()
            .filter(|(task_id, planned)| unfinished.get(task_id).map_or(0, Vec::len) != *planned)
            .map(|(task_id, _)| task_id)
            .collect();

        if !pending.is_empty() {
            diesel::update(tasks::table)
                .filter(tasks::task_id.eq_any(&pending))
                .set((
                    tasks::status.eq(Status::InProgress.as_str()),
                    tasks::updated_at.eq(diesel::dsl::now),
                ))
                .execute(conn)
                .await?;
        }
        if !rejected.is_empty() {
            let (ids, reasons): (Vec<Uuid>, Vec<String>) =
                rejected.iter().map(|(id, r)| (*id, r.clone())).unzip();
            diesel::sql_query(
                "UPDATE tasks AS t SET status = 'FAILED', error_message = v.reason, \
                   updated_at = now() \
                 FROM unnest($1::uuid[], $2::text[]) AS v(task_id, reason) \
                 WHERE t.task_id = v.task_id",
            )
            .bind::<Array<diesel::sql_types::Uuid>, _>(ids)
            .bind::<Array<Text>, _>(reasons)
            .execute(conn)
            .await?;
            let failed: Vec<Uuid> = rejected.keys().copied().collect();
            crate::webhooks::enqueue(conn, &failed).await?;
            crate::notify::tasks_finished(conn, &failed).await?;
        }
        // One message per deadline length is rare enough not to group further.
        for task_id in &expired {
            let reason = super::stop::deadline_message(found[task_id].state.deadline_seconds);
            super::stop::end(conn, &[*task_id], Status::Failed, Some(&reason)).await?;
        }
        if !resumed.is_empty() {
            // Rows that existed already and wait for another run (a re-drive).
            diesel::update(service_requests::table)
                .filter(service_requests::task_id.eq_any(&resumed))
                .filter(service_requests::status.eq(Status::Pending.as_str()))
                .set((
                    service_requests::status.eq(Status::InProgress.as_str()),
                    service_requests::started_at.eq(diesel::dsl::sql(
                        "COALESCE(service_requests.started_at, now())",
                    )),
                    service_requests::updated_at.eq(diesel::dsl::now),
                ))
                .execute(conn)
                .await?;
            for task_id in &resumed {
                unfinished.remove(task_id);
            }
            let started: Vec<ServiceRequestRow> = service_requests::table
                .filter(service_requests::task_id.eq_any(&resumed))
                .filter(service_requests::status.eq(Status::InProgress.as_str()))
                .select(ServiceRequestRow::as_select())
                .load(conn)
                .await?;
            for row in started {
                unfinished.entry(row.task_id).or_default().push(row);
            }
        }
        for rows in unfinished.values_mut() {
            rows.sort_by(|a, b| {
                (a.item_index, &a.service_name).cmp(&(b.item_index, &b.service_name))
            });
        }

        Ok(requests
            .iter()
            .zip(&fenced)
            .map(|(request, fenced)| {
                if *fenced {
                    return Err(fence::fenced_error(request.fence.as_ref()));
                }
                let Some(task) = found.get(&request.task_id).map(|task| &task.state) else {
                    return Ok(StartedTask::NotFound);
                };
                if let Some(reason) = rejected.get(&request.task_id) {
                    return Ok(StartedTask::Rejected(reason.clone()));
                }
                if expired.contains(&request.task_id) {
                    return Ok(StartedTask::DeadlinePassed);
                }
                if task.status.is_terminal() {
                    return Ok(StartedTask::AlreadyFinished(task.status));
                }
                Ok(StartedTask::Running {
                    rows: unfinished
                        .get(&request.task_id)
                        .cloned()
                        .unwrap_or_default(),
                    deadline_at: task.deadline_at,
                    submitted_at: task.created_at,
                    traceparent: task.traceparent.clone(),
                })
            })
            .collect())
    })
    .await
}

/// Creates the planned service requests that do not exist yet, `IN_PROGRESS` from
/// `now`, and answers those it created, by task. One statement for the batch, prepared
/// once per connection (`store::prepared`): the columns go as arrays, so its text is
/// the same whatever the batch holds. Only the columns PostgreSQL fills in come back;
/// the rest is what was planned, so no request payload travels back to be parsed again,
/// and the plans' payloads move into the rows answered rather than being copied.
async fn insert_started(
    conn: &mut AsyncPgConnection,
    plans: Vec<(Uuid, Vec<PlannedServiceRequest>)>,
    now: DateTime<Utc>,
) -> Result<HashMap<Uuid, Vec<ServiceRequestRow>>, StoreError> {
    #[derive(QueryableByName)]
    struct Inserted {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        id: Uuid,
        #[diesel(sql_type = diesel::sql_types::Timestamptz)]
        created_at: DateTime<Utc>,
        #[diesel(sql_type = diesel::sql_types::Timestamptz)]
        updated_at: DateTime<Utc>,
        #[diesel(sql_type = diesel::sql_types::Timestamptz)]
        started_at: DateTime<Utc>,
        #[diesel(sql_type = diesel::sql_types::Integer)]
        attempts: i32,
    }
    // The statement's columns, in one pass.
    let rows: usize = plans.iter().map(|(_, planned)| planned.len()).sum();
    let (
        mut ids,
        mut task_ids,
        mut items,
        mut services,
        mut scenarios,
        mut business_types,
        mut payloads,
    ) = (
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
    );
    for (task_id, planned) in &plans {
        for sr in planned {
            ids.push(sr.id);
            task_ids.push(*task_id);
            items.push(sr.item_index);
            services.push(sr.service_name.as_str());
            scenarios.push(sr.scenario_id);
            business_types.push(sr.business_type_id);
            payloads.push(&sr.request_payload);
        }
    }
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let inserted: Vec<Inserted> = crate::prepared::prepared(
        "INSERT INTO service_requests (status, started_at, id, task_id, item_index, \
           service_name, scenario_id, business_type_id, request_payload) \
         SELECT 'IN_PROGRESS', $1, v.* \
         FROM unnest($2::uuid[], $3::uuid[], $4::int4[], $5::text[], $6::uuid[], \
                     $7::uuid[], $8::jsonb[]) \
           AS v(id, task_id, item_index, service_name, scenario_id, business_type_id, \
                request_payload) \
         ON CONFLICT DO NOTHING \
         RETURNING id, created_at, updated_at, started_at, attempts",
    )
    .bind::<diesel::sql_types::Timestamptz, _>(now)
    .bind::<Array<diesel::sql_types::Uuid>, _>(ids)
    .bind::<Array<diesel::sql_types::Uuid>, _>(task_ids)
    .bind::<Array<diesel::sql_types::Integer>, _>(items)
    .bind::<Array<Text>, _>(services)
    .bind::<Array<diesel::sql_types::Uuid>, _>(scenarios)
    .bind::<Array<diesel::sql_types::Uuid>, _>(business_types)
    .bind::<Array<diesel::sql_types::Jsonb>, _>(payloads)
    .load(conn)
    .await?;
    let mut inserted: HashMap<Uuid, Inserted> =
        inserted.into_iter().map(|row| (row.id, row)).collect();
    let mut created: HashMap<Uuid, Vec<ServiceRequestRow>> = HashMap::new();
    for (task_id, planned) in plans {
        for sr in planned {
            let Some(row) = inserted.remove(&sr.id) else {
                continue;
            };
            created.entry(task_id).or_default().push(ServiceRequestRow {
                id: row.id,
                task_id,
                item_index: sr.item_index,
                service_name: sr.service_name.into_string(),
                scenario_id: sr.scenario_id,
                business_type_id: sr.business_type_id,
                status: Status::InProgress,
                attempts: row.attempts,
                created_at: row.created_at,
                updated_at: row.updated_at,
                // As stored: PostgreSQL keeps microseconds of `now`.
                started_at: Some(row.started_at),
                completed_at: None,
                request_payload: sr.request_payload,
                response_payload: None,
                error_message: None,
            });
        }
    }
    Ok(created)
}
