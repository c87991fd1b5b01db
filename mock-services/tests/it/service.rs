//! The happy path and request validation.

use orchestrator_mock_services::{Currency, ServiceResponse, mock_result};
use serde_json::{Value, json};

use crate::support::{BUSINESS_TYPE, Harness, SCENARIO, status_of};

#[tokio::test(flavor = "multi_thread")]
async fn success_is_deterministic_across_servers() {
    let first = Harness::start().await;
    let second = Harness::start().await;

    let answer = |harness: &Harness| {
        let request = harness.call("revenue").header("Idempotency-Key", "k1");
        async move {
            let response = request.send().await.expect("answered");
            assert_eq!(response.status(), 200);
            assert_eq!(
                response.headers()["content-type"],
                "application/json",
                "content type"
            );
            response.bytes().await.expect("body")
        }
    };
    let from_first = answer(&first).await;
    assert_eq!(from_first, answer(&first).await);
    assert_eq!(from_first, answer(&second).await);

    let parsed: ServiceResponse = serde_json::from_slice(&from_first).expect("valid answer");
    assert_eq!(parsed.service, "revenue");
    assert_eq!(parsed.scenario_id, SCENARIO);
    assert_eq!(parsed.business_type_id, BUSINESS_TYPE);
    assert_eq!(parsed.result.currency, Currency::Usd);
    assert_eq!(
        parsed.result,
        mock_result("revenue", SCENARIO, BUSINESS_TYPE)
    );

    let rebates: ServiceResponse = first
        .call("rebates")
        .send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("valid answer");
    assert_eq!(rebates.service, "rebates");
    assert_ne!(rebates.result, parsed.result);

    first.stop().await;
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_bodies_get_problem_details() {
    let harness = Harness::start().await;
    let bodies = [
        "not json".to_owned(),
        String::new(),
        json!({"scenario_id": SCENARIO}).to_string(),
        json!({"scenario_id": "nope", "business_type_id": BUSINESS_TYPE}).to_string(),
    ];
    for body in bodies {
        let response = harness
            .client
            .post(harness.url("/specialty"))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .expect("answered");
        assert_eq!(response.status(), 400, "body {body:?}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let problem: Value = response.json().await.expect("problem JSON");
        assert_eq!(problem["status"], 400);
        assert!(problem["type"].is_string() && problem["title"].is_string());
        assert!(!problem["detail"].as_str().unwrap_or_default().is_empty());
    }
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn health_and_unknown_routes() {
    let harness = Harness::start().await;
    let health: Value = harness
        .client
        .get(harness.url("/health"))
        .send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("JSON");
    assert_eq!(health, json!({"status": "ok"}));

    let missing = harness
        .client
        .post(harness.url("/payroll"))
        .json(&json!({}))
        .send()
        .await
        .expect("answered");
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.headers()["content-type"],
        "application/problem+json"
    );

    let wrong_method = harness.client.get(harness.url("/revenue")).send().await;
    assert_eq!(wrong_method.expect("answered").status(), 405);
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn configured_services_replace_the_defaults() {
    let config = orchestrator_mock_services::MockConfig {
        services: vec!["tax".to_owned()],
        ..orchestrator_mock_services::MockConfig::for_tests()
    };
    let harness = Harness::start_with(config).await;
    assert_eq!(status_of(harness.call("tax")).await, 200);
    assert_eq!(status_of(harness.call("revenue")).await, 404);
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_override_headers_are_rejected() {
    let harness = Harness::start().await;
    for (name, value) in [
        ("X-Mock-Status", "abc"),
        ("X-Mock-Delay-Ms", "-5"),
        ("X-Mock-Hang", "perhaps"),
        ("X-Mock-Dealy-Ms", "5"),
    ] {
        let response = harness
            .call("revenue")
            .header(name, value)
            .send()
            .await
            .expect("answered");
        assert_eq!(response.status(), 400, "{name}: {value}");
        let problem: Value = response.json().await.expect("problem JSON");
        assert!(
            problem["detail"]
                .as_str()
                .unwrap_or_default()
                .contains(&name.to_ascii_lowercase()),
            "{problem}"
        );
    }
    harness.stop().await;
}
