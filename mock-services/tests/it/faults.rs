//! Injected latency and faults, mostly through `X-Mock-*` headers.

use std::time::{Duration, Instant};

use orchestrator_mock_services::{Behaviour, MockConfig};
use serde_json::{Value, json};

use crate::support::{Harness, poll_until, status_of};

#[tokio::test(flavor = "multi_thread")]
async fn mock_status_header_sets_the_status() {
    let harness = Harness::start().await;
    let response = harness
        .call("revenue")
        .header("X-Mock-Status", "503")
        .header("X-Mock-Retry-After", "7")
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "7");
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["status"], 503);
    assert!(body["error"].is_string());

    let created = harness.call("revenue").header("X-Mock-Status", "201");
    assert_eq!(status_of(created).await, 201);
    let no_retry_after = harness
        .call("revenue")
        .header("X-Mock-Status", "429")
        .send()
        .await
        .expect("answered");
    assert_eq!(no_retry_after.status(), 429);
    assert!(no_retry_after.headers().get("retry-after").is_none());
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fail_first_header_counts_exactly_per_key() {
    let harness = Harness::start().await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let request = harness
            .call_with_key("revenue", "key-a")
            .header("X-Mock-Fail-First", "2");
        statuses.push(status_of(request).await);
    }
    assert_eq!(statuses, [500, 500, 200, 200]);

    // Another key starts from its own first attempt.
    let other = harness
        .call_with_key("revenue", "key-b")
        .header("X-Mock-Fail-First", "2");
    assert_eq!(status_of(other).await, 500);

    let stats = harness.server.stats();
    assert_eq!(stats.key_count("key-a"), 4);
    assert_eq!(stats.key_count("key-b"), 1);
    assert_eq!(stats.total, 5);
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fail_first_behaviour_sends_retry_after_then_succeeds() {
    let harness = Harness::start().await;
    harness.server.set_behaviour(
        "rebates",
        Behaviour {
            fail_first: Some(1),
            failure_status: 503,
            retry_after_secs: Some(3),
            ..Behaviour::default()
        },
    );
    let first = harness
        .call_with_key("rebates", "k")
        .send()
        .await
        .expect("answered");
    assert_eq!(first.status(), 503);
    assert_eq!(first.headers()["retry-after"], "3");
    assert_eq!(status_of(harness.call_with_key("rebates", "k")).await, 200);
    // Other services keep the default.
    assert_eq!(status_of(harness.call_with_key("revenue", "k2")).await, 200);

    // Resetting the stats restarts the count.
    harness.server.reset_stats();
    assert_eq!(status_of(harness.call_with_key("rebates", "k")).await, 503);
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn delay_header_delays_the_answer() {
    let harness = Harness::start().await;
    let started = Instant::now();
    let request = harness.call("revenue").header("X-Mock-Delay-Ms", "200");
    assert_eq!(status_of(request).await, 200);
    assert!(started.elapsed() >= Duration::from_millis(200));
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hang_outlasts_the_client_timeout_and_does_not_block_stop() {
    let harness = Harness::start().await;
    let result = harness
        .call("specialty")
        .header("X-Mock-Hang", "1")
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    let err = result.expect_err("a hanging request must time out");
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(harness.server.stats().path_count("/specialty"), 1);
    // The client gave up and closed its connection, which ends the request.
    poll_until("the hanging request to end", Duration::from_secs(5), || {
        harness.server.stats().in_flight == 0
    })
    .await;

    // A hanging request still open when the server stops ...
    let pending = tokio::spawn(
        harness
            .call("specialty")
            .header("X-Mock-Hang", "1")
            .timeout(Duration::from_secs(30))
            .send(),
    );
    poll_until("the second hang to arrive", Duration::from_secs(5), || {
        harness.server.stats().in_flight == 1
    })
    .await;

    // Hanging requests are released on stop rather than holding it for its timeout.
    let started = Instant::now();
    harness.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // ... is answered 503 (or cut off), not left waiting.
    if let Ok(response) = pending.await.expect("request task") {
        assert_eq!(response.status(), 503);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_body_claims_json_but_is_not() {
    let harness = Harness::start().await;
    let response = harness
        .call("revenue")
        .header("X-Mock-Malformed", "1")
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let bytes = response.bytes().await.expect("body");
    assert!(!bytes.is_empty());
    assert!(serde_json::from_slice::<Value>(&bytes).is_err());
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn huge_body_has_the_requested_size() {
    let harness = Harness::start().await;
    const SIZE: u64 = 5_000_000;
    let response = harness
        .call("revenue")
        .header("X-Mock-Huge-Bytes", SIZE.to_string())
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);
    assert_eq!(response.content_length(), Some(SIZE));
    let bytes = response.bytes().await.expect("body");
    assert_eq!(bytes.len() as u64, SIZE);
    let value: Value = serde_json::from_slice(&bytes).expect("valid JSON");
    assert!(value["padding"].is_string());
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reset_makes_the_client_fail() {
    let harness = Harness::start().await;
    for _ in 0..3 {
        let outcome = match harness
            .call("revenue")
            .header("X-Mock-Reset", "1")
            .send()
            .await
        {
            Ok(response) => response.bytes().await.map(|_| ()),
            Err(err) => Err(err),
        };
        let err = outcome.expect_err("a reset connection must fail the request");
        assert!(!err.is_timeout(), "{err:?}");
    }
    // The server is fine afterwards.
    assert_eq!(status_of(harness.call("revenue")).await, 200);
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn process_default_behaviour_applies_to_every_service() {
    let config = MockConfig::for_tests().with_default_behaviour(Behaviour {
        failure_rate: 1.0,
        failure_status: 502,
        ..Behaviour::default()
    });
    let harness = Harness::start_with(config).await;
    for service in ["revenue", "rebates", "specialty"] {
        assert_eq!(status_of(harness.call(service)).await, 502, "{service}");
    }
    let body: Value = harness
        .call("revenue")
        .send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("JSON");
    assert_eq!(body["status"], json!(502));
    // The header is more specific than the process default.
    let forced = harness.call("revenue").header("X-Mock-Status", "200");
    assert_eq!(status_of(forced).await, 200);
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dropping_the_server_stops_it() {
    let harness = Harness::start().await;
    let url = harness.url("/health");
    drop(harness);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        // A fresh client: pooled connections may outlive the listener briefly.
        let fresh = reqwest::Client::new();
        if fresh.get(&url).send().await.is_err() {
            break;
        }
        assert!(Instant::now() < deadline, "server still answers after drop");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
