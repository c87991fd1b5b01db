//! `POST /{service}`: the mock downstream call itself.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

use crate::overrides::Overrides;
use crate::payload::ServiceRequest;
use crate::plan::{Outcome, Plan, SuccessBody};
use crate::responses::{self, problem};
use crate::state::AppState;

const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Answers one request to service number `index`.
pub(super) async fn handle(
    index: usize,
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> HttpResponse {
    let headers = req.headers();
    let key = headers
        .get(IDEMPOTENCY_KEY)
        .and_then(|value| value.to_str().ok());
    // Counted before anything can fail, and in flight until this future completes or is
    // dropped (client gone, server stopping).
    let request_id = headers
        .get("x-request-id")
        .and_then(|value| value.to_str().ok());
    // `00-<trace id>-<parent id>-<flags>`: counted by trace id, the shape unchecked
    // (the mock only reports what it was sent).
    let trace_id = headers
        .get("traceparent")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split('-').nth(1));
    let attempt = state.stats.begin(
        index,
        crate::stats::RequestTags {
            key,
            request_id,
            trace_id,
        },
    );

    let request = match serde_json::from_slice::<ServiceRequest>(&body) {
        Ok(request) => request,
        Err(err) => {
            return responses::problem(
                StatusCode::BAD_REQUEST,
                problem::INVALID_REQUEST,
                &err.to_string(),
            );
        }
    };
    let overrides = match Overrides::from_headers(headers) {
        Ok(overrides) => overrides,
        Err(err) => {
            return responses::problem(
                StatusCode::BAD_REQUEST,
                problem::INVALID_OVERRIDE,
                &err.to_string(),
            );
        }
    };
    let behaviour = state.behaviour(index);
    if let Some(required) = &behaviour.required_header {
        let presented = headers
            .get(required.name.as_str())
            .and_then(|value| value.to_str().ok());
        if presented != Some(required.value.as_str()) {
            return responses::problem(
                StatusCode::UNAUTHORIZED,
                problem::UNAUTHORIZED,
                &format!("this service requires the {} header", required.name),
            );
        }
    }
    let plan = Plan::decide(&behaviour, &overrides, attempt.number, &mut rand::rng());

    if !plan.delay.is_zero() {
        tokio::time::sleep(plan.delay).await;
    }
    let service = state.services()[index].name.as_str();
    let response = match plan.outcome {
        Outcome::Hang => {
            tracing::debug!(service, "hanging (injected fault)");
            state.hang().await;
            responses::failure(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                "mock server stopping",
            )
        }
        Outcome::Reset => {
            tracing::debug!(service, "resetting the connection (injected fault)");
            responses::reset()
        }
        Outcome::Fail {
            status,
            retry_after_secs,
            reason,
        } => {
            tracing::debug!(service, %status, reason, "failing (injected fault)");
            responses::failure(status, retry_after_secs, reason)
        }
        Outcome::Succeed { status, body } => match body {
            SuccessBody::Normal => responses::success(status, service, &request),
            SuccessBody::Malformed => responses::malformed(status),
            SuccessBody::Huge(bytes) => responses::huge(status, bytes),
        },
    };
    drop(attempt);
    response
}
