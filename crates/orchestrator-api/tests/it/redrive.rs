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
