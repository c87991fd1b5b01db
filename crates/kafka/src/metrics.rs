//! The producer's metrics: how long the broker takes to acknowledge a task's record, and
//! how many publishes failed.

use orchestrator_telemetry::metrics::{Registry, latency_histogram};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;

/// Cheap to clone; clones update the same series. [`ProduceMetrics::default`] is
/// registered nowhere.
#[derive(Debug, Clone)]
pub struct ProduceMetrics {
    duration: Histogram,
    errors: Counter,
}

impl Default for ProduceMetrics {
    fn default() -> Self {
        Self {
            duration: latency_histogram(),
            errors: Counter::default(),
        }
    }
}

impl ProduceMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "kafka_produce_duration_seconds",
            "Time from handing a task's record to the producer until the broker acknowledged it or the publish failed",
            metrics.duration.clone(),
        );
        registry.register(
            "kafka_produce_errors",
            "Task records the broker did not acknowledge (the task stays in the outbox and is published again)",
            metrics.errors.clone(),
        );
        metrics
    }

    pub(crate) fn produced(&self, seconds: f64, ok: bool) {
        self.duration.observe(seconds);
        if !ok {
            self.errors.inc();
        }
    }
}
