//! Building and running the API: `Application::build` binds and prepares everything,
//! `run_until_stopped` serves until a signal or the shutdown token asks it to stop.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::{Server, Service};
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use orchestrator_calls::DispatchMetrics;
use orchestrator_kafka::{BatchSettings, KafkaConnection, TaskPublisher};
use orchestrator_processing::{TaskProcessor, stops};
use orchestrator_store::build_pool;
use orchestrator_store::group_commit::Batching;
use orchestrator_store::notify::Listener;
use orchestrator_store::pool::PgConnector;
use orchestrator_telemetry::metrics::{self, WriteBatchMetrics};
use tokio_util::sync::CancellationToken;
use utoipa_swagger_ui::{Config as SwaggerConfig, SwaggerUi};

use crate::config::ApiConfig;
use crate::error::ApiError;
use crate::inline::InlineRunner;
use crate::intake::TaskWriter;
use crate::metrics::HttpMetrics;
use crate::queue::{QueueWorkers, SweepSettings, TaskQueue};
use crate::routes;
use crate::state::{AppState, Mode};

/// How accepted tasks are stored: four loops keep commits overlapping without taking
/// many of the pool's connections; at most 512 tasks per commit. A batch that is not
/// full waits up to 2 ms for the commit in progress: at an even 1,000 requests/s that
/// saves the database enough CPU that the latency clients see goes down, not up
/// (measured with `make bench`; an idle API does not wait).
/// What the process's one listening connection hears: stops (for the tasks it runs),
/// finished tasks (for requests waiting on them), the event log (for its streams).
const LISTENED: [&str; 3] = [
    orchestrator_store::notify::TASKS_STOPPED,
    orchestrator_store::notify::TASKS_FINISHED,
    orchestrator_store::events::TASK_EVENTS,
];

const TASK_BATCHING: Batching = Batching {
    loops: 4,
    max_batch: 512,
    linger: Duration::from_millis(2),
};

pub struct Application {
    port: u16,
    server: Server,
    runner: InlineRunner,
    queue_workers: Option<QueueWorkers>,
    shutdown: CancellationToken,
    /// Cancelled when shutdown begins: event streams end and bulk operations are let
    /// go of, so the server can drain and other replicas carry on.
    draining: CancellationToken,
    shutdown_timeout: Duration,
}

