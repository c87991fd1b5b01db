//! Consuming one partition under a lease: fetch, process records concurrently, commit
//! the offset up to the first record not fully processed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use orchestrator_core::TaskEnvelope;
use orchestrator_processing::{ProcessError, TaskProcessor};
use orchestrator_stdx::error_chain;
use orchestrator_store::leases::{self, LostRecords};
use orchestrator_store::{DbPool, Fence, StoreError};
use orchestrator_telemetry::trace::{
    ExportedSpan, KeyValue, SpanKind, TraceContext, spans_exported,
};
use rskafka::client::error::{Error as ClientError, ProtocolError};
use rskafka::client::partition::{OffsetAt, PartitionClient};
use rskafka::record::RecordAndOffset;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;

use crate::dead_letters::DeadLetters;
use crate::offsets::OffsetTracker;
use crate::recovery::{self, RecoveryError};
use crate::status::{PartitionProgress, WorkerStatus};

/// Longest wait between two tries of a record whose processing failed for a reason
/// other than its content (the database was unreachable, say).
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// What every partition consumer of a worker shares.
pub struct ConsumerContext {
    pub pool: DbPool,
    pub processor: TaskProcessor,
    pub dead_letters: DeadLetters,
    pub max_in_flight: usize,
    /// The topic's partition count: which partition a task's records go to.
    pub partitions: u32,
    pub fetch_max_bytes: i32,
    pub fetch_max_wait_ms: i32,
    pub commit_interval: Duration,
    /// What this replica reports on its HTTP port.
    pub status: Arc<WorkerStatus>,
}

/// How a partition consumer ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsumerExit {
    /// Stopped on request: drained, committed and released its lease.
    Released,
    /// Another replica took the lease over; nothing more was written.
    Lost,
}

/// Why a record (or a lost task's run) was not finished.
#[derive(Debug)]
pub(crate) enum RecordError {
    /// The lease moved on: stop the whole partition.
    Fenced,
    /// The consumer is stopping; the record stays uncommitted for the next owner.
    Stopped,
}

enum Fetched {
    Record(Box<RecordAndOffset>, OwnedSemaphorePermit),
    /// Nothing to read below this offset (a gap in the log).
    SkippedTo(i64),
    /// The log no longer holds our offset: records we had not read are gone.
    Lost(LogLoss),
}

/// Records gone from a partition's log before the consumer read them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LogLoss {
    /// The offset the consumer was at.
    from: i64,
    /// Where the surviving log starts: consumption resumes here.
    to: i64,
    /// Where the surviving log ended when the loss was seen.
    log_end: i64,
    reason: LossReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LossReason {
    /// Below the log's start: the records expired (retention) or were deleted.
    Expired,
    /// Past the log's end: the log was truncated or recreated.
    LogReset,
}

impl LossReason {
    /// Where `offset` stands against a log that starts at `earliest` and no longer
    /// holds it.
    fn of(offset: i64, earliest: i64) -> Self {
        if offset < earliest {
            Self::Expired
        } else {
            Self::LogReset
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Expired => "expired",
            Self::LogReset => "log_reset",
        }
    }
}

/// How long a stopping consumer may wait for its records in flight. Set by whoever
/// cancels the stop token, before cancelling: a handoff drains briefly so the
/// rebalance stays within the lease bounds, a shutdown may take longer.
#[derive(Debug, Clone, Default)]
pub struct DrainBudget(Arc<AtomicU64>);

impl DrainBudget {
    pub fn set(&self, budget: Duration) {
        let millis = u64::try_from(budget.as_millis()).unwrap_or(u64::MAX);
        self.0.store(millis, Ordering::SeqCst);
    }

    fn get(&self) -> Duration {
        Duration::from_millis(self.0.load(Ordering::SeqCst))
    }
}

