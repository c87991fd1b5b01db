//! The worker's small HTTP port: liveness with the lease state of each owned
//! partition, readiness, and Prometheus metrics. Kept apart from consuming: a slow
//! scrape never holds a partition up.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::http::header;
use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::Context;
use orchestrator_kafka::KafkaConnection;
use orchestrator_processing::TaskProcessor;
use orchestrator_store::DbPool;
use orchestrator_telemetry::metrics::{self, Registry};
use serde::Serialize;

use crate::status::{PartitionReport, WorkerStatus};

/// How long each readiness check may take; below the probes' own timeouts.
const READY_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub struct HttpState {
    pub pool: DbPool,
    pub kafka: KafkaConnection,
    pub processor: TaskProcessor,
    pub status: Arc<WorkerStatus>,
    pub registry: Arc<Registry>,
}

#[derive(Serialize)]
struct HealthBody<'a> {
    status: &'static str,
    worker_id: &'a str,
    topic: &'a str,
    /// Milliseconds since the leases were last renewed; absent before the first time.
    lease_renewed_ms_ago: Option<u64>,
    partitions: Vec<PartitionReport>,
}

#[derive(Serialize)]
struct ReadyBody {
    status: &'static str,
    checks: ReadyChecks,
}

#[derive(Serialize)]
struct ReadyChecks {
    database: &'static str,
    kafka: &'static str,
}

/// A bound server; serving starts when the returned future is polled (spawn it).
pub struct WorkerHttp {
    pub port: u16,
    pub server: Server,
}

impl WorkerHttp {
    pub fn bind(host: &str, port: u16, state: HttpState) -> anyhow::Result<Self> {
        let listener = TcpListener::bind((host, port)).with_context(|| {
            format!(
                "binding the worker's HTTP port {host}:{port} (WORKER_HTTP_HOST, WORKER_HTTP_PORT)"
            )
        })?;
        let port = listener.local_addr()?.port();
        let state = web::Data::new(state);
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .route("/health", web::get().to(health))
                .route("/ready", web::get().to(ready))
                .route("/metrics", web::get().to(metrics_text))
        })
        // Probes and scrapes only: one thread is plenty, and the worker's signals are
        // handled by the worker.
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)?
        .run();
        Ok(Self { port, server })
    }

    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }
}

/// Liveness, and the lease state of each partition this replica owns.
async fn health(state: web::Data<HttpState>) -> HttpResponse {
    HttpResponse::Ok().json(HealthBody {
        status: "ok",
        worker_id: state.status.worker_id(),
        topic: state.status.topic(),
        lease_renewed_ms_ago: state.status.since_renewal_ms(),
        partitions: state.status.partitions(),
    })
}

/// Readiness: PostgreSQL and the broker both answer.
async fn ready(state: web::Data<HttpState>) -> HttpResponse {
    let (database, kafka) = tokio::join!(
        orchestrator_store::health::ping(&state.pool, READY_CHECK_TIMEOUT),
        orchestrator_kafka::health::ping(&state.kafka, READY_CHECK_TIMEOUT),
    );
    if let Err(error) = &database {
        tracing::warn!(error = %error, "Not ready: PostgreSQL unreachable.");
    }
    if let Err(error) = &kafka {
        tracing::warn!(error = %error, "Not ready: Kafka unreachable.");
    }
    let check = |ok: bool| if ok { "ok" } else { "unreachable" };
    let ready = database.is_ok() && kafka.is_ok();
    let body = ReadyBody {
        status: if ready { "ready" } else { "unavailable" },
        checks: ReadyChecks {
            database: check(database.is_ok()),
            kafka: check(kafka.is_ok()),
        },
    };
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable()
            .insert_header((header::RETRY_AFTER, "5"))
            .json(body)
    }
}

async fn metrics_text(state: web::Data<HttpState>) -> HttpResponse {
    state.status.publish_gauges();
    state.processor.publish_breaker_states();
    HttpResponse::Ok()
        .content_type(metrics::CONTENT_TYPE)
        .body(metrics::render(&state.registry))
}
