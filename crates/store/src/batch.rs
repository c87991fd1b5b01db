//! The result writes of many tasks at once, each kind in one transaction with a few
//! set-based statements: what the worker's group commit runs (see
//! `orchestrator_dispatcher::writer`).
//!
//! A task takes two transactions when nothing goes wrong: [`start_tasks`] (lock the
//! task, read what it asks for, create its service requests running) and
//! [`finish_many`] (record its outcomes and settle it). [`record_many`] records
//! outcomes early, when one of a task's calls takes long.
//!
//! Each function answers per request, in the order given, with the meaning documented
//! on its one-task form in [`crate::service_requests`] (`start_task`,
//! `record_finished`, `settle`), which is a batch of one of it, so the rules live in
//! one place.
//! A request whose fence no longer holds gets [`StoreError::Fenced`] and changes
//! nothing; the others go ahead. An error of the whole batch (a statement failed) is
//! returned as such, and the caller retries the requests one by one.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, Int4, Jsonb, Nullable, Text, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use orchestrator_core::{
    PlannedServiceRequest, ServiceName, ServiceRequestOutcome, Settlement, Status, settle_task,
};
use uuid::Uuid;

use crate::leases::Fence;
use crate::schema::{partition_leases, service_requests, tasks};
use crate::service_requests::{FinishedServiceRequest, StartedTask};
use crate::{ServiceRequestRow, StoreError, TaskRow};

/// Rows per `INSERT`, so that the bind parameters (9 per row) stay under PostgreSQL's
/// 65,535 whatever the batch holds.
const INSERT_CHUNK: usize = 5_000;

/// A service request created running, by [`start_tasks`].
#[derive(Insertable)]
#[diesel(table_name = service_requests)]
struct NewStartedServiceRequest<'a> {
    id: Uuid,
    task_id: Uuid,
    item_index: i32,
    service_name: &'a str,
    scenario_id: Uuid,
    business_type_id: Uuid,
    request_payload: &'a serde_json::Value,
    status: &'a str,
    started_at: DateTime<Utc>,
}

/// What a task's service requests are, from its stored row (read and locked by
/// [`start_tasks`], so the worker needs no read of its own). An `Err` says why the
/// stored request can no longer run (e.g. it names a service this worker no longer
/// knows); the task is then failed with that reason.
pub type Planner<'p> =
    dyn Fn(&TaskRow) -> Result<Vec<PlannedServiceRequest>, String> + Send + Sync + 'p;

/// A task to start: create its planned service requests and mark it running.
#[derive(Debug, Clone)]
pub struct StartRequest {
    pub task_id: Uuid,
    pub fence: Option<Fence>,
}

/// A service request's outcome to record.
#[derive(Debug, Clone)]
pub struct RecordRequest {
    pub id: Uuid,
    pub finished: FinishedServiceRequest,
    pub fence: Option<Fence>,
}

/// A task to finish: record these outcomes of its service requests (possibly none),
/// then settle it from all of them.
#[derive(Debug, Clone)]
pub struct FinishRequest {
    pub task_id: Uuid,
    /// Service request id and how it ended.
    pub outcomes: Vec<(Uuid, FinishedServiceRequest)>,
    pub fence: Option<Fence>,
}

