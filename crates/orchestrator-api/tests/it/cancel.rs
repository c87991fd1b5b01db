//! `POST /api/tasks/{id}/cancel` and deadlines, in inline and direct mode: the calls of
//! a stopped task are dropped (the mock sees its connection close), what completed is
//! kept, and the task ends in one final state.

use std::time::Duration;

use orchestrator_mock_services::Behaviour;
use orchestrator_testkit::poll;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, example_request, example_with, json_line};

fn by_service<'a>(task: &'a Value, service: &str) -> &'a Value {
    task["service_requests"]
        .as_array()
        .expect("service requests")
        .iter()
        .find(|sr| sr["service_name"] == service)
        .expect("service request")
}

fn hanging() -> Behaviour {
    Behaviour {
        hang: true,
        ..Behaviour::default()
    }
}

/// Submits the example with revenue hanging and waits until revenue's call is in
/// flight and the other two are recorded `COMPLETED`.
async fn submit_with_revenue_hanging(app: &TestApp, body: &Value) -> String {
    app.mock.set_behaviour("revenue", hanging());
    let response = app.post_json("/api/orchestrate", body).await;
    assert_eq!(response.status(), 202);
    let task_id = json_line(response).await["task_id"]
        .as_str()
        .expect("id")
        .to_owned();
    poll::until(
        "the other calls recorded, revenue's in flight",
        Duration::from_secs(10),
        || async {
            let task = app.get_json(&format!("/api/tasks/{task_id}")).await;
            let srs = task["service_requests"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            srs.len() == 3
                && srs.iter().filter(|sr| sr["status"] == "COMPLETED").count() == 2
                && app.mock.stats().in_flight == 1
        },
    )
    .await;
    task_id
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_a_running_task_drops_its_call_and_keeps_what_completed() {
    let app = TestApp::spawn().await;
    let task_id = submit_with_revenue_hanging(&app, &example_request()).await;

    let response = app
        .client
        .post(app.url(&format!("/api/tasks/{task_id}/cancel")))
        .send()
        .await
        .expect("cancel sent");
    assert_eq!(response.status(), 202);
    assert_eq!(
        response.headers()["location"],
        format!("/api/tasks/{task_id}").as_str()
    );
    let cancelled = json_line(response).await;
    assert_eq!(cancelled["status"], "CANCELLED", "{cancelled}");

    // The hanging call's connection is closed: the mock no longer holds it.
    let took = poll::until(
        "the hanging call dropped",
        Duration::from_secs(5),
        || async { app.mock.stats().in_flight == 0 },
    )
    .await;
    assert!(took < Duration::from_secs(1), "dropped after {took:?}");

    let task = app.get_json(&format!("/api/tasks/{task_id}")).await;
    assert_eq!(task["status"], "CANCELLED");
    assert_eq!(by_service(&task, "revenue")["status"], "CANCELLED");
    for service in ["rebates", "specialty"] {
        let sr = by_service(&task, service);
        assert_eq!(sr["status"], "COMPLETED", "{sr}");
        assert!(sr["response_payload"].is_object(), "{sr}");
    }

    // Final now: a second cancel is a conflict.
    let again = app
        .client
        .post(app.url(&format!("/api/tasks/{task_id}/cancel")))
        .send()
        .await
        .expect("cancel sent");
    let problem = assert_problem(again, 409).await;
    assert_eq!(problem["type"], "/problems/task-already-final");
    assert_eq!(problem["title"], "Task already final");

    // The cancel and the refusal are in the audit log.
    let audit = app.get_json("/api/audit?action=task.cancel").await;
    let outcomes: Vec<&str> = audit["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["outcome"].as_str().expect("outcome"))
        .collect();
    assert_eq!(outcomes, ["failure", "success"], "{audit}");

    // A cancelled task can be re-driven: it runs what did not complete, under the same
    // Idempotency-Key.
    app.mock.reset_behaviours();
    let revenue_key = by_service(&task, "revenue")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let response = app
        .client
        .post(app.url(&format!("/api/tasks/{task_id}/retry")))
        .send()
        .await
        .expect("retry sent");
    assert_eq!(response.status(), 202);
    let done = app.wait_until_finished(&task_id).await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    assert_eq!(app.mock.stats().key_count(&revenue_key), 2);
    let completed_key = by_service(&task, "rebates")["id"].as_str().expect("id");
    assert_eq!(
        app.mock.stats().key_count(completed_key),
        1,
        "not called again"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_direct_request_answers_cancelled_when_its_task_is_cancelled() {
    let app = TestApp::spawn().await;
    app.mock.set_behaviour("revenue", hanging());
    let direct = tokio::spawn({
        let (client, url) = (app.client.clone(), app.url("/api/orchestrate/direct"));
        async move {
            client
                .post(url)
                .json(&example_request())
                .send()
                .await
                .expect("direct request sent")
        }
    });
    poll::until(
        "the direct task running",
        Duration::from_secs(10),
        || async {
            let page = app.get_json("/api/tasks").await;
            page["tasks"].as_array().is_some_and(|t| !t.is_empty())
                && app.mock.stats().in_flight == 1
        },
    )
    .await;
    let page = app.get_json("/api/tasks").await;
    let task_id = page["tasks"][0]["task_id"].as_str().expect("id").to_owned();
    let response = app
        .client
        .post(app.url(&format!("/api/tasks/{task_id}/cancel")))
        .send()
        .await
        .expect("cancel sent");
    assert_eq!(response.status(), 202);
    let answer = tokio::time::timeout(Duration::from_secs(5), direct)
        .await
        .expect("the direct request answers once cancelled")
        .expect("request task");
    let task = json_line(answer).await;
    assert_eq!(task["status"], "CANCELLED", "{task}");
    assert_eq!(by_service(&task, "revenue")["status"], "CANCELLED");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_not_final_by_its_deadline_fails_and_its_call_is_dropped() {
    let app = TestApp::spawn().await;
    let body = example_with(&|body| body["deadline_seconds"] = json!(1));
    // Not submit_with_revenue_hanging: under load its poll may first look after the
    // second has passed, when the call is already dropped. That revenue's call was in
    // flight is checked below instead, from what the mock saw.
    app.mock.set_behaviour("revenue", hanging());
    let response = app.post_json("/api/orchestrate", &body).await;
    assert_eq!(response.status(), 202);
    let task_id = json_line(response).await["task_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let task = app.wait_until_finished(&task_id).await;
    assert_eq!(task["status"], "FAILED", "{task}");
    assert_eq!(task["deadline_seconds"], 1);
    let error = task["error_message"].as_str().expect("error");
    assert!(error.contains("deadline passed"), "{error}");
    let revenue = by_service(&task, "revenue");
    assert_eq!(revenue["status"], "FAILED");
    assert!(
        revenue["error_message"]
            .as_str()
            .is_some_and(|e| e.contains("deadline passed")),
        "{revenue}"
    );
    assert_eq!(by_service(&task, "rebates")["status"], "COMPLETED");
    let stats = app.mock.stats();
    assert_eq!(
        stats.by_path.get("/revenue").copied(),
        Some(1),
        "revenue was called once, and hung: {stats:?}"
    );
    assert_eq!(
        stats.by_path_peak_in_flight.get("/revenue").copied(),
        Some(1)
    );
    poll::until(
        "the hanging call dropped",
        Duration::from_secs(2),
        || async { app.mock.stats().in_flight == 0 },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deadlines_default_from_the_settings_and_are_bounded() {
    let app = TestApp::spawn_with(|config| {
        config.task_deadline_secs = Some(30);
        config.max_task_deadline_secs = 60;
    })
    .await;
    let response = app.post_json("/api/orchestrate", &example_request()).await;
    assert_eq!(response.status(), 202);
    let task = json_line(response).await;
    assert_eq!(task["deadline_seconds"], 30);
    let created = chrono::DateTime::parse_from_rfc3339(task["created_at"].as_str().expect("t"))
        .expect("RFC 3339");
    let deadline = chrono::DateTime::parse_from_rfc3339(task["deadline_at"].as_str().expect("t"))
        .expect("RFC 3339");
    let margin = (deadline - created - chrono::TimeDelta::seconds(30)).abs();
    assert!(margin < chrono::TimeDelta::seconds(2), "{task}");

    let asked = app
        .post_json(
            "/api/orchestrate",
            &example_with(&|body| body["deadline_seconds"] = json!(5)),
        )
        .await;
    assert_eq!(json_line(asked).await["deadline_seconds"], 5);

    let too_long = app
        .post_json(
            "/api/orchestrate",
            &example_with(&|body| body["deadline_seconds"] = json!(61)),
        )
        .await;
    let problem = assert_problem(too_long, 422).await;
    assert_eq!(
        problem["errors"][0]["pointer"], "/deadline_seconds",
        "{problem}"
    );
    assert!(
        problem["errors"][0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("from 1 to 60")),
        "{problem}"
    );
    let unknown = Value::from(uuid::Uuid::new_v4().to_string());
    let response = app
        .client
        .post(app.url(&format!(
            "/api/tasks/{}/cancel",
            unknown.as_str().expect("id")
        )))
        .send()
        .await
        .expect("cancel sent");
    assert_problem(response, 404).await;
}
