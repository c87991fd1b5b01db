//! `orchestrator-worker`: consumes accepted tasks from Kafka and runs them against the
//! downstream services.
//!
//! Replicas share the topic's partitions through leases in PostgreSQL (rskafka has no
//! consumer groups): see [`coordinator`] for ownership and [`consumer`] for consuming
//! one partition. `main.rs` only parses [`WorkerConfig`] and calls [`run`]; tests start
//! the same code in-process, or the binary itself.

pub mod config;
pub mod consumer;
pub mod coordinator;
pub mod dead_letters;
pub mod http;
pub mod offsets;
mod recovery;
pub mod status;

use std::sync::Arc;

use anyhow::Context;
use orchestrator_calls::DispatchMetrics;
use orchestrator_kafka::{KafkaConnection, ensure_topic};
use orchestrator_processing::{TaskProcessor, stops};
use orchestrator_store::notify::{self, Listener};
use orchestrator_store::pool::PgConnector;
use orchestrator_store::{DbPool, build_pool, leases};
use orchestrator_telemetry::metrics::{self, WriteBatchMetrics};
use tokio_util::sync::CancellationToken;

pub use config::{Command, WorkerConfig};

use crate::consumer::ConsumerContext;
use crate::coordinator::{Coordinator, LeaseTiming};
use crate::dead_letters::DeadLetters;
use crate::http::{HttpState, WorkerHttp};
use crate::status::{ConsumerMetrics, WorkerStatus};

/// Requests with a payload larger than this many items were refused by the API, so the
/// worker accepts whatever the API stored.
const MAX_ITEMS_ACCEPTED: usize = usize::MAX;

/// Runs the command the configuration names: run (default) or migrate. Returns when
/// `shutdown` is cancelled or SIGTERM/SIGINT arrives, after a graceful stop.
pub async fn run(config: WorkerConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    // Fail on bad settings at startup, not at the first task.
    config.validate()?;
    if matches!(config.command, Some(Command::Migrate)) {
        return migrate(&config.database_url).await;
    }
    Worker::build(config)
        .await?
        .run_until_stopped(shutdown)
        .await
}

/// Applies pending migrations: the `migrate` command, and the first step of every start.
async fn migrate(database_url: &str) -> anyhow::Result<()> {
    orchestrator_store::migrations::apply(database_url)
        .await
        .context("applying database migrations (DATABASE_URL)")
}

/// A started worker: connected, topics created, HTTP port bound. Consuming starts with
/// [`Worker::run_until_stopped`].
pub struct Worker {
    coordinator: Coordinator,
    http: WorkerHttp,
    shutdown_timeout: std::time::Duration,
    /// Hears tasks stopped elsewhere (cancelled, past their deadline), so the calls
    /// of those this worker runs are dropped.
    stops: StopFollower,
}

struct StopFollower {
    connector: PgConnector,
    pool: DbPool,
    running: stops::RunningTasks,
}

