//! **record**: a service request from `IN_PROGRESS` to `COMPLETED` or `FAILED`, with
//! its failed attempts kept. See the state machine in [`super`].

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, Int4, Jsonb, Nullable, Text, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use orchestrator_core::{RawJson, Status};
use uuid::Uuid;

use super::{fence, only};
use crate::StoreError;
use crate::json_text::JsonText;
use crate::leases::Fence;

/// How one service request ended.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishedServiceRequest {
    /// `COMPLETED` or `FAILED`.
    pub status: Status,
    /// Attempts made in this run; added to those of earlier runs.
    pub attempts: i32,
    /// The service's answer, as it sent it.
    pub response_payload: Option<RawJson>,
    pub error_message: Option<String>,
    pub started_at: DateTime<Utc>,
    pub completed_at: DateTime<Utc>,
    /// The attempts of this run that failed, in order (the last one too, when the
    /// request failed for good). Stored in `service_request_attempts`; a request that
    /// succeeds at once has none, and writes nothing there.
    pub failed_attempts: Vec<FailedAttempt>,
}

/// One failed HTTP attempt of a service request.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedAttempt {
    /// 1 for the first attempt of this run; stored counting over all runs.
    pub number: i32,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i64,
    /// The service's HTTP status, when it answered.
    pub status_code: Option<i32>,
    pub error: String,
}

/// A service request's outcome to record.
#[derive(Debug, Clone)]
pub struct RecordRequest {
    pub id: Uuid,
    pub finished: FinishedServiceRequest,
    pub fence: Option<Fence>,
}

/// Records how a service request ended. Returns false (and changes nothing) when it was
/// not `IN_PROGRESS`, e.g. because another run already recorded it. With a `fence`,
/// refused once the partition's lease has moved on.
pub async fn record_finished(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    finished: &FinishedServiceRequest,
    fence: Option<&Fence>,
) -> Result<bool, StoreError> {
    let request = RecordRequest {
        id,
        finished: finished.clone(),
        fence: fence.cloned(),
    };
    only(record_many(conn, std::slice::from_ref(&request)).await?)
}

#[derive(QueryableByName)]
struct UpdatedId {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
}

/// Records many outcomes in one transaction: the set-based form of [`record_finished`].
/// `Ok(false)`: the service request was not `IN_PROGRESS` (another run recorded it).
pub async fn record_many(
    conn: &mut AsyncPgConnection,
    requests: &[RecordRequest],
) -> Result<Vec<Result<bool, StoreError>>, StoreError> {
    conn.transaction::<_, StoreError, _>(async |conn| {
        let fenced = fence::fenced_out(conn, requests.iter().map(|r| r.fence.as_ref())).await?;
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
                    Err(fence::fenced_error(request.fence.as_ref()))
                } else {
                    // Only the first of duplicates is told it wrote.
                    Ok(updated.contains(&request.id) && answered.insert(request.id))
                }
            })
            .collect())
    })
    .await
}

/// Writes outcomes to service requests still `IN_PROGRESS` (one statement) and returns
/// the ids written. The same service request twice (a duplicate record): the first
/// outcome counts.
pub(super) async fn write_outcomes(
    conn: &mut AsyncPgConnection,
    mut writes: Vec<(Uuid, &FinishedServiceRequest)>,
) -> Result<HashSet<Uuid>, StoreError> {
    let mut seen = HashSet::new();
    writes.retain(|(id, _)| seen.insert(*id));
    if writes.is_empty() {
        return Ok(HashSet::new());
    }
    fn column<'a, T>(
        writes: &[(Uuid, &'a FinishedServiceRequest)],
        f: impl Fn(&'a FinishedServiceRequest) -> T,
    ) -> Vec<T> {
        writes.iter().map(|(_, finished)| f(finished)).collect()
    }
    let rows: Vec<UpdatedId> = crate::prepared::prepared(
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
    .bind::<Array<Text>, _>(column(&writes, |f| f.status.as_str()))
    .bind::<Array<Int4>, _>(column(&writes, |f| f.attempts))
    .bind::<Array<Nullable<Jsonb>>, _>(column(&writes, |f| {
        f.response_payload.as_ref().map(|json| JsonText(json.get()))
    }))
    .bind::<Array<Nullable<Text>>, _>(column(&writes, |f| f.error_message.as_deref()))
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
    crate::prepared::prepared(
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
