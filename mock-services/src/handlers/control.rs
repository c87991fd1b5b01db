//! Runtime control of service behaviours: `GET /control`, `PUT /control/{service}`,
//! `DELETE /control` and `DELETE /control/{service}`.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde::Serialize;

use crate::behaviour::Behaviour;
use crate::responses::{self, problem};
use crate::state::AppState;

/// Body of `GET /control`.
#[derive(Serialize)]
struct ControlView<'a> {
    /// What `DELETE /control` restores.
    default: &'a Behaviour,
    services: BTreeMap<&'a str, Behaviour>,
}

pub(super) async fn get(state: web::Data<AppState>) -> HttpResponse {
    let services = state
        .services()
        .iter()
        .enumerate()
        .map(|(index, service)| (service.name.as_str(), state.behaviour(index)))
        .collect();
    responses::json(
        StatusCode::OK,
        &ControlView {
            default: state.default_behaviour(),
            services,
        },
    )
}

/// Replaces a service's behaviour; answers with the behaviour now in force.
pub(super) async fn put(
    service: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> HttpResponse {
    let Some(index) = state.service_index(&service) else {
        return unknown_service(&service);
    };
    let behaviour = match serde_json::from_slice::<Behaviour>(&body)
        .map_err(|err| err.to_string())
        .and_then(|behaviour| behaviour.validate().map(|()| behaviour))
    {
        Ok(behaviour) => behaviour,
        Err(detail) => {
            return responses::problem(
                StatusCode::BAD_REQUEST,
                problem::INVALID_BEHAVIOUR,
                &detail,
            );
        }
    };
    tracing::info!(service = %service, ?behaviour, "behaviour replaced");
    let response = responses::json(StatusCode::OK, &behaviour);
    state.set_behaviour(index, behaviour);
    response
}

pub(super) async fn reset_all(state: web::Data<AppState>) -> HttpResponse {
    state.reset_behaviours();
    tracing::info!("all behaviours reset to the process default");
    HttpResponse::NoContent().finish()
}

pub(super) async fn reset_one(
    service: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let Some(index) = state.service_index(&service) else {
        return unknown_service(&service);
    };
    state.set_behaviour(index, state.default_behaviour().clone());
    tracing::info!(service = %service, "behaviour reset to the process default");
    HttpResponse::NoContent().finish()
}

fn unknown_service(name: &str) -> HttpResponse {
    responses::problem(
        StatusCode::NOT_FOUND,
        problem::UNKNOWN_SERVICE,
        &format!("no service named {name:?}"),
    )
}
