//! Cancel and deadlines in Kafka mode: the API commits the stop, and whichever worker
//! replica runs the task drops its calls; a task stopped before any worker took it is
//! never called.

use std::time::Duration;

use orchestrator_mock_services::Behaviour;
use orchestrator_testkit::poll;
use serde_json::{Value, json};

use crate::support::{Stack, example_request};

const FINISH: Duration = Duration::from_secs(30);
const SCENARIO_ID: &str = "3fa85f64-5717-4562-b3fc-2c963f66afa6";
const BUSINESS_TYPE_ID: &str = "9b2f4e2a-6c4d-4d3e-8f1a-2b3c4d5e6f70";

fn calling(name: &str, services: &[&str]) -> Value {
    let call = json!({"scenario_id": SCENARIO_ID, "business_type_id": BUSINESS_TYPE_ID});
    let item: serde_json::Map<String, Value> = services
        .iter()
        .map(|service| ((*service).to_owned(), call.clone()))
        .collect();
    json!({"task_name": name, "payload": [item]})
}

async fn service_request_count(stack: &Stack, task_id: &str) -> i64 {
    use diesel::{ExpressionMethods, QueryDsl};
    use diesel_async::RunQueryDsl;
    use orchestrator_store::schema::service_requests;
    let mut conn = stack.db.connection().await;
    service_requests::table
        .filter(service_requests::task_id.eq(uuid::Uuid::parse_str(task_id).expect("id")))
        .count()
        .get_result(&mut conn)
        .await
        .expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancel_drops_the_call_on_whichever_replica_runs_it_within_a_second() {
    let stack = Stack::start(0).await;
    let api = stack.start_api().await;
    let _one = stack.spawn_worker("one");
    let _two = stack.spawn_worker("two");
    stack
        .wait_for_owners(&[("one", 6), ("two", 6)], FINISH)
        .await;
    stack.mock.set_behaviour(
        "revenue",
        Behaviour {
            hang: true,
            ..Behaviour::default()
        },
    );
    let hanging = api
        .submit_accepted(&calling("hangs", &["revenue", "rebates"]))
        .await;
    poll::until("revenue's call in flight", FINISH, || async {
        stack.mock.stats().in_flight == 1
    })
    .await;

    let response = api
        .client
        .post(api.url(&format!("/api/tasks/{hanging}/cancel")))
        .send()
        .await
        .expect("cancel sent");
    assert_eq!(response.status(), 202);
    let took = poll::until(
        "the hanging call dropped",
        Duration::from_secs(5),
        || async { stack.mock.stats().in_flight == 0 },
    )
    .await;
    assert!(took < Duration::from_secs(1), "dropped after {took:?}");
    let task = api.get_json(&format!("/api/tasks/{hanging}")).await;
    assert_eq!(task["status"], "CANCELLED", "{task}");

    // Both replicas go on working: tasks on every partition complete.
    let mut others = Vec::new();
    for n in 0..24 {
        others.push(
            api.submit_accepted(&calling(&format!("after {n}"), &["rebates", "specialty"]))
                .await,
        );
    }
    for task_id in &others {
        let done = api.wait_until_finished(task_id, FINISH).await;
        assert_eq!(done["status"], "COMPLETED", "{done}");
    }
    stack
        .wait_for_owners(&[("one", 6), ("two", 6)], FINISH)
        .await;
    assert_eq!(
        api.get_json(&format!("/api/tasks/{hanging}")).await["status"],
        "CANCELLED"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_task_cancelled_before_any_worker_took_it_is_never_called() {
    let stack = Stack::start(0).await;
    let api = stack.start_api().await;
    let cancelled = api
        .submit_accepted(&example_request("cancelled early"))
        .await;
    let response = api
        .client
        .post(api.url(&format!("/api/tasks/{cancelled}/cancel")))
        .send()
        .await
        .expect("cancel sent");
    assert_eq!(response.status(), 202);

    // The worker consumes the cancelled task's record, then a later task's.
    let _worker = stack.spawn_worker("late");
    let later = api
        .submit_accepted(&example_request("after the cancel"))
        .await;
    let done = api.wait_until_finished(&later, FINISH).await;
    assert_eq!(done["status"], "COMPLETED");
    poll::until("the cancelled task's record consumed", FINISH, || async {
        stack
            .leases()
            .await
            .iter()
            .map(|lease| lease.committed_offset)
            .sum::<i64>()
            == 2
    })
    .await;
    assert_eq!(
        api.get_json(&format!("/api/tasks/{cancelled}")).await["status"],
        "CANCELLED"
    );
    assert_eq!(service_request_count(&stack, &cancelled).await, 0);
    assert_eq!(stack.mock.stats().total, 3, "only the later task's calls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_task_whose_deadline_passed_in_the_queue_fails_without_a_call() {
    let stack = Stack::start(0).await;
    let api = stack.start_api().await;
    let mut body = example_request("waits too long");
    body["deadline_seconds"] = json!(1);
    let task_id = api.submit_accepted(&body).await;
    let task = api.get_json(&format!("/api/tasks/{task_id}")).await;
    let deadline = chrono::DateTime::parse_from_rfc3339(task["deadline_at"].as_str().expect("set"))
        .expect("RFC 3339");
    // No worker runs until the deadline has passed.
    poll::until("the deadline passed", Duration::from_secs(5), || async {
        chrono::Utc::now() > deadline
    })
    .await;
    let _worker = stack.spawn_worker("late");
    let done = api.wait_until_finished(&task_id, FINISH).await;
    assert_eq!(done["status"], "FAILED", "{done}");
    assert!(
        done["error_message"]
            .as_str()
            .is_some_and(|e| e.contains("deadline passed")),
        "{done}"
    );
    assert_eq!(service_request_count(&stack, &task_id).await, 0);
    assert_eq!(stack.mock.stats().total, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_long_poll_on_another_api_replica_answers_within_100_ms_of_the_finish() {
    let stack = Stack::start(300).await;
    let accepting = stack.start_api().await;
    let waiting = stack.start_api().await;
    let _worker = stack.spawn_worker("solo");
    let task_id = accepting
        .submit_accepted(&example_request("waited for elsewhere"))
        .await;
    let response = waiting
        .client
        .get(waiting.url(&format!("/api/tasks/{task_id}?wait=30")))
        .send()
        .await
        .expect("long poll sent");
    let answered = chrono::Utc::now();
    assert_eq!(response.status(), 200);
    let task: Value = response.json().await.expect("JSON");
    assert_eq!(task["status"], "COMPLETED", "{task}");
    let finished = chrono::DateTime::parse_from_rfc3339(task["updated_at"].as_str().expect("t"))
        .expect("RFC 3339");
    let lag = answered - finished.with_timezone(&chrono::Utc);
    assert!(
        lag < chrono::TimeDelta::milliseconds(100),
        "answered {lag} after the final transaction"
    );
}