impl Worker {
    /// Applies migrations, connects to PostgreSQL and Kafka, creates the topics when
    /// missing and binds the HTTP port.
    pub async fn build(config: WorkerConfig) -> anyhow::Result<Self> {
        config.validate()?;
        let mut registry = metrics::new_registry();
        let dispatcher = config
            .dispatch
            .dispatcher()?
            .with_metrics(DispatchMetrics::register(&mut registry));
        let consumer_metrics = ConsumerMetrics::register(&mut registry);
        orchestrator_telemetry::ExportMetrics::register(&mut registry);
        let write_metrics = WriteBatchMetrics::register(&mut registry);
        migrate(&config.database_url).await?;

        let worker_id = config.worker_id();
        let pool = build_pool(&config.pool_config())?;
        orchestrator_store::pool::PoolMetrics::register(&mut registry, &pool);
        let connector = PgConnector::from_url(&config.database_url)?;
        let kafka = KafkaConnection::connect(&config.kafka, &worker_id)
            .await
            .context("connecting to Kafka (KAFKA_BOOTSTRAP_SERVERS)")?;
        let timeout = config.kafka.request_timeout();
        let partitions = ensure_topic(
            &kafka,
            &config.kafka.topic,
            config.kafka.partitions,
            config.kafka.replication_factor,
            timeout,
            config.kafka.create_topics,
        )
        .await
        .context("the task topic (KAFKA_TOPIC)")?;
        let dlq_partitions = ensure_topic(
            &kafka,
            &config.dlq_topic,
            partitions,
            config.kafka.replication_factor,
            timeout,
            config.kafka.create_topics,
        )
        .await
        .context("the dead-letter topic (KAFKA_DLQ_TOPIC)")?;
        {
            let mut conn = pool.get().await.context("connecting to PostgreSQL")?;
            leases::ensure_partitions(&mut conn, &config.kafka.topic, partitions).await?;
        }

        let processor = TaskProcessor::new(
            pool.clone(),
            dispatcher,
            MAX_ITEMS_ACCEPTED,
            config.dispatch.task_concurrency,
            write_metrics,
        );
        let stops = StopFollower {
            connector,
            pool: pool.clone(),
            running: processor.running_tasks().clone(),
        };
        let status = Arc::new(WorkerStatus::new(
            worker_id.clone(),
            config.kafka.topic.clone(),
            consumer_metrics,
        ));
        let http = WorkerHttp::bind(
            &config.http_host,
            config.http_port,
            HttpState {
                pool: pool.clone(),
                kafka: kafka.clone(),
                processor: processor.clone(),
                status: Arc::clone(&status),
                registry: Arc::new(registry),
            },
        )?;
        let ctx = Arc::new(ConsumerContext {
            pool,
            processor,
            dead_letters: DeadLetters::new(
                kafka.clone(),
                config.dlq_topic.clone(),
                config.kafka.topic.clone(),
                dlq_partitions,
            ),
            max_in_flight: config.max_in_flight,
            partitions: u32::try_from(partitions).unwrap_or(0),
            fetch_max_bytes: config.fetch_max_bytes,
            fetch_max_wait_ms: config.fetch_max_wait_ms,
            commit_interval: config.commit_interval(),
            status,
        });
        let timing = LeaseTiming {
            ttl: config.lease_ttl(),
            heartbeat: config.heartbeat_interval(),
            handoff_drain: config.lease_ttl() / 2,
        };
        tracing::info!(
            %worker_id,
            topic = %config.kafka.topic,
            partitions,
            http_port = http.port,
            "Worker started."
        );
        let coordinator = Coordinator::new(
            ctx,
            kafka,
            config.kafka.topic.clone(),
            partitions,
            worker_id,
            timing,
        );
        Ok(Self {
            coordinator,
            http,
            shutdown_timeout: config.shutdown_timeout(),
            stops,
        })
    }

    /// The bound HTTP port (useful when configured as 0).
    pub fn http_port(&self) -> u16 {
        self.http.port
    }

    /// Consumes until `shutdown` is cancelled or SIGTERM/SIGINT arrives, then drains,
    /// releases the leases and stops the HTTP port last, so probes see the drain.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let http_handle = self.http.handle();
        let http = tokio::spawn(self.http.server);
        let stop = CancellationToken::new();
        // Stops are followed until the partitions are drained: a task cancelled during
        // the drain still has its calls dropped.
        let following = CancellationToken::new();
        let listener = Listener::start(
            self.stops.connector,
            &[notify::TASKS_STOPPED],
            following.clone(),
        );
        let follower = tokio::spawn({
            let following = following.clone();
            async move {
                stops::follow(&listener, self.stops.pool, self.stops.running, following).await;
            }
        });
        let signals = {
            let stop = stop.clone();
            tokio::spawn(async move {
                orchestrator_stdx::stop_requested(&shutdown).await;
                stop.cancel();
            })
        };
        self.coordinator.run(stop, self.shutdown_timeout).await;
        following.cancel();
        let _ = follower.await;
        signals.abort();
        http_handle.stop(true).await;
        let _ = http.await;
        tracing::info!("Worker stopped.");
        Ok(())
    }
}
