//! `GET /api/audit`: the caller's tenant's audit log, newest first, keyset-paged, with
//! filters by action, actor and time.

use actix_web::web;
use orchestrator_core::AuditAction;
use orchestrator_store::StoreError;
use orchestrator_store::audit::{self, AuditFilter};

use crate::auth::Caller;
use crate::dto::{AuditEventResponse, AuditPageResponse};
use crate::error::{ApiError, Problem};
use crate::json::Json;
use crate::routes::query::Params;
use crate::routes::tasks::PageRequest;
use crate::state::AppState;

/// An `actor` filter is at most this long (`token:` and a UUID is 42).
pub const MAX_ACTOR_CHARS: usize = 200;

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Documents the parameters; they are read by `Params`.
pub struct AuditQuery {
    /// Only this action: sign_in, token.create, token.revoke, task.redrive.
    action: Option<String>,
    /// Only this actor, e.g. `token:<id>`.
    actor: Option<String>,
    /// Only events at or after this time (RFC 3339).
    since: Option<String>,
    /// Only events before this time (RFC 3339).
    until: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/audit", tag = "access", params(AuditQuery),
    responses(
        (status = 200, description = "A page of the audit log, newest first", body = AuditPageResponse),
        (status = 400, description = "Invalid query parameter", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn audit_log(
    caller: Caller,
    query: web::Query<Vec<(String, String)>>,
    state: web::Data<AppState>,
) -> Result<Json<AuditPageResponse>, ApiError> {
    let mut params = Params::parse(
        query.into_inner(),
        &["action", "actor", "since", "until", "limit", "cursor"],
    )?;
    let action = params
        .take("action")
        .map(|action| {
            AuditAction::parse(&action).map_err(|e| ApiError::InvalidQuery {
                parameter: "action",
                detail: e.to_string(),
            })
        })
        .transpose()?;
    let actor = params.take("actor");
    if let Some(actor) = &actor
        && (actor.is_empty() || actor.chars().count() > MAX_ACTOR_CHARS)
    {
        return Err(ApiError::InvalidQuery {
            parameter: "actor",
            detail: format!("must be 1 to {MAX_ACTOR_CHARS} characters"),
        });
    }
    let since = params.take_time("since")?;
    let until = params.take_time("until")?;
    // The same limit and cursor as the task list (the status is the list's own).
    let page = PageRequest::parse(
        None,
        params.take("limit").as_deref(),
        params.take("cursor").as_deref(),
    )?;
    let filter = AuditFilter {
        action,
        actor: actor.as_deref(),
        since,
        until,
    };
    let mut conn = state.pool.get().await.map_err(StoreError::from)?;
    let mut rows = audit::page(&mut conn, &caller.tenant, &filter, page.cursor, page.limit).await?;
    let limit = usize::try_from(page.limit).unwrap_or(usize::MAX);
    let has_more = rows.len() > limit;
    rows.truncate(limit);
    let next_cursor = rows
        .last()
        .filter(|_| has_more)
        .map(|last| last.cursor().encode());
    Ok(Json(AuditPageResponse {
        events: rows.into_iter().map(AuditEventResponse::from).collect(),
        next_cursor,
    }))
}
