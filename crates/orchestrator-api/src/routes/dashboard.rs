//! What the dashboard (`/ui`) reads besides the task list and a task: counts per
//! status, throughput per minute and search. Each answers in milliseconds with
//! millions of tasks; see `orchestrator_store::dashboard` for how.

use actix_web::web;
use chrono::{DateTime, Utc};
use orchestrator_store::StoreError;
use orchestrator_store::dashboard::{self, TaskSearch};
use serde::Serialize;

use crate::auth::Caller;
use crate::dto::TaskListResponse;
use crate::error::{ApiError, Problem};
use crate::json::Json;
use crate::routes::query::Params;
use crate::routes::tasks::PageRequest;
use crate::state::AppState;

/// Minutes of throughput when the client does not say.
pub const DEFAULT_THROUGHPUT_MINUTES: i32 = 15;
pub const MAX_THROUGHPUT_MINUTES: i32 = 60;

/// How many tasks have each status.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StatusCountsResponse {
    pub counts: CountsByStatus,
    /// All tasks.
    pub total: i64,
}

/// One count per status.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CountsByStatus {
    #[serde(rename = "PENDING")]
    pub pending: i64,
    #[serde(rename = "IN_PROGRESS")]
    pub in_progress: i64,
    #[serde(rename = "COMPLETED")]
    pub completed: i64,
    #[serde(rename = "FAILED")]
    pub failed: i64,
    #[serde(rename = "CANCELLED")]
    pub cancelled: i64,
}

/// Tasks submitted and finished per minute.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ThroughputResponse {
    /// Length of a bucket: 60.
    pub bucket_seconds: u32,
    /// One bucket per minute, oldest first; the last is the current, partial minute.
    pub buckets: Vec<ThroughputBucket>,
}

/// One minute.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ThroughputBucket {
    /// The minute's first instant, RFC 3339 in UTC.
    pub start: DateTime<Utc>,
    /// Tasks accepted during the minute.
    pub submitted: i64,
    /// Tasks that finished `COMPLETED` during the minute.
    pub completed: i64,
    /// Tasks that finished `FAILED` during the minute.
    pub failed: i64,
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Documents the parameters; they are read by `Params`.
pub struct ThroughputQuery {
    /// Minutes to cover, the current one included: 1 to 60 (default 15).
    minutes: Option<i32>,
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Documents the parameters; they are read by `Params`.
pub struct SearchQuery {
    /// A task id (whole, or at least its first 4 hexadecimal digits) or 3 to 255
    /// characters of a name (case-insensitive substring); white space around it is
    /// ignored.
    q: String,
    /// Only tasks with this status.
    status: Option<String>,
    /// Page size, 1 to 500 (default 50).
    limit: Option<i64>,
    /// `next_cursor` of the previous page of the same search.
    cursor: Option<String>,
}

/// Counts of tasks per status.
///
/// Exact, and read from a small table kept up to date by triggers, so it costs the same
/// with a million tasks as with ten.
#[utoipa::path(get, path = "/api/tasks/counts", tag = "dashboard",
    responses(
        (status = 200, description = "Counts per status", body = StatusCountsResponse),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn task_counts(
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<Json<StatusCountsResponse>, ApiError> {
    let mut conn = state.pool.get().await.map_err(StoreError::from)?;
    let counts = dashboard::status_counts(&mut conn, &caller.tenant).await?;
    Ok(Json(StatusCountsResponse {
        counts: CountsByStatus {
            pending: counts.pending,
            in_progress: counts.in_progress,
            completed: counts.completed,
            failed: counts.failed,
            cancelled: counts.cancelled,
        },
        total: counts.total(),
    }))
}

/// Tasks submitted, completed and failed per minute over the last minutes.
#[utoipa::path(get, path = "/api/tasks/throughput", tag = "dashboard", params(ThroughputQuery),
    responses(
        (status = 200, description = "One bucket per minute, oldest first", body = ThroughputResponse),
        (status = 400, description = "Invalid query parameter", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn task_throughput(
    caller: Caller,
    query: web::Query<Vec<(String, String)>>,
    state: web::Data<AppState>,
) -> Result<Json<ThroughputResponse>, ApiError> {
    let mut params = Params::parse(query.into_inner(), &["minutes"])?;
    let minutes = match params.take("minutes") {
        None => DEFAULT_THROUGHPUT_MINUTES,
        Some(minutes) => minutes
            .parse::<i32>()
            .ok()
            .filter(|minutes| (1..=MAX_THROUGHPUT_MINUTES).contains(minutes))
            .ok_or_else(|| ApiError::InvalidQuery {
                parameter: "minutes",
                detail: format!("must be a whole number from 1 to {MAX_THROUGHPUT_MINUTES}"),
            })?,
    };
    let mut conn = state.pool.get().await.map_err(StoreError::from)?;
    let buckets = dashboard::throughput(&mut conn, &caller.tenant, minutes).await?;
    Ok(Json(ThroughputResponse {
        bucket_seconds: 60,
        buckets: buckets
            .into_iter()
            .map(|bucket| ThroughputBucket {
                start: bucket.start,
                submitted: bucket.submitted,
                completed: bucket.completed,
                failed: bucket.failed,
            })
            .collect(),
    }))
}

/// Finds tasks by id or name, newest first, a page at a time.
///
/// A whole id finds that task; 4 or more hexadecimal digits (dashes allowed) also find
/// the tasks whose id starts with them; any text of 3 to 255 characters (white space
/// around it ignored) finds the tasks whose name contains it, ignoring case. Paged like
/// `GET /api/tasks`.
#[utoipa::path(get, path = "/api/tasks/search", tag = "dashboard", params(SearchQuery),
    responses(
        (status = 200, description = "A page of matching tasks", body = TaskListResponse),
        (status = 400, description = "Invalid query parameter", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn search_tasks(
    caller: Caller,
    query: web::Query<Vec<(String, String)>>,
    state: web::Data<AppState>,
) -> Result<Json<TaskListResponse>, ApiError> {
    let mut params = Params::parse(query.into_inner(), &["q", "status", "limit", "cursor"])?;
    let search = TaskSearch::parse(&params.take("q").unwrap_or_default()).map_err(|e| {
        ApiError::InvalidQuery {
            parameter: "q",
            detail: e.to_string(),
        }
    })?;
    let page = PageRequest::parse(
        params.take("status").as_deref(),
        params.take("limit").as_deref(),
        params.take("cursor").as_deref(),
    )?;
    let mut conn = state.pool.get().await.map_err(StoreError::from)?;
    let rows = dashboard::search_page(
        &mut conn,
        &caller.tenant,
        &search,
        page.status,
        page.cursor,
        page.limit,
    )
    .await?;
    Ok(Json(page.respond(rows)))
}
