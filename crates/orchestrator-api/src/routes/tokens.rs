//! `POST/GET/DELETE /api/tokens`: a tenant's admins manage its API tokens. An admin
//! makes tokens for its own tenant only, with scopes it holds itself (no escalation);
//! tokens of other tenants are made with the `token` command, which needs database
//! access. Creating and revoking are written to the audit log in their transaction.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{TimeDelta, Utc};
use diesel_async::AsyncConnection as _;
use orchestrator_core::validation::whole_number;
use orchestrator_core::{AuditAction, AuditOutcome, Scope, ValidationErrors, text};
use orchestrator_store::StoreError;
use orchestrator_store::tokens::{self, TokenSpec};
use serde_json::Value;
use uuid::Uuid;

use crate::audit::Audit;
use crate::auth::Caller;
use crate::dto::{CreatedTokenResponse, TokenListResponse, TokenResponse};
use crate::error::{ApiError, Problem};
use crate::json::{Json, JsonLine};
use crate::routes::orchestrate::{REQUEST_ID_HEADER, read_json, request_id};
use crate::state::AppState;

/// A token's name: a label for people, at most this many characters.
pub const TOKEN_NAME_MAX_CHARS: usize = 100;
/// The shortest validity a token can be given, in seconds.
pub const MIN_EXPIRES_IN_SECS: i64 = 60;
/// The longest: ten years. Longer is "until revoked": leave the field out.
pub const MAX_EXPIRES_IN_SECS: i64 = 3_650 * 86_400;

/// The body of `POST /api/tokens`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTokenRequest {
    pub name: Option<String>,
    /// Each once, in the order given.
    pub scopes: Vec<Scope>,
    pub expires_in: Option<TimeDelta>,
    /// When given, it must be the caller's own.
    pub tenant: Option<String>,
}

impl NewTokenRequest {
    /// Reads the body, reporting every problem against its JSON pointer.
    pub fn parse(json: &Value) -> Result<NewTokenRequest, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let Some(object) = json.as_object() else {
            return Err(ValidationErrors::single("", "must be a JSON object"));
        };
        for key in object.keys() {
            if !matches!(
                key.as_str(),
                "name" | "scopes" | "expires_in_seconds" | "tenant"
            ) {
                errors.push(format!("/{key}"), "unknown field");
            }
        }
        let name = match object.get("name") {
            None | Some(Value::Null) => None,
            Some(Value::String(name))
                if (1..=TOKEN_NAME_MAX_CHARS).contains(&name.chars().count())
                    && !text::has_nul(name) =>
            {
                Some(name.clone())
            }
            Some(_) => {
                errors.push(
                    "/name",
                    format!("must be 1 to {TOKEN_NAME_MAX_CHARS} characters, without NUL"),
                );
                None
            }
        };
        let mut scopes = Vec::new();
        match object.get("scopes") {
            Some(Value::Array(list)) if !list.is_empty() => {
                for (index, scope) in list.iter().enumerate() {
                    match scope.as_str().map(Scope::parse) {
                        Some(Ok(scope)) => {
                            if !scopes.contains(&scope) {
                                scopes.push(scope);
                            }
                        }
                        Some(Err(error)) => {
                            errors.push(format!("/scopes/{index}"), error.to_string())
                        }
                        None => errors.push(format!("/scopes/{index}"), "must be a string"),
                    }
                }
            }
            Some(_) => errors.push("/scopes", "must be a non-empty array of scopes"),
            None => errors.push("/scopes", "is required"),
        }
        let expires_in = match object.get("expires_in_seconds") {
            None | Some(Value::Null) => None,
            Some(value) => match whole_number(value) {
                Some(seconds) if (MIN_EXPIRES_IN_SECS..=MAX_EXPIRES_IN_SECS).contains(&seconds) => {
                    Some(TimeDelta::seconds(seconds))
                }
                _ => {
                    errors.push(
                        "/expires_in_seconds",
                        format!(
                            "must be a whole number from {MIN_EXPIRES_IN_SECS} to {MAX_EXPIRES_IN_SECS}"
                        ),
                    );
                    None
                }
            },
        };
        let tenant = match object.get("tenant") {
            None | Some(Value::Null) => None,
            Some(Value::String(tenant)) => Some(tenant.clone()),
            Some(_) => {
                errors.push("/tenant", "must be a string");
                None
            }
        };
        if errors.is_empty() {
            Ok(NewTokenRequest {
                name,
                scopes,
                expires_in,
                tenant,
            })
        } else {
            Err(errors)
        }
    }
}

