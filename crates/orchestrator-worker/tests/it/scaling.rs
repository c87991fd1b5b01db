//! Several worker processes sharing the partitions: even spread, handover, crashes.

use std::time::Duration;

use futures::StreamExt;

use crate::support::{LEASE_TTL_MS, Stack, example_request};

/// Rebalancing must finish within two lease periods; the slack covers process start.
fn rebalance_bound() -> Duration {
    Duration::from_millis(2 * LEASE_TTL_MS) + Duration::from_secs(5)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_share_partitions_evenly_and_hand_them_over_on_stop() {
    let stack = Stack::start(0).await;
    let mut a = stack.spawn_worker_process("worker-a");
    let _b = stack.spawn_worker_process("worker-b");
    stack
        .wait_for_owners(&[("worker-a", 6), ("worker-b", 6)], Duration::from_secs(30))
        .await;

    let _c = stack.spawn_worker_process("worker-c");
    stack
        .wait_for_owners(
            &[("worker-a", 4), ("worker-b", 4), ("worker-c", 4)],
            rebalance_bound(),
        )
        .await;

    // A graceful stop releases at once; the others take over within the bound.
    a.terminate();
    stack
        .wait_for_owners(&[("worker-b", 6), ("worker-c", 6)], rebalance_bound())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_a_worker_mid_load_loses_no_task_and_duplicates_no_row() {
    const TASKS: usize = 500;
    // Downstream latency keeps work in flight when the worker dies.
    let stack = Stack::start(20).await;
    let api = stack.start_api().await;
    let _a = stack.spawn_worker_process("worker-a");
    let mut b = stack.spawn_worker_process("worker-b");
    let _c = stack.spawn_worker_process("worker-c");
    stack
        .wait_for_owners(
            &[("worker-a", 4), ("worker-b", 4), ("worker-c", 4)],
            Duration::from_secs(30),
        )
        .await;

    let submitted = futures::stream::iter(0..TASKS)
        .map(|i| {
            let api = &api;
            async move {
                api.submit_accepted(&example_request(&format!("load {i}")))
                    .await
            }
        })
        .buffer_unordered(16)
        .enumerate()
        .map(|(n, task_id)| {
            if n == TASKS / 3 {
                b.kill();
            }
            task_id
        })
        .collect::<Vec<_>>()
        .await;
    assert_eq!(submitted.len(), TASKS);

    stack
        .wait_for_completed(
            i64::try_from(TASKS).expect("small"),
            Duration::from_secs(120),
        )
        .await;
    stack
        .assert_exact_rows(i64::try_from(TASKS).expect("small"), 3)
        .await;
    stack
        .wait_for_owners(&[("worker-a", 6), ("worker-c", 6)], rebalance_bound())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_worker_loses_its_leases_and_cannot_write_after_waking() {
    let stack = Stack::start(20).await;
    let api = stack.start_api().await;
    let a = stack.spawn_worker_process("worker-a");
    let _b = stack.spawn_worker_process("worker-b");
    stack
        .wait_for_owners(&[("worker-a", 6), ("worker-b", 6)], Duration::from_secs(30))
        .await;

    // Freeze worker-a (a long GC pause, a VM migration): its leases expire and
    // worker-b takes every partition over under new epochs.
    a.pause();
    let before = stack.leases().await;
    for i in 0..60 {
        api.submit_accepted(&example_request(&format!("while paused {i}")))
            .await;
    }
    stack
        .wait_for_owners(&[("worker-b", 12)], rebalance_bound())
        .await;

    // worker-a wakes up believing it still owns six partitions: whatever it tries to
    // commit or write under its old epochs is refused, and it rejoins as a new owner.
    a.resume();
    stack.wait_for_completed(60, Duration::from_secs(60)).await;
    stack
        .wait_for_owners(&[("worker-a", 6), ("worker-b", 6)], rebalance_bound())
        .await;
    stack.assert_exact_rows(60, 3).await;
    // Each of worker-a's partitions went to worker-b and back: two new epochs.
    let after = stack.leases().await;
    for (old, new) in before.iter().zip(&after) {
        if old.owner.as_deref() == Some("worker-a") {
            assert!(
                new.epoch >= old.epoch + 2,
                "partition {}: {old:?} -> {new:?}",
                old.partition
            );
        }
    }
    // Whichever noticed first (a refused write or commit, the renewal, or the
    // worker's own clock), it says "Lease lost" or "expired without renewal".
    let log = std::fs::read_to_string(&a.log_path).expect("worker-a log");
    assert!(
        log.contains("Lease lost") || log.contains("expired without renewal"),
        "worker-a noticed it was fenced; log: {}",
        a.log_path.display()
    );
}
