//! The whole pipeline for tests: a database, a Kafka-protocol broker, the mock
//! services, the API in Kafka mode, and workers (in-process or as real processes).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use clap::Parser;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use orchestrator_api::{ApiConfig, Application};
use orchestrator_core::Scope;
use orchestrator_mock_services::{Behaviour, Latency, MockConfig, MockServer};
use orchestrator_store::leases::{self, LeaseRow};
use orchestrator_testkit::broker::TestBroker;
use orchestrator_testkit::database::TestDatabase;
use orchestrator_worker::WorkerConfig;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};

pub const PARTITIONS: i32 = 12;
pub const LEASE_TTL_MS: u64 = 2_000;
pub const HEARTBEAT_MS: u64 = 250;
const SCENARIO_ID: &str = "3fa85f64-5717-4562-b3fc-2c963f66afa6";
const BUSINESS_TYPE_ID: &str = "9b2f4e2a-6c4d-4d3e-8f1a-2b3c4d5e6f70";

/// The README's example: one item naming the three services.
pub fn example_request(name: &str) -> Value {
    let call = json!({"scenario_id": SCENARIO_ID, "business_type_id": BUSINESS_TYPE_ID});
    json!({
        "task_name": name,
        "task_description": "Revenue, rebates and specialty for Q4",
        "payload": [{"revenue": call, "rebates": call, "specialty": call}],
    })
}

pub struct Stack {
    pub db: TestDatabase,
    pub broker: TestBroker,
    pub mock: MockServer,
    pub topic: String,
}

impl Stack {
    /// Everything but the API and the workers; downstream calls take `latency_ms`.
    pub async fn start(latency_ms: u64) -> Stack {
        let db = TestDatabase::create().await;
        let broker = TestBroker::start().await;
        let behaviour = Behaviour {
            latency: Latency::Fixed { ms: latency_ms },
            ..Behaviour::default()
        };
        let mock = MockServer::start(MockConfig::for_tests().with_default_behaviour(behaviour))
            .await
            .expect("mock services start");
        let topic = format!("tasks-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        Stack {
            db,
            broker,
            mock,
            topic,
        }
    }

    pub fn dlq_topic(&self) -> String {
        format!("{}.dlq", self.topic)
    }

    pub fn api_config(&self) -> ApiConfig {
        let mut config = ApiConfig::try_parse_from(["orchestrator-api"]).expect("defaults parse");
        config.host = "127.0.0.1".into();
        config.port = 0;
        config.database_url = self.db.url().to_owned();
        config.database_pool_size = 8;
        config.use_kafka = true;
        config.kafka.bootstrap_servers = vec![self.broker.bootstrap()];
        config.kafka.topic = self.topic.clone();
        config.kafka.partitions = PARTITIONS;
        config.kafka.request_timeout_ms = 2_000;
        config.outbox_grace_secs = 3;
        config.outbox_sweep_interval_secs = 1;
        config.http_workers = 2;
        config.shutdown_timeout_secs = 5;
        self.point_at_mock(&mut config.dispatch);
        config
    }

    pub fn worker_config(&self, worker_id: &str) -> WorkerConfig {
        let mut config =
            WorkerConfig::try_parse_from(["orchestrator-worker"]).expect("defaults parse");
        for (name, value) in self.worker_env(worker_id) {
            apply(&mut config, name, &value);
        }
        self.point_at_mock(&mut config.dispatch);
        config
    }

