//! The retention job: removes finished tasks past their tenant's retention period
//! (`orchestrator_store::retention`). Every API replica runs the loop; a lease in
//! `job_leases` lets one at a time do a pass, and `orchestrator-api retention run` does
//! one by hand under the same lease.
//!
//! A pass walks each tenant's finished tasks oldest first, in batches of
//! `RETENTION_BATCH` tasks, one short transaction each (the figures in README:
//! Retention), until none past the period is left.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::Utc;

use crate::archive::ArchiveFile;
use diesel_async::AsyncConnection;
use orchestrator_core::{RetentionPeriod, TenantRetention};
use orchestrator_store::retention::{self, RETENTION_JOB, Removed};
use orchestrator_store::{AsyncPgConnection, DbPool, StoreError};
use orchestrator_telemetry::metrics::Registry;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Settings of the retention job.
#[derive(Debug, Clone, clap::Args)]
pub struct RetentionConfig {
    /// How long finished tasks (COMPLETED, FAILED, CANCELLED) are kept after they
    /// finished, with their service requests and everything else about them: a duration
    /// (30d, 12h, 10m) or `off` (kept for ever). Unfinished tasks are never removed.
    #[arg(id = "retention", long = "retention", env = "RETENTION", default_value = "30d",
          value_parser = RetentionPeriod::parse)]
    pub period: RetentionPeriod,

    /// Tenants kept for a period of their own, as TENANT=PERIOD pairs separated by
    /// commas (acme=7d,beta=off); the others keep RETENTION.
    #[arg(id = "retention_by_tenant", long = "retention-by-tenant", env = "RETENTION_BY_TENANT",
          default_value = "", value_parser = TenantRetention::parse)]
    pub by_tenant: TenantRetention,

    /// How often a replica looks for tasks past their period, in seconds.
    #[arg(id = "retention_interval_secs", long = "retention-interval-secs",
          env = "RETENTION_INTERVAL_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub interval_secs: u64,

    /// Before removing them, write the tasks to a zstd-compressed JSON lines file in this
    /// directory, one file per tenant and pass (`TENANT-TIME-REPLICA.jsonl.zst`); a batch
    /// is removed only once it is on disk. Unset: nothing is archived.
    #[arg(id = "archive_dir", long = "archive-dir", env = "ARCHIVE_DIR")]
    pub archive_dir: Option<std::path::PathBuf>,

    /// Tasks removed per transaction: small enough that no lock is held long.
    #[arg(id = "retention_batch", long = "retention-batch", env = "RETENTION_BATCH",
          default_value_t = 250, value_parser = clap::value_parser!(i64).range(1..=10_000))]
    pub batch: i64,
}

impl RetentionConfig {
    fn is_off(&self) -> bool {
        self.period == RetentionPeriod::FOREVER
            && self
                .by_tenant
                .iter()
                .all(|(_, period)| *period == RetentionPeriod::FOREVER)
    }
}

/// How long the job's lease lasts: renewed at every batch, so well past one batch.
const LEASE_TTL: Duration = Duration::from_secs(60);

/// What a pass did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassOutcome {
    /// This process held the lease and removed this much, per tenant that had any.
    Ran(Vec<TenantPass>),
    /// Another process holds the lease.
    Busy { holder: String },
}

impl PassOutcome {
    /// Everything removed, over every tenant.
    pub fn total(&self) -> Removed {
        let mut total = Removed::default();
        if let PassOutcome::Ran(tenants) = self {
            for tenant in tenants {
                total += tenant.removed;
            }
        }
        total
    }
}

/// What a pass removed of one tenant's tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantPass {
    pub tenant: String,
    pub removed: Removed,
    /// The archive file they were written to first (with `ARCHIVE_DIR`).
    pub archive: Option<PathBuf>,
}

/// The metrics of the job.
#[derive(Debug, Clone)]
struct RetentionMetrics {
    tasks: Counter,
    service_requests: Counter,
    archived: Counter,
    batch_seconds: Histogram,
    last_pass: Gauge,
}

impl Default for RetentionMetrics {
    fn default() -> Self {
        Self {
            tasks: Counter::default(),
            service_requests: Counter::default(),
            archived: Counter::default(),
            batch_seconds: Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]),
            last_pass: Gauge::default(),
        }
    }
}

/// This process's side of the retention job. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RetentionJob {
    config: RetentionConfig,
    /// Stands for this process in `job_leases`.
    holder: String,
    metrics: RetentionMetrics,
}

impl RetentionJob {
    pub fn new(config: RetentionConfig) -> Self {
        Self {
            config,
            holder: format!("api-{}", Uuid::new_v4().simple()),
            metrics: RetentionMetrics::default(),
        }
    }

    /// With its metrics in `registry`.
    pub fn register(config: RetentionConfig, registry: &mut Registry) -> Self {
        let job = Self::new(config);
        registry.register(
            "retention_removed_tasks",
            "Finished tasks removed by the retention job, past their retention period",
            job.metrics.tasks.clone(),
        );
        registry.register(
            "retention_removed_service_requests",
            "Service requests removed with their tasks by the retention job",
            job.metrics.service_requests.clone(),
        );
        registry.register(
            "retention_archived_tasks",
            "Tasks written to ARCHIVE_DIR by the retention job before their removal",
            job.metrics.archived.clone(),
        );
        registry.register(
            "retention_batch_duration_seconds",
            "Time of one retention batch (one transaction: how long its row locks are held)",
            job.metrics.batch_seconds.clone(),
        );
        registry.register(
            "retention_last_pass_timestamp_seconds",
            "When this replica last finished a retention pass (Unix time)",
            job.metrics.last_pass.clone(),
        );
        job
    }

