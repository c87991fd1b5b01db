//! Running the tasks whose records were lost from a partition's log before the
//! consumer read them: records expired under its committed offset (a broker's
//! retention, Event Hubs' 1 to 7 days), or the log was truncated or recreated.
//!
//! Such a task is still in PostgreSQL, unfinished, and nothing else would ever run it.
//! The partition's owner runs every unfinished task of its partition (the one its
//! records go to, `core::partition_of_task`) accepted before the loss was seen, once it
//! has read the surviving log up to where it ended then: a task whose record survived
//! has run from it by that time, so it is not run twice, and one accepted later has
//! its record still to come. Running a task that is running or ran already changes
//! nothing (the processing invariant), so a run cut short by a crash is simply started
//! again by the next owner: the debt is on the lease row until it is cleared.

use std::sync::Arc;

use futures::StreamExt;
use orchestrator_core::partition_of_task;
use orchestrator_store::leases::LostRecords;
use orchestrator_store::{Fence, StoreError, tasks};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::consumer::{ConsumerContext, RecordError, RunEnd, run_task};

/// Unfinished tasks read per query. They are of every partition (the partition is a
/// hash of the id, not a column), so one page holds about `1 / partitions` of ours.
const PAGE: i64 = 1_000;

#[derive(Debug, thiserror::Error)]
pub(crate) enum RecoveryError {
    #[error("the partition's lease moved on")]
    Fenced,
    #[error("the consumer is stopping")]
    Stopped,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Runs the unfinished tasks of the fence's partition accepted before `lost.before`,
/// oldest first, each under a slot of `permits` (the partition's records in flight
/// share them). Returns how many it ran.
pub(crate) async fn run_lost_tasks(
    ctx: Arc<ConsumerContext>,
    fence: Arc<Fence>,
    lost: LostRecords,
    permits: Arc<Semaphore>,
    stop: CancellationToken,
) -> Result<usize, RecoveryError> {
    let partition = u32::try_from(fence.partition).unwrap_or(u32::MAX);
    let mut after = None;
    let mut ran = 0;
    loop {
        let page = {
            let mut conn = ctx.pool.get().await.map_err(StoreError::from)?;
            tasks::unfinished(&mut conn, after, PAGE).await?
        };
        let full = i64::try_from(page.len()).unwrap_or(i64::MAX) >= PAGE;
        let mut ours = Vec::new();
        let mut past = false;
        for (cursor, task_id) in page {
            if cursor.created_at >= lost.before {
                past = true;
                break;
            }
            if partition_of_task(task_id, ctx.partitions) == partition {
                ours.push(task_id);
            }
            after = Some(cursor);
        }
        let mut runs = futures::stream::iter(ours)
            .map(|task_id| {
                let (ctx, fence, permits, stop) = (&ctx, &fence, &permits, &stop);
                async move {
                    let _permit = Arc::clone(permits)
                        .acquire_owned()
                        .await
                        .map_err(|_| RecoveryError::Stopped)?;
                    tracing::info!(%task_id, "Running a task whose record was lost.");
                    match run_task(ctx, fence, task_id, None, None, stop).await {
                        Ok(RunEnd::Ran) => {
                            ctx.status.metrics().lost_tasks_run(1);
                            Ok(1)
                        }
                        // Removed meanwhile: nothing is owed.
                        Ok(RunEnd::NotFound) => Ok(0),
                        Err(RecordError::Fenced) => Err(RecoveryError::Fenced),
                        Err(RecordError::Stopped) => Err(RecoveryError::Stopped),
                    }
                }
            })
            .buffer_unordered(ctx.max_in_flight.max(1));
        while let Some(run) = runs.next().await {
            ran += run?;
        }
        if past || !full {
            break;
        }
    }
    Ok(ran)
}
