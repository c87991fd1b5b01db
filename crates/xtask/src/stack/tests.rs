//! The parts of `run` and `stop` that need no built binaries, PostgreSQL or broker: what
//! is signalled, in which order, when SIGKILL comes, what a second run refuses, and what
//! is printed. `crates/deploy-check/tests/stack.rs` runs the whole stack.

use std::net::{Ipv4Addr, TcpListener};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};

use super::*;

/// The progress lines, for assertions.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().expect("the log lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("the log lock")).into_owned()
    }
}

struct Fixture {
    scratch: tempfile::TempDir,
    stack: LocalStack,
    log: Captured,
    dir: RunDir,
    /// Processes the test started, killed and reaped at the end whatever happened.
    children: Vec<Child>,
}

impl Fixture {
    fn new() -> Fixture {
        let scratch = tempfile::tempdir().expect("a scratch folder");
        let mut settings = StackSettings::new(scratch.path());
        settings.run_dir = scratch.path().join("run");
        settings.bin_dir = scratch.path().join("bin");
        settings.stop_timeout = Duration::from_secs(1);
        settings.ports = Ports::pick_free(settings.workers).expect("free ports");
        let log = Captured::default();
        let dir = RunDir::create(&settings.run_dir).expect("creating RUN_DIR");
        Fixture {
            stack: LocalStack::with_log(settings, Box::new(log.clone())),
            scratch,
            log,
            dir,
            children: Vec::new(),
        }
    }

