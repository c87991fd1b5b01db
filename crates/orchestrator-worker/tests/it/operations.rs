//! What operators see of a worker: its HTTP port (health with lease state, readiness,
//! metrics) and the request id that ties its logs to the API's.

use std::time::Duration;

use serde_json::Value;

use crate::support::{PARTITIONS, Stack, example_request};

const FINISH: Duration = Duration::from_secs(30);

async fn get(port: u16, path: &str) -> reqwest::Response {
    reqwest::get(format!("http://127.0.0.1:{port}{path}"))
        .await
        .expect("worker answers")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_worker_port_reports_leases_readiness_and_metrics() {
    let stack = Stack::start(0).await;
    let api = stack.start_api().await;
    let worker = stack.start_worker("ops").await;
    let port = worker.http_port.expect("started with start_worker");

    assert_eq!(get(port, "/ready").await.status(), 200);
    // A lone worker ends up owning every partition, each under a lease epoch.
    let deadline = tokio::time::Instant::now() + FINISH;
    let health = loop {
        let health: Value = get(port, "/health").await.json().await.expect("JSON");
        if health["partitions"].as_array().map(Vec::len) == Some(PARTITIONS as usize) {
            break health;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never owned all: {health}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(health["status"], "ok");
    assert_eq!(health["worker_id"], "ops");
    assert_eq!(health["topic"], stack.topic.as_str());
    assert!(health["lease_renewed_ms_ago"].is_u64(), "{health}");
    for partition in health["partitions"].as_array().expect("array") {
        assert!(
            partition["epoch"].as_i64().expect("epoch") >= 1,
            "{partition}"
        );
        assert_eq!(partition["state"], "consuming");
    }

    let task_id = api.submit_accepted(&example_request("metrics")).await;
    let finished = api.wait_until_finished(&task_id, FINISH).await;
    assert_eq!(finished["status"], "COMPLETED");

    // The offset commit follows processing by a commit interval: poll for zero lag.
    let deadline = tokio::time::Instant::now() + FINISH;
    loop {
        let text = get(port, "/metrics").await.text().await.expect("text");
        let caught_up = text.contains(r#"orchestrator_records_total{outcome="processed"} 1"#)
            && text
                .lines()
                .filter(|line| line.starts_with("orchestrator_consumer_lag{"))
                .all(|line| line.ends_with(" 0"));
        if caught_up {
            let owned = format!("orchestrator_partitions_owned {PARTITIONS}");
            for expected in [
                owned.as_str(),
                r#"orchestrator_records_in_flight{partition="0"} 0"#,
                r#"orchestrator_tasks_finished_total{status="COMPLETED"} 1"#,
                r#"orchestrator_service_calls_total{service="revenue",outcome="success"} 1"#,
                r#"orchestrator_circuit_breaker_state{service="specialty"} 0"#,
                r#"orchestrator_db_write_batch_writes_count{writer="task_start"} 1"#,
                r#"orchestrator_db_write_batch_writes_count{writer="task_finish"} 1"#,
            ] {
                assert!(text.contains(expected), "missing {expected} in:\n{text}");
            }
            assert!(text.contains("orchestrator_consumer_lag{"), "{text}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "metrics never caught up:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    worker.stop().await;
}

/// The client's `X-Request-Id` and W3C trace go with the task through Kafka: every line
/// the worker logs about the task carries both, and every downstream call sends them
/// (the trace as a `traceparent` of the caller's trace).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_request_id_and_trace_reach_the_worker_logs_and_the_downstream_calls() {
    const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let stack = Stack::start(0).await;
    let api = stack.start_api().await;
    let mut worker = stack.spawn_worker_process("traced");

    let response = api
        .client
        .post(api.url("/api/orchestrate"))
        .header("X-Request-Id", "trace-7f3a")
        .header("traceparent", TRACEPARENT)
        .json(&example_request("traced"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 202);
    let task: Value = response.json().await.expect("task");
    assert_eq!(
        task["trace_id"], TRACE_ID,
        "the task joined the caller's trace"
    );
    let task_id = task["task_id"].as_str().expect("task_id").to_owned();
    let finished = api.wait_until_finished(&task_id, FINISH).await;
    assert_eq!(finished["status"], "COMPLETED");
    assert_eq!(finished["trace_id"], TRACE_ID);

    assert_eq!(stack.mock.stats().request_id_count("trace-7f3a"), 3);
    assert_eq!(stack.mock.stats().trace_id_count(TRACE_ID), 3);

    worker.terminate();
    let log = std::fs::read_to_string(&worker.log_path).expect("worker log");
    let about_task: Vec<&str> = log.lines().filter(|l| l.contains(&task_id)).collect();
    assert!(
        about_task
            .iter()
            .any(|line| line.contains("Task processed")),
        "the worker logged about the task: {}",
        worker.log_path.display()
    );
    for line in about_task {
        assert!(line.contains("trace-7f3a"), "no request id in: {line}");
        assert!(line.contains(TRACE_ID), "no trace id in: {line}");
    }
}
