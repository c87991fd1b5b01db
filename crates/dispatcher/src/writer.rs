//! The processor's writes with group commit: starting tasks, recording outcomes and
//! settling tasks each go through a [`GroupCommit`] whose batches run the set-based
//! statements of `orchestrator_store::batch`. Many tasks in flight then share a few
//! transactions instead of taking five each; each caller still gets its own answer
//! (fenced, already finished, ...) and only after its write committed.

use orchestrator_core::{PlannedServiceRequest, Status};
use orchestrator_store::batch::{
    self, RecordRequest, SettleRequest, StartRequest, record_many, settle_many, start_tasks,
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
    settles: GroupCommit<SettleRequest, Option<Status>>,
}

impl ResultWriter {
    pub fn start(pool: &DbPool) -> Self {
        Self {
            starts: GroupCommit::start(
                "task start",
                pool.clone(),
                LOOPS,
                MAX_BATCH,
                |conn, batch| Box::pin(start_tasks(conn, batch)),
            ),
            records: GroupCommit::start(
                "outcome record",
                pool.clone(),
                LOOPS,
                MAX_BATCH,
                |conn, batch| Box::pin(record_many(conn, batch)),
            ),
            settles: GroupCommit::start(
                "task settle",
                pool.clone(),
                LOOPS,
                MAX_BATCH,
                |conn, batch| Box::pin(settle_many(conn, batch)),
            ),
        }
    }

    /// See `service_requests::start_task`.
    pub async fn start_task(
        &self,
        task_id: Uuid,
        planned: Vec<PlannedServiceRequest>,
        fence: Option<&Fence>,
    ) -> Result<StartedTask, StoreError> {
        self.starts
            .write(StartRequest {
                task_id,
                planned,
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
            .write(batch::RecordRequest {
                id,
                finished,
                fence: fence.cloned(),
            })
            .await
    }

    /// See `service_requests::settle`.
    pub async fn settle(
        &self,
        task_id: Uuid,
        fence: Option<&Fence>,
    ) -> Result<Option<Status>, StoreError> {
        self.settles
            .write(SettleRequest {
                task_id,
                fence: fence.cloned(),
            })
            .await
    }
}