    /// Starts `sh -c SCRIPT` and records it as component `name`, as `run` would; returns
    /// once the script has created the file `$0` (after its `trap`, if any: a SIGTERM
    /// before that would find the default action still in place).
    fn component(&mut self, name: &str, script: &str) -> Process {
        let ready = self.scratch.path().join(format!("{name}.ready"));
        let child = Command::new("sh")
            .args(["-c", script])
            .arg(&ready)
            .process_group(0)
            .spawn()
            .expect("starting sh");
        let process = Process::current(child.id()).expect("the component runs");
        self.children.push(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ready.exists() {
            assert!(Instant::now() < deadline, "{name} did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        self.dir
            .record(name, &process)
            .expect("writing its pid file");
        process
    }

    /// The names in the order `stop` signalled them.
    fn stopping_order(&self) -> Vec<String> {
        self.log
            .text()
            .lines()
            .filter(|line| line.contains(": stopping (pid"))
            .filter_map(|line| Some(line.strip_prefix("stack: ")?.split(':').next()?.to_owned()))
            .collect()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

const RUNS: &str = r#": > "$0"; while :; do sleep 0.1; done"#;
const IGNORES_SIGTERM: &str = r#"trap '' TERM; : > "$0"; while :; do sleep 0.1; done"#;

#[test]
fn stop_terminates_workers_and_api_before_the_services_and_kills_what_ignores_sigterm() {
    let mut fixture = Fixture::new();
    let broker = fixture.component("broker", RUNS);
    let mock = fixture.component("mock-revenue", RUNS);
    let api = fixture.component("api", RUNS);
    let worker = fixture.component("worker-1", IGNORES_SIGTERM);
    fs::write(fixture.dir.state_file(), "API_PORT=1\n").expect("writing stack.env");

    let started = Instant::now();
    fixture.stack.stop().expect("stop");

    for process in [broker, mock, api, worker] {
        assert!(!process.is_alive(), "{process:?} still runs");
    }
    assert_eq!(
        fixture.stopping_order(),
        ["api", "worker-1", "broker", "mock-revenue"],
        "{}",
        fixture.log.text()
    );
    let log = fixture.log.text();
    assert!(
        log.contains("worker-1: still running after 1 s, sending SIGKILL"),
        "{log}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "SIGKILL came before the stop timeout"
    );
    assert!(fixture.dir.names().is_empty(), "pid files left");
    assert!(!fixture.dir.state_file().exists(), "stack.env left");
}

#[test]
fn stop_never_signals_a_pid_that_another_process_has_now() {
    let mut fixture = Fixture::new();
    let other = fixture.component("api", RUNS);
    // The pid file says the api started at another time: the pid was reused since.
    let reused = Process {
        start_time: other.start_time + 1,
        ..other
    };
    fixture
        .dir
        .record("api", &reused)
        .expect("writing the pid file");

    fixture.stack.stop().expect("stop");

    assert!(
        other.is_alive(),
        "a process that `run` did not start was stopped"
    );
    assert!(
        fixture.stopping_order().is_empty(),
        "{}",
        fixture.log.text()
    );
    assert!(fixture.dir.names().is_empty(), "the stale pid file is left");
}

#[test]
fn stop_without_a_run_dir_has_nothing_to_do() {
    let scratch = tempfile::tempdir().expect("a scratch folder");
    let mut settings = StackSettings::new(scratch.path());
    settings.run_dir = scratch.path().join("never-run");
    let log = Captured::default();
    let mut stack = LocalStack::with_log(settings, Box::new(log.clone()));
    stack.stop().expect("stop");
    assert!(log.text().contains("nothing to stop"), "{}", log.text());
    assert!(!scratch.path().join("never-run").exists());
}

/// Empty files where the binaries go: `run` checks they are there before anything else.
fn fake_binaries(fixture: &Fixture) {
    let bin_dir = &fixture.stack.settings().bin_dir;
    fs::create_dir_all(bin_dir).expect("creating BIN_DIR");
    for binary in BINARIES {
        fs::write(bin_dir.join(binary), "").expect("writing a fake binary");
    }
}

#[test]
fn run_refuses_other_settings_while_a_stack_runs_from_the_same_run_dir() {
    let mut fixture = Fixture::new();
    fake_binaries(&fixture);
    fixture.component("api", RUNS);
    fs::write(
        fixture.dir.state_file(),
        "API_PORT=8000\nMOCK_BASE_PORT=8001\nKAFKA_PORT=9092\nWORKER_HTTP_BASE_PORT=9000\nBIN_DIR=/elsewhere\n",
    )
    .expect("writing stack.env");

    let error = fixture
        .stack
        .run()
        .expect_err("other settings must be refused");

    assert!(matches!(error, StackError::OtherSettings { .. }), "{error}");
    assert!(
        error.to_string().contains("  BIN_DIR=/elsewhere\n"),
        "{error}"
    );
    assert_eq!(fixture.dir.names(), ["api"], "nothing else may start");
}

#[test]
fn run_sweeps_stale_pid_files_and_stops_at_a_taken_port_before_starting_anything() {
    let mut fixture = Fixture::new();
    fake_binaries(&fixture);
    let me = Process::current(std::process::id()).expect("this process");
    fixture
        .dir
        .record(
            "worker-9",
            &Process {
                start_time: me.start_time + 1,
                ..me
            },
        )
        .expect("writing a stale pid file");
    let api_port = fixture.stack.settings().ports.api;
    let _taken = TcpListener::bind((Ipv4Addr::LOCALHOST, api_port)).expect("taking the API port");

    let error = fixture
        .stack
        .run()
        .expect_err("a taken port must fail the run");

    assert!(
        matches!(
            &error,
            StackError::PortTaken { component, port, variable: "API_PORT" }
                if component == "api" && *port == api_port
        ),
        "{error}"
    );
    assert!(
        fixture.dir.names().is_empty(),
        "started or kept: {:?}",
        fixture.dir.names()
    );
    assert!(
        fixture
            .log
            .text()
            .contains("worker-9: removing the stale pid file"),
        "{}",
        fixture.log.text()
    );
}

#[test]
fn the_stop_command_names_what_is_not_the_default() {
    let fixture = Fixture::new();
    let ports = fixture.stack.settings().ports;
    let run_dir = fixture.dir.path().display().to_string();
    assert_eq!(
        fixture.stack.stop_command(),
        format!(
            "make stop RUN_DIR={run_dir} API_PORT={} MOCK_BASE_PORT={} KAFKA_PORT={} WORKER_HTTP_BASE_PORT={}",
            ports.api, ports.mock_base, ports.kafka, ports.worker_http_base
        )
    );

    let mut settings = StackSettings::new(fixture.scratch.path());
    settings.ports.kafka = 19_092;
    fs::create_dir_all(&settings.run_dir).expect("creating the default RUN_DIR");
    assert_eq!(
        LocalStack::new(settings).stop_command(),
        "make stop KAFKA_PORT=19092"
    );
    assert_eq!(shell_quoted("/tmp/a b"), "'/tmp/a b'");
    assert_eq!(shell_quoted("/tmp/it's"), r"'/tmp/it'\''s'");
}

#[test]
fn the_summary_lists_the_urls_the_workers_and_how_to_stop() {
    let summary = Summary {
        workers: 2,
        ports: Ports::DEFAULT,
        database_url: DatabaseUrl::parse("postgres://app:secret@127.0.0.1:5432/orchestrator")
            .expect("a URL"),
        also_running: vec![3],
        logs: PathBuf::from("/repo/.run/logs"),
        token_file: ".run/token".into(),
        stop_command: "make stop".into(),
    };
    let text = summary.to_string();
    for line in [
        "  API             http://127.0.0.1:8000",
        "  dashboard       http://127.0.0.1:8000/ui",
        "  Swagger UI      http://127.0.0.1:8000/docs",
        "  PostgreSQL      postgres://app:***@127.0.0.1:5432/orchestrator",
        "  worker-2        local-worker-2, health http://127.0.0.1:9001/health",
        "  also running from an earlier run: worker-3",
        "  export ORCHESTRATOR_TOKEN=$(cat .run/token)",
        "Logs: /repo/.run/logs/",
        "Stop: make stop",
    ] {
        assert!(text.lines().any(|l| l == line), "no '{line}' in:\n{text}");
    }
    assert!(!text.contains("secret"));
}

#[test]
fn the_log_excerpt_starts_at_the_error_and_leaves_out_the_backtrace() {
    let log = "starting\nError: cannot bind 127.0.0.1:8000\n\nCaused by:\n    Address in use\nStack backtrace:\n   0: main\n";
    assert_eq!(
        log_excerpt(log),
        "Error: cannot bind 127.0.0.1:8000\n\nCaused by:\n    Address in use\n"
    );
    let long: String = (1..=40).map(|i| format!("line {i}\n")).collect();
    let excerpt = log_excerpt(&long);
    assert!(excerpt.starts_with("line 16\n") && excerpt.ends_with("line 40\n"));
}

#[test]
fn status_shows_running_and_gone_components_and_the_settings() {
    let mut fixture = Fixture::new();
    let api = fixture.component("api", RUNS);
    fixture
        .dir
        .record(
            "worker-1",
            &Process {
                start_time: api.start_time + 1,
                ..api
            },
        )
        .expect("writing a stale pid file");
    fs::write(fixture.dir.state_file(), "API_PORT=18000\n").expect("writing stack.env");
    let text = fixture.stack.status().to_string();
    assert!(
        text.contains(&format!(
            "  api              running (pid {}), log ",
            api.pid
        )),
        "{text}"
    );
    assert!(
        text.contains("  worker-1         gone (stale pid file)"),
        "{text}"
    );
    assert!(text.contains("settings:\n  API_PORT=18000\n"), "{text}");
}
