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

/// The `outcome` label of an attempt that succeeded.
const SUCCESS: &str = "success";

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
    /// The series of tasks that completed, resolved once as for a service's
    /// ([`DispatchMetrics::series`]).
    completed_tasks: Counter,
    completed_task_duration: Histogram,
}

impl Default for DispatchMetrics {
    fn default() -> Self {
        let tasks: Family<StatusLabel, Counter> = Family::default();
        let task_duration: HistogramFamily<StatusLabel> =
            Family::new_with_constructor(task_duration_histogram);
        let completed = StatusLabel {
            status: Status::Completed.as_str().to_owned(),
        };
        let completed_tasks = tasks.get_or_create(&completed).clone();
        let completed_task_duration = task_duration.get_or_create(&completed).clone();
        Self {
            attempts: Family::default(),
            attempt_duration: Family::new_with_constructor(latency_histogram),
            retries: Family::default(),
            service_requests: Family::default(),
            completed_tasks,
            completed_task_duration,
            tasks,
            task_duration,
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

    /// The series `service`'s attempts update, resolved here once (made at zero if new)
    /// rather than found by their labels on every attempt. Made for every configured
    /// service when the dispatcher is given these metrics, so they read 0 until used
    /// (a rate over them starts at the first attempt, not the second).
    pub(crate) fn series(&self, service: &str) -> ServiceSeries {
        let service_label = || ServiceLabel {
            service: service.to_owned(),
        };
        let succeeded = ServiceOutcomeLabels {
            service: service.to_owned(),
            outcome: SUCCESS.to_owned(),
        };
        ServiceSeries {
            in_flight: self.in_flight.get_or_create(&service_label()).clone(),
            breaker_state: self.breaker_state.get_or_create(&service_label()).clone(),
            retries: self.retries.get_or_create(&service_label()).clone(),
            succeeded: self.attempts.get_or_create(&succeeded).clone(),
            succeeded_duration: self.attempt_duration.get_or_create(&succeeded).clone(),
            completed: self
                .service_requests
                .get_or_create(&ServiceStatusLabels {
                    service: service.to_owned(),
                    status: Status::Completed.as_str().to_owned(),
                })
                .clone(),
        }
    }

    /// Counts one attempt to the service as in flight until the guard is dropped (also
    /// when the call is abandoned half-way, as a cancel does).
    pub(crate) fn in_flight(series: &ServiceSeries) -> InFlight {
        series.in_flight.inc();
        InFlight(series.in_flight.clone())
    }

    /// An attempt that took `seconds`: `failure` is `None` for a success, else its
    /// outcome label (`http_503`, `timeout`, ...), looked up by label as failures are
    /// rare and of many kinds.
    pub(crate) fn attempt(
        &self,
        service: &str,
        series: &ServiceSeries,
        failure: Option<String>,
        seconds: f64,
        retry: bool,
    ) {
        match failure {
            None => {
                series.succeeded.inc();
                series.succeeded_duration.observe(seconds);
            }
            Some(outcome) => {
                let labels = ServiceOutcomeLabels {
                    service: service.to_owned(),
                    outcome,
                };
                self.attempts.get_or_create(&labels).inc();
                self.attempt_duration
                    .get_or_create(&labels)
                    .observe(seconds);
            }
        }
        if retry {
            series.retries.inc();
        }
    }

    /// A service request that ended `status`; `series` is its service's, when known.
    pub(crate) fn service_request_finished(
        &self,
        service: &str,
        series: Option<&ServiceSeries>,
        status: Status,
    ) {
        match series {
            Some(series) if status == Status::Completed => {
                series.completed.inc();
            }
            _ => {
                self.service_requests
                    .get_or_create(&ServiceStatusLabels {
                        service: service.to_owned(),
                        status: status.as_str().to_owned(),
                    })
                    .inc();
            }
        }
    }

    /// A task this process settled `seconds` after it was submitted.
    pub fn task_took(&self, status: Status, seconds: f64) {
        if status == Status::Completed {
            self.completed_task_duration.observe(seconds);
            return;
        }
        self.task_duration
            .get_or_create(&StatusLabel {
                status: status.as_str().to_owned(),
            })
            .observe(seconds);
    }

    pub fn task_finished(&self, status: Status) {
        if status == Status::Completed {
            self.completed_tasks.inc();
            return;
        }
        self.tasks
            .get_or_create(&StatusLabel {
                status: status.as_str().to_owned(),
            })
            .inc();
    }

    pub(crate) fn breaker_state(series: &ServiceSeries, state: BreakerState) {
        let value = match state {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
        };
        series.breaker_state.set(value);
    }
}

/// One service's series that every attempt updates ([`DispatchMetrics::series`]):
/// clones of the families' own, so updating them updates what is scraped. Failed
/// attempts and service requests, rarer and of many kinds, are found by their labels.
#[derive(Debug, Clone)]
pub(crate) struct ServiceSeries {
    in_flight: Gauge,
    breaker_state: Gauge,
    retries: Counter,
    succeeded: Counter,
    succeeded_duration: Histogram,
    completed: Counter,
}

/// An attempt in flight; see [`DispatchMetrics::in_flight`].
#[derive(Debug)]
pub(crate) struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator_telemetry::metrics::{new_registry, render};

    fn line<'a>(text: &'a str, series: &str) -> Option<&'a str> {
        text.lines()
            .find(|line| line.starts_with(series))
            .map(|line| line[series.len()..].trim())
    }

    #[test]
    fn resolved_series_are_the_scraped_ones_and_read_zero_until_used() {
        let mut registry = new_registry();
        let metrics = DispatchMetrics::register(&mut registry);
        let revenue = metrics.series("revenue");

        let before = render(&registry);
        let success = r#"orchestrator_service_calls_total{service="revenue",outcome="success"}"#;
        let completed =
            r#"orchestrator_service_requests_finished_total{service="revenue",status="COMPLETED"}"#;
        let tasks = r#"orchestrator_tasks_finished_total{status="COMPLETED"}"#;
        assert_eq!(line(&before, success), Some("0"), "{before}");
        assert_eq!(line(&before, completed), Some("0"), "{before}");
        assert_eq!(line(&before, tasks), Some("0"), "{before}");

        let in_flight = DispatchMetrics::in_flight(&revenue);
        let gauge = r#"orchestrator_service_calls_in_flight{service="revenue"}"#;
        assert_eq!(line(&render(&registry), gauge), Some("1"));
        drop(in_flight);
        metrics.attempt("revenue", &revenue, Some("http_503".into()), 0.01, false);
        metrics.attempt("revenue", &revenue, None, 0.02, true);
        metrics.service_request_finished("revenue", Some(&revenue), Status::Completed);
        metrics.service_request_finished("revenue", Some(&revenue), Status::Failed);
        metrics.service_request_finished("rebates", None, Status::Completed);
        metrics.task_finished(Status::Completed);
        metrics.task_took(Status::Completed, 0.5);
        DispatchMetrics::breaker_state(&revenue, BreakerState::Open);

        let after = render(&registry);
        for (series, value) in [
            (success, "1"),
            (
                r#"orchestrator_service_calls_total{service="revenue",outcome="http_503"}"#,
                "1",
            ),
            (
                r#"orchestrator_service_call_duration_seconds_count{service="revenue",outcome="success"}"#,
                "1",
            ),
            (
                r#"orchestrator_service_call_retries_total{service="revenue"}"#,
                "1",
            ),
            (completed, "1"),
            (
                r#"orchestrator_service_requests_finished_total{service="revenue",status="FAILED"}"#,
                "1",
            ),
            (
                r#"orchestrator_service_requests_finished_total{service="rebates",status="COMPLETED"}"#,
                "1",
            ),
            (tasks, "1"),
            (
                r#"orchestrator_task_duration_seconds_count{status="COMPLETED"}"#,
                "1",
            ),
            (gauge, "0"),
            (
                r#"orchestrator_circuit_breaker_state{service="revenue"}"#,
                "1",
            ),
        ] {
            assert_eq!(line(&after, series), Some(value), "{series} in:\n{after}");
        }
    }
}
