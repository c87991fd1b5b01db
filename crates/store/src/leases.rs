//! Partition leases: how worker replicas share a topic's partitions without Kafka
//! consumer groups (rskafka has none).
//!
//! Each replica keeps a row in `consumer_members` alive with heartbeats; the live rows
//! are the membership every replica computes its assignment from. A partition is
//! consumed only under a lease in `partition_leases`: acquiring one (only when it is
//! free, expired or already ours) increases its `epoch`, and every offset commit and
//! every result write names the epoch it was acquired under. Once another replica has
//! taken the lease over, those writes are refused ([`StoreError::Fenced`]), however long
//! the old owner was paused.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Integer, Interval, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::StoreError;
use crate::schema::{consumer_members, partition_leases};

/// Proof of ownership that a write carries: the lease it was made under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub topic: String,
    pub partition: i32,
    pub epoch: i64,
    pub owner: String,
}

/// A lease just acquired: consume from `committed_offset`, write under `epoch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, QueryableByName)]
pub struct AcquiredLease {
    #[diesel(sql_type = Integer)]
    pub partition: i32,
    #[diesel(sql_type = BigInt)]
    pub epoch: i64,
    #[diesel(sql_type = BigInt)]
    pub committed_offset: i64,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    lost_before: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<BigInt>)]
    recover_at_offset: Option<i64>,
}

impl AcquiredLease {
    /// The tasks a previous owner saw lost from the log and did not run yet.
    pub fn lost_records(&self) -> Option<LostRecords> {
        Some(LostRecords {
            before: self.lost_before?,
            recover_at_offset: self.recover_at_offset?,
        })
    }
}

/// Records lost from a partition's log before the consumer read them: the unfinished
/// tasks of the partition accepted `before` the loss was seen are owed a run, once the
/// consumer has read the surviving log up to `recover_at_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LostRecords {
    pub before: DateTime<Utc>,
    pub recover_at_offset: i64,
}

/// A partition's lease as stored, for observers (health endpoints, tests).
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = partition_leases, check_for_backend(diesel::pg::Pg))]
pub struct LeaseRow {
    pub topic: String,
    pub partition: i32,
    pub owner: Option<String>,
    pub epoch: i64,
    pub expires_at: Option<DateTime<Utc>>,
    pub committed_offset: i64,
    pub lost_before: Option<DateTime<Utc>>,
    pub recover_at_offset: Option<i64>,
}

/// `ttl` as a PostgreSQL interval (bound as `$n` in `now() + $n`).
pub(crate) fn interval(ttl: Duration) -> diesel::pg::data_types::PgInterval {
    let micros = i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX);
    diesel::pg::data_types::PgInterval::from_microseconds(micros)
}

/// Creates the lease rows of partitions `0..partitions` that do not exist yet.
pub async fn ensure_partitions(
    conn: &mut AsyncPgConnection,
    topic: &str,
    partitions: i32,
) -> Result<(), StoreError> {
    diesel::sql_query(
        "INSERT INTO partition_leases (topic, partition) \
         SELECT $1, p FROM generate_series(0, $2 - 1) AS p \
         ON CONFLICT (topic, partition) DO NOTHING",
    )
    .bind::<Text, _>(topic)
    .bind::<Integer, _>(partitions)
    .execute(conn)
    .await?;
    Ok(())
}

/// Registers or renews `worker_id` as a live member and returns every live member of
/// the topic, sorted. Members past their expiry are removed on the way.
pub async fn heartbeat_member(
    conn: &mut AsyncPgConnection,
    topic: &str,
    worker_id: &str,
    ttl: Duration,
) -> Result<Vec<String>, StoreError> {
    diesel::sql_query(
        "INSERT INTO consumer_members (topic, worker_id, expires_at) VALUES ($1, $2, now() + $3) \
         ON CONFLICT (topic, worker_id) \
         DO UPDATE SET heartbeat_at = now(), expires_at = EXCLUDED.expires_at",
    )
    .bind::<Text, _>(topic)
    .bind::<Text, _>(worker_id)
    .bind::<Interval, _>(interval(ttl))
    .execute(conn)
    .await?;
    diesel::delete(consumer_members::table)
        .filter(consumer_members::topic.eq(topic))
        .filter(consumer_members::expires_at.lt(diesel::dsl::now))
        .execute(conn)
        .await?;
    Ok(consumer_members::table
        .filter(consumer_members::topic.eq(topic))
        .select(consumer_members::worker_id)
        .order(consumer_members::worker_id.asc())
        .load(conn)
        .await?)
}

