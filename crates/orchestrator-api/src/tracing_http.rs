//! The API's place in traces: each request is a server span under the caller's
//! `traceparent` (following OpenTelemetry's HTTP server conventions), and a task
//! accepted by a request joins that request's trace.
//!
//! While spans are not exported no request span is made at all, and a task's trace
//! context comes from the headers alone ([`request_trace`]).

use actix_web::dev::ServiceRequest;
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpMessage as _, HttpRequest};
use std::borrow::Cow;

use orchestrator_telemetry::trace::{
    ExportedSpan, KeyValue, SpanKind, TRACEPARENT, TRACESTATE, TraceContext, spans_exported,
};

/// The caller's trace context, from `traceparent` and `tracestate`.
fn callers_context(headers: &actix_web::http::header::HeaderMap) -> Option<TraceContext> {
    let header = |name| headers.get(name).and_then(|value| value.to_str().ok());
    TraceContext::from_headers(header(TRACEPARENT), header(TRACESTATE))
}

/// The span of one request while spans are exported (a child of the caller's
/// `traceparent`, or the root of a new trace); an empty one otherwise.
pub fn request_span(request: &ServiceRequest) -> ExportedSpan {
    if !spans_exported() {
        return ExportedSpan::none();
    }
    let method = method_name(request.method());
    let span = ExportedSpan::start(
        method.clone(),
        SpanKind::Server,
        callers_context(request.headers()).as_ref(),
        || {
            vec![
                KeyValue::new("http.request.method", method),
                KeyValue::new("url.path", request.path().to_owned()),
            ]
        },
    );
    if let Some(context) = span.context() {
        request.extensions_mut().insert(RequestSpan(context));
    }
    span
}

/// A method's name, without an allocation for the common ones.
fn method_name(method: &Method) -> Cow<'static, str> {
    [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::HEAD,
        Method::OPTIONS,
    ]
    .into_iter()
    .zip(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
    .find(|(known, _)| known == method)
    .map_or_else(
        || Cow::Owned(method.as_str().to_owned()),
        |(_, name)| Cow::Borrowed(name),
    )
}

/// The context of a request's server span, for the handler (see [`request_trace`]).
#[derive(Debug, Clone)]
struct RequestSpan(TraceContext);

/// The answer on the request's span: its route (which renames the span, `POST
/// /api/orchestrate`) and status (a 5xx marks it an error; a 4xx is the client's).
pub fn record_response(
    span: &mut ExportedSpan,
    method: &Method,
    route: Option<&str>,
    status: StatusCode,
) {
    if !span.is_recording() {
        return;
    }
    if let Some(route) = route {
        span.set("http.route", route.to_owned());
        span.rename(format!("{method} {route}"));
    }
    span.set("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.set_error();
    }
}

/// Where a task accepted by this request joins its trace, recorded on the handler's log
/// span (`trace_id`, `span_id`): the request's server span while spans are exported
/// (the handler has no exported span of its own: it would last as long), else a child
/// of the caller's context or the first span of a new trace.
pub fn request_trace(req: &HttpRequest) -> TraceContext {
    let span = tracing::Span::current();
    let trace = server_span(req)
        .unwrap_or_else(|| TraceContext::child_of(callers_context(req.headers()).as_ref()));
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
) -> Option<(ExportedSpan, TraceContext)> {
    let request = asked_by?;
    let accepted = traceparent.and_then(TraceContext::parse)?;
    let span = ExportedSpan::start_linked(
        name,
        SpanKind::Internal,
        Some(&accepted),
        || vec![request.clone()],
        Vec::new,
    );
    let context = span.context()?;
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
