//! HTTP metrics of the API: requests by route, method and status, and their latency.
//! The route is the matched pattern (`/api/tasks/{task_id}`), never the raw path, so
//! the number of series stays bounded whatever clients send.

use std::time::Duration;

use actix_web::http::{Method, StatusCode};
use orchestrator_telemetry::metrics::{HistogramFamily, Registry, latency_histogram};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

/// The route label of requests that matched no route.
const UNMATCHED: &str = "unmatched";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

/// Cheap to clone; clones update the same series.
#[derive(Debug, Clone)]
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    duration: HistogramFamily<RouteLabels>,
}

impl HttpMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
        };
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route and status",
            metrics.requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer HTTP requests, by method and route",
            metrics.duration.clone(),
        );
        metrics
    }

    pub fn observe(
        &self,
        method: &Method,
        route: Option<&str>,
        status: StatusCode,
        elapsed: Duration,
    ) {
        let method = method.as_str().to_owned();
        let route = route.unwrap_or(UNMATCHED).to_owned();
        self.requests
            .get_or_create(&RequestLabels {
                method: method.clone(),
                route: route.clone(),
                status: status.as_u16(),
            })
            .inc();
        self.duration
            .get_or_create(&RouteLabels { method, route })
            .observe(elapsed.as_secs_f64());
    }
}
