//! W3C Trace Context for tasks: every task belongs to one trace, whether or not spans
//! are exported. The API takes the caller's `traceparent` (or starts a trace), the task
//! row keeps the context of the request that accepted it, the Kafka record carries it
//! in its headers, and each downstream call sends a `traceparent` of its own, a child
//! of the task's.
//!
//! Parsing and formatting are opentelemetry's ([`TraceContextPropagator`]), ids come
//! from its [`RandomIdGenerator`]; this module adds the strictness the propagator leaves
//! out (exact field lengths) and a small, cheap type to pass around.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanContext, TraceContextExt, TraceFlags, TraceState};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};

/// The W3C header carrying the trace id, the parent span id and the flags.
pub const TRACEPARENT: &str = "traceparent";
/// The W3C header carrying vendors' trace state, passed on as received.
pub const TRACESTATE: &str = "tracestate";

/// The target of spans that exist only to be exported (a request's server span, an
/// attempt's client span, a publish, a batch write): they are made only while spans are
/// exported, and log lines never show them, so that exporting changes no log line and
/// costs no formatting of fields nobody reads. Spans that also give log lines their
/// context (a task's run, a service request) keep their module's target.
pub const EXPORT_ONLY: &str = "orchestrator::trace";

/// Whether spans are exported over OTLP (set once, by [`crate::init`]).
pub fn spans_exported() -> bool {
    crate::export::exporting()
}

/// Renames an exported span once it has started (`otel.name` names it only before):
/// a server span learns its route after routing. Nothing while spans are not exported.
pub fn rename(span: &tracing::Span, name: String) {
    if crate::export::exporting() && !span.is_none() {
        use tracing_opentelemetry::OpenTelemetrySpanExt as _;
        span.context().span().update_name(name);
    }
}

/// Links `span` to `to`: a span that serves many traces at once (a batch write) names
/// each span it served. Nothing while spans are not exported; call before `span`
/// starts.
pub fn link(span: &tracing::Span, to: &TraceContext) {
    if crate::export::exporting() && !span.is_none() {
        use tracing_opentelemetry::OpenTelemetrySpanExt as _;
        span.add_link(to.0.clone());
    }
}

/// The position of one span in a trace: its trace id, its span id, whether the trace is
/// sampled, and the caller's trace state.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceContext(SpanContext);

impl TraceContext {
    /// The context a caller sent: `None` when `traceparent` is absent or malformed (W3C
    /// says to start a new trace then). A malformed `tracestate` is dropped alone.
    pub fn from_headers(traceparent: Option<&str>, tracestate: Option<&str>) -> Option<Self> {
        let traceparent = traceparent?.trim();
        if !well_formed(traceparent) {
            return None;
        }
        let mut carrier = HashMap::with_capacity(2);
        carrier.insert(TRACEPARENT.to_owned(), traceparent.to_owned());
        if let Some(tracestate) = tracestate {
            carrier.insert(TRACESTATE.to_owned(), tracestate.to_owned());
        }
        let context = TraceContextPropagator::new().extract(&carrier);
        let span = context.span();
        let span_context = span.span_context();
        span_context.is_valid().then(|| Self(span_context.clone()))
    }

    /// The trace id of a well-formed `traceparent` value, without parsing the rest.
    pub fn trace_id_of(traceparent: &str) -> Option<&str> {
        well_formed(traceparent)
            .then(|| traceparent.get(3..35))
            .flatten()
            .filter(|trace_id| trace_id.bytes().any(|b| b != b'0'))
    }

    /// A `traceparent` value as stored or carried by this service.
    pub fn parse(traceparent: &str) -> Option<Self> {
        Self::from_headers(Some(traceparent), None)
    }

    /// A new trace, for a request that came without one. `sampled` says whether its
    /// spans are recorded (only when they are exported).
    pub fn new_root(sampled: bool) -> Self {
        let ids = RandomIdGenerator::default();
        let flags = if sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        Self(SpanContext::new(
            ids.new_trace_id(),
            ids.new_span_id(),
            flags,
            false,
            TraceState::default(),
        ))
    }

    /// A span of the same trace under this one: same trace id, flags and state, a new
    /// span id.
    fn child(&self) -> Self {
        Self(SpanContext::new(
            self.0.trace_id(),
            RandomIdGenerator::default().new_span_id(),
            self.0.trace_flags(),
            false,
            self.0.trace_state().clone(),
        ))
    }

    /// The caller's context if it sent a valid one, else a new trace.
    fn continue_or_start(parent: Option<Self>, sampled: bool) -> Self {
        parent.map_or_else(|| Self::new_root(sampled), |parent| parent.child())
    }

