//! `make run` / `make stop`: the whole local stack (broker, mock services, API in Kafka
//! mode, two workers) comes up healthy, the README's quick start, pasted into a shell,
//! runs its example task to the end, a component whose binary was rebuilt is restarted
//! by the next `make run`, and the `make stop` command that `make run` printed leaves no
//! process of it behind.
//!
//! The stack runs beside any stack a developer has up: its own free ports (never the
//! default ones), its own `RUN_DIR` and its own database. The binaries are taken as
//! built (`SKIP_BUILD=1`) from the target folder this test runs from, so build them
//! first (`cargo build --workspace --bins`; `cargo nextest run --workspace` does it).
//! `make` runs `cargo xtask`, which builds that one small crate if it has to.
//!
//! `crates/xtask`'s own tests check the parts that need no stack (stop order, SIGKILL
//! after the stop timeout, a reused pid left alone, other settings refused).

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fs;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use orchestrator_testkit::database::TestDatabase;
use orchestrator_testkit::workspace::{stack_bin_dir, workspace_root};
use serde_json::Value;
use xtask::process::Process;
use xtask::stack::RunDir;
use xtask::{LocalStack, Ports, StackSettings};

/// `make run` includes starting PostgreSQL-dependent binaries that migrate a fresh
/// database; on a busy 2-core machine that takes a while, but never this long.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);
/// `make stop` waits up to the stack's STOP_TIMEOUT per group, then SIGKILLs.
const STOP_TIMEOUT: Duration = Duration::from_secs(180);
/// From submission to COMPLETED: a worker must own the task's partition first.
const TASK_TIMEOUT: Duration = Duration::from_secs(120);
/// One paste of the quick start's commands (two curl calls).
const SHELL_TIMEOUT: Duration = Duration::from_secs(60);
const POLL_INTERVAL: Duration = Duration::from_millis(200);

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

    // Away from the ports of a developer's `make run`, and from the kernel's ephemeral
    // range, where other tests' port-0 listeners land.
    let ports = Ports::pick_free(WORKERS).expect("a block of free ports");
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
    let api = format!("http://127.0.0.1:{}", ports.api);
    for line in [
        format!("API             {api}"),
        format!("dashboard       {api}/ui"),
        format!("Swagger UI      {api}/docs"),
    ] {
        assert!(
            output.lines().any(|l| l.trim() == line),
            "make run should print '{line}':\n{output}"
        );
    }
    assert!(
        output.contains(&stack.run_dir.join("logs").display().to_string()),
        "make run should print the log folder:\n{output}"
    );
    // Neither RUN_DIR nor a port is the default, so the stop command names them all.
    let stop_command = output
        .lines()
        .find_map(|line| line.strip_prefix("Stop: "))
        .unwrap_or_else(|| panic!("make run should print how to stop the stack:\n{output}"))
        .to_owned();
    assert_eq!(
        stop_command,
        format!(
            "make stop RUN_DIR={} API_PORT={} MOCK_BASE_PORT={} KAFKA_PORT={} WORKER_HTTP_BASE_PORT={}",
            stack.run_dir.display(),
            ports.api,
            ports.mock_base,
            ports.kafka,
            ports.worker_http_base
        ),
        "the stop command make run printed"
    );

    // A development token, readable by its owner only, named but never shown.
    let export_line = output
        .lines()
        .map(str::trim)
        .find(|line| line.starts_with("export ORCHESTRATOR_TOKEN="))
        .unwrap_or_else(|| panic!("make run should print how to set ORCHESTRATOR_TOKEN:\n{output}"))
        .to_owned();
    let token_file = stack.run_dir.join("token");
    assert_eq!(
        export_line,
        format!("export ORCHESTRATOR_TOKEN=$(cat {})", token_file.display())
    );
    let token = fs::read_to_string(&token_file).expect("the token file");
    let token = token.trim().to_owned();
    assert!(token.starts_with("orch_"), "the token file holds a token");
    assert!(
        !output.contains(&token),
        "make run printed the token itself"
    );
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = fs::metadata(&token_file)
            .expect("the token file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the token file's mode");
    }

    // No idle connections kept: a component that `make run` restarts would leave the
    // pool a connection to a process that is gone.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(0)
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
    assert_eq!(get(format!("{api}/health")).await, 200, "API /health");
    let ready = get(format!("{api}/ready")).await;
    assert!(
        ready == 200 || ready == 404,
        "API /ready should be 200 once the stack is up (404 until the endpoint exists), got {ready}"
    );
    for (i, service) in MOCK_SERVICES.iter().enumerate() {
        let port = ports.mock(i);
        assert_eq!(
            get(format!("http://127.0.0.1:{port}/health")).await,
            200,
            "mock {service} /health on port {port}"
        );
    }
    for n in 1..=WORKERS {
        let port = ports.worker(n);
        assert_eq!(
            get(format!("http://127.0.0.1:{port}/health")).await,
            200,
            "worker-{n} /health on port {port}"
        );
    }

    // The README's quick start, pasted into a shell, runs the example to the end.
    let task = stack.paste_quick_start(ports.api, &export_line);
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
    assert_eq!(
        fs::read_to_string(&token_file)
            .expect("the token file")
            .trim(),
        token,
        "a second make run keeps the token that still works"
    );

    // A rebuilt binary (here: the mock services' copy, made newer) gets its components
    // restarted by the next run; the others keep running.
    // Opened for reading: a binary that runs cannot be opened for writing (ETXTBSY), and
    // its owner may set its times either way.
    fs::File::open(stack.bin_dir.join("mock-services"))
        .and_then(|file| file.set_modified(SystemTime::now()))
        .expect("making the mock-services binary newer");
    let output = stack.make("run", RUN_TIMEOUT);
    let restarted_pids = stack.recorded_pids();
    assert_eq!(
        restarted_pids.keys().collect::<Vec<_>>(),
        pids.keys().collect::<Vec<_>>(),
        "third make run:\n{output}"
    );
    for (name, process) in &restarted_pids {
        if name.starts_with("mock-") {
            assert_ne!(
                process, &pids[name],
                "{name} runs an older binary and should have been restarted:\n{output}"
            );
            assert!(
                !pids[name].is_alive(),
                "the old {name} (pid {}) still runs",
                pids[name].pid
            );
            assert!(
                output.contains(&format!(
                    "{name}: {}/mock-services is newer than the running process (pid {}), restarting it",
                    stack.bin_dir.display(),
                    pids[name].pid
                )),
                "make run should say it restarts {name}:\n{output}"
            );
        } else {
            assert_eq!(
                process, &pids[name],
                "{name}'s binary did not change; it must keep running:\n{output}"
            );
        }
    }
    for (i, service) in MOCK_SERVICES.iter().enumerate() {
        let port = ports.mock(i);
        assert_eq!(
            get(format!("http://127.0.0.1:{port}/health")).await,
            200,
            "restarted mock {service} /health on port {port}"
        );
    }

    // Stop, with the command make run printed: nothing of it is left, and its ports are
    // free again.
    stack.stop_with(&stop_command);
    let left: Vec<_> = pids
        .iter()
        .chain(&restarted_pids)
        .filter(|(_, process)| process.is_alive())
        .map(|(name, process)| format!("{name} (pid {})", process.pid))
        .collect();
    assert!(left.is_empty(), "still running after make stop: {left:?}");
    let busy: Vec<u16> = ports
        .all(WORKERS)
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

