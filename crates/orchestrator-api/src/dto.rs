//! What the API sends and receives on the wire, with its OpenAPI schemas.

use chrono::{DateTime, SecondsFormat, Utc};
use orchestrator_core::Status;
use orchestrator_store::audit::AuditRow;
use orchestrator_store::tokens::TokenRow;
use orchestrator_store::webhooks::{DeliveryRow, WebhookAttemptRow};
use orchestrator_store::{AttemptRow, RedriveRow, ServiceRequestRow, TaskRow};
use orchestrator_telemetry::trace::TraceContext;
use serde::{Serialize, Serializer};
use serde_json::Value;
use uuid::Uuid;

/// Body of `POST /api/orchestrate` and `POST /api/orchestrate/direct`: a name for the
/// routes' annotations only. Its schema (and that of `ServiceCallBody`) is written by
/// `openapi::rules` from the definitions `orchestrator_core` parses bodies with, for the
/// deployment's services and limits.
#[derive(Debug, utoipa::ToSchema)]
pub struct OrchestrateRequest;

/// The status of a task or service request.
#[derive(Debug, utoipa::ToSchema)]
#[schema(as = Status)]
#[allow(dead_code)]
pub enum StatusSchema {
    #[schema(rename = "PENDING")]
    Pending,
    #[schema(rename = "IN_PROGRESS")]
    InProgress,
    #[schema(rename = "COMPLETED")]
    Completed,
    #[schema(rename = "FAILED")]
    Failed,
    #[schema(rename = "CANCELLED")]
    Cancelled,
}

/// RFC 3339 in UTC with microseconds, e.g. `2026-11-25T06:25:38.123456Z`.
fn rfc3339<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Micros, true))
}

fn rfc3339_opt<S: Serializer>(
    at: &Option<DateTime<Utc>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => rfc3339(at, serializer),
        None => serializer.serialize_none(),
    }
}

/// A task.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TaskResponse {
    pub task_id: Uuid,
    pub task_name: String,
    #[schema(nullable)]
    pub task_description: Option<String>,
    #[schema(value_type = StatusSchema)]
    pub status: Status,
    #[serde(serialize_with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339")]
    pub updated_at: DateTime<Utc>,
    /// The items as accepted.
    #[schema(value_type = Vec<Object>)]
    pub payload: Value,
    /// Set when the task failed: which services failed and why.
    #[schema(nullable)]
    pub error_message: Option<String>,
    /// Where its summary is POSTed when it is final (signed; see the README).
    #[schema(nullable)]
    pub callback_url: Option<String>,
    /// The tenant it belongs to: that of the credential that submitted it.
    pub tenant: String,
    /// How long it may take, as submitted (or the deployment's default); null: no
    /// deadline.
    #[schema(nullable)]
    pub deadline_seconds: Option<i32>,
    /// When it must be final, else it fails: accepted (or last re-driven) plus
    /// `deadline_seconds`.
    #[serde(serialize_with = "rfc3339_opt")]
    #[schema(nullable)]
    pub deadline_at: Option<DateTime<Utc>>,
    /// The W3C trace id of the task: that of the `traceparent` it was submitted with,
    /// or of the trace the API started for it. Every run, re-drive and downstream call
    /// of the task belongs to this trace. Null for tasks stored before traces.
    #[schema(nullable, pattern = "^[0-9a-f]{32}$")]
    pub trace_id: Option<String>,
}

impl From<TaskRow> for TaskResponse {
    fn from(row: TaskRow) -> Self {
        Self {
            task_id: row.task_id,
            task_name: row.task_name,
            task_description: row.task_description,
            status: row.status,
            created_at: row.created_at,
            updated_at: row.updated_at,
            payload: row.payload,
            error_message: row.error_message,
            callback_url: row.callback_url,
            tenant: row.tenant,
            deadline_seconds: row.deadline_seconds,
            deadline_at: row.deadline_at,
            trace_id: row
                .traceparent
                .as_deref()
                .and_then(TraceContext::trace_id_of)
                .map(str::to_owned),
        }
    }
}