/// Consumes `client`'s partition from `start` under `fence` until `stop` is cancelled
/// (then drains within the `drain` budget, commits and releases the lease) or the lease
/// is lost. `lost`: tasks a previous owner found lost from the log and did not run yet.
#[allow(clippy::too_many_arguments)]
pub async fn consume(
    ctx: Arc<ConsumerContext>,
    client: Arc<PartitionClient>,
    fence: Fence,
    start: i64,
    lost: Option<LostRecords>,
    stop: CancellationToken,
    drain: DrainBudget,
    progress: Arc<PartitionProgress>,
) -> ConsumerExit {
    let fence = Arc::new(fence);
    let permits = Arc::new(Semaphore::new(ctx.max_in_flight));
    let (tx, mut rx) = mpsc::channel(ctx.max_in_flight);
    let fetcher = tokio::spawn(
        fetch_loop(
            Arc::clone(&ctx),
            Arc::clone(&client),
            start,
            Arc::clone(&permits),
            tx,
            Arc::clone(&progress),
        )
        .in_current_span(),
    );
    let _abort_fetcher = AbortOnDropHandle::new(fetcher);

    let mut tracker = OffsetTracker::new(start);
    let mut committed = start;
    let mut records: JoinSet<(i64, Result<(), RecordError>)> = JoinSet::new();
    let mut commit_tick = tokio::time::interval(ctx.commit_interval);
    commit_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The tasks owed a run because their records were lost, and that run (at most one;
    // aborted with the set when the consumer ends: the debt stays on the lease row).
    let mut owed = lost;
    let mut recovering: JoinSet<(LostRecords, Result<usize, RecoveryError>)> = JoinSet::new();

    loop {
        progress.in_flight(tracker.in_flight());
        progress.processed_to(tracker.commit_point());
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            Some(joined) = records.join_next(), if !records.is_empty() => {
                match finished(joined) {
                    Finished::Done(offset) => tracker.finished(offset),
                    Finished::Pending => {}
                    Finished::Fenced => {
                        records.abort_all();
                        return ConsumerExit::Lost;
                    }
                }
            }
            Some(joined) = recovering.join_next(), if !recovering.is_empty() => {
                if let Err(exit) = recovered(&ctx, &fence, joined, &mut owed).await {
                    records.abort_all();
                    return exit;
                }
            }
            Some(item) = rx.recv() => match item {
                Fetched::Record(record, permit) => {
                    tracker.started(record.offset);
                    let ctx = Arc::clone(&ctx);
                    let fence = Arc::clone(&fence);
                    let stop = stop.clone();
                    records.spawn(async move {
                        let offset = record.offset;
                        let result = process_record(&ctx, &fence, &record, &stop).await;
                        drop(permit);
                        (offset, result)
                    }.in_current_span());
                }
                Fetched::SkippedTo(offset) => tracker.skipped_to(offset),
                Fetched::Lost(loss) => {
                    // A run of an earlier debt stops: the new one covers it.
                    recovering.abort_all();
                    match follow_loss(
                        &ctx, &fence, loss, &mut records, &mut tracker, &mut committed, &progress,
                        &stop,
                    ).await {
                        Ok(Some(lost)) => owed = Some(lost),
                        Ok(None) => {} // Stopping: the next owner finds the loss again.
                        Err(lost) => return lost,
                    }
                }
            },
            _ = commit_tick.tick() => {
                if let Err(lost) = commit(&ctx.pool, &fence, &tracker, &mut committed).await {
                    records.abort_all();
                    return lost;
                }
                progress.committed(committed);
                // The surviving log is read up to where it ended when the loss was seen:
                // every task whose record survived has run from it, so what is still
                // unfinished of the lost ones runs now.
                if let Some(lost) = owed
                    && recovering.is_empty()
                    && committed >= lost.recover_at_offset
                {
                    let run = recovery::run_lost_tasks(
                        Arc::clone(&ctx),
                        Arc::clone(&fence),
                        lost,
                        Arc::clone(&permits),
                        stop.clone(),
                    );
                    recovering.spawn(async move { (lost, run.await) }.in_current_span());
                }
            }
        }
    }

    // Graceful stop: no more fetching.
    drop(_abort_fetcher);
    drop(rx);
    recovering.abort_all();
    finish_gracefully(&ctx, &fence, records, tracker, committed, &drain).await
}

