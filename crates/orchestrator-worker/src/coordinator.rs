//! Membership and partition ownership of this replica.
//!
//! Every heartbeat the coordinator renews this replica's membership and leases, computes
//! the partitions it should own from the live members ([`assigned_partitions`]), hands
//! back those it should not (after draining them) and acquires those it should that are
//! free. Every replica runs the same rule on the same table, so ownership converges
//! without a leader; the leases' epochs keep it safe while views differ.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use orchestrator_core::assigned_partitions;
use orchestrator_kafka::KafkaConnection;
use orchestrator_stdx::error_chain;
use orchestrator_store::{AsyncPgConnection, Fence, StoreError, leases};
use rskafka::client::partition::{PartitionClient, UnknownTopicHandling};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::consumer::{ConsumerContext, ConsumerExit, DrainBudget, consume};
use crate::status::PartitionProgress;

/// Timing of the lease protocol.
#[derive(Debug, Clone, Copy)]
pub struct LeaseTiming {
    pub ttl: Duration,
    pub heartbeat: Duration,
    /// How long a partition handed to another replica may drain.
    pub handoff_drain: Duration,
}

struct Owned {
    fence: Fence,
    stop: CancellationToken,
    drain: DrainBudget,
    handle: JoinHandle<ConsumerExit>,
    /// Asked to stop because another replica should own it; still renewed until the
    /// consumer has drained and released it.
    handing_off: bool,
    progress: Arc<PartitionProgress>,
}

pub struct Coordinator {
    ctx: Arc<ConsumerContext>,
    kafka: KafkaConnection,
    topic: String,
    partitions: i32,
    worker_id: String,
    timing: LeaseTiming,
    owned: BTreeMap<i32, Owned>,
    clients: BTreeMap<i32, Arc<PartitionClient>>,
    last_renewed: Instant,
}

impl Coordinator {
    pub fn new(
        ctx: Arc<ConsumerContext>,
        kafka: KafkaConnection,
        topic: String,
        partitions: i32,
        worker_id: String,
        timing: LeaseTiming,
    ) -> Self {
        Self {
            ctx,
            kafka,
            topic,
            partitions,
            worker_id,
            timing,
            owned: BTreeMap::new(),
            clients: BTreeMap::new(),
            last_renewed: Instant::now(),
        }
    }

