//! Inline mode: the API runs accepted tasks itself, in the background.

use std::sync::Arc;
use std::time::Duration;

use orchestrator_core::Status;
use orchestrator_processing::{ProcessError, TaskProcessor};
use orchestrator_store::{DbPool, StoreError, TaskCursor, tasks};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

/// Times a background task is tried when the database fails under it.
const MAX_TRIES: u32 = 5;
/// Unfinished tasks loaded per query when resuming.
const RESUME_BATCH: i64 = 500;

/// Runs tasks in this process: at most `concurrency` accepted tasks at once; direct
/// requests run at once, since their client is waiting.
#[derive(Clone)]
pub struct InlineRunner {
    processor: TaskProcessor,
    permits: Arc<Semaphore>,
    tracker: TaskTracker,
}

impl InlineRunner {
    pub fn new(processor: TaskProcessor, concurrency: usize) -> Self {
        Self {
            processor,
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            tracker: TaskTracker::new(),
        }
    }

    pub fn processor(&self) -> &TaskProcessor {
        &self.processor
    }

    /// Queues a task for background processing. `request_id` goes into its logs and
    /// downstream calls.
    pub fn submit(&self, task_id: Uuid, request_id: Option<String>) {
        let permits = Arc::clone(&self.permits);
        let processor = self.processor.clone();
        self.tracker.spawn(async move {
            let Ok(_permit) = permits.acquire_owned().await else {
                return;
            };
            process_with_retries(&processor, task_id, request_id.as_deref()).await;
        });
    }

    /// Processes a task to the end and returns its status. It runs as a tracked task of
    /// its own, so a client that disconnects does not cut the processing short.
    pub async fn run(
        &self,
        task_id: Uuid,
        request_id: Option<String>,
    ) -> Result<Status, ProcessError> {
        let processor = self.processor.clone();
        let handle = self.tracker.spawn(async move {
            processor
                .process(task_id, None, request_id.as_deref(), None)
                .await
        });
        match handle.await {
            Ok(result) => result,
            Err(join_error) => Err(ProcessError::Store(StoreError::Corrupt(format!(
                "processing task {task_id} panicked: {join_error}"
            )))),
        }
    }

    /// Queues every task left unfinished by an earlier run of the API.
    pub async fn resume_unfinished(&self, pool: &DbPool) -> Result<usize, StoreError> {
        let mut conn = pool.get().await?;
        let mut after: Option<TaskCursor> = None;
        let mut resumed = 0;
        loop {
            let batch = tasks::unfinished(&mut conn, after, RESUME_BATCH).await?;
            let Some((last, _)) = batch.last() else {
                break;
            };
            after = Some(*last);
            for (_, task_id) in &batch {
                self.submit(*task_id, None);
            }
            resumed += batch.len();
        }
        Ok(resumed)
    }

    /// Stops taking work and waits for tasks under way, up to `timeout`.
    /// Returns false when some were still running at the deadline.
    pub async fn drain(&self, timeout: Duration) -> bool {
        self.tracker.close();
        tokio::time::timeout(timeout, self.tracker.wait())
            .await
            .is_ok()
    }
}

async fn process_with_retries(processor: &TaskProcessor, task_id: Uuid, request_id: Option<&str>) {
    let mut delay = Duration::from_millis(200);
    for attempt in 1..=MAX_TRIES {
        match processor.process(task_id, None, request_id, None).await {
            Ok(_) => return,
            Err(ProcessError::NotFound(_)) => {
                tracing::warn!(%task_id, "Queued task no longer exists.");
                return;
            }
            Err(error) if attempt < MAX_TRIES => {
                tracing::warn!(%task_id, attempt, error = %orchestrator_stdx::error_chain(&error), "Processing failed; retrying.");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(error) => {
                // The task stays unfinished in the database and resumes at the next start.
                tracing::error!(%task_id, error = %orchestrator_stdx::error_chain(&error), "Processing failed; giving up until restart.");
            }
        }
    }
}
