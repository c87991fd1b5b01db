use std::time::Duration;

use orchestrator_mock_services::{Behaviour, Latency};
use serde_json::{Value, json};

use crate::helpers::{BUSINESS_TYPE_ID, SCENARIO_ID, TestApp, assert_problem, example_request};

#[tokio::test(flavor = "multi_thread")]
async fn accepted_task_is_processed_in_the_background_to_completion() {
    let app = TestApp::spawn().await;
    let response = app.post_json("/api/orchestrate", &example_request()).await;
    assert_eq!(response.status(), 202);
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("Location header")
        .to_owned();
    let accepted: Value = response.json().await.expect("JSON");
    let task_id = accepted["task_id"].as_str().expect("task_id").to_owned();
    assert_eq!(location, format!("/api/tasks/{task_id}"));
    assert_eq!(accepted["status"], "PENDING");
    assert_eq!(accepted["task_name"], "Quarterly forecast");
    assert_eq!(accepted["payload"], example_request()["payload"]);
    assert!(
        accepted["created_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );

    let task = app.wait_until_finished(&task_id).await;
    assert_eq!(task["status"], "COMPLETED", "{task}");
    assert_eq!(task["error_message"], Value::Null);
    let requests = task["service_requests"]
        .as_array()
        .expect("service requests");
    let services: Vec<&str> = requests
        .iter()
        .map(|sr| sr["service_name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(services, ["rebates", "revenue", "specialty"]);

    let stats = app.mock.stats();
    for sr in requests {
        assert_eq!(sr["status"], "COMPLETED");
        assert_eq!(sr["attempts"], 1);
        assert_eq!(sr["item_index"], 0);
        assert_eq!(sr["scenario_id"], SCENARIO_ID);
        assert_eq!(
            sr["request_payload"],
            json!({"scenario_id": SCENARIO_ID, "business_type_id": BUSINESS_TYPE_ID})
        );
        assert_eq!(sr["response_payload"]["service"], sr["service_name"]);
        assert!(sr["started_at"].is_string() && sr["completed_at"].is_string());
        // The service request's id went downstream as the Idempotency-Key, once.
        let key = sr["id"].as_str().expect("id");
        assert_eq!(
            stats.by_idempotency_key.get(key).copied(),
            Some(1),
            "{stats:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_call_does_not_hide_the_outcomes_of_the_fast_ones() {
    // The slow call must outlast the dispatcher's outcome hold (200 ms) by far, and
    // stay within one attempt's time limit.
    const SLOW_MS: u64 = 2_500;
    let app = TestApp::spawn_with(|config| config.dispatch.http_timeout_ms = 10_000).await;
    app.mock.set_behaviour(
        "revenue",
        Behaviour {
            latency: Latency::Fixed { ms: SLOW_MS },
            ..Behaviour::default()
        },
    );
    let response = app.post_json("/api/orchestrate", &example_request()).await;
    assert_eq!(response.status(), 202);
    let accepted: Value = response.json().await.expect("JSON");
    let task_id = accepted["task_id"].as_str().expect("task_id").to_owned();
    let path = format!("/api/tasks/{task_id}");
    let service = |task: &Value, name: &str| -> Value {
        task["service_requests"]
            .as_array()
            .and_then(|srs| srs.iter().find(|sr| sr["service_name"] == name))
            .cloned()
            .unwrap_or(Value::Null)
    };

    // The fast outcomes are stored while the slow call still runs, not with the finish.
    // What is checked is the order of events; the deadline only stops a hung test.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let task = loop {
        let task = app.get_json(&path).await;
        assert!(
            !matches!(task["status"].as_str(), Some("COMPLETED" | "FAILED")),
            "the fast outcomes were recorded only when the task settled: {task}"
        );
        let fast_done = ["rebates", "specialty"]
            .iter()
            .all(|name| service(&task, name)["status"] == "COMPLETED");
        if fast_done {
            break task;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the fast outcomes were not recorded while the slow call ran: {task}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(task["status"], "IN_PROGRESS", "{task}");
    let slow = service(&task, "revenue");
    assert_eq!(slow["status"], "IN_PROGRESS", "{task}");
    assert_eq!(slow["response_payload"], Value::Null);
    for name in ["rebates", "specialty"] {
        let fast = service(&task, name);
        assert_eq!(fast["response_payload"]["service"], name, "{fast}");
        assert_eq!(fast["attempts"], 1, "{fast}");
        assert!(fast["completed_at"].is_string(), "{fast}");
    }

    let task = app.wait_until_finished(&task_id).await;
    assert_eq!(task["status"], "COMPLETED", "{task}");
    let requests = task["service_requests"]
        .as_array()
        .expect("service requests");
    assert_eq!(requests.len(), 3);
    for sr in requests {
        assert_eq!(sr["status"], "COMPLETED", "{sr}");
        assert_eq!(sr["response_payload"]["service"], sr["service_name"]);
        assert_eq!(sr["attempts"], 1, "{sr}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn direct_request_answers_with_the_finished_task() {
    let app = TestApp::spawn().await;
    let response = app
        .post_json("/api/orchestrate/direct", &example_request())
        .await;
    assert_eq!(response.status(), 200);
    let task: Value = response.json().await.expect("JSON");
    assert_eq!(task["status"], "COMPLETED");
    let requests = task["service_requests"]
        .as_array()
        .expect("service requests");
    assert_eq!(requests.len(), 3);
    assert!(
        requests
            .iter()
            .all(|sr| sr["status"] == "COMPLETED" && sr["response_payload"].is_object())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn downstream_failure_fails_the_task_with_its_reason() {
    let app = TestApp::spawn().await;
    app.mock.set_behaviour(
        "revenue",
        Behaviour {
            failure_rate: 1.0,
            failure_status: 500,
            ..Behaviour::default()
        },
    );
    let response = app
        .post_json("/api/orchestrate/direct", &example_request())
        .await;
    assert_eq!(response.status(), 200);
    let task: Value = response.json().await.expect("JSON");
    assert_eq!(task["status"], "FAILED");
    let message = task["error_message"].as_str().expect("error message");
    assert!(
        message.starts_with("1 of 3 service requests failed: revenue (item 0): HTTP 500"),
        "{message}"
    );

    for sr in task["service_requests"]
        .as_array()
        .expect("service requests")
    {
        if sr["service_name"] == "revenue" {
            assert_eq!(sr["status"], "FAILED");
            assert_eq!(sr["attempts"], 3, "500 is retried up to the attempt limit");
            assert!(
                sr["error_message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("HTTP 500"))
            );
            assert_eq!(sr["response_payload"], Value::Null);
        } else {
            assert_eq!(sr["status"], "COMPLETED");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_service_is_recorded_as_a_transport_error() {
    let app = TestApp::spawn_with(|config| {
        // Nothing listens on port 9 of loopback.
        config.dispatch.specialty_service_url = "http://127.0.0.1:9".into();
    })
    .await;
    let task: Value = app
        .post_json("/api/orchestrate/direct", &example_request())
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(task["status"], "FAILED");
    let specialty = task["service_requests"]
        .as_array()
        .and_then(|srs| srs.iter().find(|sr| sr["service_name"] == "specialty"))
        .expect("specialty request");
    assert!(
        specialty["error_message"]
            .as_str()
            .is_some_and(|m| m.starts_with("transport error")),
        "{specialty}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn same_idempotency_key_and_body_returns_the_original_task() {
    let app = TestApp::spawn().await;
    let send = |path: &'static str, body: Value| {
        let request = app
            .client
            .post(app.url(path))
            .header("Idempotency-Key", "order-42")
            .json(&body);
        async move { request.send().await.expect("sent") }
    };
    let first = send("/api/orchestrate", example_request()).await;
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.expect("JSON");
    let second = send("/api/orchestrate", example_request()).await;
    assert_eq!(second.status(), 202);
    let second: Value = second.json().await.expect("JSON");
    assert_eq!(first["task_id"], second["task_id"]);

    // The direct endpoint with the same key finds the same task and waits for it.
    let direct = send("/api/orchestrate/direct", example_request()).await;
    assert_eq!(direct.status(), 200);
    let direct: Value = direct.json().await.expect("JSON");
    assert_eq!(direct["task_id"], first["task_id"]);
    assert_eq!(direct["status"], "COMPLETED");

    let mut changed = example_request();
    changed["task_name"] = json!("Something else");
    let problem = assert_problem(send("/api/orchestrate", changed).await, 422).await;
    assert_eq!(problem["type"], "/problems/idempotency-key-reused");

    assert_eq!(app.db.count_rows("tasks").await, 1);
    assert_eq!(app.db.count_rows("service_requests").await, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_idempotency_key_is_rejected() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .post(app.url("/api/orchestrate"))
        .header("Idempotency-Key", "")
        .json(&example_request())
        .send()
        .await
        .expect("sent");
    assert_problem(response, 400).await;
    assert_eq!(app.db.count_rows("tasks").await, 0);
}
