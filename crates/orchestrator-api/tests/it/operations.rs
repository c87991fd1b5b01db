//! Readiness and metrics: what load balancers, orchestrators and Prometheus see.

use std::time::Duration;

use orchestrator_mock_services::{MockConfig, MockServer};
use orchestrator_testkit::database::TestDatabase;
use orchestrator_testkit::poll;
use orchestrator_testkit::proxy::TcpProxy;
use serde_json::{Value, json};

use crate::helpers::{TestApp, example_request};

/// `/ready` turns 503 once PostgreSQL is unreachable, while `/health` (liveness) stays
/// 200: a load balancer takes the replica out, the orchestrator does not restart it.
#[tokio::test(flavor = "multi_thread")]
async fn ready_turns_503_when_the_database_is_unreachable() {
    let db = TestDatabase::create().await;
    let mock = MockServer::start(MockConfig::for_tests())
        .await
        .expect("mock services start");
    let (proxy, url) = TcpProxy::in_front_of(db.url()).await;
    let app = TestApp::start(db, mock, |config| {
        config.database_url = url;
        config.database_timeout_ms = 1_000;
    })
    .await;

    let ready = app.get("/ready").await;
    assert_eq!(ready.status(), 200);
    let body: Value = ready.json().await.expect("JSON");
    assert_eq!(
        body,
        json!({"status": "ready", "mode": "inline", "checks": {"database": "ok"}})
    );

    proxy.cut();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let body = loop {
        let response = app.get("/ready").await;
        if response.status() == 503 {
            assert!(response.headers().contains_key("retry-after"));
            break response.json::<Value>().await.expect("JSON");
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/ready still {} with the database gone",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["checks"]["database"], "unreachable");
    assert_eq!(app.get("/health").await.status(), 200);
}

/// The metrics an operator dashboards on, under their documented names, counting what
/// really happened.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_requests_service_calls_and_tasks() {
    let app = TestApp::spawn().await;
    let direct = app
        .post_json("/api/orchestrate/direct", &example_request())
        .await;
    assert_eq!(direct.status(), 200);
    assert_eq!(app.get("/api/tasks/not-a-uuid").await.status(), 400);

    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .expect("ASCII")
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = response.text().await.expect("body");
    for expected in [
        r#"orchestrator_http_requests_total{method="POST",route="/api/orchestrate/direct",status="200"} 1"#,
        r#"orchestrator_http_requests_total{method="GET",route="/api/tasks/{task_id}",status="400"} 1"#,
        r#"orchestrator_http_request_duration_seconds_count{method="POST",route="/api/orchestrate/direct"} 1"#,
        r#"orchestrator_service_calls_total{service="revenue",outcome="success"} 1"#,
        r#"orchestrator_service_calls_total{service="rebates",outcome="success"} 1"#,
        r#"orchestrator_service_calls_total{service="specialty",outcome="success"} 1"#,
        r#"orchestrator_service_call_duration_seconds_count{service="revenue",outcome="success"} 1"#,
        r#"orchestrator_service_requests_finished_total{service="revenue",status="COMPLETED"} 1"#,
        r#"orchestrator_tasks_finished_total{status="COMPLETED"} 1"#,
        r#"orchestrator_circuit_breaker_state{service="revenue"} 0"#,
        // One task: one batch of each write kind.
        r#"orchestrator_db_write_batch_writes_count{writer="task_insert"} 1"#,
        r#"orchestrator_db_write_batch_writes_count{writer="task_start"} 1"#,
        r#"orchestrator_db_write_batch_writes_count{writer="task_finish"} 1"#,
        r#"orchestrator_db_write_batch_duration_seconds_count{writer="task_finish"} 1"#,
        // Nothing is left in flight once the direct request answered.
        r#"orchestrator_service_calls_in_flight{service="revenue"} 0"#,
        // The pool: its size (the tests' DATABASE_POOL_SIZE), and nobody waiting now.
        "\norchestrator_db_pool_max_connections 8\n",
        "\norchestrator_db_pool_waiting 0\n",
        r#"orchestrator_db_pool_connections{state="in_use"} "#,
        // What runs, and the process under the standard names.
        "orchestrator_build_info{version=",
        "\nprocess_resident_memory_bytes ",
        "\nprocess_cpu_seconds_total ",
    ] {
        assert!(text.contains(expected), "missing {expected} in:\n{text}");
    }
    // Every connection the request took was timed.
    let acquired: u64 = text
        .lines()
        .find_map(|line| line.strip_prefix("orchestrator_db_pool_acquire_duration_seconds_count "))
        .and_then(|count| count.parse().ok())
        .expect("the acquire histogram");
    assert!(acquired >= 1, "{acquired}");
    assert!(text.ends_with("# EOF\n"));
}

/// Retries and a downstream error show up by service and outcome.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_retries_and_failed_attempts() {
    let app = TestApp::spawn().await;
    // The mock fails the first attempt of every Idempotency-Key with a 503.
    let control = app
        .client
        .put(format!("{}/control/revenue", app.mock.base_url()))
        .json(&json!({"fail_first": 1, "failure_status": 503}))
        .send()
        .await
        .expect("control");
    assert!(control.status().is_success());
    let revenue_only = json!({
        "task_name": "flaky revenue",
        "payload": [{"revenue": example_request()["payload"][0]["revenue"].clone()}],
    });
    let response = app
        .post_json("/api/orchestrate/direct", &revenue_only)
        .await;
    assert_eq!(response.status(), 200);
    let task: Value = response.json().await.expect("JSON");
    assert_eq!(task["status"], "COMPLETED");
    assert_eq!(task["service_requests"][0]["attempts"], 2);

    let text = app.get("/metrics").await.text().await.expect("body");
    for expected in [
        r#"orchestrator_service_calls_total{service="revenue",outcome="http_503"} 1"#,
        r#"orchestrator_service_calls_total{service="revenue",outcome="success"} 1"#,
        r#"orchestrator_service_call_retries_total{service="revenue"} 1"#,
    ] {
        assert!(text.contains(expected), "missing {expected} in:\n{text}");
    }
}

