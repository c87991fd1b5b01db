//! The processor's writes with group commit: starting tasks, recording early outcomes
//! and finishing tasks each go through a [`GroupCommit`] whose batches run the
//! set-based transitions of `orchestrator_store::lifecycle`. Many tasks in flight then share
//! a few transactions instead of taking several each; each caller still gets its own
//! answer (fenced, already finished, ...) and only after its write committed.

use std::sync::Arc;
use std::time::Duration;

use orchestrator_core::Status;
use orchestrator_store::group_commit::{BatchObserver, Batching, GroupCommit};
use orchestrator_store::lifecycle::finish::finish_many;
use orchestrator_store::lifecycle::record::record_many;
use orchestrator_store::lifecycle::start::start_tasks;
use orchestrator_store::lifecycle::{
    FinishRequest, FinishedServiceRequest, Planner, RecordRequest, StartRequest, StartedTask,
};
use orchestrator_store::{DbPool, Fence, StoreError};
use uuid::Uuid;

/// Each kind of write: two loops keep commits overlapping when one is slow; at most
/// 256 requests per transaction, enough to amortise a commit over many tasks and small
/// enough that one batch's locks and statements stay short. A batch that is not full
/// waits up to 5 ms for the one being committed: at an even load tasks arrive one or
/// two per commit time, and two loops would otherwise commit them one or two at a time.
const BATCHING: Batching = Batching {
    loops: 2,
    max_batch: 256,
    linger: Duration::from_millis(5),
};

/// Cheap to clone; clones share the loops.
#[derive(Debug, Clone)]
pub struct ResultWriter {
    starts: GroupCommit<StartRequest, StartedTask>,
    records: GroupCommit<RecordRequest, bool>,
    finishes: GroupCommit<FinishRequest, Option<Status>>,
}

impl ResultWriter {
    /// `plan` turns a stored task into its service requests when the task starts;
    /// `observer` hears about every batch.
    pub fn start(pool: &DbPool, plan: Arc<Planner<'static>>, observer: &BatchObserver) -> Self {
        Self {
            starts: GroupCommit::start(
                "task_start",
                pool.clone(),
                BATCHING,
                Arc::clone(observer),
                move |conn, batch| {
                    let plan = Arc::clone(&plan);
                    Box::pin(async move { start_tasks(conn, batch, plan.as_ref()).await })
                },
            ),
            records: GroupCommit::start(
                "outcome_record",
                pool.clone(),
                BATCHING,
                Arc::clone(observer),
                |conn, batch| Box::pin(record_many(conn, batch)),
            ),
            finishes: GroupCommit::start(
                "task_finish",
                pool.clone(),
                BATCHING,
                Arc::clone(observer),
                |conn, batch| Box::pin(finish_many(conn, batch)),
            ),
        }
    }

    /// See `lifecycle::start`; the plan comes from the stored task.
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

    /// See `lifecycle::record`.
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
