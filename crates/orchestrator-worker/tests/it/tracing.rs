//! One trace per task, exported over OTLP: the API and two workers run as processes
//! pointed at a receiver started here, over HTTP/protobuf and over gRPC.

use std::collections::BTreeMap;
use std::time::Duration;

use orchestrator_mock_services::Behaviour;
use orchestrator_testkit::otlp::{OtlpReceiver, Protocol, ReceivedSpan};
use orchestrator_testkit::webhook::{self, WebhookReceiver};
use serde_json::Value;

use crate::support::{Stack, example_request};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
/// The client's own span, the parent of the API's.
const CLIENT_SPAN: &str = "00f067aa0ba902b7";
const SERVER: i32 = 2;
const CLIENT: i32 = 3;
const PRODUCER: i32 = 4;
const CONSUMER: i32 = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_task_is_one_trace_from_the_api_request_to_each_attempt_over_http() {
    one_trace_per_task(Protocol::HttpProtobuf).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_task_is_one_trace_from_the_api_request_to_each_attempt_over_grpc() {
    one_trace_per_task(Protocol::Grpc).await;
}

async fn one_trace_per_task(protocol: Protocol) {
    let stack = Stack::start(0).await;
    let receiver = OtlpReceiver::start(protocol).await;
    let hooks = WebhookReceiver::start().await;
    let otel = receiver.env();
    let mut api_env = otel.clone();
    api_env.extend([
        ("WEBHOOK_SECRET", webhook::SECRET.to_owned()),
        // The receiver is on loopback.
        ("WEBHOOK_ALLOW_INSECURE", "true".to_owned()),
    ]);
    let (_api_process, api) = stack.spawn_api_process(&api_env).await;
    let _workers = [
        stack.spawn_worker_process_with("traced-1", &otel),
        stack.spawn_worker_process_with("traced-2", &otel),
    ];
    // Revenue answers 503 once: its call takes two attempts.
    stack.mock.set_behaviour(
        "revenue",
        Behaviour {
            fail_first: Some(1),
            failure_status: 503,
            ..Behaviour::default()
        },
    );

    let response = api
        .client
        .post(api.url("/api/orchestrate"))
        .header("traceparent", format!("00-{TRACE_ID}-{CLIENT_SPAN}-01"))
        .json(&with_callback(example_request("traced"), &hooks.url))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 202);
    let task: Value = response.json().await.expect("task");
    assert_eq!(task["trace_id"], TRACE_ID);
    let task_id = task["task_id"].as_str().expect("task_id").to_owned();
    let finished = api
        .wait_until_finished(&task_id, Duration::from_secs(60))
        .await;
    assert_eq!(finished["status"], "COMPLETED", "{finished}");

    // 4 attempts: revenue twice, rebates and specialty once. The pick-up's span ends
    // last of the worker's (after the settle), so once it is in, so is the rest.
    let is_attempt =
        |span: &ReceivedSpan| span.kind == CLIENT && span.service == "orchestrator-worker";
    let spans = receiver
        .wait_for(TRACE_ID, Duration::from_secs(30), |spans| {
            spans.iter().filter(|span| is_attempt(span)).count() >= 4
                && [SERVER, PRODUCER, CONSUMER]
                    .iter()
                    .all(|kind| spans.iter().any(|span| span.kind == *kind))
        })
        .await;
    assert_eq!(stack.mock.stats().trace_id_count(TRACE_ID), 4);

    let by_id: BTreeMap<&str, &ReceivedSpan> = spans
        .iter()
        .map(|span| (span.span_id.as_str(), span))
        .collect();
    // The API's request span is the one root, under the client's span.
    let roots: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|span| !by_id.contains_key(span.parent_span_id.as_str()))
        .collect();
    assert_eq!(roots.len(), 1, "one root: {roots:#?}");
    let root = roots[0];
    assert_eq!(root.parent_span_id, CLIENT_SPAN);
    assert_eq!(root.kind, SERVER);
    assert_eq!(root.name, "POST /api/orchestrate");
    assert_eq!(root.service, "orchestrator-api");
    assert_eq!(root.attribute("http.response.status_code"), Some("202"));

    // Every attempt leads up to the root: publish (API), pick-up (which stands for the
    // run) and service request (a worker).
    let chain = |span: &ReceivedSpan| -> Vec<(String, i32, String)> {
        let mut chain = Vec::new();
        let mut at = by_id.get(span.parent_span_id.as_str()).copied();
        while let Some(span) = at {
            chain.push((span.name.clone(), span.kind, span.service.clone()));
            at = by_id.get(span.parent_span_id.as_str()).copied();
        }
        chain
    };
    let attempts: Vec<&ReceivedSpan> = spans.iter().filter(|span| is_attempt(span)).collect();
    for attempt in &attempts {
        let names: Vec<String> = chain(attempt).into_iter().map(|(name, ..)| name).collect();
        assert_eq!(
            names,
            [
                "service_request".to_owned(),
                format!("process {}", stack.topic),
                format!("send {}", stack.topic),
                "POST /api/orchestrate".to_owned(),
            ],
            "{attempt:#?}"
        );
        assert_eq!(attempt.service, "orchestrator-worker");
        assert_eq!(attempt.name, "POST");
        assert_eq!(attempt.attribute("http.request.method"), Some("POST"));
    }
    let consumer = spans
        .iter()
        .find(|span| span.kind == CONSUMER)
        .expect("the pick-up span");
    assert_eq!(consumer.attribute("messaging.system"), Some("kafka"));
    assert!(spans.iter().any(|span| span.kind == PRODUCER));

    // The retried call: one span per attempt, under the service request span of its
    // service.
    let revenue_request = spans
        .iter()
        .find(|span| {
            span.name == "service_request"
                && span.attribute("orchestrator.service") == Some("revenue")
        })
        .expect("revenue's service request span");
    let revenue: Vec<&&ReceivedSpan> = attempts
        .iter()
        .filter(|span| span.parent_span_id == revenue_request.span_id)
        .collect();
    assert_eq!(revenue.len(), 2, "{revenue:#?}");
    assert_eq!(revenue[0].parent_span_id, revenue[1].parent_span_id);
    let mut outcomes: Vec<(Option<&str>, Option<&str>)> = revenue
        .iter()
        .map(|span| {
            (
                span.attribute("http.request.resend_count"),
                span.attribute("http.response.status_code"),
            )
        })
        .collect();
    outcomes.sort_unstable();
    assert_eq!(outcomes, [(None, Some("503")), (Some("1"), Some("200"))]);

    // The settlement is a span of the run; the batch writes that stored, started and
    // settled the task (shared with other tasks) are spans of their own, linked to the
    // spans they served.
    let settle = spans
        .iter()
        .find(|span| span.name == "settle")
        .expect("the settle span");
    assert_eq!(
        by_id[settle.parent_span_id.as_str()].name,
        format!("process {}", stack.topic)
    );
    let store = spans
        .iter()
        .find(|span| span.name == "store task")
        .expect("the store span");
    for (batch, served) in [("task_insert batch", store), ("task_finish batch", settle)] {
        let linked = |spans: &[ReceivedSpan]| {
            spans.iter().any(|span| {
                span.name == batch
                    && span
                        .links
                        .contains(&(TRACE_ID.to_owned(), served.span_id.clone()))
            })
        };
        orchestrator_testkit::poll::until(batch, Duration::from_secs(30), || {
            let found = linked(&receiver.spans());
            async move { found }
        })
        .await;
    }

    // The completion webhook: a client span of the API under the request's span, and
    // the receiver was sent a traceparent of the same trace.
    let spans = receiver
        .wait_for(TRACE_ID, Duration::from_secs(30), |spans| {
            spans
                .iter()
                .any(|span| span.kind == CLIENT && span.service == "orchestrator-api")
        })
        .await;
    let delivery = spans
        .iter()
        .find(|span| span.kind == CLIENT && span.service == "orchestrator-api")
        .expect("the delivery span");
    assert_eq!(delivery.name, "POST");
    assert_eq!(delivery.parent_span_id, root.span_id);
    assert_eq!(delivery.attribute("http.response.status_code"), Some("200"));
    assert_eq!(delivery.attribute("task_id"), Some(task_id.as_str()));
    let delivered = hooks.received();
    assert_eq!(delivered.len(), 1, "one webhook");
    let sent = delivered[0].traceparent.as_deref().expect("a traceparent");
    assert_eq!(
        orchestrator_telemetry::trace::TraceContext::trace_id_of(sent),
        Some(TRACE_ID)
    );

    // No span about the task went to another trace.
    let elsewhere: Vec<ReceivedSpan> = receiver
        .spans()
        .into_iter()
        .filter(|span| span.trace_id != TRACE_ID && span.attribute("task_id") == Some(&task_id))
        .collect();
    assert!(elsewhere.is_empty(), "{elsewhere:#?}");
}