/// In inline mode too, the client's `X-Request-Id` is echoed and sent with every
/// downstream call of the task, and so is its trace (as each call's `traceparent`).
#[tokio::test(flavor = "multi_thread")]
async fn the_request_id_and_trace_go_downstream_in_inline_and_direct_modes() {
    const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
    let app = TestApp::spawn().await;
    let response = app
        .client
        .post(app.url("/api/orchestrate"))
        .header("X-Request-Id", "inline-trace-1")
        .header("traceparent", format!("00-{TRACE_ID}-b7ad6b7169203331-01"))
        .json(&example_request())
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 202);
    assert_eq!(response.headers()["x-request-id"], "inline-trace-1");
    let task: Value = response.json().await.expect("JSON");
    let finished = app
        .wait_until_finished(task["task_id"].as_str().expect("id"))
        .await;
    assert_eq!(finished["status"], "COMPLETED");
    assert_eq!(finished["trace_id"], TRACE_ID);
    assert_eq!(app.mock.stats().request_id_count("inline-trace-1"), 3);
    assert_eq!(app.mock.stats().trace_id_count(TRACE_ID), 3);

    let mut direct = example_request();
    direct["task_name"] = json!("direct traced");
    let response = app
        .client
        .post(app.url("/api/orchestrate/direct"))
        .header("X-Request-Id", "direct-trace-1")
        .json(&direct)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], "direct-trace-1");
    assert_eq!(app.mock.stats().request_id_count("direct-trace-1"), 3);
    // Without a traceparent the API started a trace of its own for the task.
    let direct: Value = response.json().await.expect("JSON");
    let trace_id = direct["trace_id"].as_str().expect("a trace id");
    assert!(
        trace_id.len() == 32 && trace_id != TRACE_ID,
        "a new trace: {trace_id}"
    );
    assert_eq!(app.mock.stats().trace_id_count(trace_id), 3);
}

/// A port already taken is the usual first-run surprise: the binary says so in a few
/// lines with a hint and exits non-zero, without a backtrace even when
/// `RUST_BACKTRACE` asks for one.
#[tokio::test(flavor = "multi_thread")]
async fn a_taken_port_is_a_short_error_with_a_hint_and_no_backtrace() {
    let db = TestDatabase::create().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("address").port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_orchestrator-api"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_URL", db.url())
        .env("API_HOST", "127.0.0.1")
        .env("API_PORT", port.to_string())
        .env("RUST_BACKTRACE", "1")
        .current_dir(std::env::temp_dir())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the API binary starts");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().ok();
            panic!("the API did not exit although its port is taken");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let output = child.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "error: binding 127.0.0.1:{port} (API_HOST, API_PORT)"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("caused by: Address already in use"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: another process listens on this port"),
        "{stderr}"
    );
    assert!(
        !stderr.to_lowercase().contains("backtrace"),
        "no backtrace: {stderr}"
    );
    drop(taken);
}