/// Starts many tasks in one transaction; see `service_requests::start_task`.
pub async fn start_tasks(
    conn: &mut AsyncPgConnection,
    requests: &[StartRequest],
    plan: &Planner<'_>,
) -> Result<Vec<Result<StartedTask, StoreError>>, StoreError> {
    conn.transaction::<_, StoreError, _>(async |conn| {
        let fenced = fenced_out(conn, requests.iter().map(|r| r.fence.as_ref())).await?;
        let ids: Vec<Uuid> = requests
            .iter()
            .zip(&fenced)
            .filter(|(_, fenced)| !**fenced)
            .map(|(r, _)| r.task_id)
            .collect();
        let found = lock_task_rows(conn, &ids).await?;

        // Plan the tasks that run: found, not finished, fence held. A task twice in the
        // batch (a duplicate record) is planned once and both get the same answer.
        let mut plans: Vec<(Uuid, Vec<PlannedServiceRequest>)> = Vec::new();
        let mut rejected: HashMap<Uuid, String> = HashMap::new();
        let mut pending: Vec<Uuid> = Vec::new();
        let mut seen = HashSet::new();
        for task_id in &ids {
            let Some(task) = found.get(task_id) else {
                continue;
            };
            if task.status.is_terminal() || !seen.insert(*task_id) {
                continue;
            }
            match plan(task) {
                Ok(planned) => {
                    if task.status == Status::Pending {
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
        let now = Utc::now();
        let rows: Vec<NewStartedServiceRequest<'_>> = plans
            .iter()
            .flat_map(|(task_id, planned)| {
                planned.iter().map(move |sr| NewStartedServiceRequest {
                    id: sr.id,
                    task_id: *task_id,
                    item_index: sr.item_index,
                    service_name: sr.service_name.as_str(),
                    scenario_id: sr.scenario_id,
                    business_type_id: sr.business_type_id,
                    request_payload: &sr.request_payload,
                    status: Status::InProgress.as_str(),
                    started_at: now,
                })
            })
            .collect();
        let mut unfinished: HashMap<Uuid, Vec<ServiceRequestRow>> = HashMap::new();
        for chunk in rows.chunks(INSERT_CHUNK) {
            let inserted: Vec<ServiceRequestRow> = diesel::insert_into(service_requests::table)
                .values(chunk)
                .on_conflict_do_nothing()
                .returning(ServiceRequestRow::as_returning())
                .get_results(conn)
                .await?;
            for row in inserted {
                unfinished.entry(row.task_id).or_default().push(row);
            }
        }
        // A task all of whose planned rows were just created has exactly those to run;
        // only the others (resumed, re-driven) need their existing rows read.
        let resumed: Vec<Uuid> = plans
            .iter()
            .filter(|(task_id, planned)| {
                unfinished.get(task_id).map_or(0, Vec::len) != planned.len()
            })
            .map(|(task_id, _)| *task_id)
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
                    return Err(fenced_error(request.fence.as_ref()));
                }
                let Some(task) = found.get(&request.task_id) else {
                    return Ok(StartedTask::NotFound);
                };
                if let Some(reason) = rejected.get(&request.task_id) {
                    return Ok(StartedTask::Rejected(reason.clone()));
                }
                if task.status.is_terminal() {
                    return Ok(StartedTask::AlreadyFinished(task.status));
                }
                Ok(StartedTask::Running(
                    unfinished
                        .get(&request.task_id)
                        .cloned()
                        .unwrap_or_default(),
                ))
            })
            .collect())
    })
    .await
}

#[derive(QueryableByName)]
struct UpdatedId {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
}

/// Records many outcomes in one transaction; see `service_requests::record_finished`.
/// `Ok(false)`: the service request was not `IN_PROGRESS` (another run recorded it).
pub async fn record_many(
    conn: &mut AsyncPgConnection,
    requests: &[RecordRequest],
) -> Result<Vec<Result<bool, StoreError>>, StoreError> {
    conn.transaction::<_, StoreError, _>(async |conn| {
        let fenced = fenced_out(conn, requests.iter().map(|r| r.fence.as_ref())).await?;
        let writes: Vec<(Uuid, &FinishedServiceRequest)> = requests
            .iter()
            .zip(&fenced)
            .filter(|(_, fenced)| !**fenced)
            .map(|(request, _)| (request.id, &request.finished))
            .collect();
        let updated = write_outcomes(conn, writes).await?;
        let mut answered = HashSet::new();
        Ok(requests
            .iter()
            .zip(&fenced)
            .map(|(request, fenced)| {
                if *fenced {
                    Err(fenced_error(request.fence.as_ref()))
                } else {
                    // Only the first of duplicates is told it wrote.
                    Ok(updated.contains(&request.id) && answered.insert(request.id))
                }
            })
            .collect())
    })
    .await
}

