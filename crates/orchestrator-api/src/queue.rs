//! Kafka mode: handing accepted tasks to the workers through the task topic.
//!
//! The outbox is the table `task_outbox` (see `orchestrator_store::outbox`): the API
//! stores each task together with its outbox row, publishes its record and answers 202
//! only once the broker acknowledged it; the acknowledgement then deletes the outbox
//! row, in batches. Two things can leave a row behind:
//! - the broker refused or timed out: the handler removes the task and its row and
//!   answers 503, so the client retries a request that left nothing behind;
//! - the process died between storing and marking, or the mark was dropped: the
//!   sweeper (every API replica runs one; rows are locked with `SKIP LOCKED`) publishes
//!   tasks whose row is older than the grace period and that are still `PENDING`, and
//!   deletes the rows of tasks that have moved on meanwhile (or are gone). A second
//!   record for a task is harmless: workers process a task any number of times to the
//!   same result.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use diesel_async::AsyncConnection;
use orchestrator_core::{EnvelopeKind, TaskEnvelope};
use orchestrator_kafka::{KafkaError, TaskPublisher};
use orchestrator_store::{DbPool, StoreError, outbox};
use orchestrator_telemetry::trace::{
    ExportedSpan, KeyValue, SpanKind, TraceContext, spans_exported,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use orchestrator_stdx::error_chain;

/// Marks waiting to be written, at most; past it a mark is dropped (the sweeper then
/// republishes that task, which is harmless).
const MARK_QUEUE: usize = 65_536;
/// Task ids marked per statement, at most.
const MARK_BATCH: usize = 1_000;
/// Pause after each mark statement. Marks are on no request's path and only need to
/// land well within the sweeper's grace period, so the writer lets them gather: under
/// load one statement then carries hundreds of marks instead of a handful.
const MARK_LINGER: Duration = Duration::from_millis(100);
/// Tasks the sweeper publishes per round, at most.
const SWEEP_BATCH: i64 = 200;

/// Settings of the outbox sweeper.
#[derive(Debug, Clone, Copy)]
pub struct SweepSettings {
    /// How often the sweeper looks for unpublished tasks.
    pub interval: Duration,
    /// How old an unpublished task must be before the sweeper takes it; longer than a
    /// publish can take, so it never races a request still publishing.
    pub grace: Duration,
}

/// Publishes tasks and keeps their outbox marks. Cheap to clone.
#[derive(Clone)]
pub struct TaskQueue {
    publisher: Arc<TaskPublisher>,
    marks: mpsc::Sender<Uuid>,
}

/// The background half of a [`TaskQueue`]: the mark writer and the sweeper.
pub struct QueueWorkers {
    marker: JoinHandle<()>,
    sweeper: JoinHandle<()>,
    stop: CancellationToken,
}

impl TaskQueue {
    /// Succeeds when the broker answers a metadata request within `timeout`.
    pub async fn ping_broker(&self, timeout: Duration) -> Result<(), KafkaError> {
        orchestrator_kafka::health::ping(self.publisher.connection(), timeout).await
    }

    pub fn start(
        publisher: Arc<TaskPublisher>,
        pool: DbPool,
        sweep: SweepSettings,
    ) -> (TaskQueue, QueueWorkers) {
        let (marks, rx) = mpsc::channel(MARK_QUEUE);
        let stop = CancellationToken::new();
        let marker = tokio::spawn(write_marks(pool.clone(), rx));
        let sweeper = tokio::spawn(sweep_outbox(
            Arc::clone(&publisher),
            pool,
            sweep,
            stop.clone(),
        ));
        (
            TaskQueue { publisher, marks },
            QueueWorkers {
                marker,
                sweeper,
                stop,
            },
        )
    }

    pub fn topic(&self) -> &str {
        self.publisher.topic()
    }

    /// Publishes a newly stored task and waits for the broker's acknowledgement. The
    /// record carries the task's trace in its headers: the publish span's, a child of
    /// `traceparent` (the task's stored context).
    pub async fn publish(
        &self,
        task_id: Uuid,
        request_id: &str,
        traceparent: Option<&str>,
    ) -> Result<(), KafkaError> {
        let (envelope, span) =
            self.envelope(task_id, EnvelopeKind::Submitted, request_id, traceparent);
        let published = self.publisher.publish(&envelope).await?;
        span.end();
        tracing::debug!(%task_id, partition = published.partition, offset = published.offset, "Task published.");
        if self.marks.try_send(task_id).is_err() {
            tracing::debug!(%task_id, "Outbox mark queue full; the sweeper will republish the task.");
        }
        Ok(())
    }
}

impl TaskQueue {
    /// The envelope of a task's record and the span of its publication (a producer span
    /// under the task's context while spans are exported, none otherwise), whose
    /// context the record carries as its `traceparent` header.
    fn envelope(
        &self,
        task_id: Uuid,
        kind: EnvelopeKind,
        request_id: &str,
        traceparent: Option<&str>,
    ) -> (TaskEnvelope, ExportedSpan) {
        let stored = traceparent.and_then(TraceContext::parse);
        let span = if spans_exported() {
            ExportedSpan::start(
                format!("send {}", self.publisher.topic()),
                SpanKind::Producer,
                stored.as_ref(),
                || {
                    vec![
                        KeyValue::new("messaging.system", "kafka"),
                        KeyValue::new("messaging.operation.type", "send"),
                        KeyValue::new(
                            "messaging.destination.name",
                            self.publisher.topic().to_owned(),
                        ),
                        KeyValue::new("task_id", task_id.to_string()),
                    ]
                },
            )
        } else {
            ExportedSpan::none()
        };
        let published = stored.map(|stored| span.context_or_child_of(Some(&stored)).traceparent());
        let envelope = TaskEnvelope::new(task_id, kind, Some(request_id.to_owned()), Utc::now())
            .with_traceparent(published.as_deref());
        (envelope, span)
    }

    /// Publishes a re-driven task; the caller holds its row locked until this returns,
    /// so no outbox mark is needed: a failure rolls the re-drive back.
    pub async fn publish_redrive(
        &self,
        task_id: Uuid,
        request_id: &str,
        traceparent: Option<&str>,
    ) -> Result<(), KafkaError> {
        let (envelope, span) =
            self.envelope(task_id, EnvelopeKind::Redriven, request_id, traceparent);
        let published = self.publisher.publish(&envelope).await.map(|_| ());
        span.end();
        published
    }
}

impl QueueWorkers {
    /// Stops the sweeper and writes the marks still queued (the queue's senders must be
    /// gone, i.e. the HTTP server stopped), within `timeout`.
    pub async fn stop(self, timeout: Duration) {
        self.stop.cancel();
        let _ = self.sweeper.await;
        if tokio::time::timeout(timeout, self.marker).await.is_err() {
            tracing::warn!(
                "Outbox marks still queued at the shutdown deadline; the sweeper republishes those tasks."
            );
        }
    }
}

/// Writes outbox marks in batches: one `DELETE` for everything that arrived meanwhile
/// (at most one statement per [`MARK_LINGER`]), so marking costs far less than a
/// transaction per task.
async fn write_marks(pool: DbPool, mut rx: mpsc::Receiver<Uuid>) {
    let mut batch = Vec::with_capacity(MARK_BATCH);
    while rx.recv_many(&mut batch, MARK_BATCH).await > 0 {
        let result = async {
            let mut conn = pool.get().await?;
            outbox::mark_published(&mut conn, &batch).await
        }
        .await;
        if let Err(error) = result {
            // The sweeper republishes these tasks later; nothing is lost.
            tracing::warn!(tasks = batch.len(), error = %error_chain(&error), "Could not mark tasks as published.");
        }
        batch.clear();
        tokio::time::sleep(MARK_LINGER).await;
    }
}

async fn sweep_outbox(
    publisher: Arc<TaskPublisher>,
    pool: DbPool,
    settings: SweepSettings,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(settings.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        match sweep_once(&publisher, &pool, settings.grace).await {
            Ok(round) => {
                if round.published > 0 {
                    tracing::info!(
                        published = round.published,
                        "Published tasks left unpublished."
                    );
                }
                if round.dropped > 0 {
                    // Normal for direct requests, which are run rather than published.
                    tracing::debug!(
                        dropped = round.dropped,
                        "Dropped outbox rows of tasks no longer pending."
                    );
                }
            }
            Err(error) => tracing::warn!(error = %error_chain(&error), "Outbox sweep failed."),
        }
    }
}

/// What one round of the sweeper did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SweepRound {
    /// Tasks published again.
    pub published: usize,
    /// Outbox rows dropped because their task was no longer `PENDING` or gone.
    pub dropped: usize,
}