/// One downstream call of a task.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ServiceRequestResponse {
    /// Also the `Idempotency-Key` sent to the service.
    pub id: Uuid,
    pub item_index: i32,
    pub service_name: String,
    pub scenario_id: Uuid,
    pub business_type_id: Uuid,
    #[schema(value_type = StatusSchema)]
    pub status: Status,
    /// HTTP attempts made, over all runs.
    pub attempts: i32,
    #[serde(serialize_with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339")]
    pub updated_at: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339_opt")]
    #[schema(nullable)]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "rfc3339_opt")]
    #[schema(nullable)]
    pub completed_at: Option<DateTime<Utc>>,
    #[schema(value_type = Object)]
    pub request_payload: Value,
    /// The service's JSON answer, once completed.
    #[schema(value_type = Option<Object>, nullable)]
    pub response_payload: Option<Value>,
    /// The last error, once failed.
    #[schema(nullable)]
    pub error_message: Option<String>,
    /// Each attempt that failed, over all runs, oldest first. Only failures are
    /// recorded: of `attempts`, those not listed here succeeded (at most the last).
    pub failed_attempts: Vec<FailedAttemptResponse>,
}

/// One failed HTTP attempt of a service request.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FailedAttemptResponse {
    /// Counted over all runs of the service request, from 1.
    pub attempt: i32,
    #[serde(serialize_with = "rfc3339")]
    pub started_at: DateTime<Utc>,
    pub duration_ms: i64,
    /// The service's HTTP status; null for a timeout or a transport error.
    #[schema(nullable)]
    pub status_code: Option<i32>,
    pub error: String,
}

impl From<AttemptRow> for FailedAttemptResponse {
    fn from(row: AttemptRow) -> Self {
        Self {
            attempt: row.attempt,
            started_at: row.started_at,
            duration_ms: row.duration_ms,
            status_code: row.status_code,
            error: row.error,
        }
    }
}

/// An earlier failure of a task that was then re-driven.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RedriveResponse {
    /// When the task had failed.
    #[serde(serialize_with = "rfc3339")]
    pub failed_at: DateTime<Utc>,
    /// When it was re-driven. The time from `failed_at` to here is not processing time.
    #[serde(serialize_with = "rfc3339")]
    pub redriven_at: DateTime<Utc>,
    /// The task's error at the time.
    #[schema(nullable)]
    pub error_message: Option<String>,
}

impl From<RedriveRow> for RedriveResponse {
    fn from(row: RedriveRow) -> Self {
        Self {
            failed_at: row.failed_at,
            redriven_at: row.redriven_at,
            error_message: row.error_message,
        }
    }
}

impl ServiceRequestResponse {
    /// The response for a row with its failed attempts, oldest first.
    pub fn new(row: ServiceRequestRow, failed_attempts: Vec<AttemptRow>) -> Self {
        let mut response = Self::from(row);
        response.failed_attempts = failed_attempts.into_iter().map(Into::into).collect();
        response
    }
}

impl From<ServiceRequestRow> for ServiceRequestResponse {
    fn from(row: ServiceRequestRow) -> Self {
        Self {
            id: row.id,
            item_index: row.item_index,
            service_name: row.service_name,
            scenario_id: row.scenario_id,
            business_type_id: row.business_type_id,
            status: row.status,
            attempts: row.attempts,
            created_at: row.created_at,
            updated_at: row.updated_at,
            started_at: row.started_at,
            completed_at: row.completed_at,
            request_payload: row.request_payload,
            response_payload: row.response_payload,
            error_message: row.error_message,
            failed_attempts: Vec::new(),
        }
    }
}

