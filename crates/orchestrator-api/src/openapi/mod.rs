//! The OpenAPI document, served at `/openapi.json` and browsed at `/docs`.
//!
//! The routes' annotations give its shape; [`rules`] then states, from the definitions
//! the handlers validate with, what each input accepts and what every route can answer,
//! so that a request the document allows is one the API takes (a fuzzer checks this in
//! CI: `make contract`).

mod rules;

use actix_web::http::header::ContentType;
use actix_web::{HttpResponse, web};
use orchestrator_core::RequestLimits;
use utoipa::OpenApi;

use crate::dto;
use crate::error::{Problem, ProblemField};
use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "orchestrator",
        description = "Accepts orchestration tasks, fans them out to downstream services and reports their progress.\n\nThe operators' dashboard is at [/ui](/ui)."
    ),
    paths(
        routes::orchestrate::orchestrate,
        routes::orchestrate::orchestrate_direct,
        routes::tasks::list_tasks,
        routes::tasks::get_task,
        routes::tasks::retry_task,
        routes::tasks::cancel_task,
        routes::events::task_events,
        routes::events::all_events,
        routes::bulk::bulk_retry,
        routes::bulk::bulk_cancel,
        routes::bulk::get_bulk,
        routes::bulk::cancel_bulk,
        routes::dashboard::task_counts,
        routes::dashboard::task_throughput,
        routes::dashboard::search_tasks,
        routes::tokens::create_token,
        routes::tokens::list_tokens,
        routes::tokens::revoke_token,
        routes::audit::audit_log,
        routes::me::me,
        routes::health::health,
        routes::health::ready,
        routes::health::metrics,
    ),
    components(schemas(
        dto::OrchestrateRequest,
        dto::StatusSchema,
        dto::TaskResponse,
        dto::ServiceRequestResponse,
        dto::FailedAttemptResponse,
        dto::RedriveResponse,
        dto::WebhookDeliveryResponse,
        dto::WebhookAttemptResponse,
        dto::DeliveryState,
        dto::TaskDetailResponse,
        dto::TaskListResponse,
        routes::dashboard::TaskSearchResponse,
        dto::TaskEventResponse,
        dto::BulkOperationResponse,
        dto::BulkDryRunResponse,
        routes::bulk::BulkRetryBody,
        routes::bulk::BulkCancelBody,
        dto::CallerResponse,
        dto::TokenResponse,
        dto::CreatedTokenResponse,
        dto::TokenListResponse,
        dto::AuditEventResponse,
        dto::AuditPageResponse,
        routes::tokens::NewTokenBody,
        dto::HealthResponse,
        dto::ReadyResponse,
        dto::ReadyChecks,
        routes::dashboard::StatusCountsResponse,
        routes::dashboard::CountsByStatus,
        routes::dashboard::ThroughputResponse,
        routes::dashboard::ThroughputBucket,
        Problem,
        ProblemField,
    )),
    tags(
        (name = "tasks", description = "Submit tasks and follow them"),
        (name = "dashboard", description = "Counts, throughput and search, as the dashboard at /ui shows them"),
        (name = "access", description = "Who the credential stands for; the tenant's tokens and audit log"),
        (name = "operations", description = "Health"),
    )
)]
pub struct ApiDoc;

/// The document as served: rendered once at start, for this deployment's services and
/// limits, ending with a newline like every JSON answer of the API. Served by our route
/// rather than Swagger UI's, which would not.
#[derive(Debug, Clone)]
pub struct Document(web::Bytes);

impl Document {
    pub fn render(limits: &RequestLimits) -> Result<Self, serde_json::Error> {
        let mut json = openapi(limits).to_json()?;
        json.push('\n');
        Ok(Self(web::Bytes::from(json)))
    }
}

/// The document for a deployment that accepts `limits`.
pub fn openapi(limits: &RequestLimits) -> utoipa::openapi::OpenApi {
    let mut document = ApiDoc::openapi();
    rules::apply(&mut document, limits);
    document
}

/// `GET /openapi.json`.
pub async fn document(document: web::Data<Document>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(ContentType::json())
        .body(document.0.clone())
}
