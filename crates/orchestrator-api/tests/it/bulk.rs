//! Bulk operations: a dry run counts, a bulk re-drive of 1,000 failed tasks re-drives
//! each exactly once, a bulk cancel keeps to its rate and stops when stopped, and an
//! operation whose API process is killed is carried on by another replica.

use std::time::{Duration, Instant};

use futures::StreamExt;
use orchestrator_core::Scope;
use orchestrator_mock_services::Behaviour;
use orchestrator_testkit::poll;
use serde_json::{Value, json};

use crate::helpers::{ApiProcess, TestApp, assert_problem, json_line};

fn failing() -> Behaviour {
    // A refusal that is not retried: each task fails at its first attempt.
    Behaviour {
        failure_rate: 1.0,
        failure_status: 400,
        ..Behaviour::default()
    }
}

fn hanging() -> Behaviour {
    Behaviour {
        hang: true,
        ..Behaviour::default()
    }
}

/// A task that calls one service.
fn one_call(name: &str) -> Value {
    json!({
        "task_name": name,
        "payload": [{"revenue": {
            "scenario_id": "3fa85f64-5717-4562-b3fc-2c963f66afa6",
            "business_type_id": "9b2f4e2a-6c4d-4d3e-8f1a-2b3c4d5e6f70",
        }}],
    })
}