/// A task with its service requests.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TaskDetailResponse {
    #[serde(flatten)]
    pub task: TaskResponse,
    pub service_requests: Vec<ServiceRequestResponse>,
    /// Each earlier failure of the task that was re-driven, oldest first.
    pub redrives: Vec<RedriveResponse>,
    /// The completion webhooks sent for it (one each time it became final), oldest
    /// first, with every attempt.
    pub webhook_deliveries: Vec<WebhookDeliveryResponse>,
    /// Its trace in the deployment's tracing UI (`TRACE_URL_TEMPLATE`); null when none
    /// is configured or the task has no trace id.
    #[schema(nullable)]
    pub trace_url: Option<String>,
}

/// Where a webhook delivery stands.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Not delivered yet; another attempt is due at `next_attempt_at`.
    Pending,
    Delivered,
    /// Retried for WEBHOOK_RETRY_HOURS without a 2xx.
    GaveUp,
}

/// One completion webhook of a task.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WebhookDeliveryResponse {
    /// The `webhook-id` header of every attempt.
    pub id: String,
    pub url: String,
    pub state: DeliveryState,
    #[serde(serialize_with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339_opt")]
    #[schema(nullable)]
    pub next_attempt_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "rfc3339_opt")]
    #[schema(nullable)]
    pub delivered_at: Option<DateTime<Utc>>,
    pub attempts: Vec<WebhookAttemptResponse>,
}

/// One attempt to deliver a webhook.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WebhookAttemptResponse {
    pub attempt: i32,
    #[serde(serialize_with = "rfc3339")]
    pub attempted_at: DateTime<Utc>,
    pub duration_ms: i64,
    /// The receiver's HTTP status, when it answered.
    #[schema(nullable)]
    pub status_code: Option<i32>,
    /// Why it failed; null when it was delivered.
    #[schema(nullable)]
    pub error: Option<String>,
}

impl WebhookDeliveryResponse {
    pub fn new(row: DeliveryRow, attempts: Vec<WebhookAttemptRow>) -> Self {
        let state = if row.delivered_at.is_some() {
            DeliveryState::Delivered
        } else if row.gave_up_at.is_some() {
            DeliveryState::GaveUp
        } else {
            DeliveryState::Pending
        };
        Self {
            id: format!("msg_{}", row.id.simple()),
            url: row.url,
            next_attempt_at: matches!(state, DeliveryState::Pending).then_some(row.next_attempt_at),
            state,
            created_at: row.created_at,
            delivered_at: row.delivered_at,
            attempts: attempts
                .into_iter()
                .map(|a| WebhookAttemptResponse {
                    attempt: a.attempt,
                    attempted_at: a.attempted_at,
                    duration_ms: a.duration_ms,
                    status_code: a.status_code,
                    error: a.error,
                })
                .collect(),
        }
    }
}

/// A page of tasks, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TaskListResponse {
    pub tasks: Vec<TaskResponse>,
    /// Pass as `cursor` to get the next page; null on the last page.
    #[schema(nullable)]
    pub next_cursor: Option<String>,
}

/// Liveness and mode.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HealthResponse {
    #[schema(example = "ok")]
    pub status: &'static str,
    /// `kafka` when accepted tasks go to Kafka, `inline` when this process runs them.
    #[schema(example = "inline")]
    pub mode: &'static str,
    /// `enabled`, or `disabled` when the API serves everyone without credentials
    /// (`AUTH_DISABLED`).
    #[schema(example = "enabled")]
    pub auth: &'static str,
}

/// Who the credential of the request stands for.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CallerResponse {
    /// The tenant whose tasks the credential reads and acts on.
    #[schema(example = "default")]
    pub tenant: String,
    /// What the credential may do.
    #[schema(example = json!(["tasks:submit", "tasks:read"]))]
    pub scopes: Vec<&'static str>,
    /// `token` (an API token), `session` (a dashboard session), `jwt` (a JWT of the
    /// identity provider) or `none` (authentication is disabled).
    #[schema(example = "token")]
    pub credential: &'static str,
    /// The API token's id, when the credential is one or a session made from one.
    pub token_id: Option<uuid::Uuid>,
}

/// Readiness and what it was decided on.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReadyResponse {
    /// `ready` or `unavailable`.
    #[schema(example = "ready")]
    pub status: &'static str,
    #[schema(example = "kafka")]
    pub mode: &'static str,
    pub checks: ReadyChecks,
}

