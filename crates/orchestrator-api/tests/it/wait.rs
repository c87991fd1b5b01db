//! `?wait=SECONDS`: long polls answered when the task becomes final (pushed by
//! PostgreSQL notifications), at the timeout otherwise; thousands of waiters on a small
//! pool; waiters that missed a notification while the listener was down.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel_async::RunQueryDsl;
use orchestrator_mock_services::{Behaviour, Latency};
use serde_json::Value;

use crate::helpers::{TestApp, assert_problem, example_request, json_line};

const SERVICES: [&str; 3] = ["revenue", "rebates", "specialty"];

fn all_services(app: &TestApp, behaviour: &Behaviour) {
    for service in SERVICES {
        app.mock.set_behaviour(service, behaviour.clone());
    }
}

fn taking(ms: u64) -> Behaviour {
    Behaviour {
        latency: Latency::Fixed { ms },
        ..Behaviour::default()
    }
}

fn hanging() -> Behaviour {
    Behaviour {
        hang: true,
        ..Behaviour::default()
    }
}

async fn submit(app: &TestApp) -> String {
    let response = app.post_json("/api/orchestrate", &example_request()).await;
    assert_eq!(response.status(), 202);
    json_line(response).await["task_id"]
        .as_str()
        .expect("id")
        .to_owned()
}