/// Records lost from the partition's log: the records of the old log in flight finish
/// first; then the consumer goes on from where the surviving log starts, and the lease
/// row records it together with the debt of the lost tasks. Says so as an ERROR and in
/// `offset_resets_total`: records the consumer had not read are gone. `Ok(None)` when
/// the consumer stopped before the reset was recorded: the next owner, resuming from
/// the old offset, finds the loss again.
#[allow(clippy::too_many_arguments)]
async fn follow_loss(
    ctx: &ConsumerContext,
    fence: &Fence,
    loss: LogLoss,
    records: &mut JoinSet<(i64, Result<(), RecordError>)>,
    tracker: &mut OffsetTracker,
    committed: &mut i64,
    progress: &PartitionProgress,
    stop: &CancellationToken,
) -> Result<Option<LostRecords>, ConsumerExit> {
    while let Some(joined) = records.join_next().await {
        if matches!(finished(joined), Finished::Fenced) {
            return Err(ConsumerExit::Lost);
        }
    }
    tracing::error!(
        offset = loss.from,
        committed = *committed,
        earliest = loss.to,
        log_end = loss.log_end,
        reason = loss.reason.as_str(),
        "The partition's log no longer holds the consumer's offset: records not yet read \
         are gone. Resuming from the log's start; the unfinished tasks of this partition \
         accepted until now run once the surviving log is read."
    );
    ctx.status.metrics().offset_reset(loss.reason.as_str());
    let mut delays = retry_delays();
    loop {
        match reset_offset(&ctx.pool, fence, loss.to, loss.log_end).await {
            Ok(lost) => {
                // Only now: a commit past the lost records before the debt is recorded
                // would leave nobody to find them.
                tracker.reset(loss.to);
                *committed = loss.to;
                progress.committed(loss.to);
                return Ok(Some(lost));
            }
            Err(StoreError::Fenced { .. }) => return Err(ConsumerExit::Lost),
            Err(error) => {
                let delay = next_delay(&mut delays);
                tracing::warn!(error = %error_chain(&error), delay_ms = delay.as_millis(), "Could not record the offset reset; retrying.");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = stop.cancelled() => return Ok(None),
                }
            }
        }
    }
}

/// A run of the tasks owed by a loss ended: when it ran them all, that debt is cleared
/// (a later loss's stays owed); otherwise it stays, and the next commit tick starts
/// another run.
async fn recovered(
    ctx: &ConsumerContext,
    fence: &Fence,
    joined: Result<(LostRecords, Result<usize, RecoveryError>), tokio::task::JoinError>,
    owed: &mut Option<LostRecords>,
) -> Result<(), ConsumerExit> {
    match joined {
        Ok((lost, Ok(ran))) => {
            let cleared = async {
                let mut conn = ctx.pool.get().await?;
                leases::clear_lost_records(&mut conn, fence, &lost).await
            }
            .await;
            match cleared {
                Ok(()) => {
                    tracing::info!(
                        tasks = ran,
                        lost_before = %lost.before,
                        "Ran the unfinished tasks whose records were lost from the log."
                    );
                    if *owed == Some(lost) {
                        *owed = None;
                    }
                }
                Err(StoreError::Fenced { .. }) => return Err(ConsumerExit::Lost),
                Err(error) => {
                    tracing::warn!(error = %error_chain(&error), "Could not record that the lost tasks ran; they are looked for again.");
                }
            }
        }
        Ok((_, Err(RecoveryError::Fenced))) => return Err(ConsumerExit::Lost),
        Ok((_, Err(RecoveryError::Stopped))) => {}
        Ok((_, Err(RecoveryError::Store(error)))) => {
            tracing::warn!(error = %error_chain(&error), "Looking for the tasks whose records were lost failed; retrying.");
        }
        Err(error) => {
            if error.is_panic() {
                tracing::error!(%error, "Running the tasks whose records were lost panicked; retrying.");
            }
        }
    }
    Ok(())
}