/// Each dependency: `ok` or `unreachable` (details are in the server log).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReadyChecks {
    #[schema(example = "ok")]
    pub database: &'static str,
    /// Absent in inline mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "ok")]
    pub kafka: Option<&'static str>,
}

impl ReadyResponse {
    pub fn new(ready: bool, mode: &'static str, database: bool, kafka: Option<bool>) -> Self {
        let check = |ok: bool| if ok { "ok" } else { "unreachable" };
        Self {
            status: if ready { "ready" } else { "unavailable" },
            mode,
            checks: ReadyChecks {
                database: check(database),
                kafka: kafka.map(check),
            },
        }
    }
}

/// An API token as the API shows it: everything but its secret.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    /// The token's public part: `orch_<id without dashes>_...`.
    pub id: Uuid,
    #[schema(nullable)]
    pub name: Option<String>,
    pub tenant: String,
    #[schema(example = json!(["tasks:read"]))]
    pub scopes: Vec<String>,
    #[serde(serialize_with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    /// Unset: valid until revoked.
    #[serde(serialize_with = "rfc3339_opt")]
    #[schema(nullable)]
    pub expires_at: Option<DateTime<Utc>>,
    /// Updated at most once a minute.
    #[serde(serialize_with = "rfc3339_opt")]
    #[schema(nullable)]
    pub last_used_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "rfc3339_opt")]
    #[schema(nullable)]
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<TokenRow> for TokenResponse {
    fn from(row: TokenRow) -> Self {
        Self {
            id: row.id,
            scopes: row.scopes.split(' ').map(str::to_owned).collect(),
            name: row.name,
            tenant: row.tenant,
            created_at: row.created_at,
            expires_at: row.expires_at,
            last_used_at: row.last_used_at,
            revoked_at: row.revoked_at,
        }
    }
}

/// A token just made: the secret, shown this once, and what it is.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedTokenResponse {
    /// The bearer token. It is not stored and cannot be shown again.
    pub token: String,
    #[serde(flatten)]
    pub details: TokenResponse,
}

/// The tenant's tokens, oldest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenListResponse {
    pub tokens: Vec<TokenResponse>,
}

/// One entry of the audit log.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditEventResponse {
    pub id: i64,
    #[serde(serialize_with = "rfc3339")]
    pub occurred_at: DateTime<Utc>,
    pub tenant: String,
    /// `token:<id>` (an API token, or a dashboard session made from it), `cli` (the
    /// token command), `anonymous` (authentication disabled).
    #[schema(example = "token:0b7c6a4e-5a1f-4a57-9d43-2b7f1c9e8d21")]
    pub actor: String,
    /// `sign_in`, `token.create`, `token.revoke`, `task.redrive`, `task.cancel`,
    /// `tasks.bulk_retry`, `tasks.bulk_cancel`, `bulk.cancel`.
    #[schema(example = "task.redrive")]
    pub action: String,
    /// What it was done to: a task id, a token id.
    #[schema(nullable)]
    pub target: Option<String>,
    /// `success` or `failure` (refused).
    #[schema(example = "success")]
    pub outcome: String,
    #[schema(nullable)]
    pub request_id: Option<String>,
    #[schema(nullable)]
    pub client_address: Option<String>,
    /// What it was about beyond its target: a bulk operation's `filter` and `matched`
    /// count; null for the others.
    #[schema(nullable, value_type = Option<Object>)]
    pub details: Option<serde_json::Value>,
}

impl From<AuditRow> for AuditEventResponse {
    fn from(row: AuditRow) -> Self {
        Self {
            id: row.id,
            occurred_at: row.occurred_at,
            tenant: row.tenant.unwrap_or_default(),
            actor: row.actor,
            action: row.action,
            target: row.target,
            outcome: row.outcome,
            request_id: row.request_id,
            client_address: row.client_address,
            details: row.details,
        }
    }
}

