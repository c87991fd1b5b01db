//! HTTP routes of the mock server.

mod control;
mod service;
mod stats;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

use crate::responses::{self, problem};
use crate::state::AppState;

/// Registers every route; `state` decides which service paths exist.
pub(crate) fn configure(cfg: &mut web::ServiceConfig, state: &AppState) {
    for (index, svc) in state.services().iter().enumerate() {
        // The index is captured per route so the handler finds its service's counters
        // and behaviour without a lookup by name.
        cfg.service(web::resource(svc.path.as_str()).route(web::post().to(
            move |req: HttpRequest, body: web::Bytes, state: web::Data<AppState>| {
                service::handle(index, req, body, state)
            },
        )));
    }
    cfg.route("/health", web::get().to(health))
        .route("/stats", web::get().to(stats::get))
        .route("/stats/reset", web::post().to(stats::reset))
        .route("/control", web::get().to(control::get))
        .route("/control", web::delete().to(control::reset_all))
        .route("/control/{service}", web::put().to(control::put))
        .route("/control/{service}", web::delete().to(control::reset_one));
}

async fn health() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(&br#"{"status":"ok"}"#[..])
}

/// Answers unknown paths with a problem document instead of an empty 404.
pub(crate) async fn not_found(req: HttpRequest) -> HttpResponse {
    responses::problem(
        StatusCode::NOT_FOUND,
        problem::NOT_FOUND,
        &format!("no route for {} {}", req.method(), req.path()),
    )
}
