//! The API's errors and the one place where they become HTTP responses: RFC 9457
//! problem details (`application/problem+json`).

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use orchestrator_core::{FieldError, ValidationErrors};
use orchestrator_processing::ProcessError;
use orchestrator_stdx::error_chain;
use orchestrator_store::StoreError;
use serde::Serialize;
use uuid::Uuid;

use crate::json::JsonLine;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the request body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("the request body exceeds the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the request is invalid: {0}")]
    Validation(ValidationErrors),
    #[error("this Idempotency-Key was used before with a different request")]
    IdempotencyKeyReused,
    #[error("the Idempotency-Key header must be 1 to 255 visible ASCII characters")]
    InvalidIdempotencyKey,
    #[error("{}", invalid_task_id(.0))]
    InvalidTaskId(String),
    #[error("query parameter {parameter:?}: {detail}")]
    InvalidQuery {
        parameter: &'static str,
        detail: String,
    },
    #[error("no task with id {0}")]
    TaskNotFound(Uuid),
    #[error("the Last-Event-ID header is not an event id this service sent (TX-SEQ)")]
    InvalidLastEventId,
    #[error("{0:?} is not a valid bulk operation id (expected a UUID)")]
    InvalidBulkId(String),
    #[error("no bulk operation with id {0}")]
    BulkNotFound(Uuid),
    #[error("bulk operation {id} is {state} already; only a RUNNING one can be stopped")]
    BulkAlreadyEnded { id: Uuid, state: String },
    #[error("{0:?} is not a valid token id (expected a UUID)")]
    InvalidTokenId(String),
    #[error("no token with id {0} that is not revoked")]
    TokenNotFound(Uuid),
    /// Authenticated and holding the route's scope, but not allowed this request.
    #[error("{0}")]
    Forbidden(String),
    #[error("task {task_id} is {status}; only a FAILED or CANCELLED task can be retried")]
    NotRetryable {
        task_id: Uuid,
        status: orchestrator_core::Status,
    },
    #[error(
        "task {task_id} is {status} already; only a PENDING or IN_PROGRESS task can be cancelled"
    )]
    AlreadyFinal {
        task_id: Uuid,
        status: orchestrator_core::Status,
    },
    #[error(
        "this route needs a credential: an API token as `Authorization: Bearer <token>`, or a dashboard session"
    )]
    Unauthenticated,
    /// Malformed, unknown, expired or revoked: the client is never told which.
    #[error("the credential is not valid")]
    InvalidToken,
    #[error("the credential lacks the scope this route needs: {0}")]
    InsufficientScope(orchestrator_core::Scope),
    #[error("a browser request that changes state must come from a page of this origin")]
    CrossOrigin,
    #[error("too many requests; retry after {retry_after_secs} s")]
    TooManyRequests { retry_after_secs: u64 },
    #[error("no resource at this path")]
    RouteNotFound,
    #[error("this method is not allowed on this resource; it allows {allow}")]
    MethodNotAllowed {
        /// The methods the resource has, as the `Allow` header lists them.
        allow: String,
    },
    #[error("the service is temporarily unavailable; try again shortly")]
    Unavailable(#[source] StoreError),
    #[error("the task queue did not take the task; nothing was stored, try again shortly")]
    QueueUnavailable(#[source] orchestrator_kafka::KafkaError),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Why a path's task id was refused. The dashboard shows ids cut to 8 digits, and a
/// person pasting one gets pointed at the search that finds it.
fn invalid_task_id(raw: &str) -> String {
    let mut detail = format!("{raw:?} is not a valid task id (expected a UUID)");
    let hex_digits = raw.chars().filter(char::is_ascii_hexdigit).count();
    let looks_like_prefix =
        hex_digits >= 4 && raw.len() < 36 && raw.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
    if looks_like_prefix {
        detail.push_str(&format!(
            "; to find the tasks whose id starts with it, use /api/tasks/search?q={raw}"
        ));
    }
    detail
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        if error.is_unavailable() {
            ApiError::Unavailable(error)
        } else {
            ApiError::Internal(Box::new(error))
        }
    }
}

/// So that a handler's transaction can fail with an `ApiError` (diesel's transactions
/// need their error type to take diesel's).
impl From<diesel::result::Error> for ApiError {
    fn from(error: diesel::result::Error) -> Self {
        StoreError::from(error).into()
    }
}

impl From<ProcessError> for ApiError {
    fn from(error: ProcessError) -> Self {
        match error {
            ProcessError::NotFound(task_id) => ApiError::TaskNotFound(task_id),
            ProcessError::Store(error) => error.into(),
        }
    }
}

/// An RFC 9457 problem details document.
#[derive(Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Problem {
    /// Identifies the kind of problem; documented in the README.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// Short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this request.
    pub detail: String,
    /// Each invalid field, for validation problems.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<ProblemField>>,
}

/// One invalid field of the request body.
#[derive(Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ProblemField {
    /// JSON pointer (RFC 6901) to the invalid value; "" is the whole body.
    pub pointer: String,
    pub detail: String,
}

impl From<&FieldError> for ProblemField {
    fn from(error: &FieldError) -> Self {
        Self {
            pointer: error.pointer.clone(),
            detail: error.detail.clone(),
        }
    }
}

