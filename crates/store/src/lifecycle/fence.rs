//! The fence: the one check that a worker's write still holds its partition's lease.

use std::collections::HashSet;

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::StoreError;
use crate::leases::Fence;
use crate::schema::partition_leases;

/// For each fence (in order): true when it no longer holds. Call inside the transaction
/// of the writes it guards: holding fences are locked (`FOR SHARE`) until it ends, so a
/// takeover (which updates the lease row) waits until those writes have committed, and
/// no write made under an old epoch lands after the new owner started.
pub(super) async fn fenced_out<'a>(
    conn: &mut AsyncPgConnection,
    fences: impl Iterator<Item = Option<&'a Fence>>,
) -> Result<Vec<bool>, StoreError> {
    let fences: Vec<Option<&Fence>> = fences.collect();
    let mut distinct: Vec<&Fence> = Vec::new();
    for fence in fences.iter().flatten() {
        if !distinct.contains(fence) {
            distinct.push(fence);
        }
    }
    let mut held = HashSet::new();
    // One query per topic; a worker consumes one topic, so this is one query.
    let mut topics: Vec<&str> = distinct.iter().map(|f| f.topic.as_str()).collect();
    topics.dedup();
    for topic in topics {
        let of_topic: Vec<&&Fence> = distinct.iter().filter(|f| f.topic == topic).collect();
        let rows: Vec<(i32, i64, String)> = partition_leases::table
            .filter(partition_leases::topic.eq(topic))
            .filter(partition_leases::partition.eq_any(of_topic.iter().map(|f| f.partition)))
            .select((
                partition_leases::partition,
                partition_leases::epoch,
                partition_leases::owner,
            ))
            .order(partition_leases::partition)
            .for_share()
            .load::<(i32, i64, Option<String>)>(conn)
            .await?
            .into_iter()
            .filter_map(|(partition, epoch, owner)| owner.map(|o| (partition, epoch, o)))
            .collect();
        for (partition, epoch, owner) in rows {
            held.insert((topic.to_owned(), partition, epoch, owner));
        }
    }
    Ok(fences
        .iter()
        .map(|fence| {
            fence.is_some_and(|f| {
                !held.contains(&(f.topic.clone(), f.partition, f.epoch, f.owner.clone()))
            })
        })
        .collect())
}

pub(super) fn fenced_error(fence: Option<&Fence>) -> StoreError {
    match fence {
        Some(fence) => StoreError::Fenced {
            partition: fence.partition,
            epoch: fence.epoch,
        },
        None => StoreError::Corrupt("fenced without a fence".into()),
    }
}
