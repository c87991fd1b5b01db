//! HTTP routes. Handlers translate between HTTP and the domain; errors go through
//! [`crate::error::ApiError`].

use actix_web::{HttpResponse, web};

use crate::error::ApiError;

pub mod dashboard;
pub mod health;
pub mod orchestrate;
pub(crate) mod query;
pub mod tasks;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api/orchestrate")
            .route(web::post().to(orchestrate::orchestrate))
            .default_service(allow("POST")),
    )
    .service(
        web::resource("/api/orchestrate/direct")
            .route(web::post().to(orchestrate::orchestrate_direct))
            .default_service(allow("POST")),
    )
    .service(
        web::resource("/api/tasks")
            .route(web::get().to(tasks::list_tasks))
            .default_service(allow("GET")),
    )
    // Registered before /api/tasks/{task_id}, which would otherwise take these names
    // (and answer 400: not a UUID).
    .service(
        web::resource("/api/tasks/counts")
            .route(web::get().to(dashboard::task_counts))
            .default_service(allow("GET")),
    )
    .service(
        web::resource("/api/tasks/throughput")
            .route(web::get().to(dashboard::task_throughput))
            .default_service(allow("GET")),
    )
    .service(
        web::resource("/api/tasks/search")
            .route(web::get().to(dashboard::search_tasks))
            .default_service(allow("GET")),
    )
    .service(
        web::resource("/api/tasks/{task_id}")
            .route(web::get().to(tasks::get_task))
            .default_service(allow("GET")),
    )
    .service(
        web::resource("/api/tasks/{task_id}/retry")
            .route(web::post().to(tasks::retry_task))
            .default_service(allow("POST")),
    )
    .service(
        web::resource("/health")
            .route(web::get().to(health::health))
            .default_service(allow("GET")),
    )
    .service(
        web::resource("/ready")
            .route(web::get().to(health::ready))
            .default_service(allow("GET")),
    )
    .service(
        web::resource("/metrics")
            .route(web::get().to(health::metrics))
            .default_service(allow("GET")),
    );
    crate::ui::configure(cfg);
}

/// What a resource answers to any method it does not have: 405 with an `Allow` header
/// naming the ones it has (RFC 9110, section 15.5.6).
pub(crate) fn allow(methods: &'static str) -> actix_web::Route {
    web::to(
        move || async move { Err::<HttpResponse, _>(ApiError::MethodNotAllowed { allow: methods }) },
    )
}

pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::RouteNotFound)
}