/// A graceful stop once fetching has ended: lets the records in flight finish within
/// the drain budget, commits what is done and releases the lease.
async fn finish_gracefully(
    ctx: &ConsumerContext,
    fence: &Fence,
    mut records: JoinSet<(i64, Result<(), RecordError>)>,
    mut tracker: OffsetTracker,
    mut committed: i64,
    drain: &DrainBudget,
) -> ConsumerExit {
    let drained = tokio::time::timeout(drain.get(), async {
        while let Some(joined) = records.join_next().await {
            match finished(joined) {
                Finished::Done(offset) => tracker.finished(offset),
                Finished::Pending => {}
                Finished::Fenced => return Err(ConsumerExit::Lost),
            }
        }
        Ok(())
    })
    .await;
    match drained {
        Ok(Err(lost)) => return lost,
        Ok(Ok(())) => {}
        Err(_) => {
            tracing::warn!(
                in_flight = tracker.in_flight(),
                "Records still running at the drain deadline; the next owner processes them again."
            );
            records.abort_all();
        }
    }
    if let Err(lost) = commit(&ctx.pool, fence, &tracker, &mut committed).await {
        return lost;
    }
    match release(&ctx.pool, fence).await {
        Ok(()) => tracing::info!(committed, "Partition released."),
        Err(error) => {
            tracing::warn!(error = %error_chain(&error), "Could not release the lease; it expires instead.")
        }
    }
    ConsumerExit::Released
}

enum Finished {
    Done(i64),
    Pending,
    Fenced,
}

fn finished(joined: Result<(i64, Result<(), RecordError>), tokio::task::JoinError>) -> Finished {
    match joined {
        Ok((offset, Ok(()))) => Finished::Done(offset),
        Ok((_, Err(RecordError::Fenced))) => Finished::Fenced,
        Ok((_, Err(RecordError::Stopped))) => Finished::Pending,
        Err(error) => {
            // A panic in processing: leave the record uncommitted so the next owner (or
            // this replica after a restart) tries it again, and say so loudly.
            if error.is_panic() {
                tracing::error!(%error, "Processing a record panicked; it stays uncommitted.");
            }
            Finished::Pending
        }
    }
}

async fn commit(
    pool: &DbPool,
    fence: &Fence,
    tracker: &OffsetTracker,
    committed: &mut i64,
) -> Result<(), ConsumerExit> {
    let point = tracker.commit_point();
    if point <= *committed {
        return Ok(());
    }
    let result = async {
        let mut conn = pool.get().await?;
        leases::commit_offset(&mut conn, fence, point).await
    }
    .await;
    match result {
        Ok(()) => {
            *committed = point;
            Ok(())
        }
        Err(StoreError::Fenced { .. }) => {
            tracing::warn!(offset = point, "Offset commit refused: the lease moved on.");
            Err(ConsumerExit::Lost)
        }
        Err(error) => {
            // The records stay done in memory; the next tick commits them.
            tracing::warn!(error = %error_chain(&error), "Offset commit failed; will retry.");
            Ok(())
        }
    }
}

async fn reset_offset(
    pool: &DbPool,
    fence: &Fence,
    offset: i64,
    log_end: i64,
) -> Result<LostRecords, StoreError> {
    let mut conn = pool.get().await?;
    leases::reset_offset(&mut conn, fence, offset, log_end).await
}

async fn release(pool: &DbPool, fence: &Fence) -> Result<(), StoreError> {
    let mut conn = pool.get().await?;
    leases::release(&mut conn, fence).await.map(|_| ())
}

