//! `orchestrator-bench --smoke`: the benchmark starts a stack of its own (the debug
//! binaries as built, free ports, its own RUN_DIR and database), runs every phase
//! tiny, writes its reports, and its checks pass. Not a timed test: the figures are
//! not looked at, only that the benchmark still works.
//!
//! The stack's binaries must be built (`cargo build --workspace --bins`; `cargo nextest
//! run --workspace` does it).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use orchestrator_testkit::database::TestDatabase;
use orchestrator_testkit::workspace::{stack_bin_dir, workspace_root};
use serde_json::Value;
use xtask::{LocalStack, StackSettings};

mod soak;

/// Starting a debug stack takes ~20 s on a busy 2-core machine; the phases ~30 s.
const SMOKE_TIMEOUT: Duration = Duration::from_secs(300);

#[tokio::test]
async fn smoke_run_writes_reports_and_its_checks_pass() {
    let root = workspace_root();
    let database = TestDatabase::create().await;
    let scratch = Scratch::new(&root);
    let out_dir = scratch.path.join("out");
    let log_path = scratch.path.join("bench.out");
    let log = fs::File::create(&log_path).expect("creating the output file");

    let mut command = smoke_command(
        env!("CARGO_BIN_EXE_orchestrator-bench"),
        &root,
        &scratch,
        &out_dir,
        log,
    );
    command.args(["--database-url", database.url()]);
    let status = run_bounded(&mut command, SMOKE_TIMEOUT);
    let output = fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()),
        "orchestrator-bench --smoke {}:\n{output}",
        status.map_or(format!("killed after {SMOKE_TIMEOUT:?}"), |s| s.to_string())
    );

    let json = fs::read_to_string(out_dir.join("report.json")).expect("report.json");
    let report: Value = serde_json::from_str(&json).expect("report.json is JSON");
    assert_eq!(report["passed"], true, "{json}");
    assert_eq!(report["smoke"], true);
    assert!(report["machine"]["cores"].as_u64().is_some_and(|c| c >= 1));
    // 2 and 1 workers × 0 and 50 ms mocks.
    let e2e = report["e2e"].as_array().expect("e2e runs");
    assert_eq!(e2e.len(), 4, "{json}");
    for run in e2e {
        assert!(run["tasks"].as_u64().is_some_and(|t| t > 0), "{run}");
        assert!(run["throughput"].as_f64().is_some_and(|t| t > 0.0), "{run}");
        assert!(
            run["latency"]["p99_ms"].as_f64().is_some_and(|l| l > 0.0),
            "{run}"
        );
        assert!(run["cpu_per_1000"]["api"].as_f64().is_some(), "{run}");
        assert!(
            run["worker_peak_rss_mb"].as_f64().is_some_and(|m| m > 0.0),
            "{run}"
        );
    }
    // Every processed task called back, signed: the note counts what the receiver got.
    let webhooks = report["notes"]
        .as_array()
        .expect("notes")
        .iter()
        .filter_map(Value::as_str)
        .find_map(|note| {
            note.split_once(": ")
                .filter(|(head, _)| head.contains("callback_url"))
        })
        .map(|(_, counts)| {
            counts
                .split(|c: char| !c.is_ascii_digit())
                .filter(|n| !n.is_empty())
                .map(|n| n.parse::<u64>().expect("a count"))
                .collect::<Vec<_>>()
        })
        .expect("the webhook note");
    assert!(
        webhooks[0] > 0 && webhooks[0] == webhooks[1],
        "{webhooks:?}"
    );
    for ceiling in [
        "postgres_task",
        "postgres_accept",
        "postgres_data_model",
        "broker",
        "mock",
    ] {
        assert!(
            report["ceilings"][ceiling].is_object(),
            "ceiling {ceiling}: {json}"
        );
    }
    assert!(
        report["ceilings"]["postgres_task"]["tasks_per_s"]
            .as_f64()
            .is_some_and(|r| r > 0.0)
    );
    assert!(
        report["ceilings"]["postgres_data_model"]["tasks_per_s"]
            .as_f64()
            .is_some_and(|r| r > 0.0)
    );
    assert!(
        report["ceilings"]["broker"]["records_per_s"]
            .as_f64()
            .is_some_and(|r| r > 0.0)
    );
    assert!(
        report["accept"]["closed_loop"]["accepted"]
            .as_u64()
            .is_some_and(|n| n > 0)
    );
    assert_eq!(
        report["accept"]["open_loop"].as_array().map(Vec::len),
        Some(2)
    );
    // The workers stayed stopped through the accept and auth runs (restarting the API
    // for each credential must not start them): the drain found their backlog.
    assert!(
        report["backlog_drain"]["tasks"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "{json}"
    );
    // Every waiter of the long-poll phase was answered with its finished task.
    let long_poll = &report["long_poll"];
    assert_eq!(long_poll["waiters"], 50, "{json}");
    assert_eq!(long_poll["answered_final"], 50, "{json}");
    assert!(
        long_poll["p99_ms"].as_f64().is_some_and(|p| p > 0.0),
        "{json}"
    );
    // One round of the three credentials, each accepted tasks (the JWT too).
    let auth = report["auth"]["summary"].as_array().expect("the auth runs");
    assert_eq!(auth.len(), 3, "{json}");
    for summary in auth {
        assert_eq!(summary["runs"], 1, "{summary}");
        assert!(
            summary["median_api_cpu_ms_per_task"]
                .as_f64()
                .is_some_and(|cpu| cpu > 0.0),
            "{summary}"
        );
    }
    let checks = report["checks"].as_array().expect("checks");
    assert!(checks.len() >= 6, "{json}");
    assert!(checks.iter().all(|c| c["passed"] == true), "{json}");
    assert!(
        report["targets"].as_array().is_some_and(|t| t.len() >= 7),
        "{json}"
    );

    let markdown = fs::read_to_string(out_dir.join("report.md")).expect("report.md");
    for section in [
        "### Targets",
        "### Ceilings",
        "### Accept path",
        "### Authentication on the accept path",
        "### End to end",
        "### Checks",
    ] {
        assert!(
            markdown.contains(section),
            "report.md lacks {section}:\n{markdown}"
        );
    }
    let svg = fs::read_to_string(out_dir.join("report.svg")).expect("report.svg");
    assert!(
        svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
        "{svg}"
    );

    // The benchmark stopped its stack: nothing answers on its API port any more.
    assert!(
        !scratch.run_dir.join("stack.env").exists(),
        "the benchmark left its stack running:\n{output}"
    );
}