/// A page of the audit log, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditPageResponse {
    pub events: Vec<AuditEventResponse>,
    /// Pass as `cursor` to get the next page; null on the last page.
    #[schema(nullable)]
    pub next_cursor: Option<String>,
}

/// What changed, in one event of a Server-Sent Events stream (`GET
/// /api/tasks/{task_id}/events`, `GET /api/events`): the `data:` of an event named
/// `task` (the task's status changed, or it was created) or `service_request` (one of
/// its service requests reached a final status). The event's `id:` is `event_id`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TaskEventResponse {
    /// The event's position, `TX-SEQ`: send it back as `Last-Event-ID` to resume after
    /// it.
    pub event_id: String,
    pub task_id: Uuid,
    pub task_name: String,
    /// Set on `service_request` events.
    #[schema(nullable)]
    pub service_request_id: Option<Uuid>,
    #[schema(nullable)]
    pub service_name: Option<String>,
    #[schema(nullable)]
    pub item_index: Option<i32>,
    /// The status it has now.
    #[schema(value_type = StatusSchema)]
    pub status: String,
    /// The status it had; null when the task was created.
    #[schema(nullable)]
    pub previous_status: Option<String>,
    #[schema(nullable)]
    pub error_message: Option<String>,
    /// When the change was made (the start of its transaction).
    #[serde(serialize_with = "rfc3339")]
    pub at: DateTime<Utc>,
}

impl From<&orchestrator_store::events::TaskEvent> for TaskEventResponse {
    fn from(event: &orchestrator_store::events::TaskEvent) -> Self {
        Self {
            event_id: event.position().to_string(),
            task_id: event.task_id,
            task_name: event.task_name.clone(),
            service_request_id: event.service_request_id,
            service_name: event.service_name.clone(),
            item_index: event.item_index,
            status: event.status.clone(),
            previous_status: event.previous_status.clone(),
            error_message: event.error_message.clone(),
            at: event.at,
        }
    }
}

/// A bulk operation (`POST /api/tasks/bulk/retry`, `/cancel`) and how far it got.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BulkOperationResponse {
    pub id: Uuid,
    /// `retry` or `cancel`.
    #[schema(example = "retry")]
    pub action: String,
    /// `RUNNING`, `COMPLETED` (no task in scope left) or `CANCELLED` (stopped).
    #[schema(example = "RUNNING")]
    pub state: String,
    /// The filter as the API read it: `statuses` spelt out, times in UTC.
    #[schema(value_type = Object)]
    pub filter: Value,
    /// Tasks the filter selected when the operation was made: its scope.
    pub matched: i64,
    /// Tasks re-driven or cancelled so far.
    pub acted: i64,
    /// Tasks of the scope left alone: no longer in a status the action applies to
    /// when their turn came.
    pub skipped: i64,
    /// Tasks handled per second, at most.
    pub rate_per_second: i32,
    /// Who made it, as the audit log names callers.
    pub actor: String,
    #[serde(serialize_with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339")]
    pub updated_at: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339_opt")]
    #[schema(nullable)]
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<orchestrator_store::bulk::BulkRow> for BulkOperationResponse {
    fn from(row: orchestrator_store::bulk::BulkRow) -> Self {
        Self {
            id: row.id,
            action: row.action,
            state: row.state,
            filter: row.filter,
            matched: row.matched,
            acted: row.acted,
            skipped: row.skipped,
            rate_per_second: row.rate_per_second,
            actor: row.actor,
            created_at: row.created_at,
            updated_at: row.updated_at,
            finished_at: row.finished_at,
        }
    }
}

/// What a bulk operation would act on (`"dry_run": true`); nothing was changed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BulkDryRunResponse {
    /// `retry` or `cancel`.
    #[schema(example = "retry")]
    pub action: String,
    pub dry_run: bool,
    /// The filter as the API read it.
    #[schema(value_type = Object)]
    pub filter: Value,
    /// Tasks the filter selects now.
    pub matched: i64,
}