fn at(task: &Value, field: &str) -> DateTime<Utc> {
    task[field]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .expect("a time")
        .with_timezone(&Utc)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_poll_answers_when_the_task_is_final_or_at_the_timeout() {
    let app = TestApp::spawn().await;
    all_services(&app, &taking(300));
    let task_id = submit(&app).await;
    let response = app.get(&format!("/api/tasks/{task_id}?wait=30")).await;
    let answered = Utc::now();
    assert_eq!(response.status(), 200);
    let task = json_line(response).await;
    assert_eq!(task["status"], "COMPLETED", "{task}");
    assert_eq!(task["service_requests"].as_array().map(Vec::len), Some(3));
    // The final transaction's time (its start) to the answer.
    let lag = answered - at(&task, "updated_at");
    assert!(
        lag < chrono::TimeDelta::milliseconds(100),
        "answered {lag} after"
    );

    // Not final within the wait: the state at the timeout.
    all_services(&app, &hanging());
    let hangs = submit(&app).await;
    let started = tokio::time::Instant::now();
    let task = app.get_json(&format!("/api/tasks/{hangs}?wait=1")).await;
    let waited = started.elapsed();
    assert_eq!(task["status"], "IN_PROGRESS", "{task}");
    assert!(
        waited >= Duration::from_millis(950) && waited < Duration::from_secs(5),
        "{waited:?}"
    );

    for bad in ["61", "-1", "1.5", "soon", ""] {
        let response = app.get(&format!("/api/tasks/{hangs}?wait={bad}")).await;
        let problem = assert_problem(response, 400).await;
        assert_eq!(problem["type"], "/problems/invalid-query", "{bad}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn submitting_with_wait_answers_200_when_final_and_202_when_not() {
    let app = TestApp::spawn().await;
    all_services(&app, &taking(100));
    let response = app
        .post_json("/api/orchestrate?wait=10", &example_request())
        .await;
    assert_eq!(response.status(), 200);
    let location = response.headers()["location"]
        .to_str()
        .expect("text")
        .to_owned();
    let task = json_line(response).await;
    assert_eq!(task["status"], "COMPLETED", "{task}");
    assert_eq!(
        location,
        format!("/api/tasks/{}", task["task_id"].as_str().expect("id"))
    );
    assert_eq!(task["service_requests"].as_array().map(Vec::len), Some(3));

    all_services(&app, &hanging());
    let response = app
        .post_json("/api/orchestrate?wait=1", &example_request())
        .await;
    assert_eq!(response.status(), 202);
    let task = json_line(response).await;
    assert_eq!(task["status"], "IN_PROGRESS", "{task}");

    // A wait it does not take stores nothing.
    let before = app.db.count_rows("tasks").await;
    let response = app
        .post_json("/api/orchestrate?wait=61", &example_request())
        .await;
    assert_problem(response, 400).await;
    assert_eq!(app.db.count_rows("tasks").await, before);
}

/// Waits until `/metrics` says `n` requests are waiting.
async fn until_waiting(app: &TestApp, n: usize) {
    let line = format!("orchestrator_waiting_requests {n}");
    orchestrator_testkit::poll::until(
        &format!("{n} requests waiting"),
        Duration::from_secs(30),
        || async {
            let metrics = app.get("/metrics").await.text().await.expect("text");
            metrics.lines().any(|l| l == line)
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_thousand_waiters_share_one_listener_and_a_pool_of_sixteen() {
    let app = TestApp::spawn_with(|config| config.database_pool_size = 16).await;
    all_services(&app, &hanging());
    let mut tasks = Vec::new();
    for _ in 0..20 {
        tasks.push(submit(&app).await);
    }
    let client = reqwest::Client::builder()
        .default_headers(reqwest::header::HeaderMap::from_iter([(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {}", app.token).parse().expect("header"),
        )]))
        .build()
        .expect("client");
    // Each waiter holds a connection; they connect 200 at a time, as a listen backlog
    // takes them, and all wait at once.
    let mut waiters = Vec::new();
    for n in 0..2_000 {
        let url = app.url(&format!("/api/tasks/{}?wait=60", tasks[n % tasks.len()]));
        let client = client.clone();
        waiters.push(tokio::spawn(async move {
            let response = client.get(url).send().await.expect("sent");
            assert_eq!(response.status(), 200);
            let task: Value = response.json().await.expect("JSON");
            task["status"].as_str().expect("status").to_owned()
        }));
        if (n + 1) % 200 == 0 {
            until_waiting(&app, n + 1).await;
        }
    }
    // Every task ends: every waiter answers, through the one listening connection.
    let started = tokio::time::Instant::now();
    for task_id in &tasks {
        let response = app
            .client
            .post(app.url(&format!("/api/tasks/{task_id}/cancel")))
            .send()
            .await
            .expect("cancel sent");
        assert_eq!(response.status(), 202);
    }
    for waiter in waiters {
        assert_eq!(waiter.await.expect("waiter"), "CANCELLED");
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    until_waiting(&app, 0).await;
    let mut conn = app.db.connection().await;
    let listeners: Vec<Count> = diesel::sql_query(
        "SELECT count(*) AS n FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = 'orchestrator-listener'",
    )
    .load(&mut conn)
    .await
    .expect("activity");
    assert_eq!(
        listeners[0].n, 1,
        "one listening connection, besides the pool"
    );
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

#[tokio::test(flavor = "multi_thread")]
async fn waiters_read_again_when_the_listening_connection_was_lost() {
    let app = TestApp::spawn().await;
    all_services(&app, &hanging());
    let task_id = submit(&app).await;
    let waiters: Vec<_> = (0..20)
        .map(|_| {
            let url = app.url(&format!("/api/tasks/{task_id}?wait=60"));
            let client = app.client.clone();
            tokio::spawn(async move {
                let response = client.get(url).send().await.expect("sent");
                let task: Value = response.json().await.expect("JSON");
                task["status"].as_str().expect("status").to_owned()
            })
        })
        .collect();
    // The task becomes final without a notification (as if it was sent while the
    // listener was away), then the listening connection dies: only the re-read after
    // reconnecting can answer the waiters.
    let mut conn = app.db.connection().await;
    orchestrator_testkit::poll::until(
        "the 20 waiters waiting",
        Duration::from_secs(10),
        || async {
            let metrics = app.get("/metrics").await.text().await.expect("text");
            metrics
                .lines()
                .any(|line| line == "orchestrator_waiting_requests 20")
        },
    )
    .await;
    diesel::sql_query("UPDATE tasks SET status = 'COMPLETED' WHERE task_id = $1")
        .bind::<diesel::sql_types::Uuid, _>(uuid::Uuid::parse_str(&task_id).expect("id"))
        .execute(&mut conn)
        .await
        .expect("update");
    let killed: Vec<Count> = diesel::sql_query(
        "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = 'orchestrator-listener'",
    )
    .load(&mut conn)
    .await
    .expect("terminate");
    assert_eq!(killed[0].n, 1);
    let started = tokio::time::Instant::now();
    for waiter in waiters {
        let status = tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("answered after the reconnect, not at the timeout")
            .expect("waiter");
        assert_eq!(status, "COMPLETED");
    }
    assert!(started.elapsed() < Duration::from_secs(10));
}