/// A cancel and a re-drive are spans of the task's trace, under the span that accepted
/// the task and linked to the requests that asked for them (in their callers' own
/// traces); the re-drive's record is published under the re-drive.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancel_and_a_redrive_join_the_tasks_trace() {
    const CALLER_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
    let stack = Stack::start(0).await;
    let receiver = OtlpReceiver::start(Protocol::HttpProtobuf).await;
    let (_api_process, api) = stack.spawn_api_process(&receiver.env()).await;
    // No worker runs: the task waits until it is cancelled.
    let response = api
        .client
        .post(api.url("/api/orchestrate"))
        .header("traceparent", format!("00-{TRACE_ID}-{CLIENT_SPAN}-01"))
        .json(&example_request("acted on"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 202);
    let task: Value = response.json().await.expect("json");
    let task_id = task["task_id"].as_str().expect("task_id").to_owned();
    for action in ["cancel", "retry"] {
        let response = api
            .client
            .post(api.url(&format!("/api/tasks/{task_id}/{action}")))
            .header("traceparent", format!("00-{CALLER_TRACE}-{CLIENT_SPAN}-01"))
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 202, "{action}");
    }

    let spans = receiver
        .wait_for(TRACE_ID, Duration::from_secs(30), |spans| {
            ["cancel", "redrive"]
                .iter()
                .all(|name| spans.iter().any(|span| span.name == *name))
                && spans.iter().filter(|span| span.kind == PRODUCER).count() == 2
                && spans.iter().any(|span| span.kind == SERVER)
        })
        .await;
    let root = spans
        .iter()
        .find(|span| span.kind == SERVER)
        .expect("the accepting request's span");
    let requests = receiver
        .wait_for(CALLER_TRACE, Duration::from_secs(30), |spans| {
            spans.iter().filter(|span| span.kind == SERVER).count() == 2
        })
        .await;
    for (name, path) in [("cancel", "/cancel"), ("redrive", "/retry")] {
        let action = spans
            .iter()
            .find(|span| span.name == name)
            .expect("the action's span");
        assert_eq!(action.parent_span_id, root.span_id, "{name}");
        let request = requests
            .iter()
            .find(|span| span.name.ends_with(path))
            .expect("the request's span");
        assert_eq!(
            action.links,
            [(CALLER_TRACE.to_owned(), request.span_id.clone())],
            "{name}"
        );
    }
    let redrive = spans
        .iter()
        .find(|span| span.name == "redrive")
        .expect("redrive");
    assert!(
        spans
            .iter()
            .any(|span| span.kind == PRODUCER && span.parent_span_id == redrive.span_id),
        "the re-drive's record is published under it: {spans:#?}"
    );
}

