//! The API's place in traces: each request is a server span under the caller's
//! `traceparent` (following OpenTelemetry's HTTP server conventions), and a task
//! accepted by a request joins that request's trace.
//!
//! While spans are not exported no request span is made at all, and a task's trace
//! context comes from the headers alone ([`request_trace`]).

use actix_web::HttpRequest;
use actix_web::dev::ServiceRequest;
use actix_web::http::{Method, StatusCode};
use orchestrator_telemetry::trace::{TRACEPARENT, TRACESTATE, TraceContext, spans_exported};

/// The caller's trace context, from `traceparent` and `tracestate`.
fn callers_context(headers: &actix_web::http::header::HeaderMap) -> Option<TraceContext> {
    let header = |name| headers.get(name).and_then(|value| value.to_str().ok());
    TraceContext::from_headers(header(TRACEPARENT), header(TRACESTATE))
}

/// The span of one request while spans are exported (a child of the caller's
/// `traceparent`, or the root of a new trace); none otherwise.
pub fn request_span(request: &ServiceRequest) -> tracing::Span {
    if !spans_exported() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        "http_request",
        otel.name = %request.method(),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        "http.request.method" = %request.method(),
        "url.path" = request.path(),
        "http.route" = tracing::field::Empty,
        "http.response.status_code" = tracing::field::Empty,
    );
    TraceContext::of_span(&span, callers_context(request.headers()).as_ref());
    span
}

/// The answer on the request's span: its route (which renames the span, `POST
/// /api/orchestrate`) and status (a 5xx marks it an error; a 4xx is the client's).
pub fn record_response(
    span: &tracing::Span,
    method: &Method,
    route: Option<&str>,
    status: StatusCode,
) {
    if span.is_none() {
        return;
    }
    if let Some(route) = route {
        span.record("http.route", route);
        orchestrator_telemetry::trace::rename(span, format!("{method} {route}"));
    }
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
}

/// This request's handler span in the task's trace-to-be, recorded on the handler's
/// log span (`trace_id`, `span_id`): under the request span while spans are exported,
/// else a child of the caller's context or the first span of a new trace.
pub fn request_trace(req: &HttpRequest) -> TraceContext {
    let span = tracing::Span::current();
    let trace = if spans_exported() {
        TraceContext::of_span(&span, None)
    } else {
        TraceContext::of_span(&span, callers_context(req.headers()).as_ref())
    };
    span.record("trace_id", trace.trace_id());
    span.record("span_id", trace.span_id());
    trace
}