/// Records the outcomes of many tasks and settles them, in one transaction: what a
/// worker writes when a task's calls are done. Answers each task's status afterwards
/// (`None`: no such task). See `service_requests::record_finished` and
/// `service_requests::settle` (a finish without outcomes).
pub async fn finish_many(
    conn: &mut AsyncPgConnection,
    requests: &[FinishRequest],
) -> Result<Vec<Result<Option<Status>, StoreError>>, StoreError> {
    conn.transaction::<_, StoreError, _>(async |conn| {
        let fenced = fenced_out(conn, requests.iter().map(|r| r.fence.as_ref())).await?;
        let held: Vec<&FinishRequest> = requests
            .iter()
            .zip(&fenced)
            .filter(|(_, fenced)| !**fenced)
            .map(|(request, _)| request)
            .collect();
        // Tasks first, in id order, as the other writers lock them.
        let ids: Vec<Uuid> = held.iter().map(|r| r.task_id).collect();
        let mut statuses = lock_tasks(conn, &ids).await?;
        let mut writes: Vec<(Uuid, &FinishedServiceRequest)> = Vec::new();
        for request in &held {
            for (id, finished) in &request.outcomes {
                writes.push((*id, finished));
            }
        }
        write_outcomes(conn, writes).await?;
        settle_locked(conn, &ids, &mut statuses).await?;
        Ok(requests
            .iter()
            .zip(&fenced)
            .map(|(request, fenced)| {
                if *fenced {
                    Err(fenced_error(request.fence.as_ref()))
                } else {
                    Ok(statuses.get(&request.task_id).copied())
                }
            })
            .collect())
    })
    .await
}

