//! Running a whole task: start it, call every unfinished service request, record each
//! outcome as it arrives, then settle the task.

use futures::StreamExt;
use orchestrator_core::{OrchestrationRequest, RequestLimits, Status, plan_service_requests};
use orchestrator_store::service_requests::{FinishedServiceRequest, StartedTask};
use orchestrator_store::{DbPool, Fence, ServiceRequestRow, StoreError, tasks};
use serde_json::json;
use uuid::Uuid;

use crate::client::Dispatcher;
use crate::writer::ResultWriter;

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("task {0} does not exist")]
    NotFound(Uuid),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Runs tasks to completion. Cheap to clone.
#[derive(Clone)]
pub struct TaskProcessor {
    pool: DbPool,
    writer: ResultWriter,
    dispatcher: Dispatcher,
    limits: RequestLimits,
    task_concurrency: usize,
}

impl TaskProcessor {
    pub fn new(
        pool: DbPool,
        dispatcher: Dispatcher,
        max_items: usize,
        task_concurrency: usize,
    ) -> Self {
        let limits = RequestLimits {
            known_services: dispatcher.service_names(),
            max_items,
        };
        Self {
            writer: ResultWriter::start(&pool),
            pool,
            dispatcher,
            limits,
            task_concurrency: task_concurrency.max(1),
        }
    }

    /// Sets the breaker gauges to the breakers' current states (before a scrape).
    pub fn publish_breaker_states(&self) {
        self.dispatcher.publish_breaker_states();
    }

    /// What a request must satisfy to be accepted: the services this processor knows.
    pub fn request_limits(&self) -> &RequestLimits {
        &self.limits
    }

    /// Processes a task until it settles and returns its final status.
    ///
    /// Safe to run again for the same task, concurrently or after a crash: service
    /// requests are created once, finished ones are not called again, and a finished
    /// task is returned as it is. Unfinished service requests are called again with
    /// the same `Idempotency-Key`.
    ///
    /// A worker passes the `fence` of the partition lease the task's record came from:
    /// every write then fails with [`StoreError::Fenced`] once the lease has moved on.
    /// `request_id` (the accepting request's `X-Request-Id`) goes downstream as a header.
    #[tracing::instrument(
        name = "process_task",
        skip(self, fence, request_id),
        fields(task_id = %task_id, request_id = request_id.unwrap_or_default())
    )]
    pub async fn process(
        &self,
        task_id: Uuid,
        fence: Option<&Fence>,
        request_id: Option<&str>,
    ) -> Result<Status, ProcessError> {
        let unfinished = {
            let mut conn = self.pool.get().await.map_err(StoreError::from)?;
            let task = tasks::find(&mut conn, task_id)
                .await?
                .ok_or(ProcessError::NotFound(task_id))?;
            if task.status.is_terminal() {
                return Ok(task.status);
            }
            let body = json!({
                "task_name": task.task_name,
                "task_description": task.task_description,
                "payload": task.payload,
            });
            let request = match OrchestrationRequest::parse(&body, &self.limits) {
                Ok(request) => request,
                Err(errors) => {
                    // Stored before a configuration change, say: it can never run.
                    let reason = format!("the stored request can no longer be processed: {errors}");
                    tracing::warn!(%reason, "Failing task.");
                    tasks::fail_unfinished(&mut conn, task_id, &reason, fence).await?;
                    self.dispatcher.metrics().task_finished(Status::Failed);
                    return Ok(Status::Failed);
                }
            };
            let planned = plan_service_requests(task_id, &request);
            // The connection goes back to the pool before the (batched) start.
            drop(conn);
            match self.writer.start_task(task_id, planned, fence).await? {
                StartedTask::Running(rows) => rows,
                StartedTask::AlreadyFinished(status) => return Ok(status),
                StartedTask::NotFound => return Err(ProcessError::NotFound(task_id)),
            }
            // No connection is held during HTTP calls.
        };

        let recorded: Vec<Result<(), StoreError>> = futures::stream::iter(unfinished)
            .map(|row| self.run_service_request(row, fence, request_id))
            .buffer_unordered(self.task_concurrency)
            .collect()
            .await;
        // A failed write leaves that service request IN_PROGRESS; a later run redoes it.
        if let Some(error) = recorded.into_iter().find_map(Result::err) {
            return Err(error.into());
        }

        let status = self
            .writer
            .settle(task_id, fence)
            .await?
            .ok_or(ProcessError::NotFound(task_id))?;
        if status.is_terminal() {
            self.dispatcher.metrics().task_finished(status);
        }
        tracing::info!(status = %status, "Task processed.");
        Ok(status)
    }

    #[tracing::instrument(skip_all, fields(service = %row.service_name, item = row.item_index))]
    async fn run_service_request(
        &self,
        row: ServiceRequestRow,
        fence: Option<&Fence>,
        request_id: Option<&str>,
    ) -> Result<(), StoreError> {
        let outcome = self
            .dispatcher
            .call(&row.service_name, row.id, &row.request_payload, request_id)
            .await;
        let (status, response_payload, error_message) = match outcome.result {
            Ok(response) => (Status::Completed, Some(response), None),
            Err(error) => {
                tracing::info!(attempts = outcome.attempts, %error, "Service request failed.");
                (Status::Failed, None, Some(error.to_string()))
            }
        };
        let finished = FinishedServiceRequest {
            status,
            attempts: i32::try_from(outcome.attempts).unwrap_or(i32::MAX),
            response_payload,
            error_message,
            started_at: outcome.started_at,
            completed_at: outcome.completed_at,
        };
        self.writer.record(row.id, finished, fence).await?;
        self.dispatcher
            .metrics()
            .service_request_finished(&row.service_name, status);
        Ok(())
    }
}