/// The value of the one sample of `series` (name and labels as exported) in `text`.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("missing {series} in:\n{text}"))
        .parse()
        .expect("a number")
}

/// What the data looks like: table sizes, tasks per status, and how long the oldest
/// unfinished task has waited, read on the replica's timer (a scrape reads nothing).
#[tokio::test(flavor = "multi_thread")]
async fn metrics_show_table_sizes_tasks_per_status_and_the_oldest_unfinished_task() {
    let app = TestApp::spawn_with(|config| config.data_metrics_interval_ms = 50).await;
    let response = app.post_json("/api/orchestrate", &example_request()).await;
    assert_eq!(response.status(), 202);
    let task: Value = response.json().await.expect("JSON");
    let task_id = task["task_id"].as_str().expect("task_id");
    app.wait_until_finished(task_id).await;
    // A timer read made while the task first waited must not pass for one made after
    // the change below (CI once saw its age of 10 ms): wait until a read saw it done.
    poll::until(
        "the timer read the finished task",
        Duration::from_secs(10),
        || async {
            let text = app.get("/metrics").await.text().await.expect("body");
            text.contains(r#"orchestrator_tasks{status="PENDING"} 0"#)
                && text.contains(r#"orchestrator_tasks{status="COMPLETED"} 1"#)
        },
    )
    .await;
    // The task waits again, since an hour: as a task stuck in the queue would.
    let mut conn = app.db.connection().await;
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query(format!(
            "UPDATE tasks SET status = 'PENDING', created_at = now() - interval '1 hour'
              WHERE task_id = '{task_id}'"
        )),
        &mut conn,
    )
    .await
    .expect("update");

    // The next timer read sees the change; scrapes in between show the last read.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = app.get("/metrics").await.text().await.expect("body");
        if text.contains(r#"orchestrator_tasks{status="PENDING"} 1"#) {
            break text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the timer never read the waiting task:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(
        sample(&text, r#"orchestrator_tasks{status="PENDING"}"#),
        1.0
    );
    assert_eq!(
        sample(&text, r#"orchestrator_tasks{status="COMPLETED"}"#),
        0.0
    );
    let age = sample(
        &text,
        r#"orchestrator_oldest_unfinished_task_age_seconds{status="PENDING"}"#,
    );
    assert!((3_600.0..3_900.0).contains(&age), "{age}");
    assert_eq!(
        sample(
            &text,
            r#"orchestrator_oldest_unfinished_task_age_seconds{status="IN_PROGRESS"}"#
        ),
        0.0
    );
    assert!(sample(&text, r#"orchestrator_table_size_bytes{table="tasks"}"#) > 0.0);
    assert!(
        sample(
            &text,
            r#"orchestrator_table_index_size_bytes{table="tasks"}"#
        ) > 0.0
    );
    assert!(
        sample(
            &text,
            r#"orchestrator_table_size_bytes{table="service_requests"}"#
        ) > 0.0
    );
}

/// With Azure Event Hubs as the broker, a produce batch larger than one Event Hubs
/// publication (1 MB) stops the start, before anything is connected or published.
#[tokio::test(flavor = "multi_thread")]
async fn a_produce_batch_over_event_hubs_limit_stops_the_start() {
    let db = TestDatabase::create().await;
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_orchestrator-api"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_URL", db.url())
        .env("API_HOST", "127.0.0.1")
        .env("API_PORT", "0")
        .env("USE_KAFKA", "true")
        // A namespace on loopback: were the check missing, the API would try to connect
        // there, never outside this machine.
        .env(
            "KAFKA_CONNECTION_STRING",
            "Endpoint=sb://127.0.0.1/;SharedAccessKeyName=p;SharedAccessKey=a2V5",
        )
        .env("KAFKA_REQUEST_TIMEOUT_MS", "1000")
        .env("KAFKA_MAX_BATCH_BYTES", "2000000")
        .current_dir(std::env::temp_dir())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the API binary starts");
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("joined")
        .expect("output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "KAFKA_MAX_BATCH_BYTES: 2000000 is more than Azure Event Hubs takes in one produce request; at most 1000000"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("a2V5"), "{stderr}");
}
