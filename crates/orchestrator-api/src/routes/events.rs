//! `GET /api/tasks/{task_id}/events` and `GET /api/events`: Server-Sent Events (see
//! [`crate::events`] for how they are fed and resumed).

use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use orchestrator_store::StoreError;
use orchestrator_store::events::{self, EventPosition};
use orchestrator_store::tasks;
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::{ApiError, Problem};
use crate::events::Subject;
use crate::state::AppState;

/// The header a reconnecting `EventSource` sends with the last `id:` it received.
const LAST_EVENT_ID: &str = "last-event-id";

#[utoipa::path(get, path = "/api/tasks/{task_id}/events", tag = "tasks",
    params(
        ("task_id" = Uuid, Path, description = "The task's id"),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event (the `id:` of the last one received); without it, the stream starts from the task's first event"),
    ),
    responses(
        (status = 200, description = "A `text/event-stream` of the task's changes, in order: events named `task` (its status) and `service_request` (a service request reached a final status), each with `id:` and its JSON as `data:` (the TaskEventResponse schema). A comment line every 15 s while idle. The stream ends after the event that makes the task final.",
            content_type = "text/event-stream", body = String,
            headers(("Cache-Control" = String, description = "no-cache"), ("X-Accel-Buffering" = String, description = "no: proxies must not buffer the stream"))),
        (status = 204, description = "Nothing more will come: the task is final and the client has every event (an EventSource stops reconnecting)"),
        (status = 400, description = "Not a UUID, or a Last-Event-ID this service did not send", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such task", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn task_events(
    caller: Caller,
    path: web::Path<String>,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let raw = path.into_inner();
    let task_id = Uuid::try_parse(&raw).map_err(|_| ApiError::InvalidTaskId(raw))?;
    let after = last_event_id(&req)?.unwrap_or_default();
    let mut conn = state.pool.get().await.map_err(StoreError::from)?;
    let task = tasks::find_in(&mut conn, &caller.tenant, task_id)
        .await?
        .ok_or(ApiError::TaskNotFound(task_id))?;
    if task.status.is_terminal() {
        // The transaction that made it final logged its last event: nothing past it.
        let latest = events::latest_of_task(&mut conn, task_id).await?;
        if latest.is_none_or(|latest| latest <= after) {
            return Ok(HttpResponse::NoContent().finish());
        }
    }
    drop(conn);
    Ok(stream(&state, Subject::Task(task_id), after))
}

#[utoipa::path(get, path = "/api/events", tag = "tasks",
    params(
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event; without it, the stream starts now"),
    ),
    responses(
        (status = 200, description = "A `text/event-stream` of the changes of every task of the caller's tenant, in order, as GET /api/tasks/{task_id}/events sends them; it does not end by itself.",
            content_type = "text/event-stream", body = String,
            headers(("Cache-Control" = String, description = "no-cache"), ("X-Accel-Buffering" = String, description = "no: proxies must not buffer the stream"))),
        (status = 400, description = "A Last-Event-ID this service did not send", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn all_events(
    caller: Caller,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let after = match last_event_id(&req)? {
        Some(after) => after,
        None => {
            let mut conn = state.pool.get().await.map_err(StoreError::from)?;
            events::now(&mut conn).await?
        }
    };
    Ok(stream(&state, Subject::Tenant(caller.tenant), after))
}

/// The `Last-Event-ID` header, when the client sent one (empty counts as none, as the
/// EventSource specification says a reset id is sent).
fn last_event_id(req: &HttpRequest) -> Result<Option<EventPosition>, ApiError> {
    let Some(value) = req.headers().get(LAST_EVENT_ID) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| ApiError::InvalidLastEventId)?;
    if value.trim().is_empty() {
        return Ok(None);
    }
    value
        .parse()
        .map(Some)
        .map_err(|_| ApiError::InvalidLastEventId)
}

fn stream(state: &AppState, subject: Subject, after: EventPosition) -> HttpResponse {
    let frames = crate::events::open(&state.events, state.pool.clone(), subject, after);
    HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        ))
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-cache")))
        .insert_header((
            HeaderName::from_static("x-accel-buffering"),
            HeaderValue::from_static("no"),
        ))
        .streaming(frames)
}
