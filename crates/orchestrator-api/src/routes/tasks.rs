//! Following tasks.

use std::collections::HashMap;
use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use diesel_async::AsyncConnection;
use orchestrator_core::{AuditAction, AuditOutcome, Status, TenantName};
use orchestrator_store::lifecycle::redrive::{self, Redrive};
use orchestrator_store::lifecycle::stop::{self, Stop};
use orchestrator_store::{AttemptRow, StoreError, TaskCursor, TaskRow, service_requests, tasks};
use uuid::Uuid;

use crate::audit::Audit;
use crate::auth::Caller;
use crate::dto::{
    ServiceRequestResponse, TaskDetailResponse, TaskListResponse, TaskResponse,
    WebhookDeliveryResponse,
};
use crate::error::{ApiError, Problem};
use crate::json::{Json, JsonLine};
use crate::routes::query::Params;
use crate::state::AppState;
use crate::waiting::MAX_WAIT_SECS;

pub const DEFAULT_PAGE_SIZE: i64 = 50;
pub const MAX_PAGE_SIZE: i64 = 500;

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Documents the parameters; they are read by `Params`.
pub struct ListQuery {
    /// Only tasks with this status.
    status: Option<String>,
    /// Page size, 1 to 500 (default 50).
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// Lists tasks, newest first, a page at a time.
#[utoipa::path(get, path = "/api/tasks", tag = "tasks", params(ListQuery),
    responses(
        (status = 200, description = "A page of tasks", body = TaskListResponse),
        (status = 400, description = "Invalid query parameter", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_tasks(
    caller: Caller,
    query: web::Query<Vec<(String, String)>>,
    state: web::Data<AppState>,
) -> Result<Json<TaskListResponse>, ApiError> {
    let mut params = Params::parse(query.into_inner(), &["status", "limit", "cursor"])?;
    let page = PageRequest::parse(
        params.take("status").as_deref(),
        params.take("limit").as_deref(),
        params.take("cursor").as_deref(),
    )?;
    let mut conn = state.pool.get().await.map_err(StoreError::from)?;
    let rows = tasks::list_page(
        &mut conn,
        &caller.tenant,
        page.status,
        page.cursor,
        page.limit,
    )
    .await?;
    Ok(Json(page.respond(rows)))
}

/// The `status`, `limit` and `cursor` of a request for a page of tasks, checked; shared
/// by the list and the search (`routes::dashboard`).
pub(crate) struct PageRequest {
    pub status: Option<Status>,
    pub limit: i64,
    pub cursor: Option<TaskCursor>,
}

impl PageRequest {
    pub(crate) fn parse(
        status: Option<&str>,
        limit: Option<&str>,
        cursor: Option<&str>,
    ) -> Result<Self, ApiError> {
        let status = status
            .map(|status| {
                Status::parse(status).map_err(|e| ApiError::InvalidQuery {
                    parameter: "status",
                    detail: e.to_string(),
                })
            })
            .transpose()?;
        let limit = match limit {
            None => DEFAULT_PAGE_SIZE,
            Some(limit) => limit
                .parse::<i64>()
                .ok()
                .filter(|limit| (1..=MAX_PAGE_SIZE).contains(limit))
                .ok_or_else(|| ApiError::InvalidQuery {
                    parameter: "limit",
                    detail: format!("must be a whole number from 1 to {MAX_PAGE_SIZE}"),
                })?,
        };
        let cursor = cursor
            .map(|cursor| {
                TaskCursor::decode(cursor).map_err(|e| ApiError::InvalidQuery {
                    parameter: "cursor",
                    detail: e.to_string(),
                })
            })
            .transpose()?;
        Ok(Self {
            status,
            limit,
            cursor,
        })
    }

    /// The page out of the `limit + 1` rows the store fetched, with the position of the
    /// next page when there is one.
    pub(crate) fn split(&self, mut rows: Vec<TaskRow>) -> (Vec<TaskRow>, Option<TaskCursor>) {
        let limit = usize::try_from(self.limit).unwrap_or(usize::MAX);
        let has_more = rows.len() > limit;
        rows.truncate(limit);
        let next = rows.last().filter(|_| has_more).map(TaskRow::cursor);
        (rows, next)
    }

    /// [`PageRequest::split`] as the list's answer.
    pub(crate) fn respond(&self, rows: Vec<TaskRow>) -> TaskListResponse {
        let (rows, next) = self.split(rows);
        TaskListResponse {
            tasks: rows.into_iter().map(TaskResponse::from).collect(),
            next_cursor: next.map(|at| at.encode()),
        }
    }
}

/// The `?wait=` of a request, checked; `None` when absent.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Documents the parameter; it is read by `wait_param`.
pub struct WaitQuery {
    /// Long poll: answer as soon as the task is final (COMPLETED, FAILED or CANCELLED),
    /// or after this many seconds (0 to 60) with its state then.
    wait: Option<u64>,
}

pub(crate) fn wait_param(query: Vec<(String, String)>) -> Result<Option<Duration>, ApiError> {
    let mut params = Params::parse(query, &["wait"])?;
    params
        .take("wait")
        .map(|wait| {
            wait.parse::<u64>()
                .ok()
                .filter(|seconds| *seconds <= MAX_WAIT_SECS)
                .map(Duration::from_secs)
                .ok_or_else(|| ApiError::InvalidQuery {
                    parameter: "wait",
                    detail: format!("must be a whole number of seconds from 0 to {MAX_WAIT_SECS}"),
                })
        })
        .transpose()
}

/// A task with its service requests.
#[utoipa::path(get, path = "/api/tasks/{task_id}", tag = "tasks",
    params(("task_id" = Uuid, Path, description = "The task's id"), WaitQuery),
    responses(
        (status = 200, description = "The task (with `wait`: once final, or when the wait ran out)", body = TaskDetailResponse),
        (status = 400, description = "Not a UUID, or an invalid query parameter", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such task", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_task(
    caller: Caller,
    path: web::Path<String>,
    query: web::Query<Vec<(String, String)>>,
    state: web::Data<AppState>,
) -> Result<Json<TaskDetailResponse>, ApiError> {
    let raw = path.into_inner();
    let task_id = Uuid::try_parse(&raw).map_err(|_| ApiError::InvalidTaskId(raw))?;
    let wait = wait_param(query.into_inner())?;
    Ok(Json(match wait {
        None => load_detail(&state, &caller.tenant, task_id).await?,
        Some(wait) => wait_until_final(&state, &caller.tenant, task_id, wait).await?,
    }))
}

/// The task once it is final, or after `wait` with its state then. Registered for its
/// notifications before the first read, so a change committed after that read wakes
/// it; holds no database connection while it waits.
pub(crate) async fn wait_until_final(
    state: &AppState,
    tenant: &TenantName,
    task_id: Uuid,
    wait: Duration,
) -> Result<TaskDetailResponse, ApiError> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut watch = state.waits.watch(task_id);
    loop {
        let detail = load_detail(state, tenant, task_id).await?;
        if detail.task.status.is_terminal() {
            return Ok(detail);
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Ok(detail);
        }
        if !watch.changed_within(left).await {
            // Only final states are announced: read the state at the timeout.
            return load_detail(state, tenant, task_id).await;
        }
    }
}

/// What an action on one task (re-drive, cancel) starts with: the task's id (400 when
/// it is not a UUID), on the handler's span with the request id and the client, and
/// the who and where of its audit rows.
struct TaskAction {
    task_id: Uuid,
    request_id: String,
    audit: Audit,
    /// The audit rows' target: the task id.
    target: String,
}

impl TaskAction {
    fn of(
        caller: &Caller,
        req: &HttpRequest,
        path: web::Path<String>,
        state: &AppState,
    ) -> Result<TaskAction, ApiError> {
        let raw = path.into_inner();
        let task_id = Uuid::try_parse(&raw).map_err(|_| ApiError::InvalidTaskId(raw))?;
        tracing::Span::current().record("task_id", tracing::field::display(task_id));
        let request_id = super::orchestrate::request_id(req);
        tracing::Span::current().record("request_id", request_id.as_str());
        crate::client_address::record(req, &state.trusted_proxies);
        let audit = Audit::of(caller, req, &state.trusted_proxies, &request_id);
        Ok(TaskAction {
            task_id,
            request_id,
            audit,
            target: task_id.to_string(),
        })
    }
}

/// Why a re-drive did not happen, inside its transaction.
#[utoipa::path(post, path = "/api/tasks/{task_id}/retry", tag = "tasks",
    params(("task_id" = Uuid, Path, description = "The task's id")),
    responses(
        (status = 202, description = "Re-driven: the task is IN_PROGRESS again and runs what did not complete", body = TaskResponse,
            headers(("Location" = String, description = "/api/tasks/{task_id}")),
            links(("GetTask" = (operation_id = "get_task", parameters(("task_id" = "$request.path.task_id")),
                description = "The task, with its service requests")))),
        (status = 400, description = "Not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such task", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The task is not FAILED or CANCELLED", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database or task queue unavailable; nothing changed", body = Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(
    name = "redrive",
    skip_all,
    fields(
        task_id = tracing::field::Empty,
        request_id = tracing::field::Empty,
        client = tracing::field::Empty
    )
)]
pub async fn retry_task(
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let TaskAction {
        task_id,
        request_id,
        audit,
        target,
    } = TaskAction::of(&caller, &req, path, &state)?;
    let queue = state.queue.clone();
    let asked_by = crate::tracing_http::server_span(&req);
    let mut conn = state.pool.get().await.map_err(StoreError::from)?;
    // In Kafka mode the record is published while the task row is still locked, so a
    // publish failure rolls the re-drive back and a worker cannot start before it lands.
    // The audit row is written in the same transaction: it exists if the re-drive does.
    let reopened = conn
        .transaction::<_, ApiError, _>(async |conn| {
            match redrive::redrive(conn, &caller.tenant, task_id).await? {
                Redrive::NotFound => Err(ApiError::TaskNotFound(task_id)),
                Redrive::NotFailed(status) => Err(ApiError::NotRetryable { task_id, status }),
                Redrive::Reopened {
                    service_requests,
                    traceparent,
                } => {
                    audit
                        .record(
                            conn,
                            AuditAction::TaskRedrive,
                            Some(&target),
                            AuditOutcome::Success,
                        )
                        .await?;
                    // The re-driven run joins the task's trace under the re-drive.
                    let action = crate::tracing_http::task_action_span(
                        asked_by.as_ref(),
                        "redrive",
                        traceparent.as_deref(),
                    );
                    let parent = match &action {
                        Some((_, context)) => Some(context.traceparent()),
                        None => traceparent,
                    };
                    if let Some(queue) = &queue {
                        queue
                            .publish_redrive(task_id, &request_id, parent.as_deref())
                            .await
                            .map_err(ApiError::QueueUnavailable)?;
                    }
                    Ok(service_requests)
                }
            }
        })
        .await;
    let reopened = match reopened {
        Ok(reopened) => reopened,
        Err(error @ (ApiError::TaskNotFound(_) | ApiError::NotRetryable { .. })) => {
            audit
                .record_refusal(&state.pool, AuditAction::TaskRedrive, Some(&target))
                .await;
            return Err(error);
        }
        Err(error) => return Err(error),
    };
    // Read before an inline run starts: the answer is the reopened task, not whatever
    // the run has made of it by then.
    let task = tasks::find_in(&mut conn, &caller.tenant, task_id)
        .await?
        .ok_or(ApiError::TaskNotFound(task_id))?;
    if queue.is_none() {
        state.runner.submit(task_id, Some(request_id.clone()));
    }
    tracing::info!(service_requests = reopened, "Task re-driven.");
    Ok(HttpResponse::Accepted()
        .insert_header((header::LOCATION, format!("/api/tasks/{task_id}")))
        .insert_header((super::orchestrate::REQUEST_ID_HEADER, request_id))
        .json_line(TaskResponse::from(task)))
}

/// Cancels an unfinished task.
#[utoipa::path(post, path = "/api/tasks/{task_id}/cancel", tag = "tasks",
    params(("task_id" = Uuid, Path, description = "The task's id")),
    responses(
        (status = 202, description = "Cancelled: the task is CANCELLED, and the process running it (if any) is dropping its calls", body = TaskResponse,
            headers(("Location" = String, description = "/api/tasks/{task_id}")),
            links(("GetTask" = (operation_id = "get_task", parameters(("task_id" = "$request.path.task_id")),
                description = "The task, with its service requests")))),
        (status = 400, description = "Not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such task", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The task is final already (COMPLETED, FAILED or CANCELLED)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable; nothing changed", body = Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(
    name = "cancel",
    skip_all,
    fields(
        task_id = tracing::field::Empty,
        request_id = tracing::field::Empty,
        client = tracing::field::Empty
    )
)]
pub async fn cancel_task(
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let TaskAction {
        task_id,
        request_id,
        audit,
        target,
    } = TaskAction::of(&caller, &req, path, &state)?;
    let asked_by = crate::tracing_http::server_span(&req);
    let mut conn = state.pool.get().await.map_err(StoreError::from)?;
    // The stop, its notification (delivered at commit to whichever process runs the
    // task) and the audit row commit together.
    let cancelled = conn
        .transaction::<_, ApiError, _>(async |conn| {
            match stop::cancel(conn, &caller.tenant, task_id).await? {
                Stop::NotFound | Stop::NotDue => Err(ApiError::TaskNotFound(task_id)),
                Stop::AlreadyFinal(status) => Err(ApiError::AlreadyFinal { task_id, status }),
                Stop::Stopped(task) => {
                    // The task's trace shows its cancel.
                    drop(crate::tracing_http::task_action_span(
                        asked_by.as_ref(),
                        "cancel",
                        task.traceparent.as_deref(),
                    ));
                    audit
                        .record(
                            conn,
                            AuditAction::TaskCancel,
                            Some(&target),
                            AuditOutcome::Success,
                        )
                        .await?;
                    Ok(task)
                }
            }
        })
        .await;
    let task = match cancelled {
        Ok(task) => task,
        Err(error @ (ApiError::TaskNotFound(_) | ApiError::AlreadyFinal { .. })) => {
            audit
                .record_refusal(&state.pool, AuditAction::TaskCancel, Some(&target))
                .await;
            return Err(error);
        }
        Err(error) => return Err(error),
    };
    state.runner.processor().count_finished(Status::Cancelled);
    tracing::info!("Task cancelled.");
    Ok(HttpResponse::Accepted()
        .insert_header((header::LOCATION, format!("/api/tasks/{task_id}")))
        .insert_header((super::orchestrate::REQUEST_ID_HEADER, request_id))
        .json_line(TaskResponse::from(*task)))
}

/// The task with its service requests and history, if it belongs to `tenant`.
pub(crate) async fn load_detail(
    state: &AppState,
    tenant: &TenantName,
    task_id: Uuid,
) -> Result<TaskDetailResponse, ApiError> {
    let mut conn = state.pool.get().await.map_err(StoreError::from)?;
    let task = tasks::find_in(&mut conn, tenant, task_id)
        .await?
        .ok_or(ApiError::TaskNotFound(task_id))?;
    let service_requests = service_requests::list_for_task(&mut conn, task_id).await?;
    let mut failed_attempts: HashMap<Uuid, Vec<AttemptRow>> = HashMap::new();
    for attempt in service_requests::failed_attempts_for_task(&mut conn, task_id).await? {
        failed_attempts
            .entry(attempt.service_request_id)
            .or_default()
            .push(attempt);
    }
    let redrives = tasks::redrives(&mut conn, task_id).await?;
    let deliveries = orchestrator_store::webhooks::for_task(&mut conn, task_id).await?;
    let task = TaskResponse::from(task);
    let trace_url = state
        .trace_url
        .as_ref()
        .zip(task.trace_id.as_deref())
        .map(|(template, trace_id)| template.url_for(trace_id));
    Ok(TaskDetailResponse {
        task,
        trace_url,
        service_requests: service_requests
            .into_iter()
            .map(|row| {
                let attempts = failed_attempts.remove(&row.id).unwrap_or_default();
                ServiceRequestResponse::new(row, attempts)
            })
            .collect(),
        redrives: redrives.into_iter().map(Into::into).collect(),
        webhook_deliveries: deliveries
            .into_iter()
            .map(|(delivery, attempts)| WebhookDeliveryResponse::new(delivery, attempts))
            .collect(),
    })
}
