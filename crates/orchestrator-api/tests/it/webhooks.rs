//! Completion webhooks: signed deliveries, retries under one `webhook-id`, deliveries
//! that survive the process (killed with SIGKILL), and callback URLs refused by the SSRF guard. Receivers
//! listen on 127.0.0.1 only.

use std::time::Duration;

use orchestrator_api::ApiConfig;
use orchestrator_mock_services::Behaviour;
use orchestrator_testkit::poll;
use orchestrator_testkit::webhook::{SECRET, WebhookReceiver};
use serde_json::{Value, json};

use crate::helpers::{ApiProcess, TestApp, assert_problem, example_with, json_line};

/// Webhooks on, loopback allowed (the receiver is on 127.0.0.1), fast retries.
fn webhooks_on(config: &mut ApiConfig) {
    config.webhooks.secret = Some(SECRET.to_owned());
    config.webhooks.allow_insecure = true;
    config.webhooks.retry_initial_backoff_ms = 100;
    config.webhooks.poll_interval_ms = 50;
}

fn with_callback(url: &str) -> Value {
    let url = url.to_owned();
    example_with(&move |body| body["callback_url"] = json!(url))
}

async fn deliveries(app: &TestApp, task_id: &str) -> Vec<Value> {
    app.get_json(&format!("/api/tasks/{task_id}")).await["webhook_deliveries"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_finished_task_is_posted_signed_to_its_callback() {
    let receiver = WebhookReceiver::start().await;
    let app = TestApp::spawn_with(webhooks_on).await;
    let response = app
        .post_json("/api/orchestrate", &with_callback(&receiver.url))
        .await;
    assert_eq!(response.status(), 202);
    let task = json_line(response).await;
    let task_id = task["task_id"].as_str().expect("id").to_owned();
    assert_eq!(task["callback_url"], receiver.url.as_str());

    poll::until("the delivery", Duration::from_secs(10), || async {
        receiver.received().len() == 1
    })
    .await;
    let delivery = &receiver.received()[0];
    assert!(delivery.signed_with(SECRET), "{delivery:?}");
    assert!(!delivery.signed_with("whsec_b3RoZXItc2VjcmV0LW9mLTI0LWJ5dGVzISE="));
    let age = chrono::Utc::now().timestamp()
        - delivery
            .timestamp
            .as_deref()
            .and_then(|t| t.parse::<i64>().ok())
            .expect("a timestamp");
    assert!((0..10).contains(&age), "{age}");
    let body = delivery.json();
    assert_eq!(body["type"], "task.finished");
    assert_eq!(body["data"]["task_id"], task_id.as_str());
    assert_eq!(body["data"]["status"], "COMPLETED");
    let services = body["data"]["service_requests"].as_array().expect("array");
    assert_eq!(services.len(), 3);
    assert!(
        services.iter().all(|sr| sr["status"] == "COMPLETED"),
        "{body}"
    );
    // In the order of the items, then of the services' names.
    let names: Vec<_> = services
        .iter()
        .map(|sr| sr["service_name"].clone())
        .collect();
    assert_eq!(
        names,
        [json!("rebates"), json!("revenue"), json!("specialty")]
    );

    // The task says it was delivered, in one attempt, under the id the receiver saw.
    poll::until("the delivery recorded", Duration::from_secs(5), || async {
        deliveries(&app, &task_id)
            .await
            .first()
            .map(|d| d["state"].clone())
            == Some(json!("delivered"))
    })
    .await;
    let recorded = &deliveries(&app, &task_id).await[0];
    assert_eq!(recorded["id"], delivery.id.as_deref().expect("an id"));
    assert_eq!(recorded["attempts"].as_array().map(Vec::len), Some(1));
    assert_eq!(recorded["attempts"][0]["status_code"], 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_receiver_that_fails_twice_gets_the_third_attempt_under_the_same_id() {
    let receiver = WebhookReceiver::start().await;
    receiver.answer_with(&[500, 500]);
    let app = TestApp::spawn_with(webhooks_on).await;
    // A failed task is delivered too.
    app.mock.set_behaviour(
        "revenue",
        Behaviour {
            failure_rate: 1.0,
            ..Behaviour::default()
        },
    );
    let response = app
        .post_json("/api/orchestrate", &with_callback(&receiver.url))
        .await;
    let task_id = json_line(response).await["task_id"]
        .as_str()
        .expect("id")
        .to_owned();
    poll::until("three attempts", Duration::from_secs(10), || async {
        receiver.received().len() == 3
    })
    .await;
    let received = receiver.received();
    assert_eq!(
        received.iter().map(|r| r.answered).collect::<Vec<_>>(),
        [500, 500, 200]
    );
    let ids: Vec<_> = received.iter().map(|r| r.id.clone()).collect();
    assert!(
        ids.iter().all(|id| id.is_some() && *id == ids[0]),
        "{ids:?}"
    );
    assert!(received.iter().all(|r| r.signed_with(SECRET)));
    assert_eq!(received[2].json()["data"]["status"], "FAILED");

    poll::until("the attempts recorded", Duration::from_secs(5), || async {
        deliveries(&app, &task_id)
            .await
            .first()
            .map(|d| d["state"].clone())
            == Some(json!("delivered"))
    })
    .await;
    let attempts = deliveries(&app, &task_id).await[0]["attempts"].clone();
    let field = |name: &str| -> Vec<Value> {
        attempts
            .as_array()
            .expect("attempts")
            .iter()
            .map(|a| a[name].clone())
            .collect()
    };
    assert_eq!(field("status_code"), [json!(500), json!(500), json!(200)]);
    assert_eq!(field("attempt"), [json!(1), json!(2), json!(3)]);
    assert_eq!(attempts[0]["error"], "HTTP 500");
    assert_eq!(attempts[2]["error"], Value::Null);

    // The failures are rows of their own; the attempt that delivered is kept on the
    // delivery's row (a row per delivered webhook cost PostgreSQL more than the rest).
    assert_eq!(app.db.count_rows("webhook_attempts").await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delivery_left_behind_by_a_killed_process_is_sent_by_the_next() {
    let receiver = WebhookReceiver::start().await;
    let db = orchestrator_testkit::database::TestDatabase::create().await;
    let mock = orchestrator_mock_services::MockServer::start(
        orchestrator_mock_services::MockConfig::for_tests(),
    )
    .await
    .expect("mock services start");
    let client = orchestrator_testkit::api::client_with_token(
        &db.token("default", &orchestrator_core::Scope::ALL).await,
    );
    // The API binary, whose delivery loop never comes round: the task finishes, its
    // delivery is stored in the final transaction, and the process is killed (SIGKILL)
    // without sending it.
    let mut first = ApiProcess::start(
        db.url(),
        &mock.base_url(),
        &[
            ("WEBHOOK_SECRET", SECRET),
            ("WEBHOOK_ALLOW_INSECURE", "true"),
            ("WEBHOOK_POLL_INTERVAL_MS", "3600000"),
        ],
    );
    first.wait_ready().await;
    let response = client
        .post(format!("{}/api/orchestrate/direct", first.base))
        .json(&with_callback(&receiver.url))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    let task = json_line(response).await;
    assert_eq!(task["status"], "COMPLETED", "{task}");
    let task_id = task["task_id"].as_str().expect("id").to_owned();
    first.kill();
    assert!(receiver.received().is_empty());
    assert_eq!(db.count_rows("webhook_deliveries").await, 1);

    let app = TestApp::start(db, mock, webhooks_on).await;
    poll::until(
        "the delivery from the next process",
        Duration::from_secs(10),
        || async { receiver.received().len() == 1 },
    )
    .await;
    let delivery = &receiver.received()[0];
    assert!(delivery.signed_with(SECRET), "{delivery:?}");
    assert_eq!(delivery.json()["data"]["task_id"], task_id.as_str());
    poll::until("the delivery recorded", Duration::from_secs(10), || async {
        deliveries(&app, &task_id)
            .await
            .iter()
            .map(|d| d["state"].clone())
            .collect::<Vec<_>>()
            == [json!("delivered")]
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn callbacks_to_the_machine_are_refused_unless_insecure_is_on() {
    // Webhooks signed, but the SSRF guard at its default. The delivery loop never comes
    // round after its first (empty) pass: should the guard wrongly take one of these
    // URLs, nothing is ever sent to it.
    let app = TestApp::spawn_with(|config| {
        config.webhooks.secret = Some(SECRET.to_owned());
        config.webhooks.poll_interval_ms = 3_600_000;
    })
    .await;
    for url in [
        "http://127.0.0.1:9/hook",
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::1]/hook",
        "https://[::ffff:10.0.0.1]/hook",
        "ftp://example.com/hook",
        "not a url",
    ] {
        let before = app.db.count_rows("tasks").await;
        let response = app.post_json("/api/orchestrate", &with_callback(url)).await;
        let problem = assert_problem(response, 422).await;
        assert_eq!(
            problem["errors"][0]["pointer"], "/callback_url",
            "{url}: {problem}"
        );
        assert_eq!(
            app.db.count_rows("tasks").await,
            before,
            "{url}: nothing stored"
        );
    }

    // Without a secret, no callback at all.
    let unsigned = TestApp::spawn().await;
    let response = unsigned
        .post_json(
            "/api/orchestrate",
            &with_callback("https://hooks.example.com/x"),
        )
        .await;
    let problem = assert_problem(response, 422).await;
    assert!(
        problem["errors"][0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("WEBHOOK_SECRET")),
        "{problem}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_with_its_own_secret_has_its_webhooks_signed_with_it() {
    const ACME_SECRET: &str = "whsec_YWNtZS1oYXMtYS1zZWNyZXQtb2YtaXRzLW93bg==";
    let receiver = WebhookReceiver::start().await;
    let file = std::env::temp_dir().join(format!("tenant-secrets-{}", uuid::Uuid::new_v4()));
    std::fs::write(&file, format!("# tenant secret\nacme {ACME_SECRET}\n")).expect("written");
    let app = TestApp::spawn_with(|config| {
        webhooks_on(config);
        config.webhooks.tenant_secrets_file = Some(file.clone());
    })
    .await;
    let acme = orchestrator_testkit::api::client_with_token(
        &app.db.token("acme", &orchestrator_core::Scope::ALL).await,
    );
    let response = acme
        .post(app.url("/api/orchestrate"))
        .json(&with_callback(&receiver.url))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 202);
    let response = app
        .post_json("/api/orchestrate", &with_callback(&receiver.url))
        .await;
    assert_eq!(response.status(), 202);
    poll::until("both deliveries", Duration::from_secs(10), || async {
        receiver.received().len() == 2
    })
    .await;
    for delivery in receiver.received() {
        let tenant = delivery.json()["data"]["tenant"].clone();
        let (own, other) = if tenant == "acme" {
            (ACME_SECRET, SECRET)
        } else {
            (SECRET, ACME_SECRET)
        };
        assert!(delivery.signed_with(own), "{tenant}");
        assert!(!delivery.signed_with(other), "{tenant}");
    }
    let _ = std::fs::remove_file(&file);
}
