//! `GET /stats` and `POST /stats/reset`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};

use crate::responses;
use crate::state::AppState;

pub(super) async fn get(state: web::Data<AppState>) -> HttpResponse {
    responses::json(StatusCode::OK, &state.stats.snapshot())
}

pub(super) async fn reset(state: web::Data<AppState>) -> HttpResponse {
    state.stats.reset();
    HttpResponse::NoContent().finish()
}
