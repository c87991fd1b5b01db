//! Following a task through the API, as a client would.

use std::time::Duration;

use serde_json::Value;

/// Polls `GET {base_url}/api/tasks/{task_id}` until the task's status is final
/// (`COMPLETED`, `FAILED` or `CANCELLED`) and returns the task; panics once `within` has passed.
pub async fn wait_until_finished(
    client: &reqwest::Client,
    base_url: &str,
    task_id: &str,
    within: Duration,
) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    let url = format!("{base_url}/api/tasks/{task_id}");
    loop {
        let response = client.get(&url).send().await.expect("GET the task");
        assert_eq!(response.status(), 200, "GET {url}");
        let task: Value = response.json().await.expect("a task as JSON");
        if matches!(
            task["status"].as_str(),
            Some("COMPLETED" | "FAILED" | "CANCELLED")
        ) {
            return task;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "task {task_id} did not finish within {within:?}: {task}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A client that sends `token` as its bearer credential on every request, as an
/// operator's scripts would.
pub fn client_with_token(token: &str) -> reqwest::Client {
    let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
        .expect("a token is a valid header value");
    value.set_sensitive(true);
    reqwest::Client::builder()
        .default_headers(reqwest::header::HeaderMap::from_iter([(
            reqwest::header::AUTHORIZATION,
            value,
        )]))
        .build()
        .expect("building an HTTP client")
}
