//! `make run` / `make stop`: the whole local stack (broker, mock services, API in Kafka
//! mode, two workers) comes up healthy, runs the README's example task to the end, and
//! `make stop` leaves no process of it behind.
//!
//! The stack runs beside any stack a developer has up: its own free ports (never the
//! default ones), its own `RUN_DIR` and its own database. The binaries are taken as
//! built (`SKIP_BUILD=1`) from the target folder this test runs from, so build them
//! first (`cargo build --workspace --bins`; `cargo nextest run --workspace` does it).

use std::cell::Cell;
use std::collections::BTreeMap;
use std::collections::hash_map::RandomState;
use std::fs;
use std::hash::BuildHasher as _;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use orchestrator_testkit::database::TestDatabase;
use orchestrator_testkit::workspace::{readme_example, stack_bin_dir, workspace_root};
use serde_json::Value;

/// `make run` includes starting PostgreSQL-dependent binaries that migrate a fresh
/// database; on a busy 2-core machine that takes a while, but never this long.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);
/// `make stop` waits up to the script's STOP_TIMEOUT per group, then SIGKILLs.
const STOP_TIMEOUT: Duration = Duration::from_secs(180);
/// From submission to COMPLETED: a worker must own the task's partition first.
const TASK_TIMEOUT: Duration = Duration::from_secs(120);
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// The ports a developer's `make run` uses by default; the test must not touch them.
const DEFAULT_PORTS: [u16; 8] = [8000, 8001, 8002, 8003, 9092, 9000, 9001, 5432];
const WORKERS: u16 = 2;
const MOCK_SERVICES: [&str; 3] = ["revenue", "rebates", "specialty"];