/// One round: drop the outbox rows of tasks that have moved on, then lock a batch of
/// old unpublished tasks, publish them and mark those the broker took, in one
/// transaction so another replica skips them meanwhile.
pub async fn sweep_once(
    publisher: &TaskPublisher,
    pool: &DbPool,
    grace: Duration,
) -> Result<SweepRound, StoreError> {
    let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
    let created_before = Utc::now() - grace;
    let mut conn = pool.get().await?;
    let dropped = outbox::drop_settled(&mut conn, created_before).await?;
    let published = conn
        .transaction::<_, StoreError, _>(async |conn| {
            let stranded = outbox::lock_stranded(conn, created_before, SWEEP_BATCH).await?;
            if stranded.is_empty() {
                return Ok(0);
            }
            let now = Utc::now();
            let results = futures::future::join_all(stranded.iter().map(|task| async move {
                let envelope =
                    TaskEnvelope::new(task.task_id, EnvelopeKind::Republished, None, now)
                        .with_traceparent(task.traceparent.as_deref());
                (task.task_id, publisher.publish(&envelope).await)
            }))
            .await;
            let mut published = Vec::new();
            for (task_id, result) in results {
                match result {
                    Ok(_) => published.push(task_id),
                    Err(error) => {
                        tracing::warn!(%task_id, error = %error_chain(&error), "Republishing failed; will retry.");
                    }
                }
            }
            outbox::mark_published(conn, &published).await?;
            Ok(published.len())
        })
        .await?;
    Ok(SweepRound { published, dropped })
}

impl std::fmt::Debug for TaskQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskQueue")
            .field("topic", &self.publisher.topic())
            .finish_non_exhaustive()
    }
}
