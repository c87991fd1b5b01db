//! The OpenAPI document, served at `/openapi.json` and browsed at `/docs`.

use actix_web::http::header::ContentType;
use actix_web::{HttpResponse, web};
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
        routes::dashboard::task_counts,
        routes::dashboard::task_throughput,
        routes::dashboard::search_tasks,
        routes::health::health,
        routes::health::ready,
        routes::health::metrics,
    ),
    components(schemas(
        dto::OrchestrateRequest,
        dto::ServiceCallBody,
        dto::StatusSchema,
        dto::TaskResponse,
        dto::ServiceRequestResponse,
        dto::FailedAttemptResponse,
        dto::RedriveResponse,
        dto::TaskDetailResponse,
        dto::TaskListResponse,
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
        (name = "operations", description = "Health"),
    )
)]
pub struct ApiDoc;

/// The document as served: rendered once at start, ending with a newline like every
/// JSON answer of the API. Served by our route rather than Swagger UI's, which would not.
#[derive(Debug, Clone)]
pub struct Document(web::Bytes);

impl Document {
    pub fn render() -> Result<Self, serde_json::Error> {
        let mut json = ApiDoc::openapi().to_json()?;
        json.push('\n');
        Ok(Self(web::Bytes::from(json)))
    }
}

/// `GET /openapi.json`.
pub async fn document(document: web::Data<Document>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(ContentType::json())
        .body(document.0.clone())
}
