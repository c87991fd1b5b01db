//! Prometheus metrics: one registry per process, rendered in the OpenMetrics text
//! format by each binary's `GET /metrics`.
//!
//! Each component registers its own metrics into the registry at startup (see
//! `DispatchMetrics`, the API's `HttpMetrics`, the worker's `ConsumerMetrics`, and
//! [`WriteBatchMetrics`] here, which both binaries share); the
//! registry is then frozen behind an `Arc` and only read.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
pub use prometheus_client::registry::Registry;

/// The `Content-Type` of [`render`]'s output (Prometheus and OpenMetrics scrapers both
/// accept it).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric name starts with this.
pub const PREFIX: &str = "orchestrator";

/// The running build, as `orchestrator_build_info{version, revision} 1`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    revision: &'static str,
}

/// The git revision the binaries were built from: `ORCHESTRATOR_REVISION` at build time
/// (the Dockerfile passes it), else `unknown`. Not read from `.git` by a build script:
/// every commit would then rebuild every crate.
pub const REVISION: &str = match option_env!("ORCHESTRATOR_REVISION") {
    Some(revision) => revision,
    None => "unknown",
};

/// A registry whose metric names start with `orchestrator_`, holding
/// `orchestrator_build_info`.
pub fn new_registry() -> Registry {
    let mut registry = Registry::with_prefix(PREFIX);
    registry.register(
        "build",
        "The running build: the version and the git revision it was built from",
        Info::new(BuildLabels {
            version: env!("CARGO_PKG_VERSION"),
            revision: REVISION,
        }),
    );
    registry
}

/// The process's own metrics, unprefixed (`process_cpu_seconds_total`, ...), read at
/// each scrape: one registry for the whole process.
static PROCESS: LazyLock<Registry> = LazyLock::new(|| {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(crate::process::ProcessCollector));
    registry
});

/// The process's metrics and `registry`'s, in the OpenMetrics text format.
pub fn render(registry: &Registry) -> String {
    let mut text = String::new();
    // Writing to a String cannot fail; an encoding error would be a bug in a metric
    // type, and an empty scrape is better than a failed one.
    let encoded = encode_registry(&mut text, &PROCESS)
        .and_then(|()| encode_registry(&mut text, registry))
        .and_then(|()| encode_eof(&mut text));
    if let Err(error) = encoded {
        tracing::error!(%error, "Encoding metrics failed.");
    }
    text
}

/// One metric family holding one value, as a [`Collector`] encodes what it read at the
/// scrape.
///
/// [`Collector`]: prometheus_client::collector::Collector
pub fn encode_one(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric: &impl EncodeMetric,
) -> Result<(), std::fmt::Error> {
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// A count as a gauge's value (saturating: no count here nears 2^63).
pub fn count_value(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

/// A count as a gauge read at the scrape.
pub fn count(n: impl TryInto<i64>) -> ConstGauge {
    ConstGauge::new(count_value(n))
}

/// A latency histogram in seconds, with buckets from 1 ms to about 33 s (doubling),
/// wide enough for a loopback call and a downstream call near its deadline.
pub fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Writes per batch: 1, 2, 4, ... 1,024.
fn batch_size_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 11))
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WriterLabel {
    writer: String,
}

/// Histograms by label set, each made by a constructor such as [`latency_histogram`].
pub type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Group commit's batches by writer (`task_insert` in the API; `task_start`,
/// `outcome_record` and `task_finish` wherever tasks are processed): how many writes
/// each transaction carried and how long it took. Small batches under load mean many
/// commits per task; long ones, a slow database. Cheap to clone; clones update the same
/// series.
#[derive(Debug, Clone)]
pub struct WriteBatchMetrics {
    writes: HistogramFamily<WriterLabel>,
    duration: HistogramFamily<WriterLabel>,
}

impl WriteBatchMetrics {
    /// Creates the metrics and registers them.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            writes: Family::new_with_constructor(batch_size_histogram),
            duration: Family::new_with_constructor(latency_histogram),
        };
        registry.register(
            "db_write_batch_writes",
            "Writes carried by each group-commit transaction, by writer",
            metrics.writes.clone(),
        );
        registry.register(
            "db_write_batch_duration_seconds",
            "Duration of each group-commit transaction (connection, statements, commit), by writer",
            metrics.duration.clone(),
        );
        metrics
    }

    /// A group-commit observer (`orchestrator_store::group_commit::BatchObserver`)
    /// that records each batch here.
    pub fn observer(&self) -> Arc<dyn Fn(&'static str, usize, Duration) + Send + Sync> {
        let metrics = self.clone();
        Arc::new(move |writer, writes, elapsed| {
            metrics.batch(writer, writes, elapsed.as_secs_f64());
        })
    }

    /// One batch of `writes` written by `writer` in `seconds`.
    fn batch(&self, writer: &str, writes: usize, seconds: f64) {
        let label = WriterLabel {
            writer: writer.to_owned(),
        };
        self.writes.get_or_create(&label).observe(writes as f64);
        self.duration.get_or_create(&label).observe(seconds);
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::counter::Counter;

    use super::*;

    #[test]
    fn names_are_prefixed_and_the_text_ends_with_eof() {
        let mut registry = new_registry();
        let counter = Counter::<u64>::default();
        registry.register("things", "Things counted", counter.clone());
        counter.inc();
        latency_histogram().observe(0.5);
        WriteBatchMetrics::register(&mut registry).batch("task_start", 3, 0.002);
        let text = render(&registry);
        assert!(text.contains("orchestrator_things_total 1"), "{text}");
        assert!(
            text.contains(
                r#"orchestrator_db_write_batch_writes_bucket{le="4.0",writer="task_start"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"orchestrator_db_write_batch_writes_bucket{le="2.0",writer="task_start"} 0"#
            ),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert_eq!(text.matches("# EOF").count(), 1, "{text}");
        // The build, and the process's own metrics under their standard names.
        assert!(
            text.contains(&format!(
                "orchestrator_build_info{{version=\"{}\",revision=\"{REVISION}\"}} 1",
                env!("CARGO_PKG_VERSION")
            )),
            "{text}"
        );
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_start_time_seconds",
            "process_open_fds",
        ] {
            assert!(text.contains(&format!("\n{name} ")), "{name}: {text}");
        }
    }
}