/// A stack started with `make run`; it is stopped when this is dropped (in-process, as
/// `make stop` stops it), so a failed assertion does not leave processes behind.
struct Stack {
    root: PathBuf,
    /// Holds RUN_DIR, BIN_DIR and the output of each command run; kept when the test
    /// fails, for inspection.
    scratch: tempfile::TempDir,
    run_dir: PathBuf,
    /// The stack's BIN_DIR: links to the built binaries, except for a copy of
    /// `mock-services`, which the test makes newer without touching the build's file.
    bin_dir: PathBuf,
    env: Vec<(&'static str, String)>,
    stopped: bool,
    /// Numbers the output files of the make calls.
    calls: Cell<usize>,
}

impl Stack {
    fn new(root: &Path, bin_dir: &Path, database_url: &str, ports: &Ports) -> Stack {
        let scratch = tempfile::Builder::new()
            .prefix("orchestrator-stack-test-")
            .tempdir()
            .expect("creating the scratch folder");
        let run_dir = scratch.path().join("run");
        let own_bin_dir = scratch.path().join("bin");
        fs::create_dir_all(&own_bin_dir).expect("creating the scratch folder");
        // Hard links, not symlinks: a build running meanwhile (the target folder is
        // shared) replaces the build's files, and would make these look rebuilt too.
        for binary in ["orchestrator-api", "orchestrator-worker"] {
            fs::hard_link(bin_dir.join(binary), own_bin_dir.join(binary))
                .or_else(|_| fs::copy(bin_dir.join(binary), own_bin_dir.join(binary)).map(drop))
                .expect("linking a binary into the stack's BIN_DIR");
        }
        fs::copy(
            bin_dir.join("mock-services"),
            own_bin_dir.join("mock-services"),
        )
        .expect("copying mock-services into the stack's BIN_DIR");
        let env = vec![
            ("RUN_DIR", run_dir.display().to_string()),
            ("DATABASE_URL", database_url.to_owned()),
            ("API_PORT", ports.api.to_string()),
            ("MOCK_BASE_PORT", ports.mock_base.to_string()),
            ("KAFKA_PORT", ports.kafka.to_string()),
            ("WORKER_HTTP_BASE_PORT", ports.worker_http_base.to_string()),
            ("WORKERS", WORKERS.to_string()),
            ("SKIP_BUILD", "1".to_owned()),
            ("BIN_DIR", own_bin_dir.display().to_string()),
            ("START_TIMEOUT", "120".to_owned()),
            ("STOP_TIMEOUT", "40".to_owned()),
        ];
        Stack {
            root: root.to_path_buf(),
            scratch,
            run_dir,
            bin_dir: own_bin_dir,
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
        let mut command = Command::new("make");
        command
            .args(["--no-print-directory", "-C"])
            .arg(&self.root)
            .arg(target);
        self.clean_env(&mut command);
        command.envs(self.env.iter().map(|(k, v)| (*k, v.as_str())));
        let (status, output, _) = self.run(&format!("make-{target}"), command, timeout, false);
        (status, output)
    }

    /// Removes the settings of the caller's environment that would change the stack: a
    /// make calling this test (jobserver), a log filter hiding the workers' start line,
    /// an API address other than loopback, and the stack's own settings, which each
    /// command gets explicitly.
    fn clean_env(&self, command: &mut Command) {
        for var in [
            "MAKEFLAGS",
            "MFLAGS",
            "MAKELEVEL",
            "RUST_LOG",
            "API_HOST",
            "PROFILE",
            "ORCHESTRATOR_TOKEN",
        ] {
            command.env_remove(var);
        }
        for (var, _) in &self.env {
            command.env_remove(var);
        }
    }

    /// Runs `command` bounded by `timeout`: whether it succeeded, its stdout, and its
    /// stderr (or both in one, interleaved, unless `separate_stderr`). Output goes to
    /// files, not pipes: the components `make run` starts outlive it, and a pipe they
    /// inherited by mistake would block the read until they exit.
    fn run(
        &self,
        label: &str,
        mut command: Command,
        timeout: Duration,
        separate_stderr: bool,
    ) -> (bool, String, String) {
        self.calls.set(self.calls.get() + 1);
        let out_path = self
            .scratch
            .path()
            .join(format!("{}-{label}.out", self.calls.get()));
        let err_path = out_path.with_extension("err");
        let out = fs::File::create(&out_path).expect("creating the output file");
        let err = if separate_stderr {
            fs::File::create(&err_path).expect("creating the error output file")
        } else {
            out.try_clone().expect("cloning the output file")
        };
        command.stdin(Stdio::null()).stdout(out).stderr(err);
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("running {label}: {e}"));
        let read = |path: &Path| fs::read_to_string(path).unwrap_or_default();
        let deadline = Instant::now() + timeout;
        let status = loop {
            match child.try_wait().expect("waiting for a command") {
                Some(status) => break status.success(),
                None if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return (
                        false,
                        format!("(killed after {timeout:?})\n{}", read(&out_path)),
                        read(&err_path),
                    );
                }
                None => std::thread::sleep(POLL_INTERVAL),
            }
        };
        (status, read(&out_path), read(&err_path))
    }