/// Removes `worker_id` from the members and releases every lease it holds, so the
/// others take its partitions over at their next heartbeat rather than after expiry.
pub async fn leave(
    conn: &mut AsyncPgConnection,
    topic: &str,
    worker_id: &str,
) -> Result<(), StoreError> {
    diesel::update(partition_leases::table)
        .filter(partition_leases::topic.eq(topic))
        .filter(partition_leases::owner.eq(worker_id))
        .set((
            partition_leases::owner.eq(None::<String>),
            partition_leases::expires_at.eq(None::<DateTime<Utc>>),
            partition_leases::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    diesel::delete(consumer_members::table)
        .filter(consumer_members::topic.eq(topic))
        .filter(consumer_members::worker_id.eq(worker_id))
        .execute(conn)
        .await?;
    Ok(())
}

/// Takes the lease of `partition` when it is free, expired, or recorded as ours (a
/// restarted replica with the same id), and moves its epoch on. `None` while another
/// replica holds it.
pub async fn acquire(
    conn: &mut AsyncPgConnection,
    topic: &str,
    partition: i32,
    worker_id: &str,
    ttl: Duration,
) -> Result<Option<AcquiredLease>, StoreError> {
    Ok(diesel::sql_query(
        "UPDATE partition_leases \
         SET owner = $3, epoch = epoch + 1, expires_at = now() + $4, updated_at = now() \
         WHERE topic = $1 AND partition = $2 \
           AND (owner IS NULL OR expires_at < now() OR owner = $3) \
         RETURNING partition, epoch, committed_offset, lost_before, recover_at_offset",
    )
    .bind::<Text, _>(topic)
    .bind::<Integer, _>(partition)
    .bind::<Text, _>(worker_id)
    .bind::<Interval, _>(interval(ttl))
    .get_result(conn)
    .await
    .optional()?)
}

/// Extends the leases held under the given (partition, epoch) pairs and returns the
/// partitions whose lease was extended; a partition missing from the answer was lost.
pub async fn renew(
    conn: &mut AsyncPgConnection,
    topic: &str,
    worker_id: &str,
    held: &[(i32, i64)],
    ttl: Duration,
) -> Result<Vec<i32>, StoreError> {
    if held.is_empty() {
        return Ok(Vec::new());
    }
    let (partitions, epochs): (Vec<i32>, Vec<i64>) = held.iter().copied().unzip();
    #[derive(QueryableByName)]
    struct Renewed {
        #[diesel(sql_type = Integer)]
        partition: i32,
    }
    // The rows are locked in partition order first, the order in which a batch write's
    // fence check (`FOR SHARE ... ORDER BY partition`) locks them: an UPDATE joined to
    // the array locks them in whatever order its plan visits them, and against a batch
    // write of the same worker that deadlocked (seen in `make soak`, twice in 30 min).
    let renewed: Vec<Renewed> = diesel::sql_query(
        "WITH locked AS ( \
           SELECT l.partition FROM partition_leases AS l \
           JOIN unnest($4::int4[], $5::int8[]) AS held(partition, epoch) \
             ON l.partition = held.partition AND l.epoch = held.epoch \
           WHERE l.topic = $1 AND l.owner = $2 \
           ORDER BY l.partition \
           FOR UPDATE OF l) \
         UPDATE partition_leases AS l SET expires_at = now() + $3, updated_at = now() \
         FROM locked \
         WHERE l.topic = $1 AND l.owner = $2 AND l.partition = locked.partition \
         RETURNING l.partition",
    )
    .bind::<Text, _>(topic)
    .bind::<Text, _>(worker_id)
    .bind::<Interval, _>(interval(ttl))
    .bind::<Array<Integer>, _>(partitions)
    .bind::<Array<BigInt>, _>(epochs)
    .load(conn)
    .await?;
    Ok(renewed.into_iter().map(|r| r.partition).collect())
}

/// Gives a lease up (after its consumer drained), so the next owner need not wait for
/// it to expire. Does nothing when the lease was already lost.
pub async fn release(conn: &mut AsyncPgConnection, fence: &Fence) -> Result<bool, StoreError> {
    let released = diesel::update(partition_leases::table)
        .filter(partition_leases::topic.eq(&fence.topic))
        .filter(partition_leases::partition.eq(fence.partition))
        .filter(partition_leases::owner.eq(&fence.owner))
        .filter(partition_leases::epoch.eq(fence.epoch))
        .set((
            partition_leases::owner.eq(None::<String>),
            partition_leases::expires_at.eq(None::<DateTime<Utc>>),
            partition_leases::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    Ok(released == 1)
}

/// Records that every record before `offset` is fully processed. Refused with
/// [`StoreError::Fenced`] once the lease has moved on; never moves the offset back.
pub async fn commit_offset(
    conn: &mut AsyncPgConnection,
    fence: &Fence,
    offset: i64,
) -> Result<(), StoreError> {
    // Prepared (store::prepared): one commit per poll of every partition, and the
    // query builder's `GREATEST(...)` through `dsl::sql` would not be cached.
    let updated = crate::prepared::prepared(
        "UPDATE partition_leases \
         SET committed_offset = GREATEST(committed_offset, $1), updated_at = now() \
         WHERE topic = $2 AND partition = $3 AND owner = $4 AND epoch = $5",
    )
    .bind::<BigInt, _>(offset)
    .bind::<Text, _>(&fence.topic)
    .bind::<Integer, _>(fence.partition)
    .bind::<Text, _>(&fence.owner)
    .bind::<BigInt, _>(fence.epoch)
    .execute(conn)
    .await?;
    if updated == 1 {
        Ok(())
    } else {
        Err(StoreError::Fenced {
            partition: fence.partition,
            epoch: fence.epoch,
        })
    }
}

/// Every lease of a topic, by partition.
pub async fn list(conn: &mut AsyncPgConnection, topic: &str) -> Result<Vec<LeaseRow>, StoreError> {
    Ok(partition_leases::table
        .filter(partition_leases::topic.eq(topic))
        .order(partition_leases::partition.asc())
        .select(LeaseRow::as_select())
        .load(conn)
        .await?)
}

/// Sets the committed offset to `offset`, also backwards, for a partition whose log
/// lost records the consumer had not read (they expired, or the log was truncated or
/// recreated), and records what that leaves owed ([`LostRecords`]): consumption
/// resumes at the surviving log's start, and the tasks accepted until now are owed a
/// run once it has read up to `recover_at_offset`. A debt already owed is widened, never
/// forgotten. Fenced like [`commit_offset`].
pub async fn reset_offset(
    conn: &mut AsyncPgConnection,
    fence: &Fence,
    offset: i64,
    recover_at_offset: i64,
) -> Result<LostRecords, StoreError> {
    #[derive(QueryableByName)]
    struct Reset {
        #[diesel(sql_type = Timestamptz)]
        lost_before: DateTime<Utc>,
        #[diesel(sql_type = BigInt)]
        recover_at_offset: i64,
    }
    let reset: Option<Reset> = diesel::sql_query(
        "UPDATE partition_leases \
         SET committed_offset = $5, lost_before = now(), recover_at_offset = $6, \
             updated_at = now() \
         WHERE topic = $1 AND partition = $2 AND owner = $3 AND epoch = $4 \
         RETURNING lost_before, recover_at_offset",
    )
    .bind::<Text, _>(&fence.topic)
    .bind::<Integer, _>(fence.partition)
    .bind::<Text, _>(&fence.owner)
    .bind::<BigInt, _>(fence.epoch)
    .bind::<BigInt, _>(offset.max(0))
    .bind::<BigInt, _>(recover_at_offset.max(0))
    .get_result(conn)
    .await
    .optional()?;
    reset
        .map(|reset| LostRecords {
            before: reset.lost_before,
            recover_at_offset: reset.recover_at_offset,
        })
        .ok_or(StoreError::Fenced {
            partition: fence.partition,
            epoch: fence.epoch,
        })
}

/// Records that the tasks owed by `lost` have run. A debt recorded since (a later
/// loss) stays. Fenced like [`commit_offset`].
pub async fn clear_lost_records(
    conn: &mut AsyncPgConnection,
    fence: &Fence,
    lost: &LostRecords,
) -> Result<(), StoreError> {
    let updated = diesel::update(partition_leases::table)
        .filter(partition_leases::topic.eq(&fence.topic))
        .filter(partition_leases::partition.eq(fence.partition))
        .filter(partition_leases::owner.eq(&fence.owner))
        .filter(partition_leases::epoch.eq(fence.epoch))
        .set((
            partition_leases::lost_before.eq(diesel::dsl::sql::<Nullable<Timestamptz>>(
                "CASE WHEN lost_before = ",
            )
            .bind::<Timestamptz, _>(lost.before)
            .sql(" THEN NULL ELSE lost_before END")),
            partition_leases::recover_at_offset.eq(diesel::dsl::sql::<Nullable<BigInt>>(
                "CASE WHEN lost_before = ",
            )
            .bind::<Timestamptz, _>(lost.before)
            .sql(" THEN NULL ELSE recover_at_offset END")),
            partition_leases::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    if updated == 1 {
        Ok(())
    } else {
        Err(StoreError::Fenced {
            partition: fence.partition,
            epoch: fence.epoch,
        })
    }
}
