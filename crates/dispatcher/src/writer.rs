//! The processor's writes with group commit: starting tasks, recording early outcomes
//! and finishing tasks each go through a [`GroupCommit`] whose batches run the
//! set-based statements of `orchestrator_store::batch`. Many tasks in flight then share
//! a few transactions instead of taking several each; each caller still gets its own
//! answer (fenced, already finished, ...) and only after its write committed.

use std::sync::Arc;

use orchestrator_core::Status;
use orchestrator_store::batch::{
    FinishRequest, Planner, RecordRequest, StartRequest, finish_many, record_many, start_tasks,
};
use orchestrator_store::group_commit::GroupCommit;
use orchestrator_store::service_requests::{FinishedServiceRequest, StartedTask};
use orchestrator_store::{DbPool, Fence, StoreError};
use uuid::Uuid;

/// Loops per kind of write: two keep commits overlapping.
const LOOPS: usize = 2;
/// Most requests in one transaction: large enough to amortise a commit over many
/// tasks, small enough that one batch's locks and statements stay short.
const MAX_BATCH: usize = 256;

/// Cheap to clone; clones share the loops.
#[derive(Debug, Clone)]
pub struct ResultWriter {
    starts: GroupCommit<StartRequest, StartedTask>,
    records: GroupCommit<RecordRequest, bool>,
    finishes: GroupCommit<FinishRequest, Option<Status>>,
}

impl ResultWriter {
    /// `plan` turns a stored task into its service requests when the task starts.
    pub fn start(pool: &DbPool, plan: Arc<Planner<'static>>) -> Self {
        Self {
            starts: GroupCommit::start(
                "task start",
                pool.clone(),
                LOOPS,
                MAX_BATCH,
                move |conn, batch| {
                    let plan = Arc::clone(&plan);
                    Box::pin(async move { start_tasks(conn, batch, plan.as_ref()).await })
                },
            ),
            records: GroupCommit::start(
                "outcome record",
                pool.clone(),
                LOOPS,
                MAX_BATCH,
                |conn, batch| Box::pin(record_many(conn, batch)),
            ),
            finishes: GroupCommit::start(
                "task finish",
                pool.clone(),
                LOOPS,
                MAX_BATCH,
                |conn, batch| Box::pin(finish_many(conn, batch)),
            ),
        }
    }

    /// See `service_requests::start_task`; the plan comes from the stored task.
    pub async fn start_task(
        &self,
        task_id: Uuid,
        fence: Option<&Fence>,
    ) -> Result<StartedTask, StoreError> {
        self.starts
            .write(StartRequest {
                task_id,
                fence: fence.cloned(),
            })
            .await
    }

    /// See `service_requests::record_finished`.
    pub async fn record(
        &self,
        id: Uuid,
        finished: FinishedServiceRequest,
        fence: Option<&Fence>,
    ) -> Result<bool, StoreError> {
        self.records
            .write(RecordRequest {
                id,
                finished,
                fence: fence.cloned(),
            })
            .await
    }

    /// Records the outcomes not recorded yet and settles the task, in one transaction;
    /// returns its status afterwards (`None`: no such task).
    pub async fn finish(
        &self,
        task_id: Uuid,
        outcomes: Vec<(Uuid, FinishedServiceRequest)>,
        fence: Option<&Fence>,
    ) -> Result<Option<Status>, StoreError> {
        self.finishes
            .write(FinishRequest {
                task_id,
                outcomes,
                fence: fence.cloned(),
            })
            .await
    }
}
