//! Server-Sent Events: a task's stream in order, ending when the task is final;
//! resuming with `Last-Event-ID` without a gap or a repeat, live or from the log; the
//! tenant's stream of all its tasks.

use std::time::Duration;

use orchestrator_core::Scope;
use orchestrator_mock_services::{Behaviour, Latency};
use orchestrator_testkit::sse::{Event, EventStream};
use serde_json::Value;

use crate::helpers::{TestApp, assert_problem, example_request, json_line};

const SERVICES: [&str; 3] = ["revenue", "rebates", "specialty"];
const WITHIN: Duration = Duration::from_secs(30);

fn taking(app: &TestApp, ms: u64) {
    for service in SERVICES {
        app.mock.set_behaviour(
            service,
            Behaviour {
                latency: Latency::Fixed { ms },
                ..Behaviour::default()
            },
        );
    }
}

async fn submit_with(client: &reqwest::Client, app: &TestApp) -> String {
    let response = client
        .post(app.url("/api/orchestrate"))
        .json(&example_request())
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 202);
    json_line(response).await["task_id"]
        .as_str()
        .expect("id")
        .to_owned()
}

async fn open(
    client: &reqwest::Client,
    app: &TestApp,
    path: &str,
    last: Option<&str>,
) -> reqwest::Response {
    let mut request = client.get(app.url(path));
    if let Some(last) = last {
        request = request.header("Last-Event-ID", last);
    }
    request.send().await.expect("sent")
}

async fn stream(
    client: &reqwest::Client,
    app: &TestApp,
    path: &str,
    last: Option<&str>,
) -> EventStream {
    let response = open(client, app, path, last).await;
    assert_eq!(response.status(), 200, "GET {path}");
    let header = |name: &str| response.headers()[name].to_str().expect("text").to_owned();
    assert_eq!(header("content-type"), "text/event-stream");
    assert_eq!(header("cache-control"), "no-cache");
    assert_eq!(header("x-accel-buffering"), "no");
    EventStream::new(response)
}

/// An event as the test compares it: its name, its service (for a service request)
/// and its status.
fn said(event: &Event) -> (String, Option<String>, String) {
    (
        event.event.clone(),
        event.data["service_name"].as_str().map(str::to_owned),
        event.data["status"].as_str().expect("status").to_owned(),
    )
}

fn position(event: &Event) -> (i64, i64) {
    let id = event.id.as_deref().expect("every event has an id");
    let (tx, seq) = id.split_once('-').expect("TX-SEQ");
    (tx.parse().expect("tx"), seq.parse().expect("seq"))
}

