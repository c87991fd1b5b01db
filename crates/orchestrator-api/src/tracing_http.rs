//! The API's place in traces: each request is a server span under the caller's
//! `traceparent` (following OpenTelemetry's HTTP server conventions), and a task
//! accepted by a request joins that request's trace.
//!
//! While spans are not exported no request span is made at all, and a task's trace
//! context comes from the headers alone ([`request_trace`]).

use actix_web::dev::ServiceRequest;
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpMessage as _, HttpRequest};
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
        target: orchestrator_telemetry::trace::EXPORT_ONLY,
        "http_request",
        otel.name = %request.method(),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        "http.request.method" = %request.method(),
        "url.path" = request.path(),
        "http.route" = tracing::field::Empty,
        "http.response.status_code" = tracing::field::Empty,
    );
    let context = TraceContext::of_span(&span, callers_context(request.headers()).as_ref());
    request.extensions_mut().insert(RequestSpan(context));
    span
}

/// The context of a request's server span, for the handler (see [`request_trace`]).
#[derive(Debug, Clone)]
struct RequestSpan(TraceContext);

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

/// Where a task accepted by this request joins its trace, recorded on the handler's log
/// span (`trace_id`, `span_id`): the request's server span while spans are exported
/// (the handler has no exported span of its own: it would last as long), else a child
/// of the caller's context or the first span of a new trace.
pub fn request_trace(req: &HttpRequest) -> TraceContext {
    let span = tracing::Span::current();
    let trace = server_span(req)
        .unwrap_or_else(|| TraceContext::of_span(&span, callers_context(req.headers()).as_ref()));
    span.record("trace_id", trace.trace_id());
    span.record("span_id", trace.span_id());
    trace
}

/// The context of the request's server span while spans are exported.
pub fn server_span(req: &HttpRequest) -> Option<TraceContext> {
    req.extensions()
        .get::<RequestSpan>()
        .map(|RequestSpan(context)| context.clone())
}

/// The span of an action on a task (`cancel`, `redrive`) in the task's own trace: a
/// child of the span that accepted the task (`traceparent`, as its row keeps it),
/// linked to the request that asked for it, which is in the caller's trace. A
/// re-driven run hangs under it. `None` while spans are not exported.
pub fn task_action_span(
    asked_by: Option<&TraceContext>,
    name: &'static str,
    traceparent: Option<&str>,
) -> Option<(tracing::Span, TraceContext)> {
    let request = asked_by?;
    let accepted = traceparent.and_then(TraceContext::parse)?;
    let span = tracing::info_span!(
        target: orchestrator_telemetry::trace::EXPORT_ONLY,
        parent: None,
        "task_action",
        otel.name = name,
        otel.kind = "internal",
    );
    orchestrator_telemetry::trace::link(&span, request);
    let context = TraceContext::of_span(&span, Some(&accepted));
    Some((span, context))
}

/// `TRACE_URL_TEMPLATE`: where a trace is shown in the deployment's tracing UI, with
/// `{trace_id}` where the trace id goes (`http://localhost:16686/trace/{trace_id}` for
/// Jaeger, a Grafana Explore URL for Tempo).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceUrlTemplate(String);

impl TraceUrlTemplate {
    const PLACEHOLDER: &'static str = "{trace_id}";

    /// For clap: an `http` or `https` URL once the placeholder is filled in.
    pub fn parse(template: &str) -> Result<Self, String> {
        if !template.contains(Self::PLACEHOLDER) {
            return Err(format!("must contain {}", Self::PLACEHOLDER));
        }
        let example = template.replace(Self::PLACEHOLDER, "0af7651916cd43dd8448eb211c80319c");
        match url::Url::parse(&example) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => Ok(Self(template.to_owned())),
            Ok(url) => Err(format!(
                "must be an http or https URL, not {}",
                url.scheme()
            )),
            Err(error) => Err(format!("not a URL: {error}")),
        }
    }

    /// The link to the trace `trace_id` (32 hex digits, so nothing to escape).
    pub fn url_for(&self, trace_id: &str) -> String {
        self.0.replace(Self::PLACEHOLDER, trace_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trace_url_template_names_where_the_id_goes_in_an_http_url() {
        let jaeger =
            TraceUrlTemplate::parse("http://localhost:16686/trace/{trace_id}").expect("valid");
        assert_eq!(
            jaeger.url_for("4bf92f3577b34da6a3ce929d0e0e4736"),
            "http://localhost:16686/trace/4bf92f3577b34da6a3ce929d0e0e4736"
        );
        for (bad, why) in [
            ("http://localhost:16686/trace/", "must contain {trace_id}"),
            (
                "javascript:alert({trace_id})",
                "must be an http or https URL",
            ),
            ("/trace/{trace_id}", "not a URL"),
        ] {
            let error = TraceUrlTemplate::parse(bad).expect_err(bad);
            assert!(error.starts_with(why), "{bad}: {error}");
        }
    }
}
