//! What this replica is doing, for `GET /health` and `GET /metrics` on its HTTP port:
//! the partitions it owns, each with its lease epoch, offsets and records in flight.
//!
//! The coordinator adds and removes partitions as leases come and go; each partition's
//! consumer updates its own [`PartitionProgress`] with plain atomics, so reporting never
//! slows consuming down.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use orchestrator_telemetry::metrics::Registry;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde::Serialize;

/// Progress of one owned partition, updated by its consumer.
#[derive(Debug)]
pub struct PartitionProgress {
    epoch: i64,
    committed: AtomicI64,
    /// The next offset to process: every record before it is done (it runs ahead of
    /// `committed`, which moves at commit intervals).
    processed_to: AtomicI64,
    /// -1 until the first fetch answered.
    high_watermark: AtomicI64,
    in_flight: AtomicI64,
    handing_off: AtomicBool,
}

impl PartitionProgress {
    pub fn committed(&self, offset: i64) {
        self.committed.store(offset, Ordering::Relaxed);
    }

    pub fn processed_to(&self, offset: i64) {
        self.processed_to.store(offset, Ordering::Relaxed);
    }

    pub fn high_watermark(&self, offset: i64) {
        self.high_watermark.store(offset, Ordering::Relaxed);
    }

    pub fn in_flight(&self, records: usize) {
        self.in_flight.store(
            i64::try_from(records).unwrap_or(i64::MAX),
            Ordering::Relaxed,
        );
    }

    pub fn handing_off(&self) {
        self.handing_off.store(true, Ordering::Relaxed);
    }

    /// Records not yet processed: the high watermark minus the next offset to process
    /// (not minus the committed offset, which would add up to a commit interval's
    /// records to the lag of a consumer that keeps up).
    fn lag(&self) -> Option<i64> {
        let high_watermark = self.high_watermark.load(Ordering::Relaxed);
        (high_watermark >= 0)
            .then(|| (high_watermark - self.processed_to.load(Ordering::Relaxed)).max(0))
    }
}

/// One owned partition as reported by `GET /health`.
#[derive(Debug, Serialize)]
pub struct PartitionReport {
    pub partition: i32,
    pub epoch: i64,
    /// `consuming`, or `handing_off` while it drains for its next owner.
    pub state: &'static str,
    pub committed_offset: i64,
    /// Every record before it is processed (committed at the next commit interval).
    pub next_offset: i64,
    /// Absent until the first fetch answered.
    pub high_watermark: Option<i64>,
    pub lag: Option<i64>,
    pub in_flight: i64,
}

/// Shared by the coordinator, the consumers and the HTTP handlers.
#[derive(Debug)]
pub struct WorkerStatus {
    worker_id: String,
    topic: String,
    partitions: Mutex<BTreeMap<i32, Arc<PartitionProgress>>>,
    last_renewal: Mutex<Option<Instant>>,
    metrics: ConsumerMetrics,
}

impl WorkerStatus {
    pub fn new(worker_id: String, topic: String, metrics: ConsumerMetrics) -> Self {
        Self {
            worker_id,
            topic,
            partitions: Mutex::new(BTreeMap::new()),
            last_renewal: Mutex::new(None),
            metrics,
        }
    }

    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn metrics(&self) -> &ConsumerMetrics {
        &self.metrics
    }

    /// A partition was acquired: its consumer reports through the returned handle.
    pub fn track(&self, partition: i32, epoch: i64, committed: i64) -> Arc<PartitionProgress> {
        let progress = Arc::new(PartitionProgress {
            epoch,
            committed: AtomicI64::new(committed),
            processed_to: AtomicI64::new(committed),
            high_watermark: AtomicI64::new(-1),
            in_flight: AtomicI64::new(0),
            handing_off: AtomicBool::new(false),
        });
        self.lock().insert(partition, Arc::clone(&progress));
        progress
    }

    /// The partition's consumer ended (released or lost).
    pub fn untrack(&self, partition: i32) {
        self.lock().remove(&partition);
    }

    pub fn renewed(&self) {
        *self
            .last_renewal
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
    }

