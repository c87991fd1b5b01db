//! Bulk operations: `POST /api/tasks/bulk/retry` and `/cancel` start one (or, with
//! `"dry_run": true`, count what it would act on), `GET /api/bulk/{bulk_id}` follows it,
//! `POST /api/bulk/{bulk_id}/cancel` stops it. The work itself is done in the
//! background ([`crate::bulk`]).

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use diesel_async::AsyncConnection;
use orchestrator_core::{AuditAction, AuditOutcome, BulkAction, BulkRequest};
use orchestrator_store::StoreError;
use orchestrator_store::bulk::{self, NewBulk, StopBulk, StoredFilter};
use serde_json::json;
use uuid::Uuid;

use super::orchestrate::{REQUEST_ID_HEADER, read_json, request_id};
use crate::audit::Audit;
use crate::auth::Caller;
use crate::dto::{BulkDryRunResponse, BulkOperationResponse};
use crate::error::{ApiError, Problem};
use crate::json::JsonLine;
use crate::state::AppState;

#[utoipa::path(post, path = "/api/tasks/bulk/retry", tag = "tasks",
    request_body(content = BulkRetryBody, content_type = "application/json"),
    responses(
        (status = 200, description = "`dry_run`: how many tasks the filter selects; nothing changed", body = BulkDryRunResponse),
        (status = 202, description = "Started: the FAILED and CANCELLED tasks the filter selects are re-driven in the background, at most BULK_RATE_PER_SECOND a second", body = BulkOperationResponse,
            headers(("Location" = String, description = "/api/bulk/{id}"))),
        (status = 400, description = "Invalid JSON", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid request", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn bulk_retry(
    caller: Caller,
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    start(BulkAction::Retry, caller, req, body, state).await
}

#[utoipa::path(post, path = "/api/tasks/bulk/cancel", tag = "tasks",
    request_body(content = BulkCancelBody, content_type = "application/json"),
    responses(
        (status = 200, description = "`dry_run`: how many tasks the filter selects; nothing changed", body = BulkDryRunResponse),
        (status = 202, description = "Started: the PENDING and IN_PROGRESS tasks the filter selects are cancelled in the background, at most BULK_RATE_PER_SECOND a second", body = BulkOperationResponse,
            headers(("Location" = String, description = "/api/bulk/{id}"))),
        (status = 400, description = "Invalid JSON", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid request", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn bulk_cancel(
    caller: Caller,
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    start(BulkAction::Cancel, caller, req, body, state).await
}

async fn start(
    action: BulkAction,
    caller: Caller,
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let json = read_json(&req, body, state.max_body_bytes).await?;
    let request = BulkRequest::parse(&json, action, &state.limits().known_services)
        .map_err(ApiError::Validation)?;
    let filter = StoredFilter::from(&request.filter).to_json();
    let mut conn = state.pool.get().await.map_err(StoreError::from)?;
    if request.dry_run {
        let (matched, _) = bulk::count_matching(&mut conn, &caller.tenant, &request.filter).await?;
        return Ok(HttpResponse::Ok().json_line(BulkDryRunResponse {
            action: action.as_str().to_owned(),
            dry_run: true,
            filter,
            matched,
        }));
    }
    let request_id = request_id(&req);
    let audit = Audit::of(&caller, &req, &state.trusted_proxies, &request_id);
    let id = Uuid::new_v4();
    let actor = caller.actor();
    let rate = i32::try_from(state.bulk.rate_per_second).unwrap_or(i32::MAX);
    // The operation and its one audit event (with its filter and count) commit together.
    let row = conn
        .transaction::<_, ApiError, _>(async |conn| {
            let row = bulk::create(
                conn,
                &NewBulk {
                    id,
                    tenant: &caller.tenant,
                    action,
                    filter: &request.filter,
                    rate_per_second: rate,
                    actor: &actor,
                    request_id: Some(&request_id),
                },
            )
            .await?;
            let details = json!({"filter": row.filter, "matched": row.matched});
            let audited = match action {
                BulkAction::Retry => AuditAction::TasksBulkRetry,
                BulkAction::Cancel => AuditAction::TasksBulkCancel,
            };
            audit
                .record_with(
                    conn,
                    audited,
                    Some(&id.to_string()),
                    AuditOutcome::Success,
                    Some(&details),
                )
                .await?;
            Ok(row)
        })
        .await?;
    tracing::info!(bulk_id = %id, action = action.as_str(), matched = row.matched, "Bulk operation started.");
    state.bulk.wake();
    Ok(HttpResponse::Accepted()
        .insert_header((header::LOCATION, format!("/api/bulk/{id}")))
        .insert_header((REQUEST_ID_HEADER, request_id))
        .json_line(BulkOperationResponse::from(row)))
}

#[utoipa::path(get, path = "/api/bulk/{bulk_id}", tag = "tasks",
    params(("bulk_id" = Uuid, Path, description = "The bulk operation's id")),
    responses(
        (status = 200, description = "The operation and how far it got", body = BulkOperationResponse),
        (status = 400, description = "Not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such bulk operation", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_bulk(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = bulk_id(path)?;
    let mut conn = state.pool.get().await.map_err(StoreError::from)?;
    let row = bulk::find_in(&mut conn, &caller.tenant, id)
        .await?
        .ok_or(ApiError::BulkNotFound(id))?;
    Ok(HttpResponse::Ok().json_line(BulkOperationResponse::from(row)))
}

#[utoipa::path(post, path = "/api/bulk/{bulk_id}/cancel", tag = "tasks",
    params(("bulk_id" = Uuid, Path, description = "The bulk operation's id")),
    responses(
        (status = 202, description = "Stopped: no task is handled after this; those handled stay so", body = BulkOperationResponse),
        (status = 400, description = "Not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such bulk operation", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "It is COMPLETED or CANCELLED already", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn cancel_bulk(
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = bulk_id(path)?;
    let request_id = request_id(&req);
    let audit = Audit::of(&caller, &req, &state.trusted_proxies, &request_id);
    let target = id.to_string();
    let mut conn = state.pool.get().await.map_err(StoreError::from)?;
    let stopped = conn
        .transaction::<_, ApiError, _>(async |conn| {
            match bulk::stop(conn, &caller.tenant, id).await? {
                StopBulk::Stopped(row) => {
                    audit
                        .record(
                            conn,
                            AuditAction::BulkCancel,
                            Some(&target),
                            AuditOutcome::Success,
                        )
                        .await?;
                    Ok(row)
                }
                StopBulk::AlreadyEnded(row) => Err(ApiError::BulkAlreadyEnded {
                    id,
                    state: row.state,
                }),
                StopBulk::NotFound => Err(ApiError::BulkNotFound(id)),
            }
        })
        .await;
    let row = match stopped {
        Ok(row) => row,
        Err(error @ (ApiError::BulkNotFound(_) | ApiError::BulkAlreadyEnded { .. })) => {
            audit
                .record_refusal(&state.pool, AuditAction::BulkCancel, Some(&target))
                .await;
            return Err(error);
        }
        Err(error) => return Err(error),
    };
    tracing::info!(bulk_id = %id, acted = row.acted, "Bulk operation stopped.");
    Ok(HttpResponse::Accepted()
        .insert_header((header::LOCATION, format!("/api/bulk/{id}")))
        .insert_header((REQUEST_ID_HEADER, request_id))
        .json_line(BulkOperationResponse::from(row)))
}

fn bulk_id(path: web::Path<String>) -> Result<Uuid, ApiError> {
    let raw = path.into_inner();
    Uuid::try_parse(&raw).map_err(|_| ApiError::InvalidBulkId(raw))
}

/// The body of `POST /api/tasks/bulk/retry`; its rules are written by `openapi::rules`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Documents the body; it is read by `BulkRequest::parse`.
pub struct BulkRetryBody {
    dry_run: bool,
}

/// The body of `POST /api/tasks/bulk/cancel`; its rules are written by `openapi::rules`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Documents the body; it is read by `BulkRequest::parse`.
pub struct BulkCancelBody {
    dry_run: bool,
}