    /// Runs `command_line` (e.g. the `make stop ...` that `make run` printed) in bash from
    /// the repository root, with none of the stack's settings in the environment: only
    /// what the line itself says counts.
    fn stop_with(&mut self, command_line: &str) {
        self.stopped = true;
        let mut command = Command::new("bash");
        command.arg("-c").arg(command_line).current_dir(&self.root);
        self.clean_env(&mut command);
        let (ok, output, _) = self.run("stop", command, STOP_TIMEOUT, false);
        assert!(ok, "{command_line} failed:\n{output}");
        eprintln!("{command_line}:\n{output}");
    }

    /// Pastes the README quick start's commands into bash, with only the API's port
    /// replaced by the stack's, checks what they print (the 202 and the task's
    /// `Location`), and returns the task once it is finished: while it is not, the
    /// block's last command runs again, as the README tells the reader to do.
    fn paste_quick_start(&self, api_port: u16, export_line: &str) -> Value {
        let blocks = quick_start_blocks();
        let block = blocks
            .iter()
            .find(|block| block.contains("curl "))
            .unwrap_or_else(|| panic!("no curl commands in the quick start: {blocks:#?}"));
        // Each block is pasted as a whole: stopping the stack is a block of its own.
        assert!(
            blocks.first().is_some_and(|b| b.trim() == "make run")
                && blocks.last().is_some_and(|b| b.trim() == "make stop"),
            "the quick start should start with a `make run` block and end with a `make stop` block: {blocks:#?}"
        );
        assert!(
            !block
                .lines()
                .any(|line| line.trim_start().starts_with("make ")),
            "the quick start's curl block must not start or stop the stack:\n{block}"
        );
        // The stack listens on 127.0.0.1 only (`localhost` may be tried as ::1 first).
        let readme_address = "http://127.0.0.1:8000/";
        assert!(
            block.contains(readme_address) && !block.contains("localhost"),
            "the quick start's commands should call {readme_address}:\n{block}"
        );
        // The token's line as `make run` prints it for this stack's RUN_DIR.
        let readme_export = "export ORCHESTRATOR_TOKEN=$(cat .run/token)";
        assert!(
            block.lines().any(|line| line.trim() == readme_export),
            "the quick start should set the token as make run says ({readme_export}):\n{block}"
        );
        let ours = |text: &str| {
            text.replace("127.0.0.1:8000", &format!("127.0.0.1:{api_port}"))
                .replace(readme_export, export_line)
        };

        let (ok, stdout, stderr) = self.shell(&ours(block), None);
        assert!(ok, "the quick start failed:\n{stdout}\n{stderr}");
        // `curl -i` shows the answer to the POST (on stderr, through `tee`).
        let answer = format!("{stdout}\n{stderr}");
        assert!(
            answer
                .lines()
                .any(|line| line.starts_with("HTTP/1.1 202 Accepted")),
            "the quick start should show the 202:\n{answer}"
        );
        let location = answer
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("location")
                    .then(|| value.trim().to_owned())
            })
            .unwrap_or_else(|| panic!("the quick start should show the Location:\n{answer}"));
        let task_id = location
            .strip_prefix("/api/tasks/")
            .unwrap_or_else(|| panic!("Location: {location}"))
            .to_owned();

        // The last command asks for the task by the id the first one captured.
        let last = block
            .lines()
            .map(str::trim)
            .rfind(|line| !line.is_empty() && !line.starts_with('#'))
            .expect("the block has commands");
        assert!(
            last.contains("$TASK_ID"),
            "the last command should read the task: {last}"
        );
        let mut output = stdout;
        let deadline = Instant::now() + TASK_TIMEOUT;
        loop {
            let task: Value = serde_json::from_str(output.trim()).unwrap_or_else(|e| {
                panic!("`{last}` should print the task as JSON ({e}):\n{output}")
            });
            assert_eq!(task["task_id"], task_id.as_str(), "task: {task}");
            if task["status"] != "PENDING" && task["status"] != "IN_PROGRESS" {
                assert_eq!(task["status"], "COMPLETED", "task: {task}");
                return task;
            }
            assert!(
                Instant::now() < deadline,
                "task {task_id} not finished within {TASK_TIMEOUT:?}: {task}"
            );
            std::thread::sleep(POLL_INTERVAL);
            let (ok, stdout, stderr) = self.shell(&ours(last), Some(&task_id));
            assert!(ok, "`{last}` failed:\n{stdout}\n{stderr}");
            output = stdout;
        }
    }

    /// Runs `script` in bash as a reader's shell would, with TASK_ID set when given.
    fn shell(&self, script: &str, task_id: Option<&str>) -> (bool, String, String) {
        let mut command = Command::new("bash");
        command
            .arg("-c")
            .arg(script)
            .current_dir(self.scratch.path());
        self.clean_env(&mut command);
        if let Some(task_id) = task_id {
            // What the reader's shell still holds from the pasted block.
            command.env("TASK_ID", task_id);
            let token = fs::read_to_string(self.run_dir.join("token")).expect("the token file");
            command.env("ORCHESTRATOR_TOKEN", token.trim());
        }
        self.run("shell", command, SHELL_TIMEOUT, true)
    }

    /// The components `make run` recorded: name → pid and start time.
    fn recorded_pids(&self) -> BTreeMap<String, Process> {
        let Some(dir) = RunDir::existing(&self.run_dir) else {
            return BTreeMap::new();
        };
        dir.names()
            .into_iter()
            .filter_map(|name| Some((name.clone(), dir.recorded(&name)?)))
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
            let mut settings = StackSettings::new(&self.root);
            settings.run_dir = self.run_dir.clone();
            if let Err(error) = LocalStack::new(settings).stop() {
                eprintln!("stopping the stack (cleanup) failed: {error}");
            }
        }
        if std::thread::panicking() {
            self.scratch.disable_cleanup(true);
            eprintln!("kept for inspection: {}", self.scratch.path().display());
        }
    }
}

/// The shell blocks of the README's quick start (up to its first subsection), in order.
fn quick_start_blocks() -> Vec<String> {
    let readme = fs::read_to_string(workspace_root().join("README.md")).expect("reading README.md");
    let section = readme
        .split_once("\n## Quick start\n")
        .expect("README.md has a Quick start section")
        .1;
    // Up to the next heading; `# =>` lines inside the blocks are comments, not headings.
    let end = ["\n## ", "\n### "]
        .iter()
        .filter_map(|heading| section.find(heading))
        .min()
        .unwrap_or(section.len());
    let section = &section[..end];
    section
        .split("```sh\n")
        .skip(1)
        .filter_map(|rest| Some(rest.split_once("```")?.0.to_owned()))
        .collect()
}

fn psql(url: &str, sql: &str) {
    let status = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", url, "-c", sql])
        .status()
        .unwrap_or_else(|e| panic!("running psql: {e}"));
    assert!(status.success(), "psql {sql}: {status}");
}
