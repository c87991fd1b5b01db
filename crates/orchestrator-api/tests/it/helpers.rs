use std::process::{Child, Command, Stdio};
use std::time::Duration;

use clap::Parser;
use orchestrator_api::{ApiConfig, Application};
use orchestrator_core::Scope;
use orchestrator_mock_services::{MockConfig, MockServer};
use orchestrator_testkit::database::TestDatabase;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};

pub const SCENARIO_ID: &str = "3fa85f64-5717-4562-b3fc-2c963f66afa6";
pub const BUSINESS_TYPE_ID: &str = "9b2f4e2a-6c4d-4d3e-8f1a-2b3c4d5e6f70";

/// The README's example: one item naming the three services.
pub fn example_request() -> Value {
    let call = json!({"scenario_id": SCENARIO_ID, "business_type_id": BUSINESS_TYPE_ID});
    json!({
        "task_name": "Quarterly forecast",
        "task_description": "Revenue, rebates and specialty for Q4",
        "payload": [{"revenue": call, "rebates": call, "specialty": call}],
    })
}

/// The README's example with `patch` applied.
pub fn example_with(patch: &dyn Fn(&mut Value)) -> Value {
    let mut body = example_request();
    patch(&mut body);
    body
}

pub fn request_named(name: &str) -> Value {
    let mut body = example_request();
    body["task_name"] = json!(name);
    body
}

pub struct TestApp {
    pub address: String,
    pub db: TestDatabase,
    pub mock: MockServer,
    /// Sends [`TestApp::token`] with every request.
    pub client: reqwest::Client,
    /// An API token of tenant `default` with every scope.
    pub token: String,
    shutdown: CancellationToken,
    /// Stops the app when the test ends, however it ends.
    _stop_on_drop: DropGuard,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

/// Test configuration: everything on loopback, fast retries.
pub fn test_config(db: &TestDatabase, mock: &MockServer) -> ApiConfig {
    let mut config = ApiConfig::try_parse_from(["orchestrator-api"]).expect("defaults parse");
    config.host = "127.0.0.1".into();
    config.port = 0;
    config.database_url = db.url().to_owned();
    config.database_pool_size = 8;
    config.use_kafka = false;
    config.http_workers = 2;
    config.max_body_bytes = 16 * 1024;
    config.max_items = 5;
    config.shutdown_timeout_secs = 5;
    config.dispatch.revenue_service_url = mock.base_url();
    config.dispatch.rebates_service_url = mock.base_url();
    config.dispatch.specialty_service_url = mock.base_url();
    config.dispatch.extra_services = Vec::new();
    config.dispatch.http_timeout_ms = 2_000;
    config.dispatch.retry_max_attempts = 3;
    config.dispatch.retry_initial_backoff_ms = 5;
    config.dispatch.retry_max_backoff_ms = 20;
    config
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(customize: impl FnOnce(&mut ApiConfig)) -> TestApp {
        let db = TestDatabase::create().await;
        let mock = MockServer::start(MockConfig::for_tests())
            .await
            .expect("mock services start");
        Self::start(db, mock, customize).await
    }

    /// Starts the API on an existing database and mock (e.g. to simulate a restart).
    pub async fn start(
        db: TestDatabase,
        mock: MockServer,
        customize: impl FnOnce(&mut ApiConfig),
    ) -> TestApp {
        let mut config = test_config(&db, &mock);
        customize(&mut config);
        let app = Application::build(config)
            .await
            .expect("application builds");
        let address = format!("http://127.0.0.1:{}", app.port());
        let shutdown = app.shutdown_token();
        let server = tokio::spawn(app.run_until_stopped());
        let token = db.token("default", &Scope::ALL).await;
        TestApp {
            address,
            db,
            mock,
            client: orchestrator_testkit::api::client_with_token(&token),
            token,
            _stop_on_drop: shutdown.clone().drop_guard(),
            shutdown,
            server: Some(server),
        }
    }

    /// Stops the API gracefully and hands back its database and mock.
    pub async fn stop(mut self) -> (TestDatabase, MockServer) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task")
                .expect("server stops cleanly");
        }
        let TestApp { db, mock, .. } = self;
        (db, mock)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request sent")
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let response = self.get(path).await;
        assert_eq!(response.status(), 200, "GET {path}");
        json_line(response).await
    }

    /// Polls the task until its status is final, failing after a deadline.
    pub async fn wait_until_finished(&self, task_id: &str) -> Value {
        orchestrator_testkit::api::wait_until_finished(
            &self.client,
            &self.address,
            task_id,
            Duration::from_secs(20),
        )
        .await
    }
}

/// The body of a JSON answer, which ends with a newline (so `curl` output ends on its
/// own line).
pub async fn json_line(response: reqwest::Response) -> Value {
    let text = response.text().await.expect("body");
    assert!(
        text.ends_with('\n'),
        "a JSON answer ends with a newline: {text:?}"
    );
    serde_json::from_str(&text).expect("JSON body")
}

/// Asserts a problem+json answer with this status and returns the document.
pub async fn assert_problem(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status(), status, "status");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    if status == 405 {
        let allow = response
            .headers()
            .get("allow")
            .map(|v| v.to_str().unwrap_or_default());
        assert!(
            allow.is_some_and(|methods| !methods.is_empty()),
            "a 405 names the methods the resource allows (RFC 9110): {allow:?}"
        );
    }
    let problem = json_line(response).await;
    assert_eq!(problem["status"], status);
    for field in ["type", "title", "detail"] {
        assert!(problem[field].is_string(), "problem has {field}: {problem}");
    }
    problem
}

/// The API binary as a process of its own, to be killed without a word.
pub struct ApiProcess {
    child: Child,
    pub base: String,
}

impl ApiProcess {
    pub fn start(app_db_url: &str, mock_url: &str, env: &[(&str, &str)]) -> ApiProcess {
        let port = orchestrator_testkit::ports::free_port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_orchestrator-api"));
        command
            .env_clear()
            .env("USE_KAFKA", "false")
            .env("API_HOST", "127.0.0.1")
            .env("API_PORT", port.to_string())
            .env("DATABASE_URL", app_db_url)
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1")
            .env("HTTP_TIMEOUT_MS", "2000")
            .env("RETRY_MAX_ATTEMPTS", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for service in ["REVENUE", "REBATES", "SPECIALTY"] {
            command.env(format!("{service}_SERVICE_URL"), mock_url);
        }
        for (name, value) in env {
            command.env(name, value);
        }
        ApiProcess {
            child: command.spawn().expect("the API binary starts"),
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    pub async fn wait_ready(&self) {
        let client = reqwest::Client::new();
        orchestrator_testkit::poll::until(
            "the API process ready",
            Duration::from_secs(60),
            async || {
                client
                    .get(format!("{}/ready", self.base))
                    .send()
                    .await
                    .is_ok_and(|response| response.status() == 200)
            },
        )
        .await;
    }

    /// SIGKILL: no drain, no letting go of anything.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ApiProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