    /// Milliseconds since the leases were last renewed; `None` before the first time.
    pub fn since_renewal_ms(&self) -> Option<u64> {
        self.last_renewal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .map(|at| u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    pub fn partitions(&self) -> Vec<PartitionReport> {
        self.lock()
            .iter()
            .map(|(partition, progress)| PartitionReport {
                partition: *partition,
                epoch: progress.epoch,
                state: if progress.handing_off.load(Ordering::Relaxed) {
                    "handing_off"
                } else {
                    "consuming"
                },
                committed_offset: progress.committed.load(Ordering::Relaxed),
                next_offset: progress.processed_to.load(Ordering::Relaxed),
                high_watermark: Some(progress.high_watermark.load(Ordering::Relaxed))
                    .filter(|offset| *offset >= 0),
                lag: progress.lag(),
                in_flight: progress.in_flight.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Sets the per-partition gauges from the current state (before a scrape), dropping
    /// the series of partitions no longer owned.
    pub fn publish_gauges(&self) {
        let partitions = self.lock();
        self.metrics
            .partitions_owned
            .set(i64::try_from(partitions.len()).unwrap_or(i64::MAX));
        self.metrics.lag.clear();
        self.metrics.in_flight.clear();
        for (partition, progress) in partitions.iter() {
            let label = PartitionLabel {
                partition: *partition,
            };
            if let Some(lag) = progress.lag() {
                self.metrics.lag.get_or_create(&label).set(lag);
            }
            self.metrics
                .in_flight
                .get_or_create(&label)
                .set(progress.in_flight.load(Ordering::Relaxed));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<i32, Arc<PartitionProgress>>> {
        self.partitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabel {
    partition: i32,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    /// `processed` or `dead_lettered`.
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResetLabel {
    /// `expired` (the offset fell below the log's start) or `log_reset` (past its end:
    /// the log was truncated or recreated).
    reason: &'static str,
}

/// The consumer's metrics. [`ConsumerMetrics::default`] is registered nowhere.
#[derive(Debug, Clone, Default)]
pub struct ConsumerMetrics {
    partitions_owned: Gauge,
    lag: Family<PartitionLabel, Gauge>,
    in_flight: Family<PartitionLabel, Gauge>,
    records: Family<OutcomeLabel, Counter>,
    offset_resets: Family<ResetLabel, Counter>,
    lost_tasks_run: Counter,
}

impl ConsumerMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "partitions_owned",
            "Partitions whose lease this worker holds",
            metrics.partitions_owned.clone(),
        );
        registry.register(
            "consumer_lag",
            "Records of the partition not yet processed (high watermark minus the next offset to process)",
            metrics.lag.clone(),
        );
        registry.register(
            "records_in_flight",
            "Records of the partition being processed",
            metrics.in_flight.clone(),
        );
        registry.register(
            "records",
            "Records consumed to the end, by outcome",
            metrics.records.clone(),
        );
        // Both series exist from the start at 0, so that the first reset is an increase
        // a rule can see (a series that appears at 1 has none).
        for reason in ["expired", "log_reset"] {
            drop(metrics.offset_resets.get_or_create(&ResetLabel { reason }));
        }
        registry.register(
            "offset_resets",
            "Times a partition's log no longer held the consumer's offset, so records it had not read were lost, by reason",
            metrics.offset_resets.clone(),
        );
        registry.register(
            "lost_tasks_run",
            "Unfinished tasks run by a partition's owner because their records were lost from the log",
            metrics.lost_tasks_run.clone(),
        );
        metrics
    }

    pub fn offset_reset(&self, reason: &'static str) {
        self.offset_resets
            .get_or_create(&ResetLabel { reason })
            .inc();
    }

    pub fn lost_tasks_run(&self, tasks: u64) {
        self.lost_tasks_run.inc_by(tasks);
    }

    pub fn processed(&self) {
        self.records
            .get_or_create(&OutcomeLabel {
                outcome: "processed",
            })
            .inc();
    }

    pub fn dead_lettered(&self) {
        self.records
            .get_or_create(&OutcomeLabel {
                outcome: "dead_lettered",
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_counts_from_the_next_offset_to_process_not_the_committed_one() {
        let status = WorkerStatus::new("w".into(), "tasks".into(), ConsumerMetrics::default());
        let progress = status.track(0, 1, 100);
        assert_eq!(status.partitions()[0].lag, None, "no fetch answered yet");
        progress.high_watermark(150);
        assert_eq!(status.partitions()[0].lag, Some(50));
        // Processed to 140, committed still at 100 until the next commit interval.
        progress.processed_to(140);
        let report = &status.partitions()[0];
        assert_eq!(
            (report.committed_offset, report.next_offset, report.lag),
            (100, 140, Some(10))
        );
        progress.committed(140);
        progress.processed_to(150);
        assert_eq!(status.partitions()[0].lag, Some(0));
    }
}
