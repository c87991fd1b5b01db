//! Records lost from a partition's log before a worker read them (Event Hubs' retention
//! expiring them under the stored offset, a log truncated or recreated): the tasks are
//! in PostgreSQL, and the partition's owner runs them.
//!
//! Tansu cannot delete records (its DeleteRecords is not implemented) nor expire them,
//! so the log is lost here by deleting and recreating the topic: every stored offset is
//! then past the new log's end. An offset below the log's start (expiry) takes the same
//! path from the broker's OffsetOutOfRange; which of the two it was is told by
//! `LossReason::of` (a unit test in the consumer).

use std::collections::BTreeSet;
use std::time::Duration;

use orchestrator_core::partition_of_task;
use orchestrator_testkit::ports::free_port;

use crate::support::{PARTITIONS, Stack, example_request};

const FINISH: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tasks_whose_records_were_lost_from_the_log_still_run() {
    let stack = Stack::start(0).await;
    let api = stack.start_api().await;
    let partitions = u32::try_from(PARTITIONS).expect("small");

    // Every partition is consumed past offset 0, so an empty new log lies below each
    // stored offset.
    let worker = stack.start_worker("before").await;
    let mut seeded = BTreeSet::new();
    let mut seeds = 0;
    while seeded.len() < partitions as usize {
        let task_id = api.submit_accepted(&example_request("seed")).await;
        let task_id: uuid::Uuid = task_id.parse().expect("a task id");
        seeded.insert(partition_of_task(task_id, partitions));
        seeds += 1;
        assert!(seeds < 1_000, "ids never covered every partition");
    }
    stack.wait_for_completed(seeds, FINISH).await;
    let deadline = tokio::time::Instant::now() + FINISH;
    while !stack.leases().await.iter().all(|l| l.committed_offset > 0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "offsets never committed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    worker.stop().await;

    // Accepted (so their records reached the broker) while no worker reads, then lost.
    let mut lost = Vec::new();
    for n in 0..24 {
        lost.push(
            api.submit_accepted(&example_request(&format!("lost {n}")))
                .await,
        );
    }
    let controller = stack
        .kafka_client()
        .await
        .controller_client()
        .expect("controller");
    controller
        .delete_topic(&stack.topic, 5_000)
        .await
        .expect("topic deleted");
    controller
        .create_topic(&stack.topic, PARTITIONS, 1, 5_000)
        .await
        .expect("topic recreated");
    for task_id in &lost {
        let task = api.get_json(&format!("/api/tasks/{task_id}")).await;
        assert_eq!(task["status"], "PENDING", "{task}");
    }

    let port = free_port();
    let mut worker =
        stack.spawn_worker_process_with("after", &[("WORKER_HTTP_PORT", port.to_string())]);
    for task_id in &lost {
        let task = api.wait_until_finished(task_id, FINISH).await;
        assert_eq!(task["status"], "COMPLETED", "{task}");
    }
    // Each partition saw the loss once; the owed runs are recorded as done.
    let deadline = tokio::time::Instant::now() + FINISH;
    loop {
        let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
            .await
            .expect("the worker answers")
            .text()
            .await
            .expect("text");
        let leases = stack.leases().await;
        let resets =
            format!(r#"orchestrator_offset_resets_total{{reason="log_reset"}} {PARTITIONS}"#);
        if metrics.contains(&resets)
            && metrics.contains("orchestrator_lost_tasks_run_total 24")
            && leases
                .iter()
                .all(|l| l.lost_before.is_none() && l.recover_at_offset.is_none())
        {
            assert!(
                metrics.contains(r#"orchestrator_offset_resets_total{reason="expired"} 0"#),
                "{metrics}"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never settled: {leases:?}\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The consumers read the new log from its start.
    let after = api.submit_accepted(&example_request("after")).await;
    let task = api.wait_until_finished(&after, FINISH).await;
    assert_eq!(task["status"], "COMPLETED", "{task}");
    stack.assert_exact_rows(seeds + 25, 3).await;

    worker.terminate();
    let log = std::fs::read_to_string(&worker.log_path).expect("worker log");
    let losses: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("no longer holds the consumer's offset"))
        .collect();
    assert_eq!(losses.len(), PARTITIONS as usize, "{log}");
    assert!(
        losses.iter().all(|line| line.contains("ERROR")),
        "{losses:?}"
    );
}
