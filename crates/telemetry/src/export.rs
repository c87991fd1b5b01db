//! Exporting spans over OTLP, when a collector is configured by OpenTelemetry's standard
//! environment variables (`OTEL_EXPORTER_OTLP_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `..._PROTOCOL`, `..._HEADERS`,
//! `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER[_ARG]`,
//! `OTEL_BSP_*`), which opentelemetry's SDK and OTLP exporter read themselves.
//!
//! Without an endpoint nothing is installed and no span is made
//! ([`crate::trace::ExportedSpan`] is then empty), so tracing costs what it did before.
//! With one, spans end in a bounded queue that a background thread of the SDK exports
//! in batches: a slow or unreachable collector fills the queue and spans are dropped
//! (and counted, [`ExportMetrics`]), never waited for by the code that ended them.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfig, BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider, Span, SpanData,
    SpanExporter, SpanProcessor,
};
use prometheus_client::metrics::counter::ConstCounter;

/// The tracer of [`crate::trace::ExportedSpan`]s, set once spans are exported.
static TRACER: OnceLock<opentelemetry_sdk::trace::Tracer> = OnceLock::new();
/// Spans ended, exported, and lost (in a failed export or a full queue).
static ENDED: AtomicU64 = AtomicU64::new(0);
static EXPORTED: AtomicU64 = AtomicU64::new(0);
static FAILED: AtomicU64 = AtomicU64::new(0);

pub(crate) fn exporting() -> bool {
    TRACER.get().is_some()
}

/// The tracer while spans are exported.
pub(crate) fn tracer() -> Option<&'static opentelemetry_sdk::trace::Tracer> {
    TRACER.get()
}

/// Why spans cannot be exported as configured.
#[derive(Debug, thiserror::Error)]
#[error("OpenTelemetry trace export (OTEL_EXPORTER_OTLP_*): {0}")]
pub struct ExportError(#[from] opentelemetry_otlp::ExporterBuildError);

/// Whether the environment asks for spans to be exported: an OTLP endpoint is set, and
/// neither `OTEL_SDK_DISABLED=true` nor an `OTEL_TRACES_EXPORTER` other than `otlp`
/// says otherwise.
pub(crate) fn requested(env: impl Fn(&str) -> Option<String>) -> bool {
    let set = |name: &str| env(name).is_some_and(|value| !value.trim().is_empty());
    let disabled = env("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let other_exporter = env("OTEL_TRACES_EXPORTER")
        .is_some_and(|v| !v.trim().is_empty() && !v.trim().eq_ignore_ascii_case("otlp"));
    !disabled
        && !other_exporter
        && (set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") || set("OTEL_EXPORTER_OTLP_ENDPOINT"))
}

/// The SDK's tracer provider, when spans are exported. Flushes what is queued when
/// shut down.
#[derive(Debug)]
pub(crate) struct Export {
    pub(crate) provider: SdkTracerProvider,
}

impl Export {
    /// Starts exporting as the environment says; `service` names the process when
    /// neither `OTEL_SERVICE_NAME` nor `OTEL_RESOURCE_ATTRIBUTES` does. Must run inside
    /// the Tokio runtime (the gRPC exporter's channel lives on it).
    pub(crate) fn start(service: &'static str) -> Result<Self, ExportError> {
        let exporter = opentelemetry_otlp::SpanExporter::builder().build()?;
        let processor = BatchSpanProcessor::builder(Counting(exporter))
            .with_batch_config(batch_config(|name| std::env::var(name).ok()))
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(Counted(processor))
            .with_resource(resource(service))
            .build();
        // A second start in one process (tests start several apps) keeps the first
        // tracer, as the subscriber keeps the first layer.
        let _ = TRACER.set(provider.tracer("orchestrator"));
        Ok(Self { provider })
    }

    /// Exports what is still queued, waiting at most `timeout`, and says what became of
    /// the spans this process made: a full queue drops them without a word otherwise.
    pub(crate) fn shutdown(&self, timeout: Duration) {
        if let Err(error) = self.provider.shutdown_with_timeout(timeout) {
            tracing::warn!(%error, "Could not export the last spans.");
        }
        let ended = ENDED.load(Ordering::Relaxed);
        let exported = EXPORTED.load(Ordering::Relaxed);
        let failed = FAILED.load(Ordering::Relaxed);
        let dropped = ended.saturating_sub(exported + failed);
        if dropped > 0 {
            tracing::warn!(
                ended,
                exported,
                failed,
                dropped,
                "Spans were dropped: the export queue was full (OTEL_BSP_MAX_QUEUE_SIZE), or the stop's deadline passed before they were exported."
            );
        } else {
            tracing::info!(ended, exported, failed, dropped, "Spans exported.");
        }
    }
}

/// The export queue's size in spans unless `OTEL_BSP_MAX_QUEUE_SIZE` says otherwise.
/// OpenTelemetry's default (2,048) is a third of a second of this service's spans at
/// full speed (about 13 spans per task, 1,500 tasks/s on two cores): a collector that
/// pauses for longer, or an export thread that waits for a core, drops spans. The queue
/// is a ring of slots allocated whole, so it is not larger still: 8,192 spans are about
/// 3 MB, and a ring that big already leaves the processor's caches.
pub(crate) const QUEUE_SIZE: usize = 8_192;
/// The spans of one export unless `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` says otherwise.
/// OpenTelemetry's default (512) makes an HTTP request, and wakes the export thread and
/// the HTTP client's, for every 40 tasks or so; a quarter of the export thread's time
/// went to that (ARCHITECTURE.md, *Decisions*). 2,048 spans are about 200 KB of
/// protobuf, well under collectors' 4 MiB request limit.
pub(crate) const EXPORT_BATCH_SIZE: usize = 2_048;

/// The batch processor's settings: OpenTelemetry's `OTEL_BSP_*` variables where set (the
/// SDK reads them), this service's own queue and batch sizes where not.
fn batch_config(env: impl Fn(&str) -> Option<String>) -> BatchConfig {
    let (queue, batch) = own_sizes(env);
    let mut builder = BatchConfigBuilder::default();
    if let Some(queue) = queue {
        builder = builder.with_max_queue_size(queue);
    }
    if let Some(batch) = batch {
        builder = builder.with_max_export_batch_size(batch);
    }
    builder.build()
}

/// The queue and batch sizes this service sets itself: those the environment leaves
/// unset (a value the SDK cannot read as a number counts as unset, as the SDK ignores it).
fn own_sizes(env: impl Fn(&str) -> Option<String>) -> (Option<usize>, Option<usize>) {
    let unset = |name: &str| {
        env(name)
            .and_then(|value| value.parse::<usize>().ok())
            .is_none()
    };
    (
        unset("OTEL_BSP_MAX_QUEUE_SIZE").then_some(QUEUE_SIZE),
        unset("OTEL_BSP_MAX_EXPORT_BATCH_SIZE").then_some(EXPORT_BATCH_SIZE),
    )
}

/// The process's resource: what the environment says, with our binary's name as the
/// service name unless the environment names one, and our version.
fn resource(service: &'static str) -> Resource {
    let detected = Resource::builder().build();
    let named = detected
        .get(&opentelemetry::Key::from_static_str("service.name"))
        .is_some_and(|name| !name.as_str().starts_with("unknown_service"));
    let builder = Resource::builder().with_attribute(opentelemetry::KeyValue::new(
        "service.version",
        env!("CARGO_PKG_VERSION"),
    ));
    if named {
        builder.build()
    } else {
        builder.with_service_name(service).build()
    }
}

/// Counts spans as they end, before the batch processor queues (or drops) them.
#[derive(Debug)]
struct Counted<P>(P);

impl<P: SpanProcessor> SpanProcessor for Counted<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.0.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        ENDED.fetch_add(1, Ordering::Relaxed);
        self.0.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.0.set_resource(resource);
    }
}

/// Counts the spans of each export by its result.
#[derive(Debug)]
struct Counting<E>(E);

impl<E: SpanExporter> SpanExporter for Counting<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = u64::try_from(batch.len()).unwrap_or(u64::MAX);
        let result = self.0.export(batch).await;
        match &result {
            Ok(()) => EXPORTED.fetch_add(spans, Ordering::Relaxed),
            Err(_) => FAILED.fetch_add(spans, Ordering::Relaxed),
        };
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.0.set_resource(resource);
    }
}

