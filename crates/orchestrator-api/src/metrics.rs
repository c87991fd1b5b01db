//! Metrics of the API: HTTP requests by route, method and status, and their latency
//! (the route is the matched pattern, `/api/tasks/{task_id}`, never the raw path, so
//! the number of series stays bounded whatever clients send); and what the data looks
//! like ([`DataMetrics`]).

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use actix_web::http::{Method, StatusCode};
use orchestrator_core::Status;
use orchestrator_store::{DbPool, StoreError, stats};
use orchestrator_telemetry::metrics::{HistogramFamily, Registry, latency_histogram};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Unit;
use tokio_util::sync::CancellationToken;

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

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TableLabels {
    table: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

/// What the data looks like (`orchestrator_store::stats`): read by one task per
/// process on a timer ([`DataMetrics::start`]), never at a scrape, so that however many
/// scrapers there are, a replica costs the database a few catalogue and index reads per
/// interval, and a slow database never slows a scrape down.
#[derive(Debug, Clone)]
pub struct DataMetrics {
    table_bytes: Family<TableLabels, Gauge>,
    index_bytes: Family<TableLabels, Gauge>,
    tasks: Family<StatusLabels, Gauge>,
    oldest_age: Family<StatusLabels, Gauge<f64, AtomicU64>>,
    outbox: Gauge,
}

impl DataMetrics {
    const READ_TIMEOUT: Duration = Duration::from_secs(2);

    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            table_bytes: Family::default(),
            index_bytes: Family::default(),
            tasks: Family::default(),
            oldest_age: Family::default(),
            outbox: Gauge::default(),
        };
        registry.register_with_unit(
            "table_size",
            "Size of each table of the schema on disk, with its TOAST, without indexes",
            Unit::Bytes,
            metrics.table_bytes.clone(),
        );
        registry.register_with_unit(
            "table_index_size",
            "Size of each table's indexes on disk",
            Unit::Bytes,
            metrics.index_bytes.clone(),
        );
        registry.register(
            "tasks",
            "Tasks stored, by status, every tenant together",
            metrics.tasks.clone(),
        );
        registry.register_with_unit(
            "oldest_unfinished_task_age",
            "Time since the oldest PENDING and the oldest IN_PROGRESS task was submitted (0: none)",
            Unit::Seconds,
            metrics.oldest_age.clone(),
        );
        registry.register(
            "outbox_tasks",
            "Tasks accepted in Kafka mode and not yet published to Kafka (counted up to 1,000,000)",
            metrics.outbox.clone(),
        );
        metrics
    }

    /// Reads the figures at once and then every `interval` until `stop`. A read that
    /// takes longer than the interval delays the next one rather than piling up.
    pub fn start(self, pool: DbPool, interval: Duration, stop: CancellationToken) {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = tick.tick() => self.refresh(&pool).await,
                }
            }
        });
    }

    /// Reads the figures again; a failed read keeps the last figures (and is logged).
    async fn refresh(&self, pool: &DbPool) {
        let read = async {
            let mut conn = pool.get().await?;
            let sizes = stats::table_sizes(&mut conn).await?;
            let totals = stats::tasks_per_status(&mut conn).await?;
            let oldest = stats::oldest_unfinished(&mut conn).await?;
            let outbox = stats::outbox_backlog(&mut conn).await?;
            Ok::<_, StoreError>((sizes, totals, oldest, outbox))
        };
        match tokio::time::timeout(Self::READ_TIMEOUT, read).await {
            Ok(Ok((sizes, totals, oldest, outbox))) => {
                self.outbox.set(outbox);
                for size in sizes {
                    let labels = TableLabels { table: size.table };
                    self.table_bytes
                        .get_or_create(&labels)
                        .set(size.table_bytes);
                    self.index_bytes
                        .get_or_create(&labels)
                        .set(size.index_bytes);
                }
                for status in Status::ALL {
                    let count = totals
                        .iter()
                        .find(|total| total.status == status.as_str())
                        .map_or(0, |total| total.tasks);
                    self.tasks
                        .get_or_create(&StatusLabels {
                            status: status.as_str().to_owned(),
                        })
                        .set(count);
                }
                for (status, since) in [
                    (Status::Pending, oldest.pending),
                    (Status::InProgress, oldest.in_progress),
                ] {
                    let age = since.map_or(0.0, |since| {
                        (oldest.now - since)
                            .to_std()
                            .map_or(0.0, |age| age.as_secs_f64())
                    });
                    self.oldest_age
                        .get_or_create(&StatusLabels {
                            status: status.as_str().to_owned(),
                        })
                        .set(age);
                }
            }
            Ok(Err(error)) => tracing::warn!(%error, "Could not read the data metrics."),
            Err(_) => tracing::warn!("Reading the data metrics timed out."),
        }
    }
}
