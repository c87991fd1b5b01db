//! Running a whole task: start it, call every unfinished service request, then record
//! the outcomes and settle the task.
//!
//! A task normally costs two transactions, each shared with other tasks by group
//! commit: the start (which also reads the stored request) and the finish (outcomes and
//! settlement together). An outcome is recorded on its own only when the task's other
//! calls keep it waiting longer than [`OUTCOME_HOLD`].

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use orchestrator_core::{OrchestrationRequest, RequestLimits, Status, plan_items};
use orchestrator_store::lifecycle::stop::{self, Stop};
use orchestrator_store::lifecycle::{
    FailedAttempt as RecordedAttempt, FinishedServiceRequest, Planner, StartedTask, TaskToStart,
};
use orchestrator_store::{DbPool, Fence, ServiceRequestRow, StoreError, tasks};
use orchestrator_telemetry::metrics::WriteBatchMetrics;
use orchestrator_telemetry::trace::{ExportedSpan, KeyValue, SpanKind, TraceContext};
use tokio::time::Instant;
use tracing::Instrument as _;
use uuid::Uuid;

use crate::stops::RunningTasks;
use crate::writer::ResultWriter;
use orchestrator_calls::{CallOrigin, Dispatcher};

/// How long a finished call's outcome waits for the task's other calls before it is
/// recorded on its own. A task's calls usually end within this of each other, and then
/// its outcomes and its settlement go in one transaction; a call that takes longer
/// (retries, a slow service) keeps the others' outcomes unrecorded no longer than this.
pub const OUTCOME_HOLD: Duration = Duration::from_millis(200);

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
    writer: ResultWriter,
    pool: DbPool,
    dispatcher: Dispatcher,
    limits: RequestLimits,
    task_concurrency: usize,
    running: RunningTasks,
}

/// Why a task's calls were cut short.
enum Interruption {
    /// Stopped elsewhere (cancelled, or failed at its deadline by another process).
    Stopped,
    /// Its deadline passed here.
    DeadlinePassed,
}

/// A call that ended, waiting to be recorded.
struct FinishedCall {
    id: Uuid,
    service_name: String,
    finished: FinishedServiceRequest,
}

impl TaskProcessor {
    /// `write_metrics` hears about the batches of its writes (`task_start`,
    /// `outcome_record`, `task_finish`).
    pub fn new(
        pool: DbPool,
        dispatcher: Dispatcher,
        max_items: usize,
        task_concurrency: usize,
        write_metrics: WriteBatchMetrics,
    ) -> Self {
        let limits = RequestLimits {
            known_services: dispatcher.service_names(),
            max_items,
            max_deadline_secs: RequestLimits::DEFAULT_MAX_DEADLINE_SECS,
        };
        Self {
            writer: ResultWriter::start(&pool, planner(limits.clone()), &write_metrics.observer()),
            pool,
            dispatcher,
            limits,
            task_concurrency: task_concurrency.max(1),
            running: RunningTasks::default(),
        }
    }

    /// The longest deadline a request may ask for (`MAX_TASK_DEADLINE_SECS`).
    #[must_use]
    pub fn with_max_deadline_secs(mut self, seconds: u32) -> Self {
        self.limits.max_deadline_secs = seconds;
        self
    }

    /// The tasks this processor runs now; [`crate::stops::follow`] stops them.
    pub fn running_tasks(&self) -> &RunningTasks {
        &self.running
    }