/// Writes outcomes to service requests still `IN_PROGRESS` (one statement) and returns
/// the ids written. The same service request twice (a duplicate record): the first
/// outcome counts.
async fn write_outcomes(
    conn: &mut AsyncPgConnection,
    mut writes: Vec<(Uuid, &FinishedServiceRequest)>,
) -> Result<HashSet<Uuid>, StoreError> {
    let mut seen = HashSet::new();
    writes.retain(|(id, _)| seen.insert(*id));
    if writes.is_empty() {
        return Ok(HashSet::new());
    }
    fn column<T>(
        writes: &[(Uuid, &FinishedServiceRequest)],
        f: impl Fn(&FinishedServiceRequest) -> T,
    ) -> Vec<T> {
        writes.iter().map(|(_, finished)| f(finished)).collect()
    }
    let rows: Vec<UpdatedId> = diesel::sql_query(
        "UPDATE service_requests AS sr SET \
           status = v.status, attempts = sr.attempts + v.attempts, \
           response_payload = v.response_payload, error_message = v.error_message, \
           started_at = v.started_at, completed_at = v.completed_at, updated_at = now() \
         FROM unnest($1::uuid[], $2::text[], $3::int4[], $4::jsonb[], $5::text[], \
                     $6::timestamptz[], $7::timestamptz[]) \
           AS v(id, status, attempts, response_payload, error_message, started_at, completed_at) \
         WHERE sr.id = v.id AND sr.status = 'IN_PROGRESS' \
         RETURNING sr.id",
    )
    .bind::<Array<diesel::sql_types::Uuid>, _>(writes.iter().map(|(id, _)| *id).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(column(&writes, |f| f.status.as_str().to_owned()))
    .bind::<Array<Int4>, _>(column(&writes, |f| f.attempts))
    .bind::<Array<Nullable<Jsonb>>, _>(column(&writes, |f| f.response_payload.clone()))
    .bind::<Array<Nullable<Text>>, _>(column(&writes, |f| f.error_message.clone()))
    .bind::<Array<Timestamptz>, _>(column(&writes, |f| f.started_at))
    .bind::<Array<Timestamptz>, _>(column(&writes, |f| f.completed_at))
    .load(conn)
    .await?;
    let written: HashSet<Uuid> = rows.into_iter().map(|row| row.id).collect();
    write_failed_attempts(conn, &writes, &written).await?;
    Ok(written)
}

/// Stores the failed attempts of the outcomes just written (`written`), numbered over
/// all runs: the row's `attempts` already includes this run's, so attempt `n` of the
/// run is `attempts - run's attempts + n`. No statement when nothing failed.
async fn write_failed_attempts(
    conn: &mut AsyncPgConnection,
    writes: &[(Uuid, &FinishedServiceRequest)],
    written: &HashSet<Uuid>,
) -> Result<(), StoreError> {
    let mut ids = Vec::new();
    let mut run_attempts = Vec::new();
    let mut numbers = Vec::new();
    let mut started = Vec::new();
    let mut durations = Vec::new();
    let mut codes = Vec::new();
    let mut errors = Vec::new();
    for (id, finished) in writes.iter().filter(|(id, _)| written.contains(id)) {
        for attempt in &finished.failed_attempts {
            ids.push(*id);
            run_attempts.push(finished.attempts);
            numbers.push(attempt.number);
            started.push(attempt.started_at);
            durations.push(attempt.duration_ms);
            codes.push(attempt.status_code);
            errors.push(attempt.error.clone());
        }
    }
    if ids.is_empty() {
        return Ok(());
    }
    diesel::sql_query(
        "INSERT INTO service_request_attempts \
           (service_request_id, attempt, started_at, duration_ms, status_code, error) \
         SELECT v.id, sr.attempts - v.run_attempts + v.number, v.started_at, v.duration_ms, \
                v.status_code, v.error \
         FROM unnest($1::uuid[], $2::int4[], $3::int4[], $4::timestamptz[], $5::int8[], \
                     $6::int4[], $7::text[]) \
           AS v(id, run_attempts, number, started_at, duration_ms, status_code, error) \
         JOIN service_requests sr ON sr.id = v.id \
         WHERE sr.attempts - v.run_attempts + v.number >= 1 \
         ON CONFLICT DO NOTHING",
    )
    .bind::<Array<diesel::sql_types::Uuid>, _>(ids)
    .bind::<Array<Int4>, _>(run_attempts)
    .bind::<Array<Int4>, _>(numbers)
    .bind::<Array<Timestamptz>, _>(started)
    .bind::<Array<diesel::sql_types::Int8>, _>(durations)
    .bind::<Array<Nullable<Int4>>, _>(codes)
    .bind::<Array<Text>, _>(errors)
    .execute(conn)
    .await?;
    Ok(())
}

/// Settles the unfinished tasks among `ids` (locked by the caller) from their service
/// requests, updating `statuses` with the outcome.
async fn settle_locked(
    conn: &mut AsyncPgConnection,
    ids: &[Uuid],
    statuses: &mut HashMap<Uuid, Status>,
) -> Result<(), StoreError> {
    let open: Vec<Uuid> = ids
        .iter()
        .filter(|id| statuses.get(id).is_some_and(|s| !s.is_terminal()))
        .copied()
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    if open.is_empty() {
        return Ok(());
    }
    let mut outcomes: HashMap<Uuid, Vec<ServiceRequestOutcome>> = HashMap::new();
    let rows: Vec<(Uuid, i32, String, String, Option<String>)> = service_requests::table
        .filter(service_requests::task_id.eq_any(&open))
        .select((
            service_requests::task_id,
            service_requests::item_index,
            service_requests::service_name,
            service_requests::status,
            service_requests::error_message,
        ))
        .load(conn)
        .await?;
    for (task_id, item_index, service_name, status, error_message) in rows {
        outcomes
            .entry(task_id)
            .or_default()
            .push(ServiceRequestOutcome {
                item_index,
                service_name: ServiceName::parse(&service_name)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                status: Status::parse(&status).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                error_message,
            });
    }
    let mut settled: Vec<(Uuid, Status, Option<String>)> = Vec::new();
    for task_id in &open {
        let outcomes = outcomes.get(task_id).map(Vec::as_slice).unwrap_or_default();
        let (status, error_message) = match settle_task(outcomes) {
            Settlement::Running => continue,
            Settlement::Completed => (Status::Completed, None),
            Settlement::Failed { error_message } => (Status::Failed, Some(error_message)),
        };
        statuses.insert(*task_id, status);
        settled.push((*task_id, status, error_message));
    }
    if !settled.is_empty() {
        diesel::sql_query(
            "UPDATE tasks AS t SET status = v.status, error_message = v.error_message, \
               updated_at = now() \
             FROM unnest($1::uuid[], $2::text[], $3::text[]) AS v(task_id, status, error_message) \
             WHERE t.task_id = v.task_id",
        )
        .bind::<Array<diesel::sql_types::Uuid>, _>(settled.iter().map(|s| s.0).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(
            settled
                .iter()
                .map(|s| s.1.as_str().to_owned())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Nullable<Text>>, _>(settled.iter().map(|s| s.2.clone()).collect::<Vec<_>>())
        .execute(conn)
        .await?;
    }
    Ok(())
}

/// Locks the tasks' rows until the transaction ends, in task id order (so concurrent
/// batches cannot deadlock on each other), and returns them by task id.
async fn lock_task_rows(
    conn: &mut AsyncPgConnection,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, TaskRow>, StoreError> {
    let rows: Vec<TaskRow> = tasks::table
        .filter(tasks::task_id.eq_any(ids))
        .order(tasks::task_id)
        .for_update()
        .select(TaskRow::as_select())
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(|row| (row.task_id, row)).collect())
}

#[derive(QueryableByName)]
struct TaskStatus {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    task_id: Uuid,
    #[diesel(sql_type = Text)]
    status: String,
}

/// Locks the tasks' rows until the transaction ends, in task id order (so concurrent
/// batches cannot deadlock on each other), and returns their statuses.
async fn lock_tasks(
    conn: &mut AsyncPgConnection,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Status>, StoreError> {
    let rows: Vec<TaskStatus> = diesel::sql_query(
        "SELECT task_id, status FROM tasks WHERE task_id = ANY($1) ORDER BY task_id FOR UPDATE",
    )
    .bind::<Array<diesel::sql_types::Uuid>, _>(ids)
    .load(conn)
    .await?;
    rows.into_iter()
        .map(|row| {
            let status =
                Status::parse(&row.status).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            Ok((row.task_id, status))
        })
        .collect()
}

/// For each fence (in order): true when it no longer holds. Holding fences are locked
/// (`FOR SHARE`) until the transaction ends, as `leases::check_fence` does, so they
/// cannot move on before the writes commit.
async fn fenced_out<'a>(
    conn: &mut AsyncPgConnection,
    fences: impl Iterator<Item = Option<&'a Fence>>,
) -> Result<Vec<bool>, StoreError> {
    let fences: Vec<Option<&Fence>> = fences.collect();
    let mut distinct: Vec<&Fence> = Vec::new();
    for fence in fences.iter().flatten() {
        if !distinct.contains(fence) {
            distinct.push(fence);
        }
    }
    let mut held = HashSet::new();
    // One query per topic; a worker consumes one topic, so this is one query.
    let mut topics: Vec<&str> = distinct.iter().map(|f| f.topic.as_str()).collect();
    topics.dedup();
    for topic in topics {
        let of_topic: Vec<&&Fence> = distinct.iter().filter(|f| f.topic == topic).collect();
        let rows: Vec<(i32, i64, String)> = partition_leases::table
            .filter(partition_leases::topic.eq(topic))
            .filter(partition_leases::partition.eq_any(of_topic.iter().map(|f| f.partition)))
            .select((
                partition_leases::partition,
                partition_leases::epoch,
                partition_leases::owner,
            ))
            .order(partition_leases::partition)
            .for_share()
            .load::<(i32, i64, Option<String>)>(conn)
            .await?
            .into_iter()
            .filter_map(|(partition, epoch, owner)| owner.map(|o| (partition, epoch, o)))
            .collect();
        for (partition, epoch, owner) in rows {
            held.insert((topic.to_owned(), partition, epoch, owner));
        }
    }
    Ok(fences
        .iter()
        .map(|fence| {
            fence.is_some_and(|f| {
                !held.contains(&(f.topic.clone(), f.partition, f.epoch, f.owner.clone()))
            })
        })
        .collect())
}

fn fenced_error(fence: Option<&Fence>) -> StoreError {
    match fence {
        Some(fence) => StoreError::Fenced {
            partition: fence.partition,
            epoch: fence.epoch,
        },
        None => StoreError::Corrupt("fenced without a fence".into()),
    }
}
