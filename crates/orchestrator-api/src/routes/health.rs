use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use orchestrator_telemetry::metrics;

use crate::dto::{HealthResponse, ReadyResponse};
use crate::json::{Json, JsonLine};
use crate::state::AppState;

/// How long each readiness check may take. Below the probes' own timeouts (a few
/// seconds), so a probe gets an answer rather than a timeout.
const READY_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Liveness: the process serves requests. Also says how tasks are processed.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "The API is up", body = HealthResponse)))]
pub async fn health(state: web::Data<AppState>) -> Json<HealthResponse> {
    Json(HealthResponse {
        status: "ok",
        mode: state.mode.as_str(),
        auth: if state.auth.is_disabled() {
            "disabled"
        } else {
            "enabled"
        },
    })
}

/// Readiness: PostgreSQL answers and, in Kafka mode, the broker does too.
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses(
        (status = 200, description = "Ready to take requests", body = ReadyResponse),
        (status = 503, description = "A dependency is unreachable; `checks` says which", body = ReadyResponse),
    ))]
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let database = orchestrator_store::health::ping(&state.pool, READY_CHECK_TIMEOUT).await;
    let kafka = match &state.queue {
        Some(queue) => Some(queue.ping_broker(READY_CHECK_TIMEOUT).await),
        None => None,
    };
    if let Err(error) = &database {
        tracing::warn!(error = %error, "Not ready: PostgreSQL unreachable.");
    }
    if let Some(Err(error)) = &kafka {
        tracing::warn!(error = %error, "Not ready: Kafka unreachable.");
    }
    let ready = database.is_ok() && kafka.as_ref().is_none_or(Result::is_ok);
    let body = ReadyResponse::new(
        ready,
        state.mode.as_str(),
        database.is_ok(),
        kafka.map(|result| result.is_ok()),
    );
    if ready {
        HttpResponse::Ok().json_line(body)
    } else {
        HttpResponse::ServiceUnavailable()
            .insert_header((header::RETRY_AFTER, "5"))
            .json_line(body)
    }
}

/// Prometheus metrics, in the OpenMetrics text format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Metrics", content_type = "application/openmetrics-text")))]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    state.runner.processor().publish_breaker_states();
    HttpResponse::Ok()
        .content_type(metrics::CONTENT_TYPE)
        .body(metrics::render(&state.metrics))
}
