//! `POST /api/tasks/{task_id}/retry`: re-running the failed part of a failed task.

use orchestrator_mock_services::Behaviour;
use serde_json::Value;

use crate::helpers::{TestApp, assert_problem, example_request};

fn by_service<'a>(task: &'a Value, service: &str) -> &'a Value {
    task["service_requests"]
        .as_array()
        .expect("service requests")
        .iter()
        .find(|sr| sr["service_name"] == service)
        .expect("service request")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_task_is_redriven_to_completion_keeping_its_attempts() {
    let app = TestApp::spawn().await;
    app.mock.set_behaviour(
        "revenue",
        Behaviour {
            failure_rate: 1.0,
            failure_status: 503,
            ..Behaviour::default()
        },
    );
    let failed: Value = app
        .post_json("/api/orchestrate/direct", &example_request())
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(failed["status"], "FAILED");
    let task_id = failed["task_id"].as_str().expect("id").to_owned();
    let revenue_key = by_service(&failed, "revenue")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let rebates_key = by_service(&failed, "rebates")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(by_service(&failed, "revenue")["attempts"], 3);
    assert_eq!(app.mock.stats().key_count(&revenue_key), 3);
    // Each failed attempt is on record with the service's answer.
    let failures = by_service(&failed, "revenue")["failed_attempts"]
        .as_array()
        .expect("failed attempts")
        .clone();
    assert_eq!(
        failures
            .iter()
            .map(|a| a["attempt"].clone())
            .collect::<Vec<_>>(),
        [1, 2, 3],
        "{failures:?}"
    );
    for attempt in &failures {
        assert_eq!(attempt["status_code"], 503, "{attempt}");
        assert!(
            attempt["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("HTTP 503")),
            "{attempt}"
        );
        assert!(attempt["duration_ms"].as_i64().is_some_and(|ms| ms >= 0));
    }
    assert_eq!(
        by_service(&failed, "rebates")["failed_attempts"],
        Value::Array(Vec::new()),
        "a request that succeeded at once has no failures on record"
    );
    assert_eq!(failed["redrives"], Value::Array(Vec::new()));

    // The service recovers; the client re-drives the task.
    app.mock.reset_behaviours();
    let response = app
        .client
        .post(app.url(&format!("/api/tasks/{task_id}/retry")))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 202);
    assert_eq!(
        response.headers()["location"],
        format!("/api/tasks/{task_id}").as_str()
    );
    let reopened: Value = response.json().await.expect("JSON");
    assert_eq!(reopened["status"], "IN_PROGRESS");
    assert_eq!(reopened["error_message"], Value::Null);

    let done = app.wait_until_finished(&task_id).await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    let revenue = by_service(&done, "revenue");
    assert_eq!(revenue["status"], "COMPLETED");
    assert_eq!(revenue["attempts"], 4, "earlier attempts stay counted");
    assert!(revenue["response_payload"].is_object());
    assert_eq!(revenue["error_message"], Value::Null);
    // Only the failed service request ran again.
    let stats = app.mock.stats();
    assert_eq!(stats.key_count(&revenue_key), 4);
    assert_eq!(stats.key_count(&rebates_key), 1);
    assert_eq!(by_service(&done, "rebates")["attempts"], 1);
    // The re-drive joined the task's trace: the first run's 5 calls and its 1.
    let trace_id = done["trace_id"].as_str().expect("trace id");
    assert_eq!(failed["trace_id"], trace_id);
    assert_eq!(stats.trace_id_count(trace_id), 6);
    // The earlier failure stays visible: when, why, and when it was re-driven.
    let redrives = done["redrives"].as_array().expect("redrives");
    assert_eq!(redrives.len(), 1, "{done}");
    assert_eq!(redrives[0]["failed_at"], failed["updated_at"]);
    assert_eq!(redrives[0]["error_message"], failed["error_message"]);
    assert!(
        redrives[0]["redriven_at"].as_str() >= redrives[0]["failed_at"].as_str(),
        "{redrives:?}"
    );
    assert_eq!(
        revenue["failed_attempts"].as_array().map(Vec::len),
        Some(3),
        "the successful fourth attempt is not a failure: {revenue}"
    );

    // A finished task that did not fail cannot be re-driven.
    let again = app
        .client
        .post(app.url(&format!("/api/tasks/{task_id}/retry")))
        .send()
        .await
        .expect("sent");
    let problem = assert_problem(again, 409).await;
    assert_eq!(problem["type"], "/problems/task-not-retryable");
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_of_unknown_or_malformed_ids_and_other_methods() {
    let app = TestApp::spawn().await;
    let unknown = app
        .client
        .post(app.url("/api/tasks/7dcf4835-c1a8-4869-bcc5-7912bbf9bebe/retry"))
        .send()
        .await
        .expect("sent");
    assert_problem(unknown, 404).await;
    let malformed = app
        .client
        .post(app.url("/api/tasks/not-a-uuid/retry"))
        .send()
        .await
        .expect("sent");
    assert_problem(malformed, 400).await;
    let get = app
        .client
        .get(app.url("/api/tasks/7dcf4835-c1a8-4869-bcc5-7912bbf9bebe/retry"))
        .send()
        .await
        .expect("sent");
    assert_problem(get, 405).await;
}