impl ApiError {
    fn kind(&self) -> (&'static str, &'static str) {
        match self {
            ApiError::InvalidJson(_) => ("/problems/invalid-json", "Invalid JSON"),
            ApiError::UnsupportedMediaType(_) => {
                ("/problems/unsupported-media-type", "Unsupported media type")
            }
            ApiError::PayloadTooLarge { .. } => {
                ("/problems/payload-too-large", "Payload too large")
            }
            ApiError::Validation(_) => ("/problems/validation", "Invalid request"),
            ApiError::IdempotencyKeyReused => {
                ("/problems/idempotency-key-reused", "Idempotency key reused")
            }
            ApiError::InvalidIdempotencyKey => (
                "/problems/invalid-idempotency-key",
                "Invalid idempotency key",
            ),
            ApiError::InvalidTaskId(_) => ("/problems/invalid-task-id", "Invalid task id"),
            ApiError::InvalidQuery { .. } => ("/problems/invalid-query", "Invalid query parameter"),
            ApiError::TaskNotFound(_) => ("/problems/task-not-found", "Task not found"),
            ApiError::InvalidLastEventId => ("/problems/invalid-event-id", "Invalid Last-Event-ID"),
            ApiError::InvalidBulkId(_) => {
                ("/problems/invalid-bulk-id", "Invalid bulk operation id")
            }
            ApiError::BulkNotFound(_) => ("/problems/bulk-not-found", "Bulk operation not found"),
            ApiError::BulkAlreadyEnded { .. } => (
                "/problems/bulk-already-ended",
                "Bulk operation already ended",
            ),
            ApiError::InvalidTokenId(_) => ("/problems/invalid-token-id", "Invalid token id"),
            ApiError::TokenNotFound(_) => ("/problems/token-not-found", "Token not found"),
            ApiError::Forbidden(_) => ("/problems/forbidden", "Forbidden"),
            ApiError::NotRetryable { .. } => ("/problems/task-not-retryable", "Task not retryable"),
            ApiError::AlreadyFinal { .. } => ("/problems/task-already-final", "Task already final"),
            ApiError::Unauthenticated => ("/problems/unauthenticated", "Authentication required"),
            ApiError::InvalidToken => ("/problems/invalid-token", "Invalid credential"),
            ApiError::InsufficientScope(_) => {
                ("/problems/insufficient-scope", "Insufficient scope")
            }
            ApiError::CrossOrigin => ("/problems/cross-origin", "Cross-origin request refused"),
            ApiError::TooManyRequests { .. } => ("/problems/rate-limited", "Too many requests"),
            ApiError::RouteNotFound => ("about:blank", "Not Found"),
            ApiError::MethodNotAllowed { .. } => ("about:blank", "Method Not Allowed"),
            ApiError::Unavailable(_) => ("/problems/unavailable", "Service unavailable"),
            ApiError::QueueUnavailable(_) => {
                ("/problems/queue-unavailable", "Task queue unavailable")
            }
            ApiError::Internal(_) => ("/problems/internal", "Internal server error"),
        }
    }

    /// The `WWW-Authenticate` challenge of a refused credential (RFC 6750, section 3).
    fn challenge(&self) -> Option<String> {
        const REALM: &str = "Bearer realm=\"orchestrator\"";
        match self {
            ApiError::Unauthenticated => Some(REALM.to_owned()),
            ApiError::InvalidToken => Some(format!("{REALM}, error=\"invalid_token\"")),
            ApiError::InsufficientScope(scope) => Some(format!(
                "{REALM}, error=\"insufficient_scope\", scope=\"{scope}\""
            )),
            _ => None,
        }
    }

    pub fn to_problem(&self) -> Problem {
        let (problem_type, title) = self.kind();
        let errors = match self {
            ApiError::Validation(errors) => {
                Some(errors.errors().iter().map(ProblemField::from).collect())
            }
            _ => None,
        };
        Problem {
            problem_type: problem_type.to_owned(),
            title: title.to_owned(),
            status: self.status_code().as_u16(),
            detail: self.to_string(),
            errors,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::InvalidJson(_)
            | ApiError::InvalidIdempotencyKey
            | ApiError::InvalidTaskId(_)
            | ApiError::InvalidTokenId(_)
            | ApiError::InvalidLastEventId
            | ApiError::InvalidBulkId(_)
            | ApiError::InvalidQuery { .. } => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Validation(_) | ApiError::IdempotencyKeyReused => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::Unauthenticated | ApiError::InvalidToken => StatusCode::UNAUTHORIZED,
            ApiError::InsufficientScope(_) | ApiError::CrossOrigin | ApiError::Forbidden(_) => {
                StatusCode::FORBIDDEN
            }
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::TaskNotFound(_)
            | ApiError::TokenNotFound(_)
            | ApiError::BulkNotFound(_)
            | ApiError::RouteNotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NotRetryable { .. }
            | ApiError::AlreadyFinal { .. }
            | ApiError::BulkAlreadyEnded { .. } => StatusCode::CONFLICT,
            ApiError::Unavailable(_) | ApiError::QueueUnavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        // Unexpected failures are logged here, once, with their cause chain; the
        // client sees only an opaque problem.
        if matches!(
            self,
            ApiError::Internal(_) | ApiError::Unavailable(_) | ApiError::QueueUnavailable(_)
        ) {
            tracing::error!(error = %error_chain(self), "Request failed.");
        }
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        ));
        if matches!(
            self,
            ApiError::Unavailable(_) | ApiError::QueueUnavailable(_)
        ) {
            response.insert_header((header::RETRY_AFTER, HeaderValue::from_static("1")));
        }
        if let ApiError::TooManyRequests { retry_after_secs } = self {
            response.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
        }
        if let Some(challenge) = self.challenge()
            && let Ok(challenge) = HeaderValue::from_str(&challenge)
        {
            response.insert_header((header::WWW_AUTHENTICATE, challenge));
        }
        if let ApiError::MethodNotAllowed { allow } = self
            && let Ok(allow) = HeaderValue::from_str(allow)
        {
            response.insert_header((header::ALLOW, allow));
        }
        response.json_line(self.to_problem())
    }
}
