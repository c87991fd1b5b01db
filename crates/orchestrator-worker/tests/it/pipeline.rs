//! One worker, the API in Kafka mode: the happy path, poison records, a broker outage.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use diesel::{ExpressionMethods, QueryDsl};
use diesel_async::RunQueryDsl;
use orchestrator_core::{EnvelopeKind, TaskEnvelope, partition_for_key};
use orchestrator_store::lifecycle::accept::{self, NewTask};
use orchestrator_store::outbox;
use orchestrator_store::schema::task_outbox;
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::record::Record;
use serde_json::Value;

use crate::support::{PARTITIONS, Stack, example_request};

const FINISH: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readme_example_goes_through_kafka_and_a_worker_to_completed() {
    let stack = Stack::start(0).await;
    let api = stack.start_api().await;
    let worker = stack.spawn_worker("solo");

    let health = api.get_json("/health").await;
    assert_eq!(health["mode"], "kafka");

    let response = api
        .client
        .post(api.url("/api/orchestrate"))
        .header("X-Request-Id", "req-readme-1")
        .json(&example_request("Quarterly forecast"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 202);
    assert_eq!(response.headers()["x-request-id"], "req-readme-1");
    let task: Value = response.json().await.expect("task");
    let task_id = task["task_id"].as_str().expect("task_id").to_owned();
    assert_eq!(task["status"], "PENDING");

    let finished = api.wait_until_finished(&task_id, FINISH).await;
    assert_eq!(finished["status"], "COMPLETED", "{finished}");
    let requests = finished["service_requests"].as_array().expect("array");
    assert_eq!(requests.len(), 3);
    for request in requests {
        assert_eq!(request["status"], "COMPLETED");
        assert_eq!(request["attempts"], 1);
        assert!(request["response_payload"].is_object(), "{request}");
    }
    assert_eq!(stack.mock.stats().total, 3);

    // The record: keyed by the task id, a version 1 envelope, content type and request id
    // headers, on the partition Kafka's default partitioner picks for the key.
    let partition =
        i32::try_from(partition_for_key(task_id.as_bytes(), PARTITIONS as u32)).expect("small");
    let records = stack.read_records(&stack.topic, partition, 1, FINISH).await;
    let record = &records[0].record;
    assert_eq!(record.key.as_deref(), Some(task_id.as_bytes()));
    let envelope: Value =
        serde_json::from_slice(record.value.as_deref().expect("value")).expect("JSON envelope");
    assert_eq!(envelope["version"], 1);
    assert_eq!(envelope["task_id"], task_id.as_str());
    assert_eq!(envelope["request_id"], "req-readme-1");
    assert!(String::from_utf8_lossy(&record.headers["content-type"]).starts_with("application/"));
    assert_eq!(record.headers["x-request-id"], b"req-readme-1");

    // The mark: once the broker acknowledged the record the task leaves the outbox (the
    // mark writer deletes its row moments after the 202; were the mark lost, the sweeper
    // would once the task is processed), so it is never swept again and nothing piles up.
    let task_id: uuid::Uuid = task_id.parse().expect("a UUID");
    wait_until_out_of_outbox(&stack, task_id).await;
    let mut conn = stack.db.connection().await;
    let later = Utc::now() + chrono::Duration::seconds(3600);
    assert!(
        outbox::lock_stranded(&mut conn, later, 10)
            .await
            .expect("query")
            .is_empty()
    );
    worker.stop().await;
}

/// Waits until the task has left the outbox: its record was acknowledged (the mark
/// writer deletes the row moments after the 202) or it was processed.
async fn wait_until_out_of_outbox(stack: &Stack, task_id: uuid::Uuid) {
    let mut conn = stack.db.connection().await;
    let deadline = tokio::time::Instant::now() + FINISH;
    loop {
        let in_outbox: i64 = task_outbox::table
            .filter(task_outbox::task_id.eq(task_id))
            .count()
            .get_result(&mut conn)
            .await
            .expect("query");
        if in_outbox == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "task {task_id} is still in the outbox"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_task_stored_but_never_published_is_published_by_the_sweeper() {
    let stack = Stack::start(0).await;
    let api = stack.start_api().await;
    let worker = stack.spawn_worker("solo");

    // What an API that died between storing a task and publishing it leaves behind.
    let task_id = uuid::Uuid::new_v4();
    let body = example_request("stranded");
    {
        let mut conn = stack.db.connection().await;
        accept::insert_many_queued(
            &mut conn,
            &[NewTask {
                task_id,
                task_name: "stranded",
                task_description: None,
                payload: &body["payload"],
                idempotency_key: None,
                tenant: "default",
                deadline_seconds: None,
                deadline_at: None,
                callback_url: None,
                traceparent: None,
            }],
        )
        .await
        .expect("task stored");
    }

    // The sweeper publishes it once it is older than the grace period (3 s here).
    let finished = api.wait_until_finished(&task_id.to_string(), FINISH).await;
    assert_eq!(finished["status"], "COMPLETED", "{finished}");
    wait_until_out_of_outbox(&stack, task_id).await;
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_records_go_to_the_dead_letter_topic_and_the_partition_moves_on() {
    let stack = Stack::start(0).await;
    // The worker creates the topics; the test then writes to one partition directly.
    let worker = stack.spawn_worker("solo");
    stack.wait_for_owners(&[("solo", 12)], FINISH).await;

    // A task stored as the API would store it, so a valid record can follow the poison.
    let task_id = uuid::Uuid::new_v4();
    let body = example_request("after the poison");
    {
        let mut conn = stack.db.connection().await;
        accept::insert(
            &mut conn,
            &NewTask {
                task_id,
                task_name: "after the poison",
                task_description: None,
                payload: &body["payload"],
                idempotency_key: None,
                tenant: "default",
                deadline_seconds: None,
                deadline_at: None,
                callback_url: None,
                traceparent: None,
            },
        )
        .await
        .expect("task stored");
    }
    let key = task_id.to_string().into_bytes();
    let partition =
        i32::try_from(partition_for_key(&key, PARTITIONS as u32)).expect("small partition");
    let record = |value: Vec<u8>| Record {
        key: Some(key.clone()),
        value: Some(value),
        headers: BTreeMap::from([("x-request-id".to_owned(), b"req-poison".to_vec())]),
        timestamp: Utc::now(),
    };
    let valid = TaskEnvelope::new(task_id, EnvelopeKind::Submitted, None, Utc::now());
    let client = stack
        .kafka_client()
        .await
        .partition_client(stack.topic.clone(), partition, UnknownTopicHandling::Retry)
        .await
        .expect("partition client");
    let offsets = client
        .produce(
            vec![
                record(b"this is not an envelope".to_vec()),
                record(br#"{"version": 99, "task_id": "x"}"#.to_vec()),
                record(valid.encode()),
            ],
            Compression::NoCompression,
        )
        .await
        .expect("produced");

    stack.wait_for_completed(1, FINISH).await;
    stack.assert_exact_rows(1, 3).await;

    let mut dead = stack
        .read_records(&stack.dlq_topic(), partition, 2, FINISH)
        .await;
    // Records of a partition are processed concurrently, so the two poison records may
    // reach the dead-letter topic in either order: compare them by source offset.
    dead.sort_by_key(|dead| {
        String::from_utf8_lossy(&dead.record.headers["dlq-source-offset"])
            .parse::<i64>()
            .expect("numeric source offset")
    });
    assert_eq!(
        dead.len(),
        2,
        "only the two poison records are dead-lettered"
    );
    for (dead, source_offset) in dead.iter().zip(&offsets) {
        let headers = &dead.record.headers;
        assert_eq!(headers["dlq-source-topic"], stack.topic.as_bytes());
        assert_eq!(
            headers["dlq-source-partition"],
            partition.to_string().as_bytes()
        );
        assert_eq!(
            headers["dlq-source-offset"],
            source_offset.to_string().as_bytes()
        );
        assert_eq!(
            headers["x-request-id"], b"req-poison",
            "original headers kept"
        );
        assert!(!headers["dlq-error"].is_empty());
    }
    assert_eq!(
        dead[0].record.value.as_deref(),
        Some(&b"this is not an envelope"[..])
    );
    assert!(String::from_utf8_lossy(&dead[1].record.headers["dlq-error"]).contains("version 99"));

    // The offset moves past all three records.
    let deadline = tokio::time::Instant::now() + FINISH;
    loop {
        let committed =
            stack.leases().await[usize::try_from(partition).expect("small")].committed_offset;
        if committed == offsets[2] + 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "committed {committed}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_outage_answers_503_stores_nothing_and_loses_no_accepted_task() {
    // Downstream latency keeps accepted tasks waiting in the topic during the outage.
    let stack = Stack::start(50).await;
    let api = stack.start_api().await;
    // Connected before the outage: a worker that cannot reach the broker at startup
    // exits (for its supervisor to restart), which is not what this test is about.
    let worker = stack.start_worker("solo").await;

    let mut accepted = Vec::new();
    for i in 0..20 {
        accepted.push(
            api.submit_accepted(&example_request(&format!("before {i}")))
                .await,
        );
    }

    // The broker hangs (SIGSTOP keeps its data, as a real broker's disk would): the
    // API gives up after its request timeout and answers 503.
    stack.broker.pause();
    for i in 0..2 {
        let response = api.submit(&example_request(&format!("during {i}"))).await;
        assert_eq!(response.status(), 503);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let problem: Value = response.json().await.expect("problem");
        assert_eq!(problem["type"], "/problems/queue-unavailable");
    }
    {
        use diesel::prelude::*;
        use diesel_async::RunQueryDsl;
        use orchestrator_store::schema::tasks;
        let mut conn = stack.db.connection().await;
        let during: i64 = tasks::table
            .filter(tasks::task_name.like("during%"))
            .count()
            .get_result(&mut conn)
            .await
            .expect("count");
        assert_eq!(during, 0, "a request answered 503 leaves nothing behind");
        let in_outbox: Vec<uuid::Uuid> = task_outbox::table
            .select(task_outbox::task_id)
            .load(&mut conn)
            .await
            .expect("outbox");
        let stored: i64 = tasks::table
            .filter(tasks::task_id.eq_any(&in_outbox))
            .count()
            .get_result(&mut conn)
            .await
            .expect("count");
        assert_eq!(
            stored,
            i64::try_from(in_outbox.len()).expect("few rows"),
            "nor an outbox row"
        );
    }

    stack.broker.resume();
    let deadline = tokio::time::Instant::now() + FINISH;
    let mut after = 0;
    while after < 5 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "API did not recover"
        );
        let response = api
            .submit(&example_request(&format!("after {after}")))
            .await;
        match response.status().as_u16() {
            202 => {
                let task: Value = response.json().await.expect("task");
                accepted.push(task["task_id"].as_str().expect("id").to_owned());
                after += 1;
            }
            503 => tokio::time::sleep(Duration::from_millis(100)).await,
            other => panic!("unexpected status {other}"),
        }
    }
    for task_id in &accepted {
        let task = api.wait_until_finished(task_id, FINISH).await;
        assert_eq!(task["status"], "COMPLETED", "{task}");
    }
    assert_eq!(stack.db.count_rows("tasks").await, 25);
    stack.assert_exact_rows(25, 3).await;
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_task_is_redriven_through_kafka() {
    let stack = Stack::start(0).await;
    stack.mock.set_behaviour(
        "specialty",
        orchestrator_mock_services::Behaviour {
            failure_rate: 1.0,
            failure_status: 500,
            ..orchestrator_mock_services::Behaviour::default()
        },
    );
    let api = stack.start_api().await;
    let worker = stack.spawn_worker("solo");
    let task_id = api
        .submit_accepted(&example_request("flaky specialty"))
        .await;
    let failed = api.wait_until_finished(&task_id, FINISH).await;
    assert_eq!(failed["status"], "FAILED");

    stack.mock.reset_behaviours();
    // Another tenant neither sees nor re-drives it: the rules of inline mode hold in
    // Kafka mode.
    let other = stack.client_of("other").await;
    for response in [
        other.get(api.url(&format!("/api/tasks/{task_id}"))),
        other.post(api.url(&format!("/api/tasks/{task_id}/retry"))),
    ] {
        let response = response.send().await.expect("sent");
        assert_eq!(response.status(), 404);
    }
    let response = api
        .client
        .post(api.url(&format!("/api/tasks/{task_id}/retry")))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 202);
    let done = api.wait_until_finished(&task_id, FINISH).await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    assert_eq!(
        done["tenant"], "default",
        "the tenant travels with the task"
    );
    let specialty = done["service_requests"]
        .as_array()
        .expect("array")
        .iter()
        .find(|sr| sr["service_name"] == "specialty")
        .expect("specialty")
        .clone();
    assert_eq!(
        specialty["attempts"], 4,
        "3 failed attempts, then 1 that worked"
    );
    stack.assert_exact_rows(1, 3).await;
    worker.stop().await;
}
