//! What the dashboard (`/ui`) reads besides the task list and a task: counts per
//! status, throughput per minute and search. Each answers in milliseconds with
//! millions of tasks; see `orchestrator_store::dashboard` for how.

use actix_web::web;
use chrono::{DateTime, Utc};
use orchestrator_store::StoreError;
use orchestrator_store::dashboard::{self, SearchRequest, SearchWindow, TaskSearch};
use serde::Serialize;

use crate::auth::Caller;
use crate::dto::TaskResponse;
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
    /// `next_cursor` of the previous answer to the same search: continue from there.
    cursor: Option<String>,
    /// Only tasks submitted at or after this time (RFC 3339).
    since: Option<String>,
    /// Only tasks submitted before this time (RFC 3339).
    until: Option<String>,
}

/// What a search found, newest first, and how far back it has looked.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TaskSearchResponse {
    /// Matches, newest first: a full page, or fewer when the search reached the oldest
    /// task (or `since`) or spent its time budget.
    pub tasks: Vec<TaskResponse>,
    /// Pass as `cursor` to continue the search from where this answer stopped; null
    /// when nothing is left to search.
    #[schema(nullable)]
    pub next_cursor: Option<String>,
    /// Every task submitted from the start of this answer back to this time has been
    /// searched; older ones have not (continue with `next_cursor`). Null when the search
    /// is complete.
    #[schema(nullable)]
    pub searched_back_to: Option<DateTime<Utc>>,
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
/// around it ignored) finds the tasks whose name contains it, ignoring case.
///
/// A search that is not a whole id looks through the tasks newest first and answers
/// when its page is full, when it reaches the oldest task (or `since`), or when its
/// time budget (`SEARCH_BUDGET_MS`, 20 ms by default) is spent, so it costs the same
/// however many tasks there are. `searched_back_to` says how far it got; `next_cursor`
/// continues from there.
#[utoipa::path(get, path = "/api/tasks/search", tag = "dashboard", params(SearchQuery),
    responses(
        (status = 200, description = "Matching tasks, and how far back the search looked", body = TaskSearchResponse),
        (status = 400, description = "Invalid query parameter", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn search_tasks(
    caller: Caller,
    query: web::Query<Vec<(String, String)>>,
    state: web::Data<AppState>,
) -> Result<Json<TaskSearchResponse>, ApiError> {
    let mut params = Params::parse(
        query.into_inner(),
        &["q", "status", "limit", "cursor", "since", "until"],
    )?;
    let search = TaskSearch::parse(&params.take("q").unwrap_or_default()).map_err(|e| {
        ApiError::InvalidQuery {
            parameter: "q",
            detail: e.to_string(),
        }
    })?;
    let window = SearchWindow {
        since: params.take_time("since")?,
        until: params.take_time("until")?,
    };
    let page = PageRequest::parse(
        params.take("status").as_deref(),
        params.take("limit").as_deref(),
        params.take("cursor").as_deref(),
    )?;
    let mut conn = state.pool.get().await.map_err(StoreError::from)?;
    let found = dashboard::search_page(
        &mut conn,
        &SearchRequest {
            tenant: &caller.tenant,
            search: &search,
            status: page.status,
            window,
            cursor: page.cursor,
            limit: page.limit,
            budget: state.search_budget,
        },
    )
    .await?;
    // A full page continues after its last row; a search that spent its budget first,
    // from where it stopped.
    let (rows, next_page) = page.split(found.rows);
    let continue_from = found.stopped_at.or(next_page);
    Ok(Json(TaskSearchResponse {
        tasks: rows.into_iter().map(TaskResponse::from).collect(),
        next_cursor: continue_from.map(|at| at.encode()),
        searched_back_to: continue_from.map(|at| at.created_at),
    }))
}
