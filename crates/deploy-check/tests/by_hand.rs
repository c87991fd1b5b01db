//! The README's "Running the parts by hand": `make db`, `make mocks`, `make broker`,
//! `make api` and `make worker`, run the way the README shows them, each in the
//! foreground of a process group of its own, as in a terminal of its own.
//!
//! They run beside any stack a developer has up: free ports (never the default ones,
//! `free_port_block`) passed as the README says, and a database of their own that the targets must create.
//! The binaries are taken as built (`SKIP_BUILD=1`, `BIN_DIR`), so build them first
//! (`cargo build --workspace --bins`; `cargo nextest run --workspace` does it).

use std::collections::hash_map::RandomState;
use std::fs;
use std::hash::BuildHasher as _;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use orchestrator_testkit::database::TestDatabase;
use orchestrator_testkit::ports::free_port_block;
use orchestrator_testkit::workspace::{readme_example, stack_bin_dir, workspace_root};
use serde_json::Value;

/// From `make <target>` to the part answering: `make api` and `make worker` first
/// create and migrate the database, and `make broker` may have to fetch Tansu once.
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// SIGTERM to SIGKILL for a target's process group. The binaries get
/// SHUTDOWN_TIMEOUT_SECS=5, so a graceful stop fits well within it.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// From submission to COMPLETED.
const TASK_TIMEOUT: Duration = Duration::from_secs(60);
/// Until two workers hold partitions each: the second one joins, and the first hands
/// over half of its partitions at a heartbeat (HEARTBEAT_INTERVAL_MS, 3 s).
const SPLIT_TIMEOUT: Duration = Duration::from_secs(60);
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The mock services in the order `make mocks` puts them on MOCK_BASE_PORT, +1, +2.
const MOCK_SERVICES: [&str; 3] = ["revenue", "rebates", "specialty"];

#[tokio::test]
async fn make_db_creates_the_database_of_database_url_and_migrates_it() {
    let database = dropped_database().await;
    let url = database.url().to_owned();

    for round in ["first", "second"] {
        let mut db = Foreground::start("db", &[("DATABASE_URL", url.clone())]);
        let status = db.wait_exit(START_TIMEOUT);
        assert!(
            status.success(),
            "make db ({round} run) failed: {status}\n{}",
            db.output()
        );
    }
    // Both the schema and diesel's record of it: the API's `migrate` ran, not just a
    // CREATE DATABASE.
    assert_eq!(
        psql_value(
            &url,
            "SELECT to_regclass('tasks') IS NOT NULL AND to_regclass('partition_leases') IS NOT NULL"
        ),
        "t",
        "make db should migrate the database it created"
    );
    let applied: usize = psql_value(&url, "SELECT count(*) FROM __diesel_schema_migrations")
        .parse()
        .expect("a count");
    assert!(applied > 0, "no migration recorded");
}

#[tokio::test]
async fn make_mocks_serves_each_service_on_its_port() {
    let base = free_port_block(3);
    let mut mocks = Foreground::start("mocks", &[("MOCK_BASE_PORT", base.to_string())]);
    let client = http_client();
    for (port, service) in (base..).zip(MOCK_SERVICES) {
        wait_http_ok(
            &client,
            &format!("http://127.0.0.1:{port}/health"),
            &mut [&mut mocks],
        )
        .await;
        // Each port serves its own service, where the API's default URLs (and `make
        // run`) expect it.
        let control: Value = get_json(&client, &format!("http://127.0.0.1:{port}/control")).await;
        let served: Vec<&String> = control["services"]
            .as_object()
            .expect("GET /control lists the services")
            .keys()
            .collect();
        assert_eq!(served, [service], "services on port {port}");
    }

    mocks.stop();
    assert_ports_free(&[base, base + 1, base + 2]);
}

#[tokio::test]
async fn make_mocks_and_make_api_run_the_readme_example_inline() {
    let database = dropped_database().await;
    let ports = free_port_block(4);
    let (api_port, mock_base) = (ports, ports + 1);

    let mut mocks = Foreground::start("mocks", &[("MOCK_BASE_PORT", mock_base.to_string())]);
    // USE_KAFKA=false is the default; given so that a developer's .env cannot change it.
    let mut api = Foreground::start(
        "api",
        &[
            ("USE_KAFKA", "false".to_owned()),
            ("API_HOST", "127.0.0.1".to_owned()),
            ("API_PORT", api_port.to_string()),
            ("MOCK_BASE_PORT", mock_base.to_string()),
            ("DATABASE_URL", database.url().to_owned()),
            ("SHUTDOWN_TIMEOUT_SECS", "5".to_owned()),
        ],
    );
    let client = http_client();
    let api_url = format!("http://127.0.0.1:{api_port}");
    wait_mocks(&client, mock_base, &mut mocks).await;
    wait_http_ok(
        &client,
        &format!("{api_url}/health"),
        &mut [&mut api, &mut mocks],
    )
    .await;

    let task = run_readme_example(database.url(), &api_url).await;
    assert_eq!(task["status"], "COMPLETED", "task: {task}");

    api.stop();
    mocks.stop();
    assert_ports_free(&[api_port, mock_base, mock_base + 1, mock_base + 2]);
}

