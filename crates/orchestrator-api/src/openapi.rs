//! The OpenAPI document, served at `/openapi.json` and browsed at `/docs`.

use utoipa::OpenApi;

use crate::dto;
use crate::error::{Problem, ProblemField};
use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "orchestrator",
        description = "Accepts orchestration tasks, fans them out to downstream services and reports their progress."
    ),
    paths(
        routes::orchestrate::orchestrate,
        routes::orchestrate::orchestrate_direct,
        routes::tasks::list_tasks,
        routes::tasks::get_task,
        routes::tasks::retry_task,
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
        dto::TaskDetailResponse,
        dto::TaskListResponse,
        dto::HealthResponse,
        dto::ReadyResponse,
        dto::ReadyChecks,
        Problem,
        ProblemField,
    )),
    tags(
        (name = "tasks", description = "Submit tasks and follow them"),
        (name = "operations", description = "Health"),
    )
)]
pub struct ApiDoc;
