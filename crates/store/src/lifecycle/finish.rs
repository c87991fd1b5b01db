//! **finish**: record a task's last outcomes and settle it, `IN_PROGRESS` to
//! `COMPLETED` or `FAILED` by [`orchestrator_core::settle_task`]. See the state machine
//! in [`super`].

use std::collections::{HashMap, HashSet};

use diesel::prelude::*;
use diesel::sql_types::{Array, Nullable, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use orchestrator_core::{ServiceName, ServiceRequestOutcome, Settlement, Status, settle_task};
use uuid::Uuid;

use super::record::{FinishedServiceRequest, write_outcomes};
use super::{fence, lock, only};
use crate::StoreError;
use crate::leases::Fence;
use crate::schema::service_requests;

/// A task to finish: record these outcomes of its service requests (possibly none),
/// then settle it from all of them.
#[derive(Debug, Clone)]
pub struct FinishRequest {
    pub task_id: Uuid,
    /// Service request id and how it ended.
    pub outcomes: Vec<(Uuid, FinishedServiceRequest)>,
    pub fence: Option<Fence>,
}

/// Settles a task from its service requests (a batch of one of [`finish_many`]
/// without outcomes) (see [`orchestrator_core::settle_task`]) and
/// returns its status afterwards. A task already finished is left as it is. With a
/// `fence`, refused once the partition's lease has moved on.
pub async fn settle(
    conn: &mut AsyncPgConnection,
    task_id: Uuid,
    fence: Option<&Fence>,
) -> Result<Option<Status>, StoreError> {
    let request = FinishRequest {
        task_id,
        outcomes: Vec::new(),
        fence: fence.cloned(),
    };
    only(finish_many(conn, std::slice::from_ref(&request)).await?)
}

/// Records the outcomes of many tasks and settles them, in one transaction: what a
/// worker writes when a task's calls are done. Answers each task's status afterwards
/// (`None`: no such task). See [`super::record::record_finished`] and [`settle`] (a
/// finish without outcomes).
pub async fn finish_many(
    conn: &mut AsyncPgConnection,
    requests: &[FinishRequest],
) -> Result<Vec<Result<Option<Status>, StoreError>>, StoreError> {
    conn.transaction::<_, StoreError, _>(async |conn| {
        let fenced = fence::fenced_out(conn, requests.iter().map(|r| r.fence.as_ref())).await?;
        let held: Vec<&FinishRequest> = requests
            .iter()
            .zip(&fenced)
            .filter(|(_, fenced)| !**fenced)
            .map(|(request, _)| request)
            .collect();
        // Tasks first, in id order, as the other writers lock them.
        let ids: Vec<Uuid> = held.iter().map(|r| r.task_id).collect();
        let locked = lock::tasks(conn, &ids).await?;
        let with_callback: HashSet<Uuid> = locked
            .values()
            .filter(|row| row.callback_url.is_some())
            .map(|row| row.task_id)
            .collect();
        let mut statuses: HashMap<Uuid, Status> = locked
            .into_iter()
            .map(|(task_id, row)| (task_id, row.status))
            .collect();
        let mut writes: Vec<(Uuid, &FinishedServiceRequest)> = Vec::new();
        for request in &held {
            for (id, finished) in &request.outcomes {
                writes.push((*id, finished));
            }
        }
        write_outcomes(conn, writes).await?;
        let settled = settle_locked(conn, &ids, &mut statuses).await?;
        // One notification for the batch (a few for a large one), sent at commit.
        crate::notify::tasks_finished(conn, &settled).await?;
        // Their webhooks, when they have one, in the same commit.
        let callbacks: Vec<Uuid> = settled
            .iter()
            .filter(|id| with_callback.contains(id))
            .copied()
            .collect();
        crate::webhooks::enqueue(conn, &callbacks).await?;
        Ok(requests
            .iter()
            .zip(&fenced)
            .map(|(request, fenced)| {
                if *fenced {
                    Err(fence::fenced_error(request.fence.as_ref()))
                } else {
                    Ok(statuses.get(&request.task_id).copied())
                }
            })
            .collect())
    })
    .await
}

/// Settles the unfinished tasks among `ids` (locked by the caller) from their service
/// requests, updating `statuses` with the outcome; returns the tasks it made final.
async fn settle_locked(
    conn: &mut AsyncPgConnection,
    ids: &[Uuid],
    statuses: &mut HashMap<Uuid, Status>,
) -> Result<Vec<Uuid>, StoreError> {
    let open: Vec<Uuid> = ids
        .iter()
        .filter(|id| statuses.get(id).is_some_and(|s| !s.is_terminal()))
        .copied()
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    if open.is_empty() {
        return Ok(Vec::new());
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
        crate::prepared::prepared(
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
    Ok(settled.into_iter().map(|(task_id, _, _)| task_id).collect())
}