    /// Runs a pass every RETENTION_INTERVAL_SECS until `stop` (nothing when retention is
    /// off everywhere).
    pub fn start(&self, pool: DbPool, stop: CancellationToken) {
        if self.config.is_off() {
            tracing::info!("Retention is off: finished tasks are kept for ever.");
            return;
        }
        let job = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_secs(job.config.interval_secs));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = ticks.tick() => {}
                }
                match job.pass(&pool, &stop).await {
                    Ok(outcome @ PassOutcome::Ran(_)) => {
                        let total = outcome.total();
                        if total.tasks > 0 {
                            tracing::info!(
                                tasks = total.tasks,
                                service_requests = total.service_requests,
                                "Removed finished tasks past their retention period."
                            );
                        }
                    }
                    Ok(PassOutcome::Busy { .. }) => {}
                    Err(error) => tracing::warn!(
                        error = format!("{error:#}"),
                        "The retention pass failed; trying again at the next interval."
                    ),
                }
            }
        });
    }

    /// One pass: every tenant's finished tasks past its period, until none is left or
    /// `stop`.
    pub async fn pass(
        &self,
        pool: &DbPool,
        stop: &CancellationToken,
    ) -> anyhow::Result<PassOutcome> {
        let mut conn = pool.get().await.map_err(StoreError::from)?;
        if let Some(holder) =
            retention::acquire_lease(&mut conn, RETENTION_JOB, &self.holder, LEASE_TTL).await?
        {
            return Ok(PassOutcome::Busy { holder });
        }
        let result = self.remove_all(&mut conn, stop).await;
        // Let go at once, so that `retention run` by hand or another replica need not
        // wait for the lease to expire; a failure here only delays them.
        if let Err(error) = retention::release_lease(&mut conn, RETENTION_JOB, &self.holder).await {
            tracing::warn!(%error, "Could not release the retention lease; it expires by itself.");
        }
        let removed = result?;
        self.metrics.last_pass.set(Utc::now().timestamp());
        Ok(PassOutcome::Ran(removed))
    }

    async fn remove_all(
        &self,
        conn: &mut AsyncPgConnection,
        stop: &CancellationToken,
    ) -> anyhow::Result<Vec<TenantPass>> {
        let mut report = Vec::new();
        for tenant in retention::tenants_with_finished_tasks(conn).await? {
            let period = self.config.by_tenant.period_of(&tenant, self.config.period);
            let Some(period) = period.duration() else {
                continue;
            };
            let Ok(period) = chrono::TimeDelta::from_std(period) else {
                continue;
            };
            let mut pass = TenantPass {
                tenant,
                removed: Removed::default(),
                archive: None,
            };
            let mut archive: Option<ArchiveFile> = None;
            let mut handed_over = false;
            while !stop.is_cancelled() {
                // The cut-off moves with the clock: a long pass removes what expired
                // while it ran.
                let started = Instant::now();
                let batch = self
                    .remove_batch(conn, &pass.tenant, Utc::now() - period, &mut archive)
                    .await?;
                let elapsed = started.elapsed();
                self.metrics.batch_seconds.observe(elapsed.as_secs_f64());
                tracing::debug!(tenant = %pass.tenant, tasks = batch.tasks, elapsed_ms = elapsed.as_millis(), "Retention batch.");
                self.metrics
                    .tasks
                    .inc_by(u64::try_from(batch.tasks).unwrap_or(0));
                self.metrics
                    .service_requests
                    .inc_by(u64::try_from(batch.service_requests).unwrap_or(0));
                pass.removed += batch;
                if batch.tasks < self.config.batch {
                    break;
                }
                // Still ours? Another process took the lease only if ours expired.
                if let Some(holder) =
                    retention::acquire_lease(conn, RETENTION_JOB, &self.holder, LEASE_TTL).await?
                {
                    tracing::warn!(%holder, "The retention lease passed to another process mid-pass; stopping.");
                    handed_over = true;
                    break;
                }
            }
            if let Some(file) = archive {
                tracing::info!(tenant = %pass.tenant, tasks = file.tasks, file = %file.path().display(), "Archived finished tasks before removing them.");
                pass.archive = Some(file.path().to_owned());
            }
            if pass.removed.tasks > 0 {
                report.push(pass);
            }
            if handed_over {
                break;
            }
        }
        Ok(report)
    }

    /// One batch, one transaction: lock the oldest expired tasks, write them to the
    /// archive (opened at the tenant's first batch) when `ARCHIVE_DIR` is set, remove them.
    async fn remove_batch(
        &self,
        conn: &mut AsyncPgConnection,
        tenant: &str,
        finished_before: chrono::DateTime<Utc>,
        archive: &mut Option<ArchiveFile>,
    ) -> anyhow::Result<Removed> {
        let limit = self.config.batch;
        conn.transaction::<_, anyhow::Error, _>(async |conn| {
            let ids = retention::lock_expired(conn, tenant, finished_before, limit).await?;
            if ids.is_empty() {
                return Ok(Removed::default());
            }
            if let Some(dir) = &self.config.archive_dir {
                let documents = orchestrator_store::archive::documents(conn, &ids).await?;
                let file = match archive.take() {
                    Some(file) => file,
                    None => ArchiveFile::create(&dir.join(format!(
                        "{tenant}-{}-{}.jsonl.zst",
                        Utc::now().format("%Y%m%dT%H%M%S%.3fZ"),
                        self.holder
                    )))?,
                };
                let written = documents.len() as u64;
                *archive = Some(crate::archive::append(file, documents).await?);
                self.metrics.archived.inc_by(written);
            }
            Ok(retention::remove(conn, &ids).await?)
        })
        .await
    }
}