    /// The context of `span`, a span under `parent` (or under `span`'s own parent in
    /// the tracing tree when `parent` is `None`).
    ///
    /// While spans are exported ([`crate::init`] found an OTLP endpoint) the span is
    /// the SDK's: `parent` becomes its parent (call this before `span` has a child or
    /// has been asked for its context) and the ids are those the SDK gave it, sampled
    /// as its sampler decided. Otherwise nothing is recorded and the ids are made here:
    /// a child of `parent`, or the first span of an unsampled trace.
    pub fn of_span(span: &tracing::Span, parent: Option<&Self>) -> Self {
        if crate::export::exporting() {
            use tracing_opentelemetry::OpenTelemetrySpanExt as _;
            if let Some(parent) = parent {
                let remote =
                    opentelemetry::Context::new().with_remote_span_context(parent.0.clone());
                // Fails only when the span is disabled or already started: its own
                // (or its tracing parent's) context stands then.
                let _ = span.set_parent(remote);
            }
            let context = span.context();
            let own = context.span().span_context().clone();
            if own.is_valid() {
                return Self(own);
            }
        }
        Self::continue_or_start(parent.cloned(), false)
    }

    /// The `traceparent` header value: `00-<trace id>-<span id>-<flags>`.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            self.0.trace_id(),
            self.0.span_id(),
            self.0.trace_flags().to_u8() & TraceFlags::SAMPLED.to_u8()
        )
    }

    /// The `tracestate` header value, if the caller sent any state.
    pub fn tracestate(&self) -> Option<String> {
        Some(self.0.trace_state().header()).filter(|state| !state.is_empty())
    }

    /// The context of the current span while spans are exported (for a link to it);
    /// `None` otherwise, or outside any exported span.
    pub fn current() -> Option<Self> {
        if !crate::export::exporting() {
            return None;
        }
        use tracing_opentelemetry::OpenTelemetrySpanExt as _;
        let context = tracing::Span::current().context();
        let own = context.span().span_context().clone();
        own.is_valid().then_some(Self(own))
    }

    /// The trace id, 32 lowercase hex digits.
    pub fn trace_id(&self) -> String {
        self.0.trace_id().to_string()
    }

    /// The span id, 16 lowercase hex digits.
    pub fn span_id(&self) -> String {
        self.0.span_id().to_string()
    }

    pub fn is_sampled(&self) -> bool {
        self.0.is_sampled()
    }
}

/// `traceparent`'s shape, which the propagator checks only in part (it accepts short
/// ids): version `00` has exactly `2-32-16-2` lowercase hex digits; a later version
/// starts with those fields and may add more after a `-` (W3C's forward compatibility).
fn well_formed(value: &str) -> bool {
    let hex = |field: &str, len: usize| {
        field.len() == len
            && field
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let mut fields = value.splitn(5, '-');
    let (Some(version), Some(trace), Some(span), Some(flags)) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return false;
    };
    let rest = fields.next();
    hex(version, 2)
        && version != "ff"
        && (version != "00" || rest.is_none())
        && hex(trace, 32)
        && hex(span, 16)
        && hex(flags, 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    const W3C_EXAMPLE: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn a_callers_context_is_continued_with_a_new_span() {
        let parent = TraceContext::from_headers(Some(W3C_EXAMPLE), Some("congo=t61rcWkgMzE"))
            .expect("valid");
        assert_eq!(parent.trace_id(), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(parent.span_id(), "b7ad6b7169203331");
        assert!(parent.is_sampled());
        assert_eq!(parent.traceparent(), W3C_EXAMPLE);
        assert_eq!(
            TraceContext::trace_id_of(W3C_EXAMPLE),
            Some("0af7651916cd43dd8448eb211c80319c")
        );

        let child = TraceContext::continue_or_start(Some(parent.clone()), false);
        assert_eq!(child.trace_id(), parent.trace_id());
        assert_ne!(child.span_id(), parent.span_id());
        assert!(child.is_sampled(), "the caller's sampling decision holds");
        assert_eq!(child.tracestate().as_deref(), Some("congo=t61rcWkgMzE"));
        let again = TraceContext::parse(&child.traceparent()).expect("round trip");
        assert_eq!(
            (again.trace_id(), again.span_id()),
            (child.trace_id(), child.span_id())
        );
    }

    #[test]
    fn malformed_contexts_start_a_new_trace() {
        for bad in [
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "00-0af7651916cd43dd8448eb211c8031-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333-01",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            "xx-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ] {
            assert_eq!(TraceContext::from_headers(Some(bad), None), None, "{bad}");
            if !bad.starts_with("00-0af7651916cd43dd8448eb211c80319c-0000") {
                assert_eq!(TraceContext::trace_id_of(bad), None, "{bad}");
            }
        }
        assert_eq!(TraceContext::from_headers(None, Some("a=b")), None);
        let started = TraceContext::continue_or_start(None, false);
        assert_eq!(started.trace_id().len(), 32);
        assert!(!started.is_sampled());
        assert!(started.traceparent().ends_with("-00"));
    }

    #[test]
    fn a_later_version_is_read_by_its_first_fields() {
        let later = TraceContext::parse(
            "cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-what-comes-next",
        );
        assert_eq!(
            later.map(|context| context.traceparent()).as_deref(),
            Some(W3C_EXAMPLE),
        );
    }
}