/// A scratch folder with the benchmark's RUN_DIR; whatever the benchmark left running
/// there (it was killed) is stopped when this is dropped.
struct Scratch {
    root: PathBuf,
    path: PathBuf,
    run_dir: PathBuf,
}

impl Scratch {
    fn new(root: &Path) -> Scratch {
        let path = std::env::temp_dir().join(format!(
            "orchestrator-bench-smoke-{}-{}",
            std::process::id(),
            uuid_like()
        ));
        fs::create_dir_all(&path).expect("creating the scratch folder");
        Scratch {
            root: root.to_path_buf(),
            run_dir: path.join("run"),
            path,
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.run_dir.join("pids").is_dir() {
            let mut settings = StackSettings::new(&self.root);
            settings.run_dir = self.run_dir.clone();
            if let Err(error) = LocalStack::new(settings).stop() {
                eprintln!("stopping what the benchmark left running: {error}");
            }
        }
        if std::thread::panicking() {
            eprintln!("kept for inspection: {}", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// `program --smoke` with the stack's binaries as built, this repository, its output in
/// `out_dir` and its RUN_DIR in the scratch folder, its output to `log`, and none of the
/// caller's settings that would change what it runs.
fn smoke_command(
    program: &str,
    root: &Path,
    scratch: &Scratch,
    out_dir: &Path,
    log: fs::File,
) -> Command {
    let mut command = Command::new(program);
    command
        .arg("--smoke")
        .arg("--bin-dir")
        .arg(stack_bin_dir())
        .arg("--repo-root")
        .arg(root)
        .arg("--output-dir")
        .arg(out_dir)
        .arg("--run-dir")
        .arg(&scratch.run_dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("cloning the output file"))
        .stderr(log);
    for var in [
        "MAKEFLAGS",
        "MFLAGS",
        "MAKELEVEL",
        "RUST_LOG",
        "BENCH_API_URL",
        "SOAK_DATABASE_URL",
        "SOAK_MINUTES",
        "SOAK_RATE",
    ] {
        command.env_remove(var);
    }
    command
}

/// Runs `command` to its end, or kills it after `timeout` (`None`).
fn run_bounded(command: &mut Command, timeout: Duration) -> Option<std::process::ExitStatus> {
    let mut child = command.spawn().expect("starting the command");
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("waiting for the command") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn uuid_like() -> String {
    use std::hash::BuildHasher as _;
    format!(
        "{:x}",
        std::collections::hash_map::RandomState::new().hash_one(Instant::now())
    )
}