/// Makes a token for the caller's tenant, with some of the caller's scopes.
#[utoipa::path(post, path = "/api/tokens", tag = "access",
    request_body(content = NewTokenBody, content_type = "application/json"),
    responses(
        (status = 201, description = "Created; the token is in the body, shown this once", body = CreatedTokenResponse,
            headers(("Location" = String, description = "/api/tokens/{id}"))),
        (status = 400, description = "Invalid JSON", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid request", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_token(
    caller: Caller,
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let request_id = request_id(&req);
    let json = read_json(&req, body, state.max_body_bytes).await?;
    let request = NewTokenRequest::parse(&json).map_err(ApiError::Validation)?;
    let audit = Audit::of(&caller, &req, &state.trusted_proxies, &request_id);
    if let Some(tenant) = &request.tenant
        && tenant != caller.tenant.as_str()
    {
        audit
            .record_refusal(&state.pool, AuditAction::TokenCreate, None)
            .await;
        return Err(ApiError::Forbidden(
            "an admin makes tokens for its own tenant only; tokens for other tenants are made with `orchestrator-api token create`".into(),
        ));
    }
    if let Some(scope) = request.scopes.iter().find(|scope| !caller.may(**scope)) {
        audit
            .record_refusal(&state.pool, AuditAction::TokenCreate, None)
            .await;
        return Err(ApiError::Forbidden(format!(
            "a token can be given only scopes its maker holds, and this credential lacks {scope}"
        )));
    }
    let now = Utc::now();
    let spec = TokenSpec {
        tenant: &caller.tenant,
        scopes: &request.scopes,
        name: request.name.as_deref(),
        expires_at: request.expires_in.map(|valid_for| now + valid_for),
    };
    let mut conn = state.pool.get().await.map_err(StoreError::from)?;
    let (row, issued) = conn
        .transaction::<_, ApiError, _>(async |conn| {
            let (row, issued) = tokens::issue(conn, &spec)
                .await
                .map_err(|error| match error {
                    tokens::IssueError::Store(error) => ApiError::from(error),
                    tokens::IssueError::Randomness(error) => ApiError::Internal(Box::new(error)),
                })?;
            audit
                .record(
                    conn,
                    AuditAction::TokenCreate,
                    Some(&row.id.to_string()),
                    AuditOutcome::Success,
                )
                .await?;
            Ok((row, issued))
        })
        .await?;
    tracing::info!(token = %row.id, tenant = %row.tenant, scopes = %row.scopes, "Token created.");
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/tokens/{}", row.id)))
        .insert_header((REQUEST_ID_HEADER, request_id))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json_line(CreatedTokenResponse {
            token: orchestrator_auth::token::reveal(&issued).to_owned(),
            details: row.into(),
        }))
}

