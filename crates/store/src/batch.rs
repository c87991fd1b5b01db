//! The result writes of many tasks at once, each kind in one transaction with a few
//! set-based statements: what the worker's group commit runs (see
//! `orchestrator_dispatcher::writer`).
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
use crate::{ServiceRequestRow, StoreError};

/// Rows per `INSERT`, so that the bind parameters (7 per row) stay under PostgreSQL's
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

/// A task to start: create its planned service requests and mark it running.
#[derive(Debug, Clone)]
pub struct StartRequest {
    pub task_id: Uuid,
    pub planned: Vec<PlannedServiceRequest>,
    pub fence: Option<Fence>,
}

/// A service request's outcome to record.
#[derive(Debug, Clone)]
pub struct RecordRequest {
    pub id: Uuid,
    pub finished: FinishedServiceRequest,
    pub fence: Option<Fence>,
}

/// A task to settle from its service requests.
#[derive(Debug, Clone)]
pub struct SettleRequest {
    pub task_id: Uuid,
    pub fence: Option<Fence>,
}

/// Starts many tasks in one transaction; see `service_requests::start_task`.
pub async fn start_tasks(
    conn: &mut AsyncPgConnection,
    requests: &[StartRequest],
) -> Result<Vec<Result<StartedTask, StoreError>>, StoreError> {
    conn.transaction::<_, StoreError, _>(async |conn| {
        let fenced = fenced_out(conn, requests.iter().map(|r| r.fence.as_ref())).await?;
        let ids: Vec<Uuid> = requests.iter().map(|r| r.task_id).collect();
        let statuses = lock_tasks(conn, &ids).await?;

        // Tasks that run: found, not finished, fence held. A task twice in the batch
        // (a duplicate record) is started once and both get the same rows.
        let mut running: Vec<Uuid> = Vec::new();
        let mut pending: Vec<Uuid> = Vec::new();
        let mut rows: Vec<NewStartedServiceRequest<'_>> = Vec::new();
        let mut seen = HashSet::new();
        let now = Utc::now();
        for (request, fenced) in requests.iter().zip(&fenced) {
            let status = statuses.get(&request.task_id);
            let runs = !fenced && status.is_some_and(|s| !s.is_terminal());
            if !runs || !seen.insert(request.task_id) {
                continue;
            }
            running.push(request.task_id);
            if status == Some(&Status::Pending) {
                pending.push(request.task_id);
            }
            // New rows start running at once: inserting them IN_PROGRESS saves
            // rewriting every row right after it was written.
            rows.extend(request.planned.iter().map(|sr| NewStartedServiceRequest {
                id: sr.id,
                task_id: request.task_id,
                item_index: sr.item_index,
                service_name: sr.service_name.as_str(),
                scenario_id: sr.scenario_id,
                business_type_id: sr.business_type_id,
                request_payload: &sr.request_payload,
                status: Status::InProgress.as_str(),
                started_at: now,
            }));
        }
        for chunk in rows.chunks(INSERT_CHUNK) {
            diesel::insert_into(service_requests::table)
                .values(chunk)
                .on_conflict_do_nothing()
                .execute(conn)
                .await?;
        }
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
        let mut unfinished: HashMap<Uuid, Vec<ServiceRequestRow>> = HashMap::new();
        if !running.is_empty() {
            // Rows that existed already and wait for another run (a re-drive).
            diesel::update(service_requests::table)
                .filter(service_requests::task_id.eq_any(&running))
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
            let started: Vec<ServiceRequestRow> = service_requests::table
                .filter(service_requests::task_id.eq_any(&running))
                .filter(service_requests::status.eq(Status::InProgress.as_str()))
                .select(ServiceRequestRow::as_select())
                .load(conn)
                .await?;
            for row in started {
                unfinished.entry(row.task_id).or_default().push(row);
            }
            for rows in unfinished.values_mut() {
                rows.sort_by(|a, b| {
                    (a.item_index, &a.service_name).cmp(&(b.item_index, &b.service_name))
                });
            }
        }

        Ok(requests
            .iter()
            .zip(&fenced)
            .map(|(request, fenced)| {
                if *fenced {
                    return Err(fenced_error(request.fence.as_ref()));
                }
                Ok(match statuses.get(&request.task_id) {
                    None => StartedTask::NotFound,
                    Some(status) if status.is_terminal() => StartedTask::AlreadyFinished(*status),
                    Some(_) => StartedTask::Running(
                        unfinished
                            .get(&request.task_id)
                            .cloned()
                            .unwrap_or_default(),
                    ),
                })
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
        // The same service request twice (a duplicate record): the first one counts.
        let mut seen = HashSet::new();
        let writes: Vec<&RecordRequest> = requests
            .iter()
            .zip(&fenced)
            .filter(|(request, fenced)| !**fenced && seen.insert(request.id))
            .map(|(request, _)| request)
            .collect();
        let mut updated = HashSet::new();
        if !writes.is_empty() {
            fn column<T>(
                writes: &[&RecordRequest],
                f: impl Fn(&FinishedServiceRequest) -> T,
            ) -> Vec<T> {
                writes.iter().map(|w| f(&w.finished)).collect()
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
            .bind::<Array<diesel::sql_types::Uuid>, _>(
                writes.iter().map(|w| w.id).collect::<Vec<_>>(),
            )
            .bind::<Array<Text>, _>(column(&writes, |f| f.status.as_str().to_owned()))
            .bind::<Array<Int4>, _>(column(&writes, |f| f.attempts))
            .bind::<Array<Nullable<Jsonb>>, _>(column(&writes, |f| f.response_payload.clone()))
            .bind::<Array<Nullable<Text>>, _>(column(&writes, |f| f.error_message.clone()))
            .bind::<Array<Timestamptz>, _>(column(&writes, |f| f.started_at))
            .bind::<Array<Timestamptz>, _>(column(&writes, |f| f.completed_at))
            .load(conn)
            .await?;
            updated.extend(rows.into_iter().map(|row| row.id));
        }
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

/// Settles many tasks in one transaction; see `service_requests::settle`.
pub async fn settle_many(
    conn: &mut AsyncPgConnection,
    requests: &[SettleRequest],
) -> Result<Vec<Result<Option<Status>, StoreError>>, StoreError> {
    conn.transaction::<_, StoreError, _>(async |conn| {
        let fenced = fenced_out(conn, requests.iter().map(|r| r.fence.as_ref())).await?;
        let ids: Vec<Uuid> = requests.iter().map(|r| r.task_id).collect();
        let mut statuses = lock_tasks(conn, &ids).await?;
        let open: Vec<Uuid> = requests
            .iter()
            .zip(&fenced)
            .filter(|(request, fenced)| {
                !**fenced
                    && statuses
                        .get(&request.task_id)
                        .is_some_and(|s| !s.is_terminal())
            })
            .map(|(request, _)| request.task_id)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();

        let mut outcomes: HashMap<Uuid, Vec<ServiceRequestOutcome>> = HashMap::new();
        if !open.is_empty() {
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
                        status: Status::parse(&status)
                            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                        error_message,
                    });
            }
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
            .bind::<Array<diesel::sql_types::Uuid>, _>(
                settled.iter().map(|s| s.0).collect::<Vec<_>>(),
            )
            .bind::<Array<Text>, _>(
                settled
                    .iter()
                    .map(|s| s.1.as_str().to_owned())
                    .collect::<Vec<_>>(),
            )
            .bind::<Array<Nullable<Text>>, _>(
                settled.iter().map(|s| s.2.clone()).collect::<Vec<_>>(),
            )
            .execute(conn)
            .await?;
        }
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