    /// The settings of a worker, as the environment of a worker process.
    fn worker_env(&self, worker_id: &str) -> BTreeMap<&'static str, String> {
        let mock = self.mock.base_url();
        BTreeMap::from([
            ("DATABASE_URL", self.db.url().to_owned()),
            ("DATABASE_POOL_SIZE", "8".to_owned()),
            ("KAFKA_BOOTSTRAP_SERVERS", self.broker.bootstrap()),
            ("KAFKA_TOPIC", self.topic.clone()),
            ("KAFKA_DLQ_TOPIC", self.dlq_topic()),
            ("KAFKA_PARTITIONS", PARTITIONS.to_string()),
            ("KAFKA_REQUEST_TIMEOUT_MS", "2000".to_owned()),
            ("WORKER_ID", worker_id.to_owned()),
            // Several workers share this machine: each takes a free port.
            ("WORKER_HTTP_PORT", "0".to_owned()),
            ("LEASE_TTL_MS", LEASE_TTL_MS.to_string()),
            ("HEARTBEAT_INTERVAL_MS", HEARTBEAT_MS.to_string()),
            ("FETCH_MAX_WAIT_MS", "100".to_owned()),
            ("COMMIT_INTERVAL_MS", "50".to_owned()),
            ("SHUTDOWN_TIMEOUT_SECS", "5".to_owned()),
            ("REVENUE_SERVICE_URL", mock.clone()),
            ("REBATES_SERVICE_URL", mock.clone()),
            ("SPECIALTY_SERVICE_URL", mock),
            ("HTTP_TIMEOUT_MS", "2000".to_owned()),
            ("RETRY_MAX_ATTEMPTS", "3".to_owned()),
            ("RETRY_INITIAL_BACKOFF_MS", "5".to_owned()),
            ("RETRY_MAX_BACKOFF_MS", "20".to_owned()),
            ("RUST_LOG", "info,rskafka=warn".to_owned()),
        ])
    }

    fn point_at_mock(&self, dispatch: &mut orchestrator_calls::DispatchConfig) {
        dispatch.revenue_service_url = self.mock.base_url();
        dispatch.rebates_service_url = self.mock.base_url();
        dispatch.specialty_service_url = self.mock.base_url();
        dispatch.extra_services = Vec::new();
        dispatch.http_timeout_ms = 2_000;
        dispatch.retry_max_attempts = 3;
        dispatch.retry_initial_backoff_ms = 5;
        dispatch.retry_max_backoff_ms = 20;
    }

    pub async fn start_api(&self) -> TestApi {
        let app = Application::build(self.api_config())
            .await
            .expect("API builds in Kafka mode");
        let address = format!("http://127.0.0.1:{}", app.port());
        let shutdown = app.shutdown_token();
        let server = tokio::spawn(app.run_until_stopped());
        TestApi {
            address,
            client: orchestrator_testkit::api::client_with_token(
                &self.db.token("default", &Scope::ALL).await,
            ),
            _in_process: Some((shutdown.drop_guard(), server)),
        }
    }

    /// A client of `tenant` with every scope.
    pub async fn client_of(&self, tenant: &str) -> reqwest::Client {
        orchestrator_testkit::api::client_with_token(&self.db.token(tenant, &Scope::ALL).await)
    }

    /// A worker running in this test process.
    pub fn spawn_worker(&self, worker_id: &str) -> InProcessWorker {
        let token = CancellationToken::new();
        let run = orchestrator_worker::run(self.worker_config(worker_id), token.clone());
        let worker_id = worker_id.to_owned();
        let handle = tokio::spawn(async move {
            let result = run.await;
            // Shown with the test's output should the worker end early.
            if let Err(error) = &result {
                eprintln!("worker {worker_id} failed: {error:#}");
            }
            result
        });
        InProcessWorker {
            token: token.drop_guard(),
            handle,
            http_port: None,
        }
    }

    /// A worker running in this test process, built (connected, HTTP port bound)
    /// before this returns.
    pub async fn start_worker(&self, worker_id: &str) -> InProcessWorker {
        let worker = orchestrator_worker::Worker::build(self.worker_config(worker_id))
            .await
            .expect("worker builds");
        let http_port = worker.http_port();
        let token = CancellationToken::new();
        let handle = tokio::spawn(worker.run_until_stopped(token.clone()));
        InProcessWorker {
            token: token.drop_guard(),
            handle,
            http_port: Some(http_port),
        }
    }

    /// The real `orchestrator-worker` binary, configured through its environment.
    pub fn spawn_worker_process(&self, worker_id: &str) -> WorkerProcess {
        self.spawn_worker_process_with(worker_id, &[])
    }

    /// As [`Stack::spawn_worker_process`], with `extra` added to its environment.
    pub fn spawn_worker_process_with(
        &self,
        worker_id: &str,
        extra: &[(&'static str, String)],
    ) -> WorkerProcess {
        let mut env = self.worker_env(worker_id);
        env.extend(extra.iter().cloned());
        spawn_process(
            std::path::Path::new(env!("CARGO_BIN_EXE_orchestrator-worker")),
            &format!("worker-{}-{worker_id}", self.topic),
            env,
        )
    }

    /// The real `orchestrator-api` binary in Kafka mode on a free port, configured
    /// through its environment (`extra` added), and a client with every scope.
    pub async fn spawn_api_process(
        &self,
        extra: &[(&'static str, String)],
    ) -> (WorkerProcess, TestApi) {
        let port = orchestrator_testkit::ports::free_port();
        let mock = self.mock.base_url();
        let mut env = BTreeMap::from([
            ("API_HOST", "127.0.0.1".to_owned()),
            ("API_PORT", port.to_string()),
            ("DATABASE_URL", self.db.url().to_owned()),
            ("DATABASE_POOL_SIZE", "8".to_owned()),
            ("USE_KAFKA", "true".to_owned()),
            ("KAFKA_BOOTSTRAP_SERVERS", self.broker.bootstrap()),
            ("KAFKA_TOPIC", self.topic.clone()),
            ("KAFKA_PARTITIONS", PARTITIONS.to_string()),
            ("KAFKA_REQUEST_TIMEOUT_MS", "2000".to_owned()),
            ("HTTP_WORKERS", "2".to_owned()),
            ("SHUTDOWN_TIMEOUT_SECS", "5".to_owned()),
            ("REVENUE_SERVICE_URL", mock.clone()),
            ("REBATES_SERVICE_URL", mock.clone()),
            ("SPECIALTY_SERVICE_URL", mock),
            ("RUST_LOG", "info,rskafka=warn".to_owned()),
        ]);
        env.extend(extra.iter().cloned());
        let process = spawn_process(
            &orchestrator_testkit::workspace::stack_bin_dir().join("orchestrator-api"),
            &format!("api-{}", self.topic),
            env,
        );
        let address = format!("http://127.0.0.1:{port}");
        let client = orchestrator_testkit::api::client_with_token(
            &self.db.token("default", &Scope::ALL).await,
        );
        orchestrator_testkit::poll::until(
            "the API process answers",
            Duration::from_secs(30),
            || {
                let (client, url) = (client.clone(), format!("{address}/ready"));
                async move {
                    client
                        .get(url)
                        .send()
                        .await
                        .is_ok_and(|response| response.status().is_success())
                }
            },
        )
        .await;
        let api = TestApi {
            address,
            client,
            _in_process: None,
        };
        (process, api)
    }

    /// A plain Kafka client for the test's own produce and fetch calls.
    pub async fn kafka_client(&self) -> rskafka::client::Client {
        rskafka::client::ClientBuilder::new(vec![self.broker.bootstrap()])
            .backoff_config(orchestrator_kafka::client::backoff(Duration::from_secs(5)))
            .build()
            .await
            .expect("test Kafka client")
    }

    /// Reads `topic`'s partition from the start until at least `count` records arrived.
    pub async fn read_records(
        &self,
        topic: &str,
        partition: i32,
        count: usize,
        within: Duration,
    ) -> Vec<rskafka::record::RecordAndOffset> {
        use rskafka::client::partition::UnknownTopicHandling;
        let client = self
            .kafka_client()
            .await
            .partition_client(topic.to_owned(), partition, UnknownTopicHandling::Retry)
            .await
            .expect("partition client");
        let deadline = tokio::time::Instant::now() + within;
        let mut records = Vec::new();
        let mut next = 0;
        while records.len() < count {
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {} of {count} records on {topic}/{partition}",
                records.len()
            );
            let (batch, _) = client
                .fetch_records(next, 1..1_000_000, 100)
                .await
                .expect("fetch");
            if let Some(last) = batch.last() {
                next = last.offset + 1;
            }
            records.extend(batch);
        }
        records
    }

    pub async fn leases(&self) -> Vec<LeaseRow> {
        let mut conn = self.db.connection().await;
        leases::list(&mut conn, &self.topic).await.expect("leases")
    }

    /// Waits until the live owners of the partitions are exactly `expected` (worker id →
    /// number of partitions) and no partition is unowned.
    pub async fn wait_for_owners(&self, expected: &[(&str, usize)], within: Duration) {
        let expected: BTreeMap<String, usize> = expected
            .iter()
            .map(|(id, n)| ((*id).to_owned(), *n))
            .collect();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let leases = self.leases().await;
            let now = chrono::Utc::now();
            let mut owners: BTreeMap<String, usize> = BTreeMap::new();
            for lease in &leases {
                if let (Some(owner), Some(expires)) = (&lease.owner, lease.expires_at)
                    && expires > now
                {
                    *owners.entry(owner.clone()).or_default() += 1;
                }
            }
            let total: usize = owners.values().sum();
            if owners == expected && total == usize::try_from(PARTITIONS).unwrap_or(0) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "partition owners did not become {expected:?} within {within:?}; now {owners:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Counts of tasks by status.
    pub async fn task_statuses(&self) -> BTreeMap<String, i64> {
        use orchestrator_store::schema::tasks;
        let mut conn = self.db.connection().await;
        let rows: Vec<(String, i64)> = tasks::table
            .group_by(tasks::status)
            .select((tasks::status, diesel::dsl::count_star()))
            .load(&mut conn)
            .await
            .expect("statuses");
        rows.into_iter().collect()
    }

    /// Waits until `count` tasks are `COMPLETED` (and none failed).
    pub async fn wait_for_completed(&self, count: i64, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let statuses = self.task_statuses().await;
            assert_eq!(
                statuses.get("FAILED"),
                None,
                "no task may fail: {statuses:?}"
            );
            if statuses.get("COMPLETED").copied().unwrap_or(0) >= count {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{count} tasks did not complete within {within:?}: {statuses:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Asserts that every task has exactly `per_task` service requests, all COMPLETED.
    pub async fn assert_exact_rows(&self, tasks: i64, per_task: i64) {
        use orchestrator_store::schema::service_requests;
        let mut conn = self.db.connection().await;
        let per: Vec<(uuid::Uuid, i64)> = service_requests::table
            .filter(service_requests::status.eq("COMPLETED"))
            .group_by(service_requests::task_id)
            .select((service_requests::task_id, diesel::dsl::count_star()))
            .load(&mut conn)
            .await
            .expect("rows per task");
        assert_eq!(
            i64::try_from(per.len()).unwrap_or(0),
            tasks,
            "tasks with rows"
        );
        assert!(
            per.iter().all(|(_, n)| *n == per_task),
            "rows per task: {per:?}"
        );
        assert_eq!(
            self.db.count_rows("service_requests").await,
            tasks * per_task
        );
    }
}

fn apply(config: &mut WorkerConfig, name: &str, value: &str) {
    let number = || value.parse::<u64>().expect("numeric setting");
    match name {
        "DATABASE_URL" => config.database_url = value.to_owned(),
        "DATABASE_POOL_SIZE" => config.database_pool_size = number() as usize,
        "KAFKA_BOOTSTRAP_SERVERS" => config.kafka.bootstrap_servers = vec![value.to_owned()],
        "KAFKA_TOPIC" => config.kafka.topic = value.to_owned(),
        "KAFKA_DLQ_TOPIC" => config.dlq_topic = value.to_owned(),
        "KAFKA_PARTITIONS" => config.kafka.partitions = number() as i32,
        "KAFKA_REQUEST_TIMEOUT_MS" => config.kafka.request_timeout_ms = number(),
        "WORKER_ID" => config.worker_id = Some(value.to_owned()),
        "WORKER_HTTP_PORT" => config.http_port = u16::try_from(number()).expect("port"),
        "LEASE_TTL_MS" => config.lease_ttl_ms = number(),
        "HEARTBEAT_INTERVAL_MS" => config.heartbeat_interval_ms = number(),
        "FETCH_MAX_WAIT_MS" => config.fetch_max_wait_ms = number() as i32,
        "COMMIT_INTERVAL_MS" => config.commit_interval_ms = number(),
        "SHUTDOWN_TIMEOUT_SECS" => config.shutdown_timeout_secs = number(),
        // Service URLs and retries are set by `point_at_mock`; logging is the process's.
        _ => {}
    }
}

pub struct TestApi {
    pub address: String,
    pub client: reqwest::Client,
    /// An API running in this test process (none for an API process).
    _in_process: Option<(DropGuard, JoinHandle<anyhow::Result<()>>)>,
}

impl TestApi {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn submit(&self, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url("/api/orchestrate"))
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    /// Submits and expects 202; returns the task id.
    pub async fn submit_accepted(&self, body: &Value) -> String {
        let response = self.submit(body).await;
        assert_eq!(response.status(), 202, "submit");
        let task: Value = response.json().await.expect("task JSON");
        task["task_id"].as_str().expect("task_id").to_owned()
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let response = self.client.get(self.url(path)).send().await.expect("sent");
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.expect("JSON body")
    }

    /// Polls the task until its status is final, failing after a deadline.
    pub async fn wait_until_finished(&self, task_id: &str, within: Duration) -> Value {
        orchestrator_testkit::api::wait_until_finished(&self.client, &self.address, task_id, within)
            .await
    }
}

pub struct InProcessWorker {
    token: DropGuard,
    handle: JoinHandle<anyhow::Result<()>>,
    /// Known when started with [`Stack::start_worker`].
    pub http_port: Option<u16>,
}

impl InProcessWorker {
    /// Stops it as SIGTERM would and waits for a clean exit.
    pub async fn stop(self) {
        let InProcessWorker { token, handle, .. } = self;
        token.disarm().cancel();
        tokio::time::timeout(Duration::from_secs(15), handle)
            .await
            .expect("worker stops in time")
            .expect("worker task")
            .expect("worker exits cleanly");
    }
}

pub struct WorkerProcess {
    child: Option<Child>,
    pub log_path: PathBuf,
}

impl WorkerProcess {
    /// SIGTERM, then waits for exit status 0.
    pub fn terminate(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success());
        let status = wait_with_deadline(&mut child, Duration::from_secs(15));
        assert!(
            status.success(),
            "worker exits 0 on SIGTERM, got {status}; log: {}",
            self.log_path.display()
        );
    }

    /// SIGSTOP: the process freezes without knowing it.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT after [`WorkerProcess::pause`].
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("worker running");
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal}");
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.kill();
        // Keep the log of a failed test for its message; drop the others.
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log_path);
        }
    }
}

/// Starts `binary` with exactly `env` (and `PATH`), its output in a log file named
/// after `name` in the temporary folder.
fn spawn_process(
    binary: &std::path::Path,
    name: &str,
    env: BTreeMap<&'static str, String>,
) -> WorkerProcess {
    let log_path = std::env::temp_dir().join(format!("orchestrator-{name}.log"));
    let log = std::fs::File::create(&log_path).expect("log file");
    let log_err = log.try_clone().expect("log file");
    let mut command = Command::new(binary);
    command
        .env_clear()
        .envs(env)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    let child = command.spawn().expect("process starts");
    WorkerProcess {
        child: Some(child),
        log_path,
    }
}

fn wait_with_deadline(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            panic!("worker did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
