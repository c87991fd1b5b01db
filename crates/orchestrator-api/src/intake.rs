//! Storing accepted tasks with group commit: concurrent `POST /api/orchestrate`
//! requests hand their task to a few writer loops, each of which inserts everything
//! that queued up meanwhile in one statement (in Kafka mode it also writes their outbox
//! rows; one transaction, one WAL flush). A request is answered only after the commit
//! that holds its task.

use orchestrator_core::TenantName;
use orchestrator_store::group_commit::{BatchObserver, Batching, GroupCommit};
use orchestrator_store::lifecycle::accept::{self, InsertedTask, NewTask};
use orchestrator_store::{DbPool, StoreError};
use serde_json::Value;
use uuid::Uuid;

use crate::state::Mode;

/// A task to store, owned so that it can wait in the queue.
#[derive(Debug)]
pub struct TaskToStore {
    pub task_id: Uuid,
    pub task_name: String,
    pub task_description: Option<String>,
    pub payload: Value,
    pub idempotency_key: Option<String>,
    pub tenant: TenantName,
    pub deadline_seconds: Option<i32>,
    pub deadline_at: Option<chrono::DateTime<chrono::Utc>>,
    pub callback_url: Option<String>,
    /// The W3C `traceparent` of the accepting request's span.
    pub traceparent: Option<String>,
}

/// Cheap to clone. The writer loops stop once every clone is gone.
#[derive(Debug, Clone)]
pub struct TaskWriter {
    inserts: GroupCommit<TaskToStore, InsertedTask>,
}

impl TaskWriter {
    /// Starts the writer loops of `batching`; `observer` hears about every batch.
    /// In Kafka `mode` each new task goes into the outbox in the transaction that stores
    /// it, so that the sweeper publishes it should this process die before it does.
    pub fn start(
        pool: DbPool,
        batching: Batching,
        observer: BatchObserver,
        mode: Mode,
    ) -> TaskWriter {
        let inserts = GroupCommit::start(
            "task_insert",
            pool,
            batching,
            observer,
            move |conn, batch| {
                Box::pin(async move {
                    let rows: Vec<NewTask<'_>> = batch
                        .iter()
                        .map(|task: &TaskToStore| NewTask {
                            task_id: task.task_id,
                            task_name: &task.task_name,
                            task_description: task.task_description.as_deref(),
                            payload: &task.payload,
                            idempotency_key: task.idempotency_key.as_deref(),
                            tenant: task.tenant.as_str(),
                            deadline_seconds: task.deadline_seconds,
                            deadline_at: task.deadline_at,
                            callback_url: task.callback_url.as_deref(),
                            traceparent: task.traceparent.as_deref(),
                        })
                        .collect();
                    let inserted = match mode {
                        Mode::Kafka => accept::insert_many_queued(conn, &rows).await?,
                        Mode::Inline => accept::insert_many(conn, &rows).await?,
                    };
                    Ok(inserted.into_iter().map(Ok).collect())
                })
            },
        );
        TaskWriter { inserts }
    }

    /// Stores the task (or finds the one stored under its idempotency key) and returns
    /// once that is committed.
    pub async fn insert(&self, task: TaskToStore) -> Result<InsertedTask, StoreError> {
        self.inserts.write(task).await
    }
}
