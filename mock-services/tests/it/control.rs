//! Runtime behaviour control over HTTP and through the library handle.

use orchestrator_mock_services::{Behaviour, Latency};
use serde_json::{Value, json};

use crate::support::{Harness, status_of};

#[tokio::test(flavor = "multi_thread")]
async fn control_endpoint_changes_and_resets_behaviour() {
    let harness = Harness::start().await;
    let put = harness
        .client
        .put(harness.url("/control/revenue"))
        .json(&json!({"failure_rate": 1.0, "failure_status": 503, "retry_after_secs": 2}))
        .send()
        .await
        .expect("answered");
    assert_eq!(put.status(), 200);
    let stored: Behaviour = put.json().await.expect("behaviour JSON");
    assert_eq!(stored.failure_status, 503);

    let failing = harness.call("revenue").send().await.expect("answered");
    assert_eq!(failing.status(), 503);
    assert_eq!(failing.headers()["retry-after"], "2");
    assert_eq!(status_of(harness.call("rebates")).await, 200);

    let view: Value = harness
        .client
        .get(harness.url("/control"))
        .send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("JSON");
    assert_eq!(view["services"]["revenue"]["failure_status"], 503);
    assert_eq!(view["services"]["rebates"]["failure_rate"], 0.0);
    assert_eq!(view["default"]["failure_rate"], 0.0);

    let reset = harness
        .client
        .delete(harness.url("/control"))
        .send()
        .await
        .expect("answered");
    assert_eq!(reset.status(), 204);
    assert_eq!(status_of(harness.call("revenue")).await, 200);
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn control_endpoint_rejects_bad_input() {
    let harness = Harness::start().await;
    let cases = [
        ("/control/payroll", json!({}), 404),
        ("/control/revenue", json!({"failure_rate": 2.0}), 400),
        ("/control/revenue", json!({"failure_rat": 1.0}), 400),
        (
            "/control/revenue",
            json!({"latency": {"kind": "uniform", "min_ms": 9, "max_ms": 1}}),
            400,
        ),
    ];
    for (path, body, status) in cases {
        let response = harness
            .client
            .put(harness.url(path))
            .json(&body)
            .send()
            .await
            .expect("answered");
        assert_eq!(response.status(), status, "{path} {body}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
    }
    // Nothing changed.
    assert_eq!(status_of(harness.call("revenue")).await, 200);
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn library_handle_controls_behaviour() {
    let harness = Harness::start().await;
    harness.server.set_behaviour(
        "specialty",
        Behaviour {
            malformed_body: true,
            latency: Latency::Uniform {
                min_ms: 1,
                max_ms: 3,
            },
            ..Behaviour::default()
        },
    );
    let bytes = harness
        .call("specialty")
        .send()
        .await
        .expect("answered")
        .bytes()
        .await
        .expect("body");
    assert!(serde_json::from_slice::<Value>(&bytes).is_err());

    // Headers are more specific than the service's behaviour.
    let forced = harness.call("specialty").header("X-Mock-Status", "418");
    assert_eq!(status_of(forced).await, 418);

    harness.server.reset_behaviours();
    let bytes = harness
        .call("specialty")
        .send()
        .await
        .expect("answered")
        .bytes()
        .await
        .expect("body");
    assert!(serde_json::from_slice::<Value>(&bytes).is_ok());

    // DELETE /control/{service} resets one service.
    harness.server.set_behaviour(
        "revenue",
        Behaviour {
            failure_rate: 1.0,
            ..Behaviour::default()
        },
    );
    let reset_one = harness
        .client
        .delete(harness.url("/control/revenue"))
        .send()
        .await
        .expect("answered");
    assert_eq!(reset_one.status(), 204);
    assert_eq!(status_of(harness.call("revenue")).await, 200);
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
#[should_panic(expected = "no service named")]
async fn setting_an_unknown_service_panics() {
    let harness = Harness::start().await;
    harness
        .server
        .set_behaviour("payroll", Behaviour::default());
}
