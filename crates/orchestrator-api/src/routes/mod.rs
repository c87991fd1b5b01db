//! HTTP routes. Handlers translate between HTTP and the domain; errors go through
//! [`crate::error::ApiError`].

use actix_web::{HttpResponse, web};

use crate::error::ApiError;

pub mod health;
pub mod orchestrate;
pub mod tasks;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api/orchestrate")
            .route(web::post().to(orchestrate::orchestrate))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/api/orchestrate/direct")
            .route(web::post().to(orchestrate::orchestrate_direct))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/api/tasks")
            .route(web::get().to(tasks::list_tasks))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/api/tasks/{task_id}")
            .route(web::get().to(tasks::get_task))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/api/tasks/{task_id}/retry")
            .route(web::post().to(tasks::retry_task))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/health")
            .route(web::get().to(health::health))
            .default_service(web::to(method_not_allowed)),
    );
}

async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed)
}

pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::RouteNotFound)
}