#[tokio::test]
async fn make_run_serves_the_readme_example_and_make_stop_leaves_nothing() {
    let root = workspace_root();
    let bin_dir = stack_bin_dir();

    // The stack must create the database itself: take a fresh name, then drop it. The
    // `TestDatabase` still drops whatever is there under that name at the end.
    let database = TestDatabase::create().await;
    psql(
        &TestDatabase::admin_url(),
        &format!("DROP DATABASE {}", database.name()),
    );

    let ports = Ports::pick();
    let mut stack = Stack::new(&root, &bin_dir, database.url(), &ports);

    // First run: everything starts.
    let output = stack.make("run", RUN_TIMEOUT);
    let pids = stack.recorded_pids();
    let mut expected: Vec<String> = ["api", "broker"].map(String::from).to_vec();
    expected.extend(MOCK_SERVICES.map(|service| format!("mock-{service}")));
    expected.extend((1..=WORKERS).map(|n| format!("worker-{n}")));
    expected.sort();
    assert_eq!(
        pids.keys().cloned().collect::<Vec<_>>(),
        expected,
        "pid files after make run; its output:\n{output}"
    );
    for name in pids.keys() {
        assert!(
            stack
                .run_dir
                .join("logs")
                .join(format!("{name}.log"))
                .is_file(),
            "no log file for {name}"
        );
    }
    assert!(
        output.contains(&format!("http://127.0.0.1:{}", ports.api)),
        "make run should print the API's URL:\n{output}"
    );
    assert!(
        output.contains(&stack.run_dir.join("logs").display().to_string()),
        "make run should print the log folder:\n{output}"
    );

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("building the HTTP client");
    let get = |url: String| {
        let client = client.clone();
        async move {
            client
                .get(&url)
                .send()
                .await
                .unwrap_or_else(|e| panic!("GET {url}: {e}"))
                .status()
                .as_u16()
        }
    };

    // Every component answers.
    let api = format!("http://127.0.0.1:{}", ports.api);
    assert_eq!(get(format!("{api}/health")).await, 200, "API /health");
    let ready = get(format!("{api}/ready")).await;
    assert!(
        ready == 200 || ready == 404,
        "API /ready should be 200 once the stack is up (404 until the endpoint exists), got {ready}"
    );
    for (i, service) in MOCK_SERVICES.iter().enumerate() {
        let port = ports.mock_base + u16::try_from(i).expect("three services");
        assert_eq!(
            get(format!("http://127.0.0.1:{port}/health")).await,
            200,
            "mock {service} /health on port {port}"
        );
    }
    // The worker's health port is being added; until its binary has the setting, a
    // worker shows it is up in its log (that is also what `make run` waits for then).
    let worker_has_http_port =
        help_mentions(&bin_dir.join("orchestrator-worker"), "WORKER_HTTP_PORT");
    for n in 1..=WORKERS {
        let port = ports.worker_http_base + n - 1;
        if worker_has_http_port {
            assert_eq!(
                get(format!("http://127.0.0.1:{port}/health")).await,
                200,
                "worker-{n} /health on port {port}"
            );
        } else {
            let log = fs::read_to_string(stack.run_dir.join(format!("logs/worker-{n}.log")))
                .expect("reading the worker's log");
            assert!(log.contains("Worker started"), "worker-{n} log:\n{log}");
        }
    }

    // The README's example, submitted as the quick start does, runs to the end.
    let response = client
        .post(format!("{api}/api/orchestrate"))
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
    let task = loop {
        let task: Value = client
            .get(format!("{api}/api/tasks/{task_id}"))
            .send()
            .await
            .expect("reading the task back")
            .json()
            .await
            .expect("the task is JSON");
        if task["status"] == "COMPLETED" || task["status"] == "FAILED" {
            break task;
        }
        assert!(
            Instant::now() < deadline,
            "task {task_id} not finished within {TASK_TIMEOUT:?}: {task}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    };
    assert_eq!(task["status"], "COMPLETED", "task: {task}");
    let requests = task["service_requests"]
        .as_array()
        .expect("the task lists its service requests");
    assert_eq!(requests.len(), 3, "task: {task}");
    assert!(
        requests
            .iter()
            .all(|r| r["status"] == "COMPLETED" && r["response_payload"].is_object()),
        "task: {task}"
    );

    // Running it again leaves the running components alone and cleans stale pid files.
    let stale = stack.run_dir.join("pids/worker-9.pid");
    fs::write(&stale, "999999999 1\n").expect("writing a stale pid file");
    let output = stack.make("run", RUN_TIMEOUT);
    assert!(
        !stale.exists(),
        "the stale pid file is still there:\n{output}"
    );
    assert_eq!(
        stack.recorded_pids(),
        pids,
        "a second make run must not restart anything:\n{output}"
    );
    assert!(
        output.contains("already running"),
        "second make run:\n{output}"
    );

    // Stop: nothing of it is left, and its ports are free again.
    stack.stop();
    let left: Vec<_> = pids
        .iter()
        .filter(|(_, process)| process.is_alive())
        .map(|(name, process)| format!("{name} (pid {})", process.pid))
        .collect();
    assert!(left.is_empty(), "still running after make stop: {left:?}");
    let busy: Vec<u16> = ports
        .all()
        .into_iter()
        .filter(|port| TcpListener::bind((Ipv4Addr::LOCALHOST, *port)).is_err())
        .collect();
    assert!(
        busy.is_empty(),
        "ports still taken after make stop: {busy:?}"
    );
    assert!(
        stack.recorded_pids().is_empty(),
        "make stop should remove the pid files"
    );
}

/// The stack's ports: one block of free ports away from the defaults and from the
/// kernel's ephemeral range (32768-60999), where other tests' port-0 listeners land.
struct Ports {
    api: u16,
    mock_base: u16,
    kafka: u16,
    worker_http_base: u16,
}

impl Ports {
    fn pick() -> Ports {
        for _ in 0..200 {
            let random = RandomState::new().hash_one(Instant::now());
            let base = 20_000 + u16::try_from(random % 12_000).expect("below 12000");
            let ports = Ports {
                api: base,
                mock_base: base + 1,
                kafka: base + 4,
                worker_http_base: base + 5,
            };
            if ports.all().iter().all(|port| {
                !DEFAULT_PORTS.contains(port)
                    && TcpListener::bind((Ipv4Addr::LOCALHOST, *port)).is_ok()
            }) {
                return ports;
            }
        }
        panic!("no block of free ports found");
    }

    fn all(&self) -> Vec<u16> {
        let mut all = vec![self.api, self.kafka];
        all.extend((0..3).map(|i| self.mock_base + i));
        all.extend((0..WORKERS).map(|i| self.worker_http_base + i));
        all
    }
}

/// A stack started with `make run`; `make stop` runs when it is dropped, so a failed
/// assertion does not leave processes behind.
struct Stack {
    root: PathBuf,
    /// Holds RUN_DIR and the output of each make call.
    scratch: PathBuf,
    run_dir: PathBuf,
    env: Vec<(&'static str, String)>,
    stopped: bool,
    /// Numbers the output files of the make calls.
    calls: Cell<usize>,
}

impl Stack {
    fn new(root: &Path, bin_dir: &Path, database_url: &str, ports: &Ports) -> Stack {
        let scratch = std::env::temp_dir().join(format!(
            "orchestrator-stack-test-{}-{:x}",
            std::process::id(),
            RandomState::new().hash_one(0_u8)
        ));
        let run_dir = scratch.join("run");
        fs::create_dir_all(&scratch).expect("creating the scratch folder");
        let env = vec![
            ("RUN_DIR", run_dir.display().to_string()),
            ("DATABASE_URL", database_url.to_owned()),
            ("API_PORT", ports.api.to_string()),
            ("MOCK_BASE_PORT", ports.mock_base.to_string()),
            ("KAFKA_PORT", ports.kafka.to_string()),
            ("WORKER_HTTP_BASE_PORT", ports.worker_http_base.to_string()),
            ("WORKERS", WORKERS.to_string()),
            ("SKIP_BUILD", "1".to_owned()),
            ("BIN_DIR", bin_dir.display().to_string()),
            ("START_TIMEOUT", "120".to_owned()),
            ("STOP_TIMEOUT", "40".to_owned()),
        ];
        Stack {
            root: root.to_path_buf(),
            scratch,
            run_dir,
            env,
            stopped: false,
            calls: Cell::new(0),
        }
    }

    /// Runs `make TARGET`, bounded by `timeout`; panics with its output unless it
    /// succeeds. Output goes to a file, not a pipe: the components it starts outlive it,
    /// and a pipe they inherited by mistake would block the read until they exit.
    fn make(&self, target: &str, timeout: Duration) -> String {
        let (status, output) = self.try_make(target, timeout);
        assert!(status, "make {target} failed:\n{output}");
        output
    }

    fn try_make(&self, target: &str, timeout: Duration) -> (bool, String) {
        self.calls.set(self.calls.get() + 1);
        let out_path = self
            .scratch
            .join(format!("make-{}-{target}.out", self.calls.get()));
        let out = fs::File::create(&out_path).expect("creating the make output file");
        let mut command = Command::new("make");
        command
            .args(["--no-print-directory", "-C"])
            .arg(&self.root)
            .arg(target)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("cloning the output file"))
            .stderr(out);
        // Settings of the caller's environment that would change the stack: a make
        // calling this test (jobserver), a log filter hiding the workers' start line,
        // an API address other than loopback.
        for var in [
            "MAKEFLAGS",
            "MFLAGS",
            "MAKELEVEL",
            "RUST_LOG",
            "API_HOST",
            "PROFILE",
        ] {
            command.env_remove(var);
        }
        command.envs(self.env.iter().map(|(k, v)| (*k, v.as_str())));
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("running make {target}: {e}"));
        let deadline = Instant::now() + timeout;
        let status = loop {
            match child.try_wait().expect("waiting for make") {
                Some(status) => break status.success(),
                None if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let output = fs::read_to_string(&out_path).unwrap_or_default();
                    return (false, format!("(killed after {timeout:?})\n{output}"));
                }
                None => std::thread::sleep(POLL_INTERVAL),
            }
        };
        (status, fs::read_to_string(&out_path).unwrap_or_default())
    }

    fn stop(&mut self) {
        self.stopped = true;
        let output = self.make("stop", STOP_TIMEOUT);
        eprintln!("make stop:\n{output}");
    }

    /// The components `make run` recorded: name → pid and start time.
    fn recorded_pids(&self) -> BTreeMap<String, Process> {
        let Ok(entries) = fs::read_dir(self.run_dir.join("pids")) else {
            return BTreeMap::new();
        };
        entries
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let name = entry
                    .file_name()
                    .to_string_lossy()
                    .strip_suffix(".pid")?
                    .to_owned();
                let text = fs::read_to_string(entry.path()).ok()?;
                let mut words = text.split_whitespace();
                let process = Process {
                    pid: words.next()?.parse().ok()?,
                    start_time: words.next()?.to_owned(),
                };
                Some((name, process))
            })
            .collect()
    }

    fn print_logs(&self) {
        let Ok(entries) = fs::read_dir(self.run_dir.join("logs")) else {
            return;
        };
        for entry in entries.filter_map(Result::ok) {
            let text = fs::read_to_string(entry.path()).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(30)..];
            eprintln!(
                "--- last lines of {}:\n{}",
                entry.path().display(),
                tail.join("\n")
            );
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_logs();
        }
        if !self.stopped {
            let (ok, output) = self.try_make("stop", STOP_TIMEOUT);
            if !ok {
                eprintln!("make stop (cleanup) failed:\n{output}");
            }
        }
        if std::thread::panicking() {
            eprintln!("kept for inspection: {}", self.scratch.display());
        } else {
            let _ = fs::remove_dir_all(&self.scratch);
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Process {
    pid: u32,
    start_time: String,
}

impl Process {
    /// The same process still runs. A zombie counts as gone: it holds no port, and where
    /// PID 1 does not reap orphans it never disappears.
    fn is_alive(&self) -> bool {
        let Ok(stat) = fs::read_to_string(format!("/proc/{}/stat", self.pid)) else {
            return false;
        };
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            return false;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        fields
            .first()
            .is_some_and(|state| *state != "Z" && *state != "X")
            && fields.get(19) == Some(&self.start_time.as_str())
    }
}

fn help_mentions(binary: &Path, word: &str) -> bool {
    Command::new(binary)
        .arg("--help")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).contains(word))
        .unwrap_or(false)
}

fn psql(url: &str, sql: &str) {
    let status = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", url, "-c", sql])
        .status()
        .unwrap_or_else(|e| panic!("running psql: {e}"));
    assert!(status.success(), "psql {sql}: {status}");
}