fn check_task_stream(events: &[Event], task_id: &str) {
    let said: Vec<_> = events.iter().map(said).collect();
    assert_eq!(said.len(), 6, "{said:?}");
    assert_eq!(said[0], ("task".into(), None, "PENDING".into()));
    assert_eq!(said[1], ("task".into(), None, "IN_PROGRESS".into()));
    let mut services: Vec<_> = said[2..5]
        .iter()
        .map(|(event, service, status)| {
            assert_eq!(
                (event.as_str(), status.as_str()),
                ("service_request", "COMPLETED")
            );
            service.clone().expect("a service")
        })
        .collect();
    services.sort();
    assert_eq!(services, ["rebates", "revenue", "specialty"]);
    assert_eq!(said[5], ("task".into(), None, "COMPLETED".into()));
    assert!(events.windows(2).all(|w| position(&w[0]) < position(&w[1])));
    for event in events {
        assert_eq!(event.data["task_id"], task_id);
        assert_eq!(
            Some(event.data["event_id"].as_str().expect("id")),
            event.id.as_deref()
        );
    }
    assert_eq!(events[1].data["previous_status"], "PENDING");
    assert_eq!(events[0].data["previous_status"], Value::Null);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_stream_sends_its_changes_in_order_and_resumes_without_gap_or_repeat() {
    let app = TestApp::spawn().await;
    taking(&app, 700);
    let task_id = submit_with(&app.client, &app).await;
    let path = format!("/api/tasks/{task_id}/events");

    // Live: read until the task runs, then go away mid-task.
    let mut first = stream(&app.client, &app, &path, None).await;
    let mut head = Vec::new();
    while head
        .last()
        .is_none_or(|e: &Event| e.data["status"] != "IN_PROGRESS")
    {
        head.push(first.next(WITHIN).await.expect("the stream goes on"));
    }
    drop(first);
    assert!(head.len() <= 2, "{head:?}");
    // Resume from the last one received: the rest, then the end.
    let last = head.last().and_then(|e| e.id.clone());
    let tail = stream(&app.client, &app, &path, last.as_deref())
        .await
        .rest(WITHIN)
        .await;
    let resumed: Vec<Event> = head.into_iter().chain(tail).collect();
    check_task_stream(&resumed, &task_id);

    // The whole history again, from the log now that the task is final: the same.
    let whole = stream(&app.client, &app, &path, None)
        .await
        .rest(WITHIN)
        .await;
    assert_eq!(whole, resumed);
    // From each event on: exactly those after it; after the last, 204 (an EventSource
    // stops reconnecting).
    for (i, event) in whole.iter().enumerate().take(whole.len() - 1) {
        let rest = stream(&app.client, &app, &path, event.id.as_deref())
            .await
            .rest(WITHIN)
            .await;
        assert_eq!(rest, whole[i + 1..].to_vec(), "after event {i}");
    }
    let response = open(
        &app.client,
        &app,
        &path,
        whole.last().and_then(|e| e.id.as_deref()),
    )
    .await;
    assert_eq!(response.status(), 204);

    // Refusals.
    for bad in ["soon", "1-", "-1-2", "1-2-3"] {
        let problem = assert_problem(open(&app.client, &app, &path, Some(bad)).await, 400).await;
        assert_eq!(problem["type"], "/problems/invalid-event-id", "{bad}");
    }
    let missing = format!("/api/tasks/{}/events", uuid::Uuid::new_v4());
    assert_problem(open(&app.client, &app, &missing, None).await, 404).await;
    assert_problem(
        open(&app.client, &app, "/api/tasks/nope/events", None).await,
        400,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_tenant_stream_carries_every_task_of_the_tenant_and_no_other() {
    let app = TestApp::spawn().await;
    taking(&app, 100);
    let acme =
        orchestrator_testkit::api::client_with_token(&app.db.token("acme", &Scope::ALL).await);
    let mut ours = stream(&app.client, &app, "/api/events", None).await;
    let mut theirs = stream(&acme, &app, "/api/events", None).await;

    let tasks = [
        submit_with(&app.client, &app).await,
        submit_with(&app.client, &app).await,
    ];
    let mut seen: Vec<Event> = Vec::new();
    let finished = |seen: &[Event]| {
        tasks.iter().all(|task| {
            seen.iter().any(|e| {
                e.data["task_id"] == task.as_str()
                    && e.event == "task"
                    && e.data["status"] == "COMPLETED"
            })
        })
    };
    while !finished(&seen) {
        seen.push(ours.next(WITHIN).await.expect("the stream goes on"));
    }
    for task in &tasks {
        let of_task: Vec<Event> = seen
            .iter()
            .filter(|e| e.data["task_id"] == task.as_str())
            .cloned()
            .collect();
        check_task_stream(&of_task, task);
    }
    assert!(seen.windows(2).all(|w| position(&w[0]) < position(&w[1])));

    // The other tenant's stream saw none of that: its first event is its own task's.
    let own = submit_with(&acme, &app).await;
    let first = theirs.next(WITHIN).await.expect("an event");
    assert_eq!(first.data["task_id"], own.as_str());
    assert_eq!(first.data["status"], "PENDING");

    // Resuming the tenant's stream from one of its events gives what followed, in order.
    let resumed_from = &seen[2];
    let mut again = stream(&app.client, &app, "/api/events", resumed_from.id.as_deref()).await;
    for expected in &seen[3..] {
        assert_eq!(
            &again.next(WITHIN).await.expect("the stream goes on"),
            expected
        );
    }
}
