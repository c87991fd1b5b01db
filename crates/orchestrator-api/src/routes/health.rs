use actix_web::web;

use crate::dto::HealthResponse;
use crate::state::AppState;

/// Liveness: the process serves requests. Also says how tasks are processed.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "The API is up", body = HealthResponse)))]
pub async fn health(state: web::Data<AppState>) -> web::Json<HealthResponse> {
    web::Json(HealthResponse {
        status: "ok",
        mode: state.mode.as_str(),
    })
}
