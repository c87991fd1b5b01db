//! What the dispatcher reports to Prometheus: every downstream attempt by service and
//! outcome with its latency, retries, finished service requests and tasks, and each
//! service's breaker state.

use orchestrator_core::Status;
use orchestrator_telemetry::metrics::{HistogramFamily, Registry, latency_histogram};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

use crate::BreakerState;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabel {
    service: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceOutcomeLabels {
    service: String,
    /// `success` or the error kind (`http_status`, `timeout`, `connect`, ...).
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceStatusLabels {
    service: String,
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: String,
}

/// A task's end-to-end time: 5 ms to about 5.5 minutes (doubling), for a task of quick
/// calls as for one that waited in a backlog or retried near its deadline.
fn task_duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 17))
}

/// Cheap to clone; clones update the same series. [`DispatchMetrics::default`] is not
/// registered anywhere (for tests and tools that do not serve metrics).
#[derive(Debug, Clone)]
pub struct DispatchMetrics {
    attempts: Family<ServiceOutcomeLabels, Counter>,
    attempt_duration: HistogramFamily<ServiceOutcomeLabels>,
    retries: Family<ServiceLabel, Counter>,
    service_requests: Family<ServiceStatusLabels, Counter>,
    tasks: Family<StatusLabel, Counter>,
    task_duration: HistogramFamily<StatusLabel>,
    breaker_state: Family<ServiceLabel, Gauge>,
    in_flight: Family<ServiceLabel, Gauge>,
}

impl Default for DispatchMetrics {
    fn default() -> Self {
        Self {
            attempts: Family::default(),
            attempt_duration: Family::new_with_constructor(latency_histogram),
            retries: Family::default(),
            service_requests: Family::default(),
            tasks: Family::default(),
            task_duration: Family::new_with_constructor(task_duration_histogram),
            breaker_state: Family::default(),
            in_flight: Family::default(),
        }
    }
}

impl DispatchMetrics {
    /// Creates the metrics and registers them.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "service_calls",
            "Downstream HTTP attempts, by service and outcome",
            metrics.attempts.clone(),
        );
        registry.register(
            "service_call_duration_seconds",
            "Duration of downstream HTTP attempts, by service and outcome",
            metrics.attempt_duration.clone(),
        );
        registry.register(
            "service_call_retries",
            "Downstream attempts that were retries of an earlier failed attempt",
            metrics.retries.clone(),
        );
        registry.register(
            "service_requests_finished",
            "Service requests finished, by service and final status",
            metrics.service_requests.clone(),
        );
        registry.register(
            "tasks_finished",
            "Tasks this process settled, by final status",
            metrics.tasks.clone(),
        );
        registry.register(
            "task_duration_seconds",
            "Time from a task's submission until this process settled it, by final status",
            metrics.task_duration.clone(),
        );
        registry.register(
            "circuit_breaker_state",
            "Each service's circuit breaker: 0 closed, 1 open, 2 half-open",
            metrics.breaker_state.clone(),
        );
        registry.register(
            "service_calls_in_flight",
            "Downstream HTTP attempts in flight, by service",
            metrics.in_flight.clone(),
        );
        metrics
    }

    /// Counts one attempt to `service` as in flight until the guard is dropped (also
    /// when the call is abandoned half-way, as a cancel does).
    pub(crate) fn in_flight(&self, service: &str) -> InFlight {
        let gauge = self
            .in_flight
            .get_or_create(&ServiceLabel {
                service: service.to_owned(),
            })
            .clone();
        gauge.inc();
        InFlight(gauge)
    }

    pub(crate) fn attempt(&self, service: &str, outcome: &str, seconds: f64, retry: bool) {
        let labels = ServiceOutcomeLabels {
            service: service.to_owned(),
            outcome: outcome.to_owned(),
        };
        self.attempts.get_or_create(&labels).inc();
        self.attempt_duration
            .get_or_create(&labels)
            .observe(seconds);
        if retry {
            self.retries
                .get_or_create(&ServiceLabel {
                    service: service.to_owned(),
                })
                .inc();
        }
    }

    pub fn service_request_finished(&self, service: &str, status: Status) {
        self.service_requests
            .get_or_create(&ServiceStatusLabels {
                service: service.to_owned(),
                status: status.as_str().to_owned(),
            })
            .inc();
    }

    /// A task this process settled `seconds` after it was submitted.
    pub fn task_took(&self, status: Status, seconds: f64) {
        self.task_duration
            .get_or_create(&StatusLabel {
                status: status.as_str().to_owned(),
            })
            .observe(seconds);
    }

    pub fn task_finished(&self, status: Status) {
        self.tasks
            .get_or_create(&StatusLabel {
                status: status.as_str().to_owned(),
            })
            .inc();
    }

    pub(crate) fn breaker_state(&self, service: &str, state: BreakerState) {
        let value = match state {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
        };
        self.breaker_state
            .get_or_create(&ServiceLabel {
                service: service.to_owned(),
            })
            .set(value);
    }
}

/// An attempt in flight; see [`DispatchMetrics::in_flight`].
#[derive(Debug)]
pub(crate) struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}