/// Reads records and hands them over, waiting for a processing slot before each one so
/// that at most `max_in_flight` records of the partition are in memory and running.
async fn fetch_loop(
    ctx: Arc<ConsumerContext>,
    client: Arc<PartitionClient>,
    start: i64,
    permits: Arc<Semaphore>,
    tx: mpsc::Sender<Fetched>,
    progress: Arc<PartitionProgress>,
) {
    let mut next = start;
    let mut delays = retry_delays();
    loop {
        let fetched = client
            .fetch_records(next, 1..ctx.fetch_max_bytes, ctx.fetch_max_wait_ms)
            .await;
        match fetched {
            Ok((records, high_watermark)) => {
                delays = retry_delays();
                progress.high_watermark(high_watermark);
                if records.is_empty() {
                    if high_watermark < next {
                        // Past the log's end (a broker that answers so rather than with
                        // OffsetOutOfRange): the log was truncated or recreated.
                        let Some(earliest) = earliest_offset(&client, next, &mut delays).await
                        else {
                            continue;
                        };
                        let loss = LogLoss {
                            from: next,
                            to: earliest,
                            log_end: high_watermark.max(earliest),
                            reason: LossReason::LogReset,
                        };
                        next = earliest;
                        if tx.send(Fetched::Lost(loss)).await.is_err() {
                            return;
                        }
                    } else if high_watermark > next {
                        // Data the broker counts but returned nothing of (control batches
                        // or a gap): step over it rather than ask again at once.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    continue;
                }
                for record in records {
                    let offset = record.offset;
                    let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                        return;
                    };
                    if tx
                        .send(Fetched::Record(Box::new(record), permit))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    next = offset + 1;
                }
                if tx.send(Fetched::SkippedTo(next)).await.is_err() {
                    return;
                }
            }
            Err(ClientError::ServerError {
                protocol_error: ProtocolError::OffsetOutOfRange,
                ..
            }) => {
                let Some(earliest) = earliest_offset(&client, next, &mut delays).await else {
                    continue;
                };
                // Where the surviving log ends, for when its tasks have all run. Kafka
                // and Event Hubs answer it exactly (Tansu, which never expires records,
                // answers the last batch's start: at worst a lost task's run starts a
                // batch early, and that batch's tasks run twice, which is safe).
                let log_end = match client.get_offset(OffsetAt::Latest).await {
                    Ok(end) => end.max(earliest),
                    Err(error) => {
                        tracing::warn!(error = %error_chain(&error), "Cannot read where the log ends; retrying.");
                        tokio::time::sleep(next_delay(&mut delays)).await;
                        continue;
                    }
                };
                let loss = LogLoss {
                    from: next,
                    to: earliest,
                    log_end,
                    reason: LossReason::of(next, earliest),
                };
                next = earliest;
                if tx.send(Fetched::Lost(loss)).await.is_err() {
                    return;
                }
            }
            Err(error) => {
                tracing::warn!(offset = next, error = %error_chain(&error), "Fetch failed; retrying.");
                tokio::time::sleep(next_delay(&mut delays)).await;
            }
        }
    }
}

/// Where the partition's log starts now, asked when it no longer holds `offset`; `None`
/// (after a wait) when the broker did not answer, to try the fetch again.
async fn earliest_offset(
    client: &PartitionClient,
    offset: i64,
    delays: &mut ExponentialBackoff,
) -> Option<i64> {
    match client.get_offset(OffsetAt::Earliest).await {
        Ok(earliest) => Some(earliest.max(0)),
        Err(error) => {
            tracing::warn!(offset, error = %error_chain(&error), "Cannot read where the log starts; retrying.");
            tokio::time::sleep(next_delay(delays)).await;
            None
        }
    }
}

/// Processes one record to the end: its task runs (or it goes to the dead-letter topic).
/// Failures that another try may cure are retried until the consumer stops.
async fn process_record(
    ctx: &ConsumerContext,
    fence: &Fence,
    record: &RecordAndOffset,
    stop: &CancellationToken,
) -> Result<(), RecordError> {
    let envelope = match TaskEnvelope::decode(record.record.value.as_deref()) {
        Ok(envelope) => envelope,
        Err(error) => {
            return dead_letter(ctx, fence, record, &error.to_string(), stop).await;
        }
    };
    // The worker's pick-up is a span of the task's trace, under the span that published
    // the record (its `traceparent` header). A record without one (from a release
    // before traces) leaves the run to find the trace in the task row.
    let published = record
        .record
        .headers
        .get(orchestrator_kafka::HEADER_TRACEPARENT)
        .and_then(|value| std::str::from_utf8(value).ok())
        .and_then(TraceContext::parse);
    let span = tracing::info_span!(
        "record",
        offset = record.offset,
        task_id = %envelope.task_id,
        request_id = envelope.request_id.as_deref().unwrap_or(""),
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    // Exported while spans are; it ends when the record's work does.
    let exported = if spans_exported() {
        ExportedSpan::start(
            format!("process {}", ctx.status.topic()),
            SpanKind::Consumer,
            published.as_ref(),
            || {
                vec![
                    KeyValue::new("messaging.system", "kafka"),
                    KeyValue::new("messaging.operation.type", "process"),
                    KeyValue::new("messaging.kafka.offset", record.offset),
                    KeyValue::new("task_id", envelope.task_id.to_string()),
                ]
            },
        )
    } else {
        ExportedSpan::none()
    };
    let pickup = published.map(|parent| {
        let pickup = exported.context_or_child_of(Some(&parent));
        span.record("trace_id", pickup.trace_id());
        span.record("span_id", pickup.span_id());
        pickup
    });
    async {
        let run = run_task(
            ctx,
            fence,
            envelope.task_id,
            envelope.request_id.as_deref(),
            pickup.as_ref(),
            stop,
        )
        .await?;
        match run {
            RunEnd::Ran => {
                ctx.status.metrics().processed();
                Ok(())
            }
            RunEnd::NotFound => {
                let reason = format!("task {} does not exist", envelope.task_id);
                dead_letter(ctx, fence, record, &reason, stop).await
            }
        }
    }
    .instrument(span)
    .await
}

/// How a task's run under the partition's lease ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunEnd {
    Ran,
    /// No such task (never stored, or removed by retention).
    NotFound,
}

