//! Accepting orchestration requests.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use futures::StreamExt;
use orchestrator_core::{OrchestrationRequest, ValidationErrors};
use orchestrator_store::TaskRow;
use orchestrator_store::lifecycle::InsertedTask;
use orchestrator_store::outbox;
use orchestrator_telemetry::trace::{ExportedSpan, KeyValue, SpanKind};
use serde_json::Value;
use uuid::Uuid;

use crate::auth::Caller;
use crate::dto::{OrchestrateRequest, TaskDetailResponse, TaskResponse};
use crate::error::{ApiError, Problem};
use crate::intake::TaskToStore;
use crate::json::JsonLine;
use crate::state::AppState;

/// Submits a task: stores it PENDING and processes it in the background.
#[utoipa::path(post, path = "/api/orchestrate", tag = "tasks",
    request_body(content = OrchestrateRequest, content_type = "application/json"),
    params(("Idempotency-Key" = Option<String>, Header,
        description = "Repeating a request with the same key returns the original task"),
        super::tasks::WaitQuery),
    responses(
        (status = 200, description = "With `wait`: the task became final within it; with its service requests", body = TaskDetailResponse,
            headers(("Location" = String, description = "/api/tasks/{task_id}"))),
        (status = 202, description = "Accepted; follow it at the Location (with `wait`: not final yet, with its service requests so far)", body = TaskResponse,
            headers(("Location" = String, description = "/api/tasks/{task_id}")),
            links(
                ("GetTask" = (operation_id = "get_task", parameters(("task_id" = "$response.body#/task_id")),
                    description = "The task, with its service requests")),
                ("RetryTask" = (operation_id = "retry_task", parameters(("task_id" = "$response.body#/task_id")),
                    description = "Re-drive the task once it has FAILED")),
            )),
        (status = 400, description = "Invalid JSON, header or query parameter", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid request", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database or task queue unavailable; nothing was stored", body = Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(
    name = "orchestrate",
    skip_all,
    fields(
        request_id = tracing::field::Empty,
        client = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    )
)]
pub async fn orchestrate(
    caller: Caller,
    req: HttpRequest,
    query: web::Query<Vec<(String, String)>>,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let request_id = request_id(&req);
    tracing::Span::current().record("request_id", request_id.as_str());
    crate::client_address::record(&req, &state.trusted_proxies);
    // Checked before anything is stored.
    let wait = super::tasks::wait_param(query.into_inner())?;
    let (task, created) = accept(&caller, &req, body, &state).await?;
    if created {
        match &state.queue {
            Some(queue) => {
                let published = queue
                    .publish(task.task_id, &request_id, task.traceparent.as_deref())
                    .await;
                if let Err(error) = published {
                    forget_unpublished(&state, task.task_id).await;
                    return Err(ApiError::QueueUnavailable(error));
                }
            }
            None => state.runner.submit(task.task_id, Some(request_id.clone())),
        }
    }
    tracing::info!(task_id = %task.task_id, created, "Task accepted.");
    let location = format!("/api/tasks/{}", task.task_id);
    let Some(wait) = wait else {
        return Ok(HttpResponse::Accepted()
            .insert_header((header::LOCATION, location))
            .insert_header((REQUEST_ID_HEADER, request_id))
            .json_line(TaskResponse::from(task)));
    };
    let detail = super::tasks::wait_until_final(&state, &caller.tenant, task.task_id, wait).await?;
    let mut response = if detail.task.status.is_terminal() {
        HttpResponse::Ok()
    } else {
        HttpResponse::Accepted()
    };
    Ok(response
        .insert_header((header::LOCATION, location))
        .insert_header((REQUEST_ID_HEADER, request_id))
        .json_line(detail))
}

/// Submits a task and processes it before answering, with its service requests.
#[utoipa::path(post, path = "/api/orchestrate/direct", tag = "tasks",
    request_body(content = OrchestrateRequest, content_type = "application/json"),
    params(("Idempotency-Key" = Option<String>, Header,
        description = "Repeating a request with the same key returns the original task")),
    responses(
        (status = 200, description = "Processed (COMPLETED or FAILED)", body = TaskDetailResponse,
            links(
                ("GetTask" = (operation_id = "get_task", parameters(("task_id" = "$response.body#/task_id")),
                    description = "The task, with its service requests")),
                ("RetryTask" = (operation_id = "retry_task", parameters(("task_id" = "$response.body#/task_id")),
                    description = "Re-drive the task once it has FAILED")),
            )),
        (status = 400, description = "Invalid JSON or header", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid request", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(
    name = "orchestrate_direct",
    skip_all,
    fields(
        request_id = tracing::field::Empty,
        client = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    )
)]
pub async fn orchestrate_direct(
    caller: Caller,
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let request_id = request_id(&req);
    tracing::Span::current().record("request_id", request_id.as_str());
    crate::client_address::record(&req, &state.trusted_proxies);
    let (task, _) = accept(&caller, &req, body, &state).await?;
    state
        .runner
        .run(task.task_id, Some(request_id.clone()))
        .await?;
    let detail = super::tasks::load_detail(&state, &caller.tenant, task.task_id).await?;
    Ok(HttpResponse::Ok()
        .insert_header((REQUEST_ID_HEADER, request_id))
        .json_line(detail))
}

pub(crate) const REQUEST_ID_HEADER: &str = "X-Request-Id";

/// The client's `X-Request-Id` when it sent a usable one, else a new one: it follows the
/// task into the Kafka record and the worker's logs.
pub(crate) fn request_id(req: &HttpRequest) -> String {
    req.headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|id| (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| Uuid::new_v4().to_string(), str::to_owned)
}

/// The broker did not take the task's record: remove the task and its outbox row so the
/// 503 leaves nothing behind. Should that fail too, both stay and the outbox sweeper
/// publishes the task later, so it is still not stuck.
async fn forget_unpublished(state: &AppState, task_id: Uuid) {
    let result = async {
        let mut conn = state.pool.get().await?;
        outbox::forget_unpublished(&mut conn, task_id).await
    }
    .await;
    if let Err(error) = result {
        tracing::warn!(%task_id, error = %orchestrator_stdx::error_chain(&error), "Could not remove an unpublished task; the outbox sweeper will publish it.");
    }
}

/// Reads, validates and stores a request; returns the task and whether it is new. The
/// task joins the request's trace.
async fn accept(
    caller: &Caller,
    req: &HttpRequest,
    body: web::Payload,
    state: &AppState,
) -> Result<(TaskRow, bool), ApiError> {
    let trace = crate::tracing_http::request_trace(req);
    let idempotency_key = idempotency_key(req)?;
    let body = read_json_body(req, body, state.max_body_bytes).await?;
    // A valid body is read straight into the request; any other is parsed whole, for
    // what it says is wrong.
    let request = match OrchestrationRequest::parse_valid(&body, state.limits()) {
        Some(request) => request,
        None => OrchestrationRequest::parse(&parse_json(&body)?, state.limits())
            .map_err(ApiError::Validation)?,
    };
    if let Some(url) = &request.callback_url {
        state
            .webhooks
            .check(caller.tenant.as_str(), url)
            .await
            .map_err(|refusal| {
                ApiError::Validation(ValidationErrors::single(
                    "/callback_url",
                    refusal.to_string(),
                ))
            })?;
    }
    let deadline_seconds = request.deadline_seconds.or(state.default_deadline_secs);
    let stored = TaskToStore {
        task_id: Uuid::new_v4(),
        task_name: request.task_name.as_str().to_owned(),
        task_description: request.task_description.clone(),
        payload: request.payload_json(),
        idempotency_key,
        tenant: caller.tenant.clone(),
        deadline_seconds: deadline_seconds.and_then(|s| i32::try_from(s).ok()),
        deadline_at: deadline_seconds
            .map(|s| chrono::Utc::now() + chrono::TimeDelta::seconds(i64::from(s))),
        callback_url: request.callback_url.clone(),
        traceparent: Some(trace.traceparent()),
    };
    // A span while spans are exported: the insert is shared with other requests' tasks
    // (group commit), and its time here includes waiting for the batch.
    let storing = ExportedSpan::start("store task", SpanKind::Internal, Some(&trace), || {
        vec![
            KeyValue::new("db.system.name", "postgresql"),
            KeyValue::new("db.operation.name", "INSERT"),
        ]
    });
    let inserted = storing.scope(state.task_writer.insert(stored)).await;
    storing.end();
    match inserted? {
        InsertedTask::Created(task) => Ok((task, true)),
        InsertedTask::Existing(task) => {
            // Rare: the payload is made again rather than kept for every request.
            let same_request = task.task_name == request.task_name.as_str()
                && task.task_description == request.task_description
                && task.payload == request.payload_json();
            if same_request {
                Ok((task, false))
            } else {
                Err(ApiError::IdempotencyKeyReused)
            }
        }
    }
}

/// An `Idempotency-Key` is 1 to this many visible ASCII characters.
pub(crate) const IDEMPOTENCY_KEY_MAX_LEN: usize = 255;

fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get("Idempotency-Key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .map_err(|_| ApiError::InvalidIdempotencyKey)?;
    let valid = (1..=IDEMPOTENCY_KEY_MAX_LEN).contains(&key.len())
        && key.bytes().all(|b| b.is_ascii_graphic());
    if valid {
        Ok(Some(key.to_owned()))
    } else {
        Err(ApiError::InvalidIdempotencyKey)
    }
}

/// Reads a JSON body of at most `limit` bytes. The body is read here rather than by an
/// extractor so that every failure is a problem document, and the limit holds for
/// chunked bodies that announce no length.
pub(crate) async fn read_json(
    req: &HttpRequest,
    body: web::Payload,
    limit: usize,
) -> Result<Value, ApiError> {
    parse_json(&read_json_body(req, body, limit).await?)
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::InvalidJson(e.to_string()))
}

/// The bytes of a body that says it is JSON ([`read_json`]), not yet parsed.
async fn read_json_body(
    req: &HttpRequest,
    mut body: web::Payload,
    limit: usize,
) -> Result<web::BytesMut, ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let is_json = essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"));
    if !is_json {
        return Err(ApiError::UnsupportedMediaType(if content_type.is_empty() {
            "the request needs Content-Type: application/json".to_owned()
        } else {
            format!("expected Content-Type application/json, not {content_type:?}")
        }));
    }
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if announced.is_some_and(|len| len > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let mut bytes = web::BytesMut::with_capacity(announced.unwrap_or(1024).min(limit));
    while let Some(chunk) = body.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::InvalidJson(format!("could not read the body: {e}")))?;
        if bytes.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}
