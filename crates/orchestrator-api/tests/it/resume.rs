use serde_json::Value;

use crate::helpers::{TestApp, example_request};

/// A task accepted but unfinished when the API stopped is finished by the next start.
#[tokio::test(flavor = "multi_thread")]
async fn unfinished_tasks_are_resumed_at_startup() {
    // With a mock that hangs, the task cannot finish before the API stops.
    let app = TestApp::spawn_with(|config| {
        config.shutdown_timeout_secs = 0;
    })
    .await;
    app.mock.set_behaviour(
        "revenue",
        orchestrator_mock_services::Behaviour {
            hang: true,
            ..Default::default()
        },
    );
    let accepted: Value = app
        .post_json("/api/orchestrate", &example_request())
        .await
        .json()
        .await
        .expect("JSON");
    let task_id = accepted["task_id"].as_str().expect("id").to_owned();
    // Wait until processing is under way (IN_PROGRESS), then stop the API.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let task = app.get_json(&format!("/api/tasks/{task_id}")).await;
        if task["status"] == "IN_PROGRESS" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "task never started: {task}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (db, mock) = app.stop().await;

    mock.reset_behaviours();
    let app = TestApp::start(db, mock, |_| {}).await;
    let task = app.wait_until_finished(&task_id).await;
    assert_eq!(task["status"], "COMPLETED", "{task}");
    assert_eq!(
        app.db.count_rows("service_requests").await,
        3,
        "no duplicate rows after resuming"
    );
}
