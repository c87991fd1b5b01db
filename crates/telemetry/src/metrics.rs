//! Prometheus metrics: one registry per process, rendered in the OpenMetrics text
//! format by each binary's `GET /metrics`.
//!
//! Each component registers its own metrics into the registry at startup (see
//! `DispatchMetrics`, the API's `HttpMetrics`, the worker's `ConsumerMetrics`); the
//! registry is then frozen behind an `Arc` and only read.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::histogram::Histogram;
pub use prometheus_client::registry::Registry;

/// The `Content-Type` of [`render`]'s output (Prometheus and OpenMetrics scrapers both
/// accept it).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric name starts with this.
pub const PREFIX: &str = "orchestrator";

/// An empty registry whose metric names start with `orchestrator_`.
pub fn new_registry() -> Registry {
    Registry::with_prefix(PREFIX)
}

/// The registry in the OpenMetrics text format.
pub fn render(registry: &Registry) -> String {
    let mut text = String::new();
    // Writing to a String cannot fail; an encoding error would be a bug in a metric
    // type, and an empty scrape is better than a failed one.
    if let Err(error) = encode(&mut text, registry) {
        tracing::error!(%error, "Encoding metrics failed.");
    }
    text
}

/// A latency histogram in seconds, with buckets from 1 ms to about 33 s (doubling),
/// wide enough for a loopback call and a downstream call near its deadline.
pub fn latency_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.001, 2.0, 16,
    ))
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
        let text = render(&registry);
        assert!(text.contains("orchestrator_things_total 1"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