/// `request` with a completion webhook to `url`.
fn with_callback(mut request: Value, url: &str) -> Value {
    request["callback_url"] = Value::from(url);
    request
}

/// The value of the one sample of `series` in a metrics text.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.parse().ok())
}

/// Without an endpoint nothing is exported and no span is made, and a task still gets
/// its trace id.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_an_endpoint_no_span_is_made_and_the_task_still_has_its_trace() {
    let stack = Stack::start(0).await;
    let (_api_process, api) = stack.spawn_api_process(&[]).await;
    let _worker = stack.spawn_worker_process("untraced");
    let response = api
        .client
        .post(api.url("/api/orchestrate"))
        .header("traceparent", format!("00-{TRACE_ID}-{CLIENT_SPAN}-01"))
        .json(&example_request("untraced"))
        .send()
        .await
        .expect("sent");
    let task: Value = response.json().await.expect("task");
    let task_id = task["task_id"].as_str().expect("task_id");
    let finished = api
        .wait_until_finished(task_id, Duration::from_secs(60))
        .await;
    assert_eq!(finished["trace_id"], TRACE_ID);
    assert_eq!(stack.mock.stats().trace_id_count(TRACE_ID), 3);
    let metrics = api
        .client
        .get(api.url("/metrics"))
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("body");
    assert_eq!(
        sample(&metrics, "orchestrator_trace_spans_ended_total"),
        Some(0.0),
        "{metrics}"
    );
}

/// A collector that cannot be reached costs the tasks nothing: they complete, and the
/// spans lost are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_collector_never_holds_tasks_up() {
    let stack = Stack::start(0).await;
    // Nothing listens there.
    let closed = format!(
        "http://127.0.0.1:{}",
        orchestrator_testkit::ports::free_port()
    );
    let otel = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", closed),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
    ];
    let (_api_process, api) = stack.spawn_api_process(&otel).await;
    let worker_port = orchestrator_testkit::ports::free_port();
    let mut worker_env = otel.to_vec();
    worker_env.push(("WORKER_HTTP_PORT", worker_port.to_string()));
    let _worker = stack.spawn_worker_process_with("blind", &worker_env);

    let mut tasks = Vec::new();
    for n in 0..20 {
        tasks.push(
            api.submit_accepted(&example_request(&format!("blind {n}")))
                .await,
        );
    }
    for task_id in &tasks {
        let finished = api
            .wait_until_finished(task_id, Duration::from_secs(60))
            .await;
        assert_eq!(finished["status"], "COMPLETED", "{finished}");
    }
    orchestrator_testkit::poll::until(
        "the worker counts the spans it could not export",
        Duration::from_secs(30),
        || async {
            let Ok(response) =
                reqwest::get(format!("http://127.0.0.1:{worker_port}/metrics")).await
            else {
                return false;
            };
            let text = response.text().await.unwrap_or_default();
            sample(&text, "orchestrator_trace_spans_failed_total").is_some_and(|n| n > 0.0)
                && sample(&text, "orchestrator_trace_spans_exported_total") == Some(0.0)
        },
    )
    .await;
}