impl Application {
    /// Applies migrations, connects (to Kafka too in Kafka mode), binds the listener
    /// and, in inline mode, resumes unfinished tasks. Serving starts with
    /// [`Application::run_until_stopped`].
    pub async fn build(config: ApiConfig) -> anyhow::Result<Self> {
        let mut registry = metrics::new_registry();
        let dispatcher = config
            .dispatch
            .dispatcher()?
            .with_metrics(DispatchMetrics::register(&mut registry));
        let http_metrics = HttpMetrics::register(&mut registry);
        orchestrator_telemetry::ExportMetrics::register(&mut registry);
        let write_metrics = WriteBatchMetrics::register(&mut registry);
        let data_metrics = crate::metrics::DataMetrics::register(&mut registry);
        let produce_metrics = orchestrator_kafka::ProduceMetrics::register(&mut registry);
        anyhow::ensure!(config.max_items >= 1, "MAX_ITEMS: must be at least 1");
        anyhow::ensure!(
            config.max_body_bytes >= 1,
            "MAX_BODY_BYTES: must be at least 1"
        );
        if let Some(default) = config.task_deadline_secs {
            anyhow::ensure!(
                default <= config.max_task_deadline_secs,
                "TASK_DEADLINE_SECS ({default}) must not exceed MAX_TASK_DEADLINE_SECS ({})",
                config.max_task_deadline_secs
            );
        }

        crate::migrate(&config.database_url).await?;
        let pool = build_pool(&config.pool_config())?;
        orchestrator_store::pool::PoolMetrics::register(&mut registry, &pool);
        let processor = TaskProcessor::new(
            pool.clone(),
            dispatcher,
            config.max_items,
            config.dispatch.task_concurrency,
            write_metrics.clone(),
        )
        .with_max_deadline_secs(config.max_task_deadline_secs);
        let shutdown = CancellationToken::new();
        data_metrics.start(
            pool.clone(),
            Duration::from_millis(config.data_metrics_interval_ms),
            shutdown.child_token(),
        );
        // One listening connection for the process: stops of tasks this process runs
        // (inline and direct) and tasks that became final (for requests waiting for them)
        // reach it from any replica.
        let listener = Listener::start(
            PgConnector::from_url(&config.database_url)?,
            &LISTENED,
            shutdown.child_token(),
        );
        // Cancelled as soon as shutdown begins: open streams end so the server can
        // drain (their clients reconnect elsewhere and resume).
        let draining = shutdown.child_token();
        let events = crate::events::EventFeed::register(&mut registry, draining.clone());
        events
            .start(&listener, pool.clone())
            .await
            .context("starting the task event feed")?;
        let waits = crate::waiting::TaskWaits::register(&mut registry);
        let webhooks = crate::webhooks::Webhooks::from_config(&config.webhooks)?;
        webhooks.start_delivery(pool.clone(), shutdown.child_token())?;
        // A pass stops between two batches when shutdown begins.
        crate::retention::RetentionJob::register(config.retention.clone(), &mut registry)
            .start(pool.clone(), draining.clone());
        tokio::spawn(crate::waiting::follow(
            listener.clone(),
            waits.clone(),
            shutdown.child_token(),
        ));
        tokio::spawn({
            let (listener, pool, running, stop) = (
                listener.clone(),
                pool.clone(),
                processor.running_tasks().clone(),
                shutdown.child_token(),
            );
            async move { stops::follow(&listener, pool, running, stop).await }
        });
        let runner = InlineRunner::new(processor, config.inline_concurrency);
        let (mode, queue, queue_workers) =
            start_mode(&config, &pool, &runner, produce_metrics).await?;
        let state = web::Data::new(AppState {
            task_writer: TaskWriter::start(
                pool.clone(),
                TASK_BATCHING,
                write_metrics.observer(),
                mode,
            ),
            auth: crate::auth::Authenticator::new(
                &config.auth,
                pool.clone(),
                config.trusted_proxies.clone(),
            )?,
            pool,
            runner: runner.clone(),
            queue,
            mode,
            max_body_bytes: config.max_body_bytes,
            search_budget: Duration::from_millis(config.search_budget_ms),
            default_deadline_secs: config.task_deadline_secs,
            waits,
            events,
            bulk: crate::bulk::BulkRunner::new(
                config.bulk_rate_per_second,
                config.bulk_claim_secs,
                Duration::from_millis(config.bulk_poll_interval_ms),
            ),
            webhooks,
            trusted_proxies: config.trusted_proxies.clone(),
            metrics: Arc::new(registry),
            trace_url: config.trace_url_template.clone(),
        });
        // Bulk operations pause when shutdown begins (their claim is let go of, and
        // another replica carries on).
        state.bulk.start(state.clone(), draining.clone());

        let listener =
            TcpListener::bind((config.host.as_str(), config.port)).with_context(|| {
                format!(
                    "binding {}:{} (API_HOST, API_PORT)",
                    config.host, config.port
                )
            })?;
        let port = listener.local_addr()?.port();
        let server = http_server(&config, listener, state, http_metrics)?;
        tracing::info!(port, mode = mode.as_str(), "API listening.");

        Ok(Self {
            port,
            server,
            runner,
            queue_workers,
            shutdown,
            draining,
            shutdown_timeout: config.shutdown_timeout(),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Cancelling this token stops the application as SIGTERM would.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves until SIGTERM, SIGINT or the shutdown token; then stops accepting
    /// connections, lets in-flight requests finish and drains inline tasks, each
    /// within the shutdown timeout.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let mut server = tokio::spawn(self.server);
        tokio::select! {
            result = &mut server => {
                return result.context("HTTP server task failed")?.context("HTTP server failed");
            }
            () = orchestrator_stdx::stop_requested(&self.shutdown) => {}
        }
        tracing::info!("Shutting down.");
        self.draining.cancel();
        handle.stop(true).await;
        let _ = server.await;
        if let Some(workers) = self.queue_workers {
            workers.stop(self.shutdown_timeout).await;
        }
        if !self.runner.drain(self.shutdown_timeout).await {
            tracing::warn!(
                "Inline tasks still running at the shutdown deadline; they resume at the next start."
            );
        }
        // Closes the listening connection.
        self.shutdown.cancel();
        tracing::info!("Stopped.");
        Ok(())
    }
}

/// How accepted tasks get processed. Kafka mode starts the publisher, its outbox marks
/// and sweeper; inline mode resumes the tasks a previous run left unfinished (Kafka mode
/// leaves those to the workers).
async fn start_mode(
    config: &ApiConfig,
    pool: &orchestrator_store::DbPool,
    runner: &InlineRunner,
    produce_metrics: orchestrator_kafka::ProduceMetrics,
) -> anyhow::Result<(Mode, Option<TaskQueue>, Option<QueueWorkers>)> {
    if config.use_kafka {
        let (queue, workers) = start_queue(config, pool.clone(), produce_metrics).await?;
        return Ok((Mode::Kafka, Some(queue), Some(workers)));
    }
    let resumed = runner.resume_unfinished(pool).await?;
    if resumed > 0 {
        tracing::info!(resumed, "Resuming unfinished tasks.");
    }
    Ok((Mode::Inline, None, None))
}

/// The HTTP server on `listener`: the API's routes, the OpenAPI document with Swagger
/// UI, the dashboard, every response measured by `http_metrics`. Not yet serving: the
/// returned server runs once awaited.
fn http_server(
    config: &ApiConfig,
    listener: TcpListener,
    state: web::Data<AppState>,
    http_metrics: HttpMetrics,
) -> anyhow::Result<Server> {
    let document = web::Data::new(
        crate::openapi::Document::render(state.limits())
            .context("rendering the OpenAPI document")?,
    );
    let mut server = HttpServer::new(move || {
        let http_metrics = http_metrics.clone();
        App::new()
            .wrap_fn(move |request, service| {
                let started = Instant::now();
                let method = request.method().clone();
                let http_metrics = http_metrics.clone();
                let mut span = crate::tracing_http::request_span(&request);
                let response = service.call(request);
                async move {
                    let response = response.await?;
                    let route = response.request().match_pattern();
                    crate::tracing_http::record_response(
                        &mut span,
                        &method,
                        route.as_deref(),
                        response.status(),
                    );
                    http_metrics.observe(
                        &method,
                        route.as_deref(),
                        response.status(),
                        started.elapsed(),
                    );
                    Ok(response)
                }
            })
            .app_data(state.clone())
            .app_data(document.clone())
            .app_data(web::QueryConfig::default().error_handler(|error, _| {
                ApiError::InvalidQuery {
                    parameter: "query",
                    detail: error.to_string(),
                }
                .into()
            }))
            .configure(routes::configure)
            .service(
                web::resource("/openapi.json")
                    .route(web::get().to(crate::openapi::document))
                    .default_service(routes::allow("GET")),
            )
            .service(SwaggerUi::new("/docs/{_:.*}").config(SwaggerConfig::new(["/openapi.json"])))
            .route("/docs", web::get().to(redirect_to_docs))
            .default_service(web::to(routes::not_found))
    })
    // Signals are ours to handle (see run_until_stopped), so shutdown also drains
    // the inline tasks.
    .disable_signals()
    .shutdown_timeout(config.shutdown_timeout_secs);
    if config.http_workers > 0 {
        server = server.workers(config.http_workers);
    }
    Ok(server.listen(listener)?.run())
}

/// Kafka mode: connects, makes sure the topic exists, and starts the publisher with its
/// outbox mark writer and sweeper.
async fn start_queue(
    config: &ApiConfig,
    pool: orchestrator_store::DbPool,
    produce_metrics: orchestrator_kafka::ProduceMetrics,
) -> anyhow::Result<(TaskQueue, QueueWorkers)> {
    anyhow::ensure!(
        config.outbox_grace_secs * 1000 > config.kafka.request_timeout_ms,
        "OUTBOX_GRACE_SECS: must exceed KAFKA_REQUEST_TIMEOUT_MS, or the sweeper could republish a task a request is still publishing"
    );
    anyhow::ensure!(
        config.outbox_sweep_interval_secs >= 1,
        "OUTBOX_SWEEP_INTERVAL_SECS: must be at least 1"
    );
    anyhow::ensure!(
        !config.kafka.is_event_hubs()
            || config.kafka_max_batch_bytes
                <= orchestrator_kafka::event_hubs::MAX_PUBLICATION_BYTES,
        "KAFKA_MAX_BATCH_BYTES: {} is more than Azure Event Hubs takes in one produce request; at most {}",
        config.kafka_max_batch_bytes,
        orchestrator_kafka::event_hubs::MAX_PUBLICATION_BYTES
    );
    let kafka = KafkaConnection::connect(&config.kafka, "orchestrator-api")
        .await
        .context("connecting to Kafka (KAFKA_BOOTSTRAP_SERVERS)")?;
    let publisher = TaskPublisher::new(
        kafka,
        &config.kafka,
        BatchSettings {
            linger: Duration::from_millis(config.kafka_linger_ms),
            max_batch_bytes: config.kafka_max_batch_bytes.max(1),
        },
        produce_metrics,
    )
    .await
    .context("preparing the task topic (KAFKA_TOPIC)")?;
    tracing::info!(
        topic = publisher.topic(),
        partitions = publisher.partitions(),
        "Publishing tasks to Kafka."
    );
    Ok(TaskQueue::start(
        publisher,
        pool,
        SweepSettings {
            interval: Duration::from_secs(config.outbox_sweep_interval_secs),
            grace: Duration::from_secs(config.outbox_grace_secs),
        },
    ))
}

async fn redirect_to_docs() -> actix_web::HttpResponse {
    actix_web::HttpResponse::PermanentRedirect()
        .insert_header((actix_web::http::header::LOCATION, "/docs/"))
        .finish()
}