    /// Runs heartbeats until `shutdown` is cancelled, then drains every partition
    /// within `shutdown_timeout`, releases the leases and leaves the membership.
    pub async fn run(mut self, shutdown: CancellationToken, shutdown_timeout: Duration) {
        let mut ticker = tokio::time::interval(self.timing.heartbeat);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = ticker.tick() => {
                    if let Err(error) = self.tick().await {
                        tracing::warn!(error = %error_chain(&error), "Heartbeat failed.");
                        self.fence_self_if_expired();
                    }
                }
            }
        }
        self.stop(shutdown_timeout).await;
    }

    /// One heartbeat: prove we are alive, reap the consumers that ended, renew our
    /// leases, then rebalance: hand over what is no longer ours, take what is.
    async fn tick(&mut self) -> Result<(), StoreError> {
        let mut conn = self.ctx.pool.get().await?;
        let members =
            leases::heartbeat_member(&mut conn, &self.topic, &self.worker_id, self.timing.ttl)
                .await?;
        self.reap_ended_consumers().await;
        self.renew_leases(&mut conn).await?;

        let partition_count = u32::try_from(self.partitions).unwrap_or(0);
        let targets: BTreeSet<i32> =
            assigned_partitions(&members, &self.worker_id, partition_count)
                .into_iter()
                .filter_map(|p| i32::try_from(p).ok())
                .collect();
        self.hand_over_unassigned(&targets, members.len());
        for partition in targets {
            if !self.owned.contains_key(&partition) {
                self.acquire(&mut conn, partition).await?;
            }
        }
        Ok(())
    }

    /// Forgets the consumers that ended on their own (lease lost mid-write, or
    /// released), saying how each ended.
    async fn reap_ended_consumers(&mut self) {
        let ended: Vec<i32> = self
            .owned
            .iter()
            .filter(|(_, owned)| owned.handle.is_finished())
            .map(|(p, _)| *p)
            .collect();
        for partition in ended {
            if let Some(owned) = self.owned.remove(&partition) {
                self.ctx.status.untrack(partition);
                match owned.handle.await.unwrap_or(ConsumerExit::Lost) {
                    // Every way a consumer finds itself fenced (a refused write, a
                    // refused commit, while draining) ends here: one message to alert on.
                    ConsumerExit::Lost => tracing::warn!(
                        partition,
                        epoch = owned.fence.epoch,
                        "Lease lost; the partition's consumer stopped without committing."
                    ),
                    ConsumerExit::Released => {
                        tracing::info!(partition, "Partition consumer ended.");
                    }
                }
            }
        }
    }

    /// Renews every lease we hold; stops at once the consumer of any lease that could
    /// not be renewed (another replica holds it now).
    async fn renew_leases(&mut self, conn: &mut AsyncPgConnection) -> Result<(), StoreError> {
        let held: Vec<(i32, i64)> = self
            .owned
            .iter()
            .map(|(p, owned)| (*p, owned.fence.epoch))
            .collect();
        let renewed: BTreeSet<i32> =
            leases::renew(conn, &self.topic, &self.worker_id, &held, self.timing.ttl)
                .await?
                .into_iter()
                .collect();
        self.last_renewed = Instant::now();
        self.ctx.status.renewed();
        let lost: Vec<i32> = held
            .iter()
            .map(|(p, _)| *p)
            .filter(|p| !renewed.contains(p))
            .collect();
        for partition in lost {
            if let Some(owned) = self.owned.remove(&partition) {
                tracing::warn!(
                    partition,
                    epoch = owned.fence.epoch,
                    "Lease lost; stopping the partition."
                );
                self.ctx.status.untrack(partition);
                owned.stop.cancel();
                owned.handle.abort();
            }
        }
        Ok(())
    }

    /// Starts handing over each partition we own that the assignment gives to another
    /// member: its consumer drains (up to the hand-off budget), commits and releases.
    fn hand_over_unassigned(&mut self, targets: &BTreeSet<i32>, members: usize) {
        for (partition, owned) in &mut self.owned {
            if !targets.contains(partition) && !owned.handing_off {
                tracing::info!(partition = *partition, members, "Handing partition over.");
                owned.handing_off = true;
                owned.progress.handing_off();
                owned.drain.set(self.timing.handoff_drain);
                owned.stop.cancel();
            }
        }
    }

    /// Takes the lease of a partition assigned to us, if its owner has let it go, and
    /// starts its consumer from the committed offset.
    async fn acquire(
        &mut self,
        conn: &mut AsyncPgConnection,
        partition: i32,
    ) -> Result<(), StoreError> {
        let lease = leases::acquire(
            conn,
            &self.topic,
            partition,
            &self.worker_id,
            self.timing.ttl,
        )
        .await?;
        let Some(lease) = lease else {
            return Ok(()); // Its owner has not handed it over yet.
        };
        let fence = self.fence(partition, lease.epoch);
        let client = match self.client(partition).await {
            Ok(client) => client,
            Err(error) => {
                tracing::warn!(partition, error = %error_chain(&error), "Cannot reach the partition; releasing it.");
                leases::release(conn, &fence).await?;
                return Ok(());
            }
        };
        let stop = CancellationToken::new();
        let drain = DrainBudget::default();
        let span = tracing::info_span!("partition", partition, epoch = lease.epoch);
        let progress = self
            .ctx
            .status
            .track(partition, lease.epoch, lease.committed_offset);
        let handle = tokio::spawn(
            consume(
                Arc::clone(&self.ctx),
                client,
                fence.clone(),
                lease.committed_offset,
                lease.lost_records(),
                stop.clone(),
                drain.clone(),
                Arc::clone(&progress),
            )
            .instrument(span),
        );
        tracing::info!(
            partition,
            epoch = lease.epoch,
            offset = lease.committed_offset,
            "Partition acquired."
        );
        self.owned.insert(
            partition,
            Owned {
                fence,
                stop,
                drain,
                handle,
                handing_off: false,
                progress,
            },
        );
        Ok(())
    }

    /// Without a renewal for a whole TTL another replica may own our partitions by now:
    /// stop consuming them (their writes would be refused anyway).
    fn fence_self_if_expired(&mut self) {
        if self.last_renewed.elapsed() < self.timing.ttl || self.owned.is_empty() {
            return;
        }
        tracing::warn!(
            partitions = self.owned.len(),
            "Leases expired without renewal; stopping every partition."
        );
        for (partition, owned) in std::mem::take(&mut self.owned) {
            self.ctx.status.untrack(partition);
            owned.stop.cancel();
            owned.handle.abort();
        }
    }

    async fn stop(mut self, timeout: Duration) {
        tracing::info!(
            partitions = self.owned.len(),
            "Stopping: draining partitions."
        );
        let owned = std::mem::take(&mut self.owned);
        for owned in owned.values() {
            owned.drain.set(timeout);
            owned.stop.cancel();
        }
        let handles: Vec<_> = owned.into_values().map(|owned| owned.handle).collect();
        // Each consumer drains within its own budget; this bounds the whole stop.
        if tokio::time::timeout(timeout, futures::future::join_all(handles))
            .await
            .is_err()
        {
            tracing::warn!("Partitions still draining at the shutdown deadline.");
        }
        for partition in 0..self.partitions {
            self.ctx.status.untrack(partition);
        }
        let left = async {
            let mut conn = self.ctx.pool.get().await?;
            leases::leave(&mut conn, &self.topic, &self.worker_id).await
        }
        .await;
        if let Err(error) = left {
            tracing::warn!(error = %error_chain(&error), "Could not leave the membership; it expires instead.");
        }
    }

    fn fence(&self, partition: i32, epoch: i64) -> Fence {
        Fence {
            topic: self.topic.clone(),
            partition,
            epoch,
            owner: self.worker_id.clone(),
        }
    }

    async fn client(
        &mut self,
        partition: i32,
    ) -> Result<Arc<PartitionClient>, rskafka::client::error::Error> {
        if let Some(client) = self.clients.get(&partition) {
            return Ok(Arc::clone(client));
        }
        let client = Arc::new(
            self.kafka
                .client()
                .partition_client(self.topic.clone(), partition, UnknownTopicHandling::Retry)
                .await?,
        );
        self.clients.insert(partition, Arc::clone(&client));
        Ok(client)
    }
}