#[tokio::test]
async fn kafka_mode_by_hand_two_workers_split_the_partitions_and_run_the_readme_example() {
    let database = dropped_database().await;
    let base = free_port_block(7);
    let (api_port, mock_base, kafka_port) = (base, base + 1, base + 4);
    let worker_ports = [base + 5, base + 6];
    let url = database.url().to_owned();

    let mut broker = Foreground::start("broker", &[("KAFKA_PORT", kafka_port.to_string())]);
    let mut mocks = Foreground::start("mocks", &[("MOCK_BASE_PORT", mock_base.to_string())]);
    wait_tcp(kafka_port, &mut broker);

    // The settings every part that talks to the others gets, as in the README's table.
    let shared = [
        ("MOCK_BASE_PORT", mock_base.to_string()),
        ("KAFKA_PORT", kafka_port.to_string()),
        ("DATABASE_URL", url.clone()),
        ("SHUTDOWN_TIMEOUT_SECS", "5".to_owned()),
    ];
    let mut api = Foreground::start(
        "api",
        &with(
            &shared,
            &[
                ("USE_KAFKA", "true"),
                ("API_HOST", "127.0.0.1"),
                ("API_PORT", &api_port.to_string()),
            ],
        ),
    );
    let client = http_client();
    let api_url = format!("http://127.0.0.1:{api_port}");
    wait_mocks(&client, mock_base, &mut mocks).await;
    wait_http_ok(
        &client,
        &format!("{api_url}/health"),
        &mut [&mut api, &mut broker, &mut mocks],
    )
    .await;

    // The README's two workers, the second with its own WORKER_HTTP_PORT.
    let worker_ids = ["by-hand-worker-1", "by-hand-worker-2"];
    let mut workers: Vec<Foreground> = worker_ids
        .iter()
        .zip(worker_ports)
        .map(|(id, port)| {
            Foreground::start(
                "worker",
                &with(
                    &shared,
                    &[
                        ("WORKER_ID", *id),
                        ("WORKER_HTTP_HOST", "127.0.0.1"),
                        ("WORKER_HTTP_PORT", &port.to_string()),
                    ],
                ),
            )
        })
        .collect();
    for (worker, port) in workers.iter_mut().zip(worker_ports) {
        wait_http_ok(
            &client,
            &format!("http://127.0.0.1:{port}/health"),
            &mut [worker],
        )
        .await;
    }

    let owners_query = format!(
        "SELECT string_agg(DISTINCT owner, ',' ORDER BY owner) FROM partition_leases \
         WHERE owner IN ('{}', '{}') AND expires_at > now()",
        worker_ids[0], worker_ids[1]
    );
    let deadline = Instant::now() + SPLIT_TIMEOUT;
    loop {
        let owners = psql_value(&url, &owners_query);
        if owners == worker_ids.join(",") {
            break;
        }
        for worker in &mut workers {
            worker.assert_running();
        }
        assert!(
            Instant::now() < deadline,
            "the two workers did not split the partitions within {SPLIT_TIMEOUT:?} (owners: {owners:?}); leases:\n{}",
            psql_value(
                &url,
                "SELECT partition, owner, epoch, expires_at FROM partition_leases ORDER BY 1"
            )
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }

    let task = run_readme_example(&url, &api_url).await;
    assert_eq!(task["status"], "COMPLETED", "task: {task}");

    // In the order of `make stop`: workers and API first, while what they finish their
    // work against is still up.
    for worker in &mut workers {
        worker.stop();
    }
    api.stop();
    mocks.stop();
    broker.stop();
    let mut ports = vec![
        api_port,
        mock_base,
        mock_base + 1,
        mock_base + 2,
        kafka_port,
    ];
    ports.extend(worker_ports);
    assert_ports_free(&ports);
}

/// A fresh database name that does not exist: the targets must create it. The
/// `TestDatabase` still drops whatever is there under that name at the end.
async fn dropped_database() -> TestDatabase {
    let database = TestDatabase::create().await;
    psql_value(
        &TestDatabase::admin_url(),
        &format!("DROP DATABASE {}", database.name()),
    );
    database
}

/// A token as the README tells someone running the parts by hand to make one: the API
/// binary's `token create`, against the database the API uses.
fn create_token(database_url: &str) -> String {
    xtask::stack::create_token(
        &stack_bin_dir().join("orchestrator-api"),
        database_url,
        "by-hand",
    )
    .expect("orchestrator-api token create")
}

/// Submits the README's example with a new token and waits until the task is finished.
async fn run_readme_example(database_url: &str, api_url: &str) -> Value {
    let client = orchestrator_testkit::api::client_with_token(&create_token(database_url));
    let client = &client;
    let response = client
        .post(format!("{api_url}/api/orchestrate"))
        .json(&readme_example())
        .send()
        .await
        .expect("submitting the README example");
    assert_eq!(
        response.status().as_u16(),
        202,
        "submitting the README example"
    );
    let accepted: Value = response.json().await.expect("the 202 body is JSON");
    let task_id = accepted["task_id"]
        .as_str()
        .expect("the 202 body has a task_id")
        .to_owned();
    let deadline = Instant::now() + TASK_TIMEOUT;
    loop {
        let task = get_json(client, &format!("{api_url}/api/tasks/{task_id}")).await;
        if task["status"] == "COMPLETED" || task["status"] == "FAILED" {
            return task;
        }
        assert!(
            Instant::now() < deadline,
            "task {task_id} not finished within {TASK_TIMEOUT:?}: {task}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// `shared` with `extra` added.
fn with(
    shared: &[(&'static str, String)],
    extra: &[(&'static str, &str)],
) -> Vec<(&'static str, String)> {
    let mut vars = shared.to_vec();
    vars.extend(
        extra
            .iter()
            .map(|(name, value)| (*name, (*value).to_owned())),
    );
    vars
}

/// A make target in the foreground, as in a terminal of its own: `make TARGET VAR=...`
/// in a process group of its own, so that stopping it reaches make, the shell and the
/// binaries alike (Ctrl-C does the same to a terminal's foreground group). The group is
/// stopped when this is dropped, so a failed assertion leaves nothing running.
struct Foreground {
    target: String,
    child: Child,
    /// The group's id: the pid of make, which leads it.
    group: u32,
    /// Where make and what it runs write; a file, not a pipe, so nothing blocks on it.
    log: PathBuf,
    stopped: bool,
}

impl Foreground {
    fn start(target: &str, vars: &[(&str, String)]) -> Foreground {
        let log = std::env::temp_dir().join(format!(
            "orchestrator-by-hand-{}-{target}-{:x}.log",
            std::process::id(),
            RandomState::new().hash_one(Instant::now())
        ));
        let out = fs::File::create(&log).expect("creating the log file");
        let mut command = Command::new("make");
        command
            .args(["--no-print-directory", "-C"])
            .arg(workspace_root())
            .arg(target)
            // Variables on make's command line, as the README writes them.
            .args(vars.iter().map(|(name, value)| format!("{name}={value}")))
            .arg("SKIP_BUILD=1")
            .arg(format!("BIN_DIR={}", stack_bin_dir().display()))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("cloning the log file"))
            .stderr(out)
            .process_group(0);
        // Settings of the caller's environment that would change what runs: a make
        // calling this test (jobserver), and the parts' own settings.
        for var in [
            "MAKEFLAGS",
            "MFLAGS",
            "MAKELEVEL",
            "RUST_LOG",
            "PROFILE",
            "CARGO_TARGET_DIR",
            "USE_KAFKA",
            "API_HOST",
            "API_PORT",
            "WORKER_ID",
            "WORKER_HTTP_HOST",
            "WORKER_HTTP_PORT",
            "DATABASE_URL",
            "KAFKA_PORT",
            "KAFKA_BOOTSTRAP_SERVERS",
            "MOCK_BASE_PORT",
            "REVENUE_SERVICE_URL",
            "REBATES_SERVICE_URL",
            "SPECIALTY_SERVICE_URL",
            "TANSU_BIN",
        ] {
            command.env_remove(var);
        }
        command.env("NO_COLOR", "1");
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("running make {target}: {e}"));
        Foreground {
            target: target.to_owned(),
            group: child.id(),
            child,
            log,
            stopped: false,
        }
    }

    fn output(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics with the target's output if it is no longer running.
    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("checking on make") {
            panic!(
                "make {} exited early ({status}):\n{}",
                self.target,
                self.output()
            );
        }
    }

    /// For targets that finish (`make db`): waits for make to exit.
    fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for make") {
                self.stopped = true;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "make {} still running after {timeout:?}:\n{}",
                self.target,
                self.output()
            );
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// The live processes of the group (zombies hold nothing and are left out).
    fn members(&self) -> Vec<u32> {
        let Ok(entries) = fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
                    return false;
                };
                // The command name (field 2) may hold spaces: split after the last ')'.
                let Some((_, rest)) = stat.rsplit_once(") ") else {
                    return false;
                };
                let fields: Vec<&str> = rest.split_whitespace().collect();
                fields
                    .first()
                    .is_some_and(|state| *state != "Z" && *state != "X")
                    && fields.get(2) == Some(&self.group.to_string().as_str())
            })
            .collect()
    }

    fn signal_group(&self, signal: &str) {
        // `kill` rather than a libc binding: this crate has none, and it is only a test.
        let _ = Command::new("kill")
            .args([signal, "--", &format!("-{}", self.group)])
            .stderr(Stdio::null())
            .status();
    }

    /// SIGTERM to the group, as Ctrl-C would send SIGINT; SIGKILL to what is left after
    /// STOP_TIMEOUT. Panics (after the SIGKILL) if the group did not stop on SIGTERM.
    fn stop(&mut self) {
        let left = self.terminate();
        assert!(
            left.is_empty(),
            "make {}: processes {left:?} ignored SIGTERM for {STOP_TIMEOUT:?}:\n{}",
            self.target,
            self.output()
        );
    }

    /// Stops the group; returns the processes that needed SIGKILL.
    fn terminate(&mut self) -> Vec<u32> {
        self.stopped = true;
        self.signal_group("-TERM");
        let deadline = Instant::now() + STOP_TIMEOUT;
        let mut left = self.members();
        while !left.is_empty() && Instant::now() < deadline {
            // Reaps make once it exits, so that it does not linger as a zombie.
            let _ = self.child.try_wait();
            std::thread::sleep(POLL_INTERVAL);
            left = self.members();
        }
        if !left.is_empty() {
            self.signal_group("-KILL");
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        left
    }
}

impl Drop for Foreground {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let output = self.output();
            let lines: Vec<&str> = output.lines().collect();
            eprintln!(
                "--- last lines of make {} ({}):\n{}",
                self.target,
                self.log.display(),
                lines[lines.len().saturating_sub(40)..].join("\n")
            );
        }
        if !self.stopped || !self.members().is_empty() {
            let left = self.terminate();
            if !left.is_empty() {
                eprintln!("make {}: SIGKILLed {left:?}", self.target);
            }
        }
        if !std::thread::panicking() {
            let _ = fs::remove_file(&self.log);
        }
    }
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("building the HTTP client")
}

async fn get_json(client: &reqwest::Client, url: &str) -> Value {
    client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: not JSON: {e}"))
}

/// Polls GET `url` until it answers 200; fails early if one of `targets` exits.
async fn wait_http_ok(client: &reqwest::Client, url: &str, targets: &mut [&mut Foreground]) {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let status = match client.get(url).send().await {
            Ok(response) => response.status().to_string(),
            Err(error) => error.to_string(),
        };
        if status.starts_with("200") {
            return;
        }
        for target in targets.iter_mut() {
            target.assert_running();
        }
        assert!(
            Instant::now() < deadline,
            "GET {url}: not 200 within {START_TIMEOUT:?} (last: {status})"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Waits until the three mock services of `make mocks` answer.
async fn wait_mocks(client: &reqwest::Client, base: u16, mocks: &mut Foreground) {
    for port in base..base + 3 {
        wait_http_ok(
            client,
            &format!("http://127.0.0.1:{port}/health"),
            &mut [&mut *mocks],
        )
        .await;
    }
}

/// Polls until something accepts connections on 127.0.0.1:`port`.
fn wait_tcp(port: u16, target: &mut Foreground) {
    let deadline = Instant::now() + START_TIMEOUT;
    let address = (Ipv4Addr::LOCALHOST, port).into();
    while TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_err() {
        target.assert_running();
        assert!(
            Instant::now() < deadline,
            "nothing accepts connections on port {port} within {START_TIMEOUT:?}"
        );
        std::thread::sleep(POLL_INTERVAL);
    }
}

fn assert_ports_free(ports: &[u16]) {
    let busy: Vec<u16> = ports
        .iter()
        .copied()
        .filter(|port| TcpListener::bind((Ipv4Addr::LOCALHOST, *port)).is_err())
        .collect();
    assert!(
        busy.is_empty(),
        "ports still taken after stopping: {busy:?}"
    );
}

/// One value from `psql -At`.
fn psql_value(url: &str, sql: &str) -> String {
    let output = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            url,
            "-c",
            sql,
        ])
        .output()
        .unwrap_or_else(|e| panic!("running psql: {e}"));
    assert!(
        output.status.success(),
        "psql {sql}: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}
