//! Group commit of accepted tasks: concurrent `POST /api/orchestrate` requests hand
//! their task to a few writer loops, each of which inserts everything that queued up
//! meanwhile in one multi-row `INSERT` (one transaction, one WAL flush). Under load
//! one commit carries many tasks; at low load a batch is a single task and nothing
//! waits for company. Durability is unchanged: a request is answered only after the
//! commit that holds its task.

use std::sync::Arc;

use orchestrator_store::tasks::{self, InsertedTask, NewTask};
use orchestrator_store::{DbPool, StoreError};
use serde_json::Value;
use tokio::sync::{Mutex, mpsc, oneshot};
use uuid::Uuid;

/// Tasks waiting for a writer, at most; a full queue makes requests wait (back-pressure).
const QUEUE: usize = 4096;

/// A task to store, owned so that it can wait in the queue.
#[derive(Debug)]
pub struct TaskToStore {
    pub task_id: Uuid,
    pub task_name: String,
    pub task_description: Option<String>,
    pub payload: Value,
    pub idempotency_key: Option<String>,
}

type Reply = oneshot::Sender<Result<InsertedTask, StoreError>>;

/// Cheap to clone. The writer loops stop once every clone is gone.
#[derive(Debug, Clone)]
pub struct TaskWriter {
    queue: mpsc::Sender<(TaskToStore, Reply)>,
}

impl TaskWriter {
    /// Starts `writers` writer loops, each committing at most `max_batch` tasks at once.
    /// More than one loop keeps commits overlapping: one batch fills while another
    /// waits for its flush.
    pub fn start(pool: DbPool, writers: usize, max_batch: usize) -> TaskWriter {
        let (queue, rx) = mpsc::channel(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..writers.max(1) {
            tokio::spawn(write_loop(pool.clone(), Arc::clone(&rx), max_batch.max(1)));
        }
        TaskWriter { queue }
    }

    /// Stores the task (or finds the one stored under its idempotency key) and returns
    /// once that is committed.
    pub async fn insert(&self, task: TaskToStore) -> Result<InsertedTask, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((task, reply))
            .await
            .map_err(|_| StoreError::Unavailable("the task writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the task writer has stopped".into()))?
    }
}

async fn write_loop(
    pool: DbPool,
    queue: Arc<Mutex<mpsc::Receiver<(TaskToStore, Reply)>>>,
    max_batch: usize,
) {
    let mut batch = Vec::with_capacity(max_batch);
    loop {
        {
            // One loop takes what has queued up; the others wait their turn here.
            let mut queue = queue.lock().await;
            if queue.recv_many(&mut batch, max_batch).await == 0 {
                return;
            }
        }
        let (stored, replies): (Vec<TaskToStore>, Vec<Reply>) = batch.drain(..).unzip();
        match insert_batch(&pool, &stored).await {
            Ok(inserted) => {
                for (reply, inserted) in replies.into_iter().zip(inserted) {
                    // The request may have gone (client disconnected); its task stays.
                    let _ = reply.send(Ok(inserted));
                }
            }
            Err(error) if error.is_unavailable() || replies.len() == 1 => {
                let reason = crate::error::error_chain(&error);
                tracing::warn!(tasks = replies.len(), error = %reason, "Storing accepted tasks failed.");
                let mut replies = replies.into_iter();
                if let Some(first) = replies.next() {
                    let _ = first.send(Err(error));
                }
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Unavailable(reason.clone())));
                }
            }
            Err(error) => {
                // The database refused the batch: one row may be at fault. Store each
                // on its own so the others are not refused with it.
                tracing::warn!(tasks = replies.len(), error = %crate::error::error_chain(&error), "Batch insert failed; inserting one by one.");
                for (task, reply) in stored.iter().zip(replies) {
                    let result = insert_batch(&pool, std::slice::from_ref(task))
                        .await
                        .and_then(|mut inserted| {
                            inserted.pop().ok_or_else(|| {
                                StoreError::Corrupt("an insert answered nothing".into())
                            })
                        });
                    let _ = reply.send(result);
                }
            }
        }
    }
}

async fn insert_batch(
    pool: &DbPool,
    stored: &[TaskToStore],
) -> Result<Vec<InsertedTask>, StoreError> {
    let rows: Vec<NewTask<'_>> = stored
        .iter()
        .map(|task| NewTask {
            task_id: task.task_id,
            task_name: &task.task_name,
            task_description: task.task_description.as_deref(),
            payload: &task.payload,
            idempotency_key: task.idempotency_key.as_deref(),
        })
        .collect();
    let mut conn = pool.get().await?;
    tasks::insert_many(&mut conn, &rows).await
}
