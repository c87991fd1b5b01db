//! Kafka mode: handing accepted tasks to the workers through the task topic.
//!
//! The task row is the outbox. The API stores the task, publishes its record and
//! answers 202 only once the broker acknowledged it; the acknowledgement is then marked
//! on the row (`enqueued_at`) in batches. Two things can leave a row unmarked:
//! - the broker refused or timed out: the handler removes the row and answers 503, so
//!   the client retries a request that left nothing behind;
//! - the process died between storing and marking: the sweeper (every API replica
//!   runs one; rows are locked with `SKIP LOCKED`) publishes such rows again once they
//!   are older than the grace period. A second record for a task is harmless: workers
//!   process a task any number of times to the same result.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use diesel_async::AsyncConnection;
use orchestrator_core::{EnvelopeKind, TaskEnvelope};
use orchestrator_kafka::{KafkaError, TaskPublisher};
use orchestrator_store::{DbPool, StoreError, tasks};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::error::error_chain;

/// Marks waiting to be written, at most; past it a mark is dropped (the sweeper then
/// republishes that task, which is harmless).
const MARK_QUEUE: usize = 65_536;
/// Task ids marked per statement, at most.
const MARK_BATCH: usize = 1_000;
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

    /// Publishes a newly stored task and waits for the broker's acknowledgement.
    pub async fn publish(&self, task_id: Uuid, request_id: &str) -> Result<(), KafkaError> {
        let envelope = TaskEnvelope::new(
            task_id,
            EnvelopeKind::Submitted,
            Some(request_id.to_owned()),
            Utc::now(),
        );
        let published = self.publisher.publish(&envelope).await?;
        tracing::debug!(%task_id, partition = published.partition, offset = published.offset, "Task published.");
        if self.marks.try_send(task_id).is_err() {
            tracing::debug!(%task_id, "Outbox mark queue full; the sweeper will republish the task.");
        }
        Ok(())
    }
}

impl TaskQueue {
    /// Publishes a re-driven task; the caller holds its row locked until this returns,
    /// so no outbox mark is needed: a failure rolls the re-drive back.
    pub async fn publish_redrive(&self, task_id: Uuid, request_id: &str) -> Result<(), KafkaError> {
        let envelope = TaskEnvelope::new(
            task_id,
            EnvelopeKind::Redriven,
            Some(request_id.to_owned()),
            Utc::now(),
        );
        self.publisher.publish(&envelope).await.map(|_| ())
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

/// Writes outbox marks in batches: one `UPDATE` for everything that arrived meanwhile,
/// so marking costs far less than a transaction per task.
async fn write_marks(pool: DbPool, mut rx: mpsc::Receiver<Uuid>) {
    let mut batch = Vec::with_capacity(MARK_BATCH);
    while rx.recv_many(&mut batch, MARK_BATCH).await > 0 {
        let result = async {
            let mut conn = pool.get().await?;
            tasks::mark_enqueued(&mut conn, &batch).await
        }
        .await;
        if let Err(error) = result {
            // The sweeper republishes these tasks later; nothing is lost.
            tracing::warn!(tasks = batch.len(), error = %error_chain(&error), "Could not mark tasks as published.");
        }
        batch.clear();
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
            Ok(0) => {}
            Ok(published) => tracing::info!(published, "Published tasks left unpublished."),
            Err(error) => tracing::warn!(error = %error_chain(&error), "Outbox sweep failed."),
        }
    }
}

/// One round: lock a batch of old unpublished tasks, publish them, mark those the
/// broker took, all in one transaction so another replica skips them meanwhile.
pub async fn sweep_once(
    publisher: &TaskPublisher,
    pool: &DbPool,
    grace: Duration,
) -> Result<usize, StoreError> {
    let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
    let created_before = Utc::now() - grace;
    let mut conn = pool.get().await?;
    conn.transaction::<_, StoreError, _>(async |conn| {
        let stranded = tasks::lock_unenqueued(conn, created_before, SWEEP_BATCH).await?;
        if stranded.is_empty() {
            return Ok(0);
        }
        let now = Utc::now();
        let results = futures::future::join_all(stranded.iter().map(|task_id| async move {
            let envelope = TaskEnvelope::new(*task_id, EnvelopeKind::Republished, None, now);
            (*task_id, publisher.publish(&envelope).await)
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
        tasks::mark_enqueued(conn, &published).await?;
        Ok(published.len())
    })
    .await
}

impl std::fmt::Debug for TaskQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskQueue")
            .field("topic", &self.publisher.topic())
            .finish_non_exhaustive()
    }
}
