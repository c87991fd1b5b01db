//! Building the mock services' answers.

use actix_web::HttpResponse;
use actix_web::body::SizedStream;
use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use serde::Serialize;

use crate::bodies::{HugeBody, ResetBody};
use crate::payload::{ServiceRequest, ServiceResponseRef, mock_result};

const JSON: &str = "application/json";
const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem document.
#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    title: &'a str,
    status: u16,
    detail: &'a str,
}

/// Kinds of problems the mock reports, as (type URI, title).
pub(crate) mod problem {
    pub(crate) const INVALID_REQUEST: (&str, &str) = (
        "urn:orchestrator:mock:invalid-request",
        "Invalid request body",
    );
    pub(crate) const INVALID_OVERRIDE: (&str, &str) = (
        "urn:orchestrator:mock:invalid-override",
        "Invalid X-Mock-* header",
    );
    pub(crate) const INVALID_BEHAVIOUR: (&str, &str) = (
        "urn:orchestrator:mock:invalid-behaviour",
        "Invalid behaviour",
    );
    pub(crate) const UNKNOWN_SERVICE: (&str, &str) =
        ("urn:orchestrator:mock:unknown-service", "Unknown service");
    pub(crate) const UNAUTHORIZED: (&str, &str) = (
        "urn:orchestrator:mock:unauthorized",
        "Missing or wrong credential",
    );
    pub(crate) const NOT_FOUND: (&str, &str) = ("urn:orchestrator:mock:not-found", "Not found");
    pub(crate) const INTERNAL: (&str, &str) = ("urn:orchestrator:mock:internal", "Internal error");
}

/// An `application/problem+json` answer.
pub(crate) fn problem(
    status: StatusCode,
    (kind, title): (&str, &str),
    detail: &str,
) -> HttpResponse {
    let body = Problem {
        kind,
        title,
        status: status.as_u16(),
        detail,
    };
    match serde_json::to_vec(&body) {
        Ok(bytes) => HttpResponse::build(status)
            .content_type(PROBLEM_JSON)
            .body(bytes),
        Err(_) => HttpResponse::build(status).finish(),
    }
}

/// `body` as JSON with the given status.
pub(crate) fn json<T: Serialize>(status: StatusCode, body: &T) -> HttpResponse {
    match serde_json::to_vec(body) {
        Ok(bytes) => HttpResponse::build(status).content_type(JSON).body(bytes),
        Err(err) => problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            problem::INTERNAL,
            &err.to_string(),
        ),
    }
}

#[derive(Serialize)]
struct Failure<'a> {
    error: &'a str,
    status: u16,
}

/// An injected failure: `{"error": "...", "status": N}`, with `Retry-After` if configured.
pub(crate) fn failure(
    status: StatusCode,
    retry_after_secs: Option<u64>,
    error: &str,
) -> HttpResponse {
    let mut response = json(
        status,
        &Failure {
            error,
            status: status.as_u16(),
        },
    );
    if let Some(secs) = retry_after_secs {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// The deterministic answer of `service` to `request`.
pub(crate) fn success(status: StatusCode, service: &str, request: &ServiceRequest) -> HttpResponse {
    if status == StatusCode::NO_CONTENT {
        // 204 must not carry a body.
        return HttpResponse::NoContent().finish();
    }
    json(
        status,
        &ServiceResponseRef {
            service,
            scenario_id: request.scenario_id,
            business_type_id: request.business_type_id,
            result: mock_result(service, request.scenario_id, request.business_type_id),
        },
    )
}

/// Claims JSON but is cut off mid-object.
pub(crate) fn malformed(status: StatusCode) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((CONTENT_TYPE, JSON))
        .body(&br#"{"service":"mock","result":{"amount":12.5,"currency":"#[..])
}

/// A streamed JSON body of `bytes` bytes (with a `Content-Length`).
pub(crate) fn huge(status: StatusCode, bytes: u64) -> HttpResponse {
    let body = HugeBody::new(bytes);
    HttpResponse::build(status)
        .content_type(JSON)
        .body(SizedStream::new(body.len(), body))
}

/// A chunked 200 whose body breaks off, closing the connection.
pub(crate) fn reset() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(JSON)
        .streaming(ResetBody::default())
}