async fn submit_many(client: &reqwest::Client, base: &str, names: Vec<String>) {
    futures::stream::iter(names)
        .map(|name| async move {
            let response = client
                .post(format!("{base}/api/orchestrate"))
                .json(&one_call(&name))
                .send()
                .await
                .expect("sent");
            assert_eq!(response.status(), 202);
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
}

async fn counts(client: &reqwest::Client, base: &str) -> Value {
    let response = client
        .get(format!("{base}/api/tasks/counts"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    json_line(response).await["counts"].clone()
}

async fn wait_for_count(client: &reqwest::Client, base: &str, status: &str, count: i64) {
    poll::until(
        &format!("{count} tasks {status}"),
        Duration::from_secs(120),
        async || counts(client, base).await[status] == count,
    )
    .await;
}

async fn post(client: &reqwest::Client, url: String, body: &Value) -> reqwest::Response {
    client.post(url).json(body).send().await.expect("sent")
}

async fn matched(app: &TestApp, action: &str, filter: Value) -> i64 {
    let response = post(
        &app.client,
        app.url(&format!("/api/tasks/bulk/{action}")),
        &json!({"filter": filter, "dry_run": true}),
    )
    .await;
    assert_eq!(response.status(), 200, "dry run of {filter}");
    let body = json_line(response).await;
    assert_eq!(body["dry_run"], true);
    body["matched"].as_i64().expect("a count")
}

async fn bulk(client: &reqwest::Client, base: &str, id: &str) -> Value {
    let response = client
        .get(format!("{base}/api/bulk/{id}"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    json_line(response).await
}

async fn wait_until_completed(client: &reqwest::Client, base: &str, id: &str) -> Value {
    poll::until(
        "the bulk operation COMPLETED",
        Duration::from_secs(120),
        async || bulk(client, base, id).await["state"] == "COMPLETED",
    )
    .await;
    bulk(client, base, id).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bulk_retry_of_1000_failed_tasks_after_a_dry_run_redrives_each_once() {
    let app = TestApp::spawn_with(|config| config.bulk_rate_per_second = 2_000).await;
    app.mock.set_behaviour("revenue", failing());
    let before_any = chrono::Utc::now().to_rfc3339();
    let mut names: Vec<String> = (0..1_000).map(|i| format!("Nightly {i}")).collect();
    names.extend((0..10).map(|i| format!("Other {i}")));
    submit_many(&app.client, &app.address, names).await;
    wait_for_count(&app.client, &app.address, "FAILED", 1_010).await;

    // Dry runs count and change nothing.
    assert_eq!(matched(&app, "retry", json!({})).await, 1_010);
    assert_eq!(
        matched(&app, "retry", json!({"task_name_prefix": "Nightly"})).await,
        1_000
    );
    assert_eq!(
        matched(&app, "retry", json!({"task_name_prefix": "Nightly", "error_contains": "REVENUE", "service": "revenue", "status": "FAILED"})).await,
        1_000
    );
    assert_eq!(
        matched(&app, "retry", json!({"service": "rebates"})).await,
        0
    );
    assert_eq!(
        matched(&app, "retry", json!({"status": "CANCELLED"})).await,
        0
    );
    assert_eq!(
        matched(&app, "retry", json!({"created_before": before_any})).await,
        0
    );
    assert_eq!(
        matched(&app, "retry", json!({"created_after": before_any})).await,
        1_010
    );
    assert_eq!(matched(&app, "cancel", json!({})).await, 0);
    assert_eq!(counts(&app.client, &app.address).await["FAILED"], 1_010);
    let problem = assert_problem(
        post(
            &app.client,
            app.url("/api/tasks/bulk/retry"),
            &json!({"filter": {"status": "COMPLETED"}}),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(problem["errors"][0]["pointer"], "/filter/status");
    assert_problem(
        post(
            &app.client,
            app.url("/api/tasks/bulk/retry"),
            &json!({"dry_run": true}),
        )
        .await,
        422,
    )
    .await;

    // The real thing: each Nightly task re-driven once, the others left alone.
    app.mock.set_behaviour("revenue", Behaviour::default());
    let response = post(
        &app.client,
        app.url("/api/tasks/bulk/retry"),
        &json!({"filter": {"task_name_prefix": "Nightly"}}),
    )
    .await;
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"]
        .to_str()
        .expect("text")
        .to_owned();
    let started = json_line(response).await;
    let id = started["id"].as_str().expect("id").to_owned();
    assert_eq!(location, format!("/api/bulk/{id}"));
    assert_eq!(
        (started["action"].as_str(), started["matched"].as_i64()),
        (Some("retry"), Some(1_000))
    );
    let done = wait_until_completed(&app.client, &app.address, &id).await;
    assert_eq!(
        (done["acted"].as_i64(), done["skipped"].as_i64()),
        (Some(1_000), Some(0)),
        "{done}"
    );
    wait_for_count(&app.client, &app.address, "COMPLETED", 1_000).await;
    assert_eq!(counts(&app.client, &app.address).await["FAILED"], 10);
    assert_eq!(
        app.db.count_rows("task_redrives").await,
        1_000,
        "each re-driven once"
    );

    // One audit event for the whole operation, with its filter and count.
    let audit = app.get_json("/api/audit?action=tasks.bulk_retry").await;
    let events = audit["events"].as_array().expect("events");
    assert_eq!(events.len(), 1, "{audit}");
    assert_eq!(events[0]["target"], id.as_str());
    assert_eq!(events[0]["details"]["matched"], 1_000);
    assert_eq!(
        events[0]["details"]["filter"]["task_name_prefix"],
        "Nightly"
    );
    assert_eq!(
        app.get_json("/api/audit?action=task.redrive").await["events"],
        json!([])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bulk_cancel_keeps_to_its_rate_and_stops_when_stopped() {
    const RATE: f64 = 20.0;
    let app = TestApp::spawn_with(|config| config.bulk_rate_per_second = 20).await;
    app.mock.set_behaviour("revenue", hanging());
    submit_many(
        &app.client,
        &app.address,
        (0..30).map(|i| format!("Stuck {i}")).collect(),
    )
    .await;
    wait_for_count(&app.client, &app.address, "IN_PROGRESS", 30).await;

    let started_at = Instant::now();
    let response = post(
        &app.client,
        app.url("/api/tasks/bulk/cancel"),
        &json!({"filter": {}}),
    )
    .await;
    assert_eq!(response.status(), 202);
    let id = json_line(response).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    // Never faster than its rate: the first at once, then one each 1/RATE s.
    let mut acted = 0;
    while acted < 10 {
        let seen = bulk(&app.client, &app.address, &id).await;
        acted = seen["acted"].as_i64().expect("a count");
        let allowed = 1.0 + started_at.elapsed().as_secs_f64() * RATE;
        assert!(
            (acted as f64) <= allowed + 1.0,
            "{acted} cancelled within {:?}",
            started_at.elapsed()
        );
        assert!(
            started_at.elapsed() < Duration::from_secs(60),
            "no progress: {seen}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Stopped: what was cancelled stays so, nothing more is.
    let response = post(
        &app.client,
        app.url(&format!("/api/bulk/{id}/cancel")),
        &json!({}),
    )
    .await;
    assert_eq!(response.status(), 202);
    let stopped = json_line(response).await;
    assert_eq!(stopped["state"], "CANCELLED");
    let acted = stopped["acted"].as_i64().expect("a count");
    assert!((10..30).contains(&acted), "{stopped}");
    let counted = counts(&app.client, &app.address).await;
    assert_eq!(counted["CANCELLED"], acted, "{counted}");
    assert_eq!(counted["IN_PROGRESS"], 30 - acted, "{counted}");
    let problem = assert_problem(
        post(
            &app.client,
            app.url(&format!("/api/bulk/{id}/cancel")),
            &json!({}),
        )
        .await,
        409,
    )
    .await;
    assert_eq!(problem["type"], "/problems/bulk-already-ended");
    let missing = uuid::Uuid::new_v4();
    assert_problem(app.get(&format!("/api/bulk/{missing}")).await, 404).await;
    assert_problem(app.get("/api/bulk/nope").await, 400).await;
    // Another tenant does not see it.
    let other =
        orchestrator_testkit::api::client_with_token(&app.db.token("acme", &Scope::ALL).await);
    let response = other
        .get(app.url(&format!("/api/bulk/{id}")))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 404);
    // Later reads agree: the stop held.
    assert_eq!(bulk(&app.client, &app.address, &id).await["acted"], acted);
    assert_eq!(counts(&app.client, &app.address).await["CANCELLED"], acted);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bulk_operation_is_carried_on_after_its_api_process_is_killed() {
    let db = orchestrator_testkit::database::TestDatabase::create().await;
    let mock = orchestrator_mock_services::MockServer::start(
        orchestrator_mock_services::MockConfig::for_tests(),
    )
    .await
    .expect("mock services start");
    mock.set_behaviour("revenue", failing());
    let token = db.token("default", &Scope::ALL).await;
    let client = orchestrator_testkit::api::client_with_token(&token);
    let mut first = ApiProcess::start(
        db.url(),
        &mock.base_url(),
        &[("BULK_RATE_PER_SECOND", "50"), ("BULK_CLAIM_SECS", "2")],
    );
    first.wait_ready().await;
    submit_many(
        &client,
        &first.base,
        (0..200).map(|i| format!("Batch {i}")).collect(),
    )
    .await;
    wait_for_count(&client, &first.base, "FAILED", 200).await;
    mock.set_behaviour("revenue", Behaviour::default());

    let response = post(
        &client,
        format!("{}/api/tasks/bulk/retry", first.base),
        &json!({"filter": {}}),
    )
    .await;
    assert_eq!(response.status(), 202);
    let id = json_line(response).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    poll::until(
        "the first replica well into it",
        Duration::from_secs(60),
        async || bulk(&client, &first.base, &id).await["acted"].as_i64() >= Some(20),
    )
    .await;
    first.kill();
    let at_kill = db.count_rows("task_redrives").await;
    assert!(at_kill < 200, "killed mid-operation: {at_kill} re-driven");

    // Another replica carries on once the dead one's claim has expired.
    let second = TestApp::start(db, mock, |config| config.bulk_poll_interval_ms = 100).await;
    let done = wait_until_completed(&second.client, &second.address, &id).await;
    assert_eq!(
        done["acted"].as_i64().expect("a count") + done["skipped"].as_i64().expect("a count"),
        200,
        "{done}"
    );
    assert_eq!(
        second.db.count_rows("task_redrives").await,
        200,
        "each re-driven exactly once"
    );
    // The tasks the killed replica was running are resumed by the new one: all complete.
    wait_for_count(&second.client, &second.address, "COMPLETED", 200).await;
}
