//! Shared test helpers.

use std::time::Duration;

use orchestrator_mock_services::{MockConfig, MockServer};
use serde_json::{Value, json};
use tokio::time::Instant;
use uuid::Uuid;

pub const SCENARIO: Uuid = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
pub const BUSINESS_TYPE: Uuid = Uuid::from_u128(0xfedc_ba98_7654_3210_fedc_ba98_7654_3210);

/// A running server and a client for it.
pub struct Harness {
    pub server: MockServer,
    pub client: reqwest::Client,
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(MockConfig::for_tests()).await
    }

    pub async fn start_with(config: MockConfig) -> Self {
        let server = MockServer::start(config).await.expect("mock server starts");
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("client builds");
        Self { server, client }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.base_url())
    }

    /// `POST /{service}` with a valid body and no extra headers.
    pub fn call(&self, service: &str) -> reqwest::RequestBuilder {
        self.client
            .post(self.url(&format!("/{service}")))
            .json(&request_body())
    }

    /// `POST /{service}` with an `Idempotency-Key`.
    pub fn call_with_key(&self, service: &str, key: &str) -> reqwest::RequestBuilder {
        self.call(service).header("Idempotency-Key", key)
    }

    pub async fn stop(self) {
        self.server.stop().await;
    }
}

pub fn request_body() -> Value {
    json!({"scenario_id": SCENARIO, "business_type_id": BUSINESS_TYPE})
}

/// Waits until `condition` holds, failing the test after `timeout`.
pub async fn poll_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Sends and returns the status, failing the test on transport errors.
pub async fn status_of(request: reqwest::RequestBuilder) -> u16 {
    request
        .send()
        .await
        .expect("request is answered")
        .status()
        .as_u16()
}
