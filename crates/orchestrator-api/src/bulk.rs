//! Bulk operations in the background: every API replica runs one [`BulkRunner`] loop
//! that claims a running operation nobody holds (`orchestrator_store::bulk::claim`),
//! then handles its tasks one at a time at the operation's rate, each in one
//! transaction with the operation's progress, until none is left, the operation is
//! stopped, or another replica took it over. A replica that dies holds its operation
//! only until the claim expires (`BULK_CLAIM_SECS`); then any replica carries on from
//! the last task handled.

use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use diesel_async::AsyncConnection;
use orchestrator_core::{BulkAction, TenantName};
use orchestrator_store::StoreError;
use orchestrator_store::bulk::{self, BulkRow};
use orchestrator_store::lifecycle::redrive::{self, Redrive};
use orchestrator_store::lifecycle::stop::{self, Stop};
use tokio::sync::Notify;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::AppState;

/// Tasks read ahead per query.
const BATCH: i64 = 100;

/// This replica's side of bulk operations. Cheap to clone.
#[derive(Debug, Clone)]
pub struct BulkRunner {
    /// Stands for this process in `claimed_by`.
    owner: Arc<str>,
    /// The rate a new operation gets (`BULK_RATE_PER_SECOND`).
    pub rate_per_second: u32,
    claim_secs: i32,
    poll: Duration,
    wake: Arc<Notify>,
}

impl BulkRunner {
    pub fn new(rate_per_second: u32, claim_secs: u32, poll: Duration) -> Self {
        Self {
            owner: format!("api-{}", Uuid::new_v4().simple()).into(),
            rate_per_second,
            claim_secs: i32::try_from(claim_secs).unwrap_or(i32::MAX),
            poll,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Looks for work now (an operation was just made here).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Runs the loop until `stop`; then lets go of the operation it holds, so another
    /// replica carries on at once.
    pub fn start(&self, state: web::Data<AppState>, stop: CancellationToken) {
        let runner = self.clone();
        tokio::spawn(async move { runner.run(&state, &stop).await });
    }

    async fn run(&self, state: &AppState, stop: &CancellationToken) {
        loop {
            loop {
                let claimed = async {
                    let mut conn = state.pool.get().await?;
                    bulk::claim(&mut conn, &self.owner, self.claim_secs).await
                }
                .await;
                let operation = match claimed {
                    Ok(Some(operation)) => operation,
                    Ok(None) => break,
                    Err(error) => {
                        tracing::warn!(%error, "Could not look for bulk operations.");
                        break;
                    }
                };
                let id = operation.id;
                tracing::info!(bulk_id = %id, action = %operation.action, done_through = operation.done_through, "Working on a bulk operation.");
                if let Err(error) = self.drive(state, operation, stop).await {
                    // Its claim lapses and a replica (this one too) carries on later.
                    tracing::warn!(bulk_id = %id, error = %orchestrator_stdx::error_chain(&error), "A bulk operation stopped on an error; it resumes when its claim expires.");
                }
                if stop.is_cancelled() {
                    return;
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.poll) => {}
            }
        }
    }

    /// Handles the operation's tasks at its rate until none is left (then completes
    /// it), it is stopped or taken over, or the replica stops (then lets go of it).
    async fn drive(
        &self,
        state: &AppState,
        operation: BulkRow,
        stop: &CancellationToken,
    ) -> Result<(), ApiError> {
        let action = operation.action()?;
        let tenant =
            TenantName::parse(&operation.tenant).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let rate = f64::from(operation.rate_per_second.max(1));
        let mut pace = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        pace.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let request_id = operation
            .request_id
            .clone()
            .unwrap_or_else(|| format!("bulk-{}", operation.id));
        let mut after = operation.done_through;
        loop {
            let batch = {
                let mut conn = state.pool.get().await.map_err(StoreError::from)?;
                bulk::next_tasks(&mut conn, &operation, after, BATCH).await?
            };
            if batch.is_empty() {
                let mut conn = state.pool.get().await.map_err(StoreError::from)?;
                if bulk::complete(&mut conn, operation.id, &self.owner).await? {
                    tracing::info!(bulk_id = %operation.id, "Bulk operation completed.");
                }
                return Ok(());
            }
            for (row, task_id) in batch {
                tokio::select! {
                    () = stop.cancelled() => {
                        let mut conn = state.pool.get().await.map_err(StoreError::from)?;
                        bulk::release(&mut conn, operation.id, &self.owner).await?;
                        return Ok(());
                    }
                    _ = pace.tick() => {}
                }
                let step = Step {
                    operation: operation.id,
                    action,
                    tenant: &tenant,
                    row,
                    task_id,
                    request_id: &request_id,
                };
                if !self.step(state, &step).await? {
                    tracing::info!(bulk_id = %operation.id, "Bulk operation stopped, or taken over by another replica.");
                    return Ok(());
                }
                after = row;
            }
        }
    }

    /// Handles one task in one transaction with the operation's progress; false when
    /// the operation is no longer running or no longer this replica's (nothing done).
    async fn step(&self, state: &AppState, step: &Step<'_>) -> Result<bool, ApiError> {
        let mut conn = state.pool.get().await.map_err(StoreError::from)?;
        let queue = state.queue.clone();
        let outcome = conn
            .transaction::<_, ApiError, _>(async |conn| {
                if !bulk::begin_step(conn, step.operation, &self.owner, self.claim_secs).await? {
                    return Ok(None);
                }
                let acted = match step.action {
                    BulkAction::Retry => {
                        match redrive::redrive(conn, step.tenant, step.task_id).await? {
                            Redrive::Reopened { traceparent, .. } => {
                                // As a single re-drive does: published while the task is
                                // locked, so a publish failure rolls it back.
                                if let Some(queue) = &queue {
                                    queue
                                        .publish_redrive(
                                            step.task_id,
                                            step.request_id,
                                            traceparent.as_deref(),
                                        )
                                        .await
                                        .map_err(ApiError::QueueUnavailable)?;
                                }
                                true
                            }
                            Redrive::NotFailed(_) | Redrive::NotFound => false,
                        }
                    }
                    BulkAction::Cancel => matches!(
                        stop::cancel(conn, step.tenant, step.task_id).await?,
                        Stop::Stopped(_)
                    ),
                };
                bulk::end_step(conn, step.operation, step.row, acted).await?;
                Ok(Some(acted))
            })
            .await?;
        if outcome == Some(true) && step.action == BulkAction::Retry && queue.is_none() {
            state
                .runner
                .submit(step.task_id, Some(step.request_id.to_owned()));
        }
        Ok(outcome.is_some())
    }
}

/// One task of an operation.
struct Step<'a> {
    operation: Uuid,
    action: BulkAction,
    tenant: &'a TenantName,
    /// The task's `tasks.id`, the operation's progress.
    row: i64,
    task_id: Uuid,
    request_id: &'a str,
}
