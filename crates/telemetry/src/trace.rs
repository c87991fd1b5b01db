//! W3C Trace Context for tasks: every task belongs to one trace, whether or not spans
//! are exported. The API takes the caller's `traceparent` (or starts a trace), the task
//! row keeps the context of the request that accepted it, the Kafka record carries it
//! in its headers, and each downstream call sends a `traceparent` of its own, a child
//! of the task's.
//!
//! The header's format is W3C's, checked strictly here (exact field lengths, lowercase
//! hex), its ids and state are opentelemetry's types, new ids come from its
//! [`RandomIdGenerator`]; [`TraceContext`] is a small, cheap type to pass around.

use std::borrow::Cow;
use std::str::FromStr;

pub use opentelemetry::trace::SpanKind;
use opentelemetry::trace::{
    Link, Span as _, SpanContext, SpanId, Status, TraceContextExt, TraceFlags, TraceId, TraceState,
    Tracer as _,
};
pub use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};

/// The W3C header carrying the trace id, the parent span id and the flags.
pub const TRACEPARENT: &str = "traceparent";
/// The W3C header carrying vendors' trace state, passed on as received.
pub const TRACESTATE: &str = "tracestate";

/// Whether spans are exported over OTLP (set once, by [`crate::init`]).
pub fn spans_exported() -> bool {
    crate::export::exporting()
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
        // Read here rather than through the propagator, which wants a map of headers
        // and a context per call: this runs for every task in the API and the workers.
        let mut fields = traceparent.split('-').skip(1);
        let trace_id = TraceId::from_hex(fields.next()?).ok()?;
        let span_id = SpanId::from_hex(fields.next()?).ok()?;
        let flags = u8::from_str_radix(fields.next()?, 16).ok()?;
        let state = tracestate
            .and_then(|state| TraceState::from_str(state).ok())
            .unwrap_or_default();
        // Flags other than `sampled` are accepted and cleared, as W3C asks.
        let flags = TraceFlags::new(flags) & TraceFlags::SAMPLED;
        let context = SpanContext::new(trace_id, span_id, flags, true, state);
        context.is_valid().then_some(Self(context))
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

    /// A span under `parent` (same trace, a new span id), or the first span of a new
    /// unsampled trace without one: the context of a span that is not exported.
    pub fn child_of(parent: Option<&Self>) -> Self {
        parent.map_or_else(|| Self::new_root(false), Self::child)
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

    /// The context of the exported span the current task runs in ([`ExportedSpan::scope`]),
    /// for a link to it; `None` while spans are not exported or outside such a span.
    pub fn current() -> Option<Self> {
        if !crate::export::exporting() {
            return None;
        }
        CURRENT.try_with(Clone::clone).ok()
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

tokio::task_local! {
    /// The context of the exported span a task runs in, for the writes it asks for
    /// ([`TraceContext::current`]).
    static CURRENT: TraceContext;
}

/// A span of a task's trace, made with OpenTelemetry's SDK while spans are exported and
/// empty (nothing made, nothing recorded, no cost but a branch) otherwise.
///
/// Spans are made with the SDK's own API rather than as `tracing` spans bridged to it
/// (tracing-opentelemetry): the bridge turned every field of a span into an attribute
/// and kept a builder, a lock and a context per span, which cost about as much again
/// as the span itself (ARCHITECTURE.md, *Decisions*). Log lines keep their own
/// `tracing` spans, which carry the `trace_id` and `span_id` of these.
///
/// The span starts when made and ends when [`ExportedSpan::end`]ed or dropped.
#[derive(Debug, Default)]
pub struct ExportedSpan(Option<opentelemetry_sdk::trace::Span>);

impl ExportedSpan {
    /// No span.
    pub fn none() -> Self {
        Self(None)
    }

    /// A span named `name` of `kind` under `parent` (the root of a new trace without
    /// one), with the attributes `attributes` makes (called only while spans are
    /// exported, so a disabled span costs no formatting).
    pub fn start(
        name: impl Into<Cow<'static, str>>,
        kind: SpanKind,
        parent: Option<&TraceContext>,
        attributes: impl FnOnce() -> Vec<KeyValue>,
    ) -> Self {
        Self::start_linked(name, kind, parent, Vec::new, attributes)
    }

    /// As [`ExportedSpan::start`], linked to the spans `links` names (a span that serves
    /// many traces at once, a batch write; or an action asked for from another trace).
    pub fn start_linked(
        name: impl Into<Cow<'static, str>>,
        kind: SpanKind,
        parent: Option<&TraceContext>,
        links: impl FnOnce() -> Vec<TraceContext>,
        attributes: impl FnOnce() -> Vec<KeyValue>,
    ) -> Self {
        let Some(tracer) = crate::export::tracer() else {
            return Self(None);
        };
        let parent = parent.map_or_else(opentelemetry::Context::new, |parent| {
            opentelemetry::Context::new().with_remote_span_context(parent.0.clone())
        });
        let links: Vec<Link> = links()
            .into_iter()
            .map(|to| Link::with_context(to.0))
            .collect();
        let mut builder = tracer
            .span_builder(name)
            .with_kind(kind)
            .with_attributes(attributes());
        if !links.is_empty() {
            builder = builder.with_links(links);
        }
        Self(Some(tracer.build_with_context(builder, &parent)))
    }

    /// Its context; `None` while spans are not exported.
    pub fn context(&self) -> Option<TraceContext> {
        let span = self.0.as_ref()?;
        let context = span.span_context();
        context.is_valid().then(|| TraceContext(context.clone()))
    }

    /// Its context, or while spans are not exported one made here: a child of
    /// `parent`, or the first span of a new unsampled trace.
    pub fn context_or_child_of(&self, parent: Option<&TraceContext>) -> TraceContext {
        self.context()
            .unwrap_or_else(|| TraceContext::child_of(parent))
    }

    /// Whether it is recorded (exported and sampled): worth an attribute.
    pub fn is_recording(&self) -> bool {
        self.0.as_ref().is_some_and(|span| span.is_recording())
    }

    /// Sets an attribute, if the span is recorded.
    pub fn set(&mut self, key: &'static str, value: impl Into<Value>) {
        if let Some(span) = self.0.as_mut() {
            span.set_attribute(KeyValue::new(key, value));
        }
    }

    /// Marks it failed (OpenTelemetry's `Error` status).
    pub fn set_error(&mut self) {
        if let Some(span) = self.0.as_mut() {
            span.set_status(Status::error(""));
        }
    }

    /// Renames it (a server span learns its route after routing).
    pub fn rename(&mut self, name: String) {
        if let Some(span) = self.0.as_mut() {
            span.update_name(name);
        }
    }

    /// Ends it now (dropping it does too).
    pub fn end(self) {
        drop(self);
    }

    /// Runs `future` as this span's work: writes it asks for are linked to the span
    /// ([`TraceContext::current`]). Just `future` while spans are not exported.
    pub async fn scope<F: std::future::Future>(&self, future: F) -> F::Output {
        match self.context() {
            Some(context) => CURRENT.scope(context, future).await,
            None => future.await,
        }
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

        let child = TraceContext::child_of(Some(&parent));
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
        let started = TraceContext::child_of(None);
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