/// Runs a task of the partition to the end, under its lease: what a record asks, and
/// what a task whose record was lost is owed. Failures that another try may cure are
/// retried until the consumer stops.
pub(crate) async fn run_task(
    ctx: &ConsumerContext,
    fence: &Fence,
    task_id: uuid::Uuid,
    request_id: Option<&str>,
    parent: Option<&TraceContext>,
    stop: &CancellationToken,
) -> Result<RunEnd, RecordError> {
    let mut delays = retry_delays();
    loop {
        match ctx
            .processor
            .process(task_id, Some(fence), request_id, parent)
            .await
        {
            Ok(_) => return Ok(RunEnd::Ran),
            Err(ProcessError::NotFound(_)) => return Ok(RunEnd::NotFound),
            Err(ProcessError::Store(StoreError::Fenced { .. })) => {
                return Err(RecordError::Fenced);
            }
            Err(error) => {
                let delay = next_delay(&mut delays);
                tracing::warn!(error = %error_chain(&error), delay_ms = delay.as_millis(), "Processing failed; retrying.");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = stop.cancelled() => return Err(RecordError::Stopped),
                }
            }
        }
    }
}

async fn dead_letter(
    ctx: &ConsumerContext,
    fence: &Fence,
    record: &RecordAndOffset,
    reason: &str,
    stop: &CancellationToken,
) -> Result<(), RecordError> {
    let mut delays = retry_delays();
    loop {
        match ctx.dead_letters.send(fence.partition, record, reason).await {
            Ok(()) => {
                tracing::warn!(
                    offset = record.offset,
                    dlq = ctx.dead_letters.topic(),
                    reason,
                    "Record sent to the dead-letter topic."
                );
                ctx.status.metrics().dead_lettered();
                return Ok(());
            }
            Err(error) => {
                tracing::warn!(offset = record.offset, error = %error_chain(&error), "Dead-lettering failed; retrying.");
                tokio::select! {
                    () = tokio::time::sleep(next_delay(&mut delays)) => {}
                    () = stop.cancelled() => return Err(RecordError::Stopped),
                }
            }
        }
    }
}

/// The waits between tries of an operation that may succeed later (a fetch, a task's
/// processing, a dead-letter send): 100 ms, doubling up to [`MAX_RETRY_DELAY`], without
/// end; the consumer's stop ends the loop, not a count.
fn retry_delays() -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(MAX_RETRY_DELAY)
        .without_max_times()
        .build()
}

fn next_delay(delays: &mut ExponentialBackoff) -> Duration {
    delays.next().unwrap_or(MAX_RETRY_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offset_below_the_logs_start_expired_and_one_past_it_was_reset() {
        // Event Hubs' retention moved the log's start past the stored offset.
        assert_eq!(LossReason::of(100, 250), LossReason::Expired);
        assert_eq!(LossReason::of(0, 1), LossReason::Expired);
        // The log holds less than the offset (Kafka answers OffsetOutOfRange past its
        // end too): truncated or recreated.
        assert_eq!(LossReason::of(250, 0), LossReason::LogReset);
        assert_eq!(LossReason::of(250, 250), LossReason::LogReset);
        assert_eq!(LossReason::Expired.as_str(), "expired");
        assert_eq!(LossReason::LogReset.as_str(), "log_reset");
    }
}