/// The caller's tenant's tokens, oldest first, revoked and expired ones included.
#[utoipa::path(get, path = "/api/tokens", tag = "access",
    responses(
        (status = 200, description = "The tenant's tokens", body = TokenListResponse),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_tokens(
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<Json<TokenListResponse>, ApiError> {
    let mut conn = state.pool.get().await.map_err(StoreError::from)?;
    let rows = tokens::list(&mut conn, Some(caller.tenant.as_str())).await?;
    Ok(Json(TokenListResponse {
        tokens: rows.into_iter().map(TokenResponse::from).collect(),
    }))
}

/// Revokes one of the tenant's tokens: it is refused from now on (within the few
/// seconds other replicas cache it), and the dashboard sessions made from it end. A
/// revoked token is gone: revoking it again answers 404 (it stays in the list, marked
/// revoked).
#[utoipa::path(delete, path = "/api/tokens/{token_id}", tag = "access",
    params(("token_id" = Uuid, Path, description = "The token's id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 400, description = "Not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such token in this tenant, or it is revoked already", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn revoke_token(
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let raw = path.into_inner();
    let id = Uuid::try_parse(&raw).map_err(|_| ApiError::InvalidTokenId(raw))?;
    let request_id = request_id(&req);
    let audit = Audit::of(&caller, &req, &state.trusted_proxies, &request_id);
    let target = id.to_string();
    let mut conn = state.pool.get().await.map_err(StoreError::from)?;
    let revoked = conn
        .transaction::<_, ApiError, _>(async |conn| {
            // Another tenant's token is not found, exactly like a missing one; a revoked
            // one is gone.
            let active = tokens::find(conn, id).await?.is_some_and(|row| {
                row.tenant == caller.tenant.as_str() && row.revoked_at.is_none()
            });
            if !active {
                return Ok(false);
            }
            tokens::revoke(conn, id, Utc::now()).await?;
            audit
                .record(
                    conn,
                    AuditAction::TokenRevoke,
                    Some(&target),
                    AuditOutcome::Success,
                )
                .await?;
            Ok(true)
        })
        .await?;
    if !revoked {
        audit
            .record_refusal(&state.pool, AuditAction::TokenRevoke, Some(&target))
            .await;
        return Err(ApiError::TokenNotFound(id));
    }
    tracing::info!(token = %id, tenant = %caller.tenant, "Token revoked.");
    Ok(HttpResponse::NoContent()
        .insert_header((REQUEST_ID_HEADER, request_id))
        .finish())
}

/// The body of `POST /api/tokens`; its rules are written by `openapi::rules`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Documents the body; it is read by `NewTokenRequest::parse`.
pub struct NewTokenBody {
    scopes: Vec<String>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_whole_request_is_read_and_scopes_are_kept_once() {
        let request = NewTokenRequest::parse(&json!({
            "name": "ci", "scopes": ["tasks:read", "tasks:submit", "tasks:read"],
            "expires_in_seconds": 3600, "tenant": "acme"
        }))
        .expect("valid");
        assert_eq!(
            request,
            NewTokenRequest {
                name: Some("ci".into()),
                scopes: vec![Scope::TasksRead, Scope::TasksSubmit],
                expires_in: Some(TimeDelta::hours(1)),
                tenant: Some("acme".into()),
            }
        );
    }

    #[test]
    fn every_problem_is_reported_at_its_pointer() {
        let errors = NewTokenRequest::parse(&json!({
            "name": "", "scopes": ["tasks:read", "root"], "expires_in_seconds": 59, "extra": 1
        }))
        .expect_err("invalid");
        let pointers: Vec<&str> = errors.errors().iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(
            pointers,
            ["/extra", "/name", "/scopes/1", "/expires_in_seconds"]
        );
        // JSON Schema's integer: 109.0 is one, 109.5 is not.
        let whole =
            NewTokenRequest::parse(&json!({"scopes": ["admin"], "expires_in_seconds": 109.0}));
        assert_eq!(
            whole.map(|r| r.expires_in),
            Ok(Some(TimeDelta::seconds(109)))
        );
        assert!(
            NewTokenRequest::parse(&json!({"scopes": ["admin"], "expires_in_seconds": 109.5}))
                .is_err()
        );
        assert!(NewTokenRequest::parse(&json!({"scopes": []})).is_err());
        assert!(NewTokenRequest::parse(&json!({})).is_err());
        assert!(NewTokenRequest::parse(&json!([])).is_err());
    }
}