/// The export's counters as metrics: `trace_spans_ended_total`,
/// `trace_spans_exported_total`, `trace_spans_failed_total` (their export failed).
/// Spans dropped by a full queue are the ones ended and neither exported, failed nor
/// still queued.
#[derive(Debug)]
pub struct ExportMetrics;

impl ExportMetrics {
    pub fn register(registry: &mut crate::metrics::Registry) {
        registry.register_collector(Box::new(ExportCollector));
    }
}

#[derive(Debug)]
struct ExportCollector;

impl prometheus_client::collector::Collector for ExportCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        for (name, help, counter) in [
            (
                "trace_spans_ended",
                "Spans ended (0 while spans are not exported)",
                &ENDED,
            ),
            (
                "trace_spans_exported",
                "Spans the collector accepted",
                &EXPORTED,
            ),
            (
                "trace_spans_failed",
                "Spans lost in an export that failed (collector unreachable, refused, too slow)",
                &FAILED,
            ),
        ] {
            let value = ConstCounter::new(counter.load(Ordering::Relaxed));
            crate::metrics::encode_one(&mut encoder, name, help, &value)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        }
    }

    #[test]
    fn spans_are_exported_only_when_an_endpoint_is_set_and_nothing_says_no() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318");
        let traces = (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://127.0.0.1:4318/v1/traces",
        );
        assert!(!requested(env(&[])));
        assert!(!requested(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])));
        assert!(requested(env(&[endpoint])));
        assert!(requested(env(&[traces])));
        assert!(requested(env(&[
            endpoint,
            ("OTEL_TRACES_EXPORTER", "otlp")
        ])));
        assert!(!requested(env(&[
            endpoint,
            ("OTEL_TRACES_EXPORTER", "none")
        ])));
        assert!(!requested(env(&[endpoint, ("OTEL_SDK_DISABLED", "TRUE")])));
        assert!(requested(env(&[endpoint, ("OTEL_SDK_DISABLED", "false")])));
    }

    #[test]
    fn the_queue_and_batch_sizes_are_ours_only_where_the_environment_is_silent() {
        assert_eq!(
            own_sizes(env(&[])),
            (Some(QUEUE_SIZE), Some(EXPORT_BATCH_SIZE))
        );
        assert_eq!(
            own_sizes(env(&[
                ("OTEL_BSP_MAX_QUEUE_SIZE", "100000"),
                ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "512"),
            ])),
            (None, None)
        );
        assert_eq!(
            own_sizes(env(&[("OTEL_BSP_MAX_QUEUE_SIZE", "2048")])),
            (None, Some(EXPORT_BATCH_SIZE))
        );
        // The SDK ignores what it cannot read as a number; so do these defaults.
        assert_eq!(
            own_sizes(env(&[
                ("OTEL_BSP_MAX_QUEUE_SIZE", " 2048"),
                ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "lots"),
            ])),
            (Some(QUEUE_SIZE), Some(EXPORT_BATCH_SIZE))
        );
    }
}