    /// Counts a task finished elsewhere (a cancel) in this process's metrics.
    pub fn count_finished(&self, status: Status) {
        self.dispatcher.metrics().task_finished(status);
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
    /// The run joins the task's trace. A worker passes its pick-up of the record as
    /// `parent`, and that span stands for the run in the trace (a span of its own would
    /// last as long); an inline or direct run has a span of its own, a child of the span
    /// that accepted the task, as the task row keeps it (a new trace for a task stored
    /// before traces). Each service request's span is a child of the run's, each
    /// attempt's (sent downstream) a child of that.
    pub async fn process(
        &self,
        task_id: Uuid,
        fence: Option<&Fence>,
        request_id: Option<&str>,
        parent: Option<&TraceContext>,
    ) -> Result<Status, ProcessError> {
        let span = tracing::info_span!(
            "process_task",
            task_id = %task_id,
            request_id = request_id.unwrap_or_default(),
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
        );
        self.run(task_id, fence, request_id, parent)
            .instrument(span)
            .await
    }

    async fn run(
        &self,
        task_id: Uuid,
        fence: Option<&Fence>,
        request_id: Option<&str>,
        parent: Option<&TraceContext>,
    ) -> Result<Status, ProcessError> {
        // Registered before the start reads the task: a stop committed after that read
        // is heard and trips this run.
        let registration = self.running.register(task_id);
        // One transaction locks the task, reads its request and creates its service
        // requests. No connection is held during the HTTP calls.
        let started = self.writer.start_task(task_id, fence).await?;
        let (unfinished, deadline_at, submitted_at, traceparent) = match started {
            StartedTask::Running {
                rows,
                deadline_at,
                submitted_at,
                traceparent,
            } => (rows, deadline_at, submitted_at, traceparent),
            StartedTask::AlreadyFinished(status) => return Ok(status),
            StartedTask::Rejected(reason) => {
                // Stored before a configuration change, say: it can never run.
                tracing::warn!(%reason, "Task failed: its stored request cannot run.");
                self.dispatcher.metrics().task_finished(Status::Failed);
                return Ok(Status::Failed);
            }
            StartedTask::DeadlinePassed => {
                tracing::warn!("Task failed: its deadline passed before it started.");
                self.dispatcher.metrics().task_finished(Status::Failed);
                return Ok(Status::Failed);
            }
            StartedTask::NotFound => return Err(ProcessError::NotFound(task_id)),
        };

        // An inline or direct run's own span, which ends when the run returns.
        let (run, _own_span) = match parent {
            Some(pickup) => (pickup.clone(), ExportedSpan::none()),
            None => {
                let stored = traceparent.as_deref().and_then(TraceContext::parse);
                let own = ExportedSpan::start(
                    "process_task",
                    SpanKind::Internal,
                    stored.as_ref(),
                    Vec::new,
                );
                (own.context_or_child_of(stored.as_ref()), own)
            }
        };
        let span = tracing::Span::current();
        span.record("trace_id", run.trace_id());
        span.record("span_id", run.span_id());

        let deadline = deadline_at.map(|at| {
            let left = (at - Utc::now()).to_std().unwrap_or_default();
            Instant::now() + left
        });
        let interrupt = async {
            tokio::select! {
                () = registration.stopped() => Interruption::Stopped,
                () = sleep_until_some(deadline) => Interruption::DeadlinePassed,
            }
        };
        // A failed write leaves its service requests IN_PROGRESS; a later run redoes them.
        let (held, interrupted) = self
            .run_calls(unfinished, fence, request_id, &run, interrupt)
            .await?;
        let mut finished = Vec::with_capacity(held.len());
        let mut outcomes = Vec::with_capacity(held.len());
        for call in held {
            finished.push((call.service_name, call.finished.status));
            outcomes.push((call.id, call.finished));
        }
        match interrupted {
            None => {}
            Some(Interruption::Stopped) => {
                // The stop is committed: the outcomes not recorded yet would find
                // their service requests final; dropping the calls was the point.
                let status = self.current_status(task_id).await?;
                tracing::info!(status = %status, "Task stopped while its calls ran.");
                return Ok(status);
            }
            Some(Interruption::DeadlinePassed) => {
                // What finished before the deadline is kept; then the rest fails.
                let status = self
                    .writer
                    .finish(task_id, outcomes, fence)
                    .await?
                    .ok_or(ProcessError::NotFound(task_id))?;
                let status = if status.is_terminal() {
                    status
                } else {
                    self.expire(task_id, fence).await?
                };
                self.count(finished, status, submitted_at);
                tracing::warn!(status = %status, "Task's deadline passed while its calls ran.");
                return Ok(status);
            }
        }
        let settle = ExportedSpan::start("settle", SpanKind::Internal, Some(&run), Vec::new);
        let status = settle
            .scope(self.writer.finish(task_id, outcomes, fence))
            .await?
            .ok_or(ProcessError::NotFound(task_id))?;
        settle.end();
        self.count(finished, status, submitted_at);
        tracing::info!(status = %status, "Task processed.");
        Ok(status)
    }

    fn count(&self, finished: Vec<(String, Status)>, status: Status, submitted_at: DateTime<Utc>) {
        for (service_name, status) in finished {
            self.dispatcher
                .service_request_finished(&service_name, status);
        }
        let metrics = self.dispatcher.metrics();
        if status.is_terminal() {
            metrics.task_finished(status);
            // From submission to now, on this host's clock against the database's (a
            // skew below zero counts as zero).
            let took = (Utc::now() - submitted_at).to_std().unwrap_or_default();
            metrics.task_took(status, took.as_secs_f64());
        }
    }

    async fn connection(&self) -> Result<orchestrator_store::pool::PooledConnection, ProcessError> {
        Ok(self.pool.get().await.map_err(StoreError::from)?)
    }

    async fn current_status(&self, task_id: Uuid) -> Result<Status, ProcessError> {
        let mut conn = self.connection().await?;
        tasks::find(&mut conn, task_id)
            .await?
            .map(|task| task.status)
            .ok_or(ProcessError::NotFound(task_id))
    }

    /// Fails the task at its deadline (unless it finished meanwhile).
    async fn expire(&self, task_id: Uuid, fence: Option<&Fence>) -> Result<Status, ProcessError> {
        let mut conn = self.connection().await?;
        match stop::expire(&mut conn, task_id, fence).await? {
            Stop::Stopped(task) => Ok(task.status),
            Stop::AlreadyFinal(status) => Ok(status),
            // The clocks of this process and PostgreSQL disagree by a little: the
            // next run (or redelivery) sees the deadline passed.
            Stop::NotDue => self.current_status(task_id).await,
            Stop::NotFound => Err(ProcessError::NotFound(task_id)),
        }
    }

    /// Calls the service requests, at most `task_concurrency` at once, and returns the
    /// outcomes not recorded yet: those that ended within [`OUTCOME_HOLD`] of the last
    /// call. Older ones are recorded as they come of age.
    ///
    /// Should `interrupt` complete first, the calls still running are dropped (their
    /// connections close) and those not started never start; the outcomes held so far
    /// are returned with it.
    async fn run_calls(
        &self,
        rows: Vec<ServiceRequestRow>,
        fence: Option<&Fence>,
        request_id: Option<&str>,
        run: &TraceContext,
        interrupt: impl Future<Output = Interruption>,
    ) -> Result<(Vec<FinishedCall>, Option<Interruption>), StoreError> {
        let mut calls = futures::stream::iter(rows)
            .map(|row| self.call(row, request_id, run))
            .buffer_unordered(self.task_concurrency);
        let mut held: Vec<FinishedCall> = Vec::new();
        let mut hold_until: Option<Instant> = None;
        let mut early = FuturesUnordered::new();
        let mut interrupt = std::pin::pin!(interrupt);
        let mut interrupted = None;
        loop {
            tokio::select! {
                why = &mut interrupt => {
                    interrupted = Some(why);
                    break;
                }
                Some(written) = early.next(), if !early.is_empty() => written?,
                call = calls.next() => match call {
                    Some(call) => {
                        hold_until.get_or_insert_with(|| Instant::now() + OUTCOME_HOLD);
                        held.push(call);
                    }
                    None => break,
                },
                () = tokio::time::sleep_until(hold_until.unwrap_or_else(Instant::now)),
                    if hold_until.is_some() =>
                {
                    hold_until = None;
                    for call in held.drain(..) {
                        early.push(self.record(call, fence));
                    }
                }
            }
        }
        drop(calls);
        while let Some(written) = early.next().await {
            written?;
        }
        Ok((held, interrupted))
    }

    /// Makes one service request. No `tracing` span of its own: one per call, made,
    /// formatted and entered on every poll for the few lines logged inside it, was 8%
    /// of a worker's instructions per task (`make bench-instructions`); the lines that
    /// are logged name the service.
    async fn call(
        &self,
        row: ServiceRequestRow,
        request_id: Option<&str>,
        run: &TraceContext,
    ) -> FinishedCall {
        let exported =
            ExportedSpan::start("service_request", SpanKind::Internal, Some(run), || {
                vec![
                    KeyValue::new("orchestrator.service", row.service_name.clone()),
                    KeyValue::new("orchestrator.service_request.id", row.id.to_string()),
                ]
            });
        let trace = exported.context_or_child_of(Some(run));
        let origin = CallOrigin {
            request_id,
            trace: Some(&trace),
        };
        let outcome = self
            .dispatcher
            .call(&row.service_name, row.id, &row.request_payload, origin)
            .await;
        let (status, response_payload, error_message) = match outcome.result {
            Ok(response) => (Status::Completed, Some(response), None),
            Err(error) => {
                // Failed for good (retries are spent or pointless): the task will fail,
                // which an operator should see without turning on INFO.
                tracing::warn!(
                    service = %row.service_name,
                    item = row.item_index,
                    // The service request's span: the run's is the line's span.
                    service_request_span_id = trace.span_id(),
                    attempts = outcome.attempts,
                    %error,
                    "Service request failed."
                );
                (Status::Failed, None, Some(error.to_string()))
            }
        };
        let failed_attempts = outcome
            .failed_attempts
            .iter()
            .map(|attempt| RecordedAttempt {
                number: i32::try_from(attempt.number).unwrap_or(i32::MAX),
                started_at: attempt.started_at,
                duration_ms: i64::try_from(attempt.duration.as_millis()).unwrap_or(i64::MAX),
                status_code: attempt.status_code().map(i32::from),
                error: attempt.error.to_string(),
            })
            .collect();
        FinishedCall {
            id: row.id,
            service_name: row.service_name,
            finished: FinishedServiceRequest {
                status,
                attempts: i32::try_from(outcome.attempts).unwrap_or(i32::MAX),
                response_payload,
                error_message,
                started_at: outcome.started_at,
                completed_at: outcome.completed_at,
                failed_attempts,
            },
        }
    }

    /// Records one outcome ahead of the task's finish.
    async fn record(&self, call: FinishedCall, fence: Option<&Fence>) -> Result<(), StoreError> {
        let status = call.finished.status;
        self.writer.record(call.id, call.finished, fence).await?;
        self.dispatcher
            .service_request_finished(&call.service_name, status);
        Ok(())
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Plans a stored task as the API accepted it: its payload read again with the services
/// this worker knows, so a request that names a service removed since fails with a
/// reason instead of running half.
fn planner(limits: RequestLimits) -> Arc<Planner<'static>> {
    Arc::new(move |task: &TaskToStart| {
        OrchestrationRequest::parse_stored_payload(task.payload.get(), &limits)
            .map(|items| plan_items(task.state.task_id, &items))
            .map_err(|errors| format!("the stored request can no longer be processed: {errors}"))
    })
}
