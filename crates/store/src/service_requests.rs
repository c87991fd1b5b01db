//! Reads of `service_requests` and their failed attempts. The writes are transitions of
//! the task lifecycle ([`crate::lifecycle`]).

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::schema::{service_request_attempts, service_requests};
use crate::{AttemptRow, ServiceRequestRow, StoreError};

/// A task's service requests, by item then service name.
pub async fn list_for_task(
    conn: &mut AsyncPgConnection,
    task_id: Uuid,
) -> Result<Vec<ServiceRequestRow>, StoreError> {
    Ok(service_requests::table
        .filter(service_requests::task_id.eq(task_id))
        .order((
            service_requests::item_index.asc(),
            service_requests::service_name.asc(),
        ))
        .select(ServiceRequestRow::as_select())
        .load(conn)
        .await?)
}

/// The recorded failed attempts of a task's service requests, by service request, each
/// oldest first.
pub async fn failed_attempts_for_task(
    conn: &mut AsyncPgConnection,
    task_id: Uuid,
) -> Result<Vec<AttemptRow>, StoreError> {
    Ok(service_request_attempts::table
        .inner_join(service_requests::table)
        .filter(service_requests::task_id.eq(task_id))
        .order((
            service_request_attempts::service_request_id,
            service_request_attempts::attempt,
        ))
        .select(AttemptRow::as_select())
        .load(conn)
        .await?)
}
