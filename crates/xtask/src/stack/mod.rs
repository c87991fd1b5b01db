//! The whole stack on this machine, without Docker: PostgreSQL, a Kafka-protocol broker
//! (Tansu), the three mock services, the API in Kafka mode and N workers, each a
//! background process with its log and pid file in RUN_DIR (see [`run_dir`]).
//!
//! - [`LocalStack::run`] builds (unless told not to), starts what is not running yet,
//!   restarts what runs an older binary, and waits until each is healthy.
//! - [`LocalStack::stop`] stops what `run` started, and only that: a pid file holds the
//!   process's start time too, so a pid reused since is never signalled. SIGTERM to the
//!   workers and the API first (they finish their work while what they work against is
//!   still up), then to the rest; SIGKILL after the stop timeout.
//! - [`LocalStack::status`] and [`LocalStack::db`] (create and migrate the database, for
//!   running the binaries by hand).
//!
//! Every port is a setting, so a second stack (the benchmark's, a test's) runs beside
//! the first with its own RUN_DIR.

pub mod health;
mod monitoring;
mod output;
pub mod postgres;
mod run_dir;

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::database_url::DatabaseUrl;
use crate::ports::{MOCK_SERVICES, Ports, PortsError};
use crate::process::Process;
use health::Health;
pub use output::{Status, Summary};
use output::{log_excerpt, shell_quoted};
use postgres::Cluster;
pub use run_dir::RunDir;

/// The binaries a stack runs from BIN_DIR.
pub const BINARIES: [&str; 3] = ["orchestrator-api", "orchestrator-worker", "mock-services"];
/// The log filter of the API and the workers unless RUST_LOG says otherwise.
pub const DEFAULT_RUST_LOG: &str = "info,rskafka=warn";
/// `make run`'s database.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/orchestrator";
/// Every component listens here.
const HOST: &str = "127.0.0.1";
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// After SIGKILL: a process that is still there by then is reported, not waited for.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// Makes an API token for tenant `default` with every scope, as an operator would:
/// `orchestrator-api token create` against `database_url`. Its text. For `make run`'s
/// development token, and the tools and tests that run the binaries.
pub fn create_token(api: &Path, database_url: &str, name: &str) -> Result<String, StackError> {
    let output = Command::new(api)
        .args(["token", "create", "--tenant", "default", "--scopes"])
        .arg("tasks:submit,tasks:read,tasks:operate,admin")
        .args(["--name", name])
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| StackError::Token(format!("{}: {e}", api.display())))?;
    if !output.status.success() {
        return Err(StackError::Token(
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        ));
    }
    String::from_utf8(output.stdout)
        .map(|token| token.trim().to_owned())
        .map_err(|_| StackError::Token("the token printed is not UTF-8".into()))
}

/// Ways the stack fails to start, stop or tell its state.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Ports(#[from] PortsError),
    #[error("another `cargo xtask stack` is busy with {0}")]
    Busy(PathBuf),
    #[error("{0} is missing: build it (cargo build --workspace --bins)")]
    MissingBinary(PathBuf),
    #[error("{0} failed: {1}")]
    Command(String, String),
    #[error(
        "{component}: port {port} is taken by another process; pick another with {variable}=..."
    )]
    PortTaken {
        component: String,
        port: u16,
        variable: &'static str,
    },
    #[error(
        "a stack with other settings runs from {run_dir}:\n{running}stop it first (make stop), or use another RUN_DIR"
    )]
    OtherSettings { run_dir: PathBuf, running: String },
    #[error("postgres: {0}")]
    Postgres(String),
    #[error(
        "{component} {reason}; log: {log}\n--- {log}:\n{excerpt}---\n{component} did not come up; the components already started keep running: '{stop_command}' stops them",
        log = log.display()
    )]
    NotHealthy {
        component: String,
        reason: String,
        log: PathBuf,
        excerpt: String,
        stop_command: String,
    },
    #[error("some components did not stop: {0}")]
    DidNotStop(String),
    #[error("creating the development token failed: {0}")]
    Token(String),
}

impl StackError {
    fn io(path: &Path, source: io::Error) -> StackError {
        StackError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// How to build the binaries before a run (`cargo build --workspace --bins`).
#[derive(Debug, Clone)]
pub struct Build {
    pub cargo: String,
    /// `debug`, `release` or a custom profile.
    pub profile: String,
}

/// Where a stack lives, what it runs and on which ports.
#[derive(Debug, Clone)]
pub struct StackSettings {
    /// The repository: its `scripts/` install the broker and PostgreSQL, and its `.run`
    /// is the default RUN_DIR (which the printed stop command then leaves out).
    pub repo_root: PathBuf,
    pub run_dir: PathBuf,
    pub bin_dir: PathBuf,
    /// `None` takes the binaries in `bin_dir` as they are (`SKIP_BUILD=1`).
    pub build: Option<Build>,
    pub workers: u16,
    pub api_host: String,
    pub ports: Ports,
    pub database_url: DatabaseUrl,
    /// How long one component may take to become healthy.
    pub start_timeout: Duration,
    /// How long a group of components may take to stop after SIGTERM, before SIGKILL.
    /// Longer than the binaries' own SHUTDOWN_TIMEOUT_SECS (30), so that a graceful stop
    /// is not cut short.
    pub stop_timeout: Duration,
    pub rust_log: String,
    /// More environment for the API, after the stack's own (the benchmark's auth runs).
    pub api_env: Vec<(&'static str, String)>,
    /// More environment for the API and the workers (the benchmark's span export).
    pub service_env: Vec<(&'static str, String)>,
}

impl StackSettings {
    /// `make run`'s settings for the repository at `repo_root`.
    pub fn new(repo_root: &Path) -> StackSettings {
        StackSettings {
            repo_root: repo_root.to_path_buf(),
            run_dir: repo_root.join(".run"),
            bin_dir: repo_root.join("target/debug"),
            build: None,
            workers: 2,
            api_host: HOST.to_owned(),
            ports: Ports::DEFAULT,
            database_url: DatabaseUrl::parse(DEFAULT_DATABASE_URL)
                .expect("the default DATABASE_URL is valid"),
            start_timeout: Duration::from_secs(90),
            stop_timeout: Duration::from_secs(40),
            rust_log: DEFAULT_RUST_LOG.to_owned(),
            api_env: Vec::new(),
            service_env: Vec::new(),
        }
    }

    /// What `stack.env` records: the settings the components of a running stack were
    /// started with, which a later run must not change.
    fn recorded(&self) -> String {
        let p = &self.ports;
        format!(
            "API_PORT={}\nMOCK_BASE_PORT={}\nKAFKA_PORT={}\nWORKER_HTTP_BASE_PORT={}\nBIN_DIR={}\n",
            p.api,
            p.mock_base,
            p.kafka,
            p.worker_http_base,
            self.bin_dir.display()
        )
    }
}

/// One background process of the stack.
struct Component {
    name: String,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
    port: u16,
    /// The setting that moves `port`, for the message when it is taken.
    port_variable: &'static str,
    health: Health,
}

/// A local stack, started or to be started from its settings.
pub struct LocalStack {
    settings: StackSettings,
    /// Where the progress lines go (stderr for `cargo xtask`).
    log: Box<dyn Write + Send>,
    /// The components this value started, reaped as they exit: a long-lived caller (the
    /// benchmark) would otherwise collect zombies.
    children: Vec<Child>,
}

impl fmt::Debug for LocalStack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalStack")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl LocalStack {
    /// A stack with these settings, reporting its progress on stderr.
    pub fn new(settings: StackSettings) -> LocalStack {
        LocalStack::with_log(settings, Box::new(io::stderr()))
    }

    /// A stack reporting its progress to `log`.
    pub fn with_log(settings: StackSettings, log: Box<dyn Write + Send>) -> LocalStack {
        LocalStack {
            settings,
            log,
            children: Vec::new(),
        }
    }

    pub fn settings(&self) -> &StackSettings {
        &self.settings
    }

    /// The API's extra environment from its next start on.
    pub fn set_api_env(&mut self, env: Vec<(&'static str, String)>) {
        self.settings.api_env = env;
    }

    /// How many workers the next [`LocalStack::run`] makes sure run.
    pub fn set_workers(&mut self, workers: u16) {
        self.settings.workers = workers;
    }

    fn say(&mut self, message: &str) {
        let _ = writeln!(self.log, "stack: {message}");
    }

    /// Starts what is not running and waits until every component is healthy.
    pub fn run(&mut self) -> Result<Summary, StackError> {
        self.settings.ports.check_room(self.settings.workers)?;
        let dir = RunDir::create(&self.settings.run_dir)?;
        let _lock = dir.lock()?;
        self.build()?;
        self.check_binaries(&BINARIES)?;
        self.sweep_stale(&dir);
        self.check_same_settings(&dir)?;
        // Before anything starts, so that a taken port fails the run without leaving half
        // a stack behind. Only names and ports matter here, not the broker's binary.
        for component in self.components(Path::new("tansu")).iter().flatten() {
            if dir.running(&component.name).is_none() {
                self.require_free_port(component)?;
            }
        }
        if let Some(cluster) = self.ensure_postgres()? {
            // So that `stop` stops what `run` started, and leaves a server that was
            // running before alone.
            let marker = dir.postgres_marker();
            fs::write(&marker, format!("{cluster}\n")).map_err(|e| StackError::io(&marker, e))?;
        }
        let tansu = self.install_tansu()?;
        let [before_api, api, workers] = self.components(&tansu);
        // The API after the broker and the mocks, and before the workers: it applies the
        // migrations and creates the topics, so the workers do not race it for them.
        for group in [before_api, api, workers] {
            for component in &group {
                self.ensure_started(&dir, component)?;
            }
            for component in &group {
                self.wait_healthy(&dir, component)?;
            }
        }
        self.ensure_token(&dir)?;
        Ok(self.summary(&dir))
    }

    /// Stops what `run` started from this RUN_DIR, and the PostgreSQL cluster it had to
    /// start.
    pub fn stop(&mut self) -> Result<(), StackError> {
        let Some(dir) = RunDir::existing(&self.settings.run_dir) else {
            let message = format!(
                "nothing to stop: {} does not exist",
                self.settings.run_dir.display()
            );
            self.say(&message);
            return Ok(());
        };
        let _lock = dir.lock()?;
        let names = dir.names();
        let (first, second): (Vec<String>, Vec<String>) = names
            .iter()
            .filter(|name| !name.starts_with("mock-") && *name != "broker")
            .cloned()
            .partition(|name| name.starts_with("worker-") || name == "api");
        let services: Vec<String> = names
            .iter()
            .filter(|name| name.starts_with("mock-") || *name == "broker")
            .cloned()
            .collect();
        // Workers and the API first, while the services, the broker and the database
        // they finish their work against are still up; then anything else a future
        // version of `run` started.
        self.stop_group(&dir, &first);
        self.stop_group(&dir, &services);
        self.stop_group(&dir, &second);
        self.stop_postgres_if_started(&dir);
        let left: Vec<String> = dir
            .names()
            .into_iter()
            .filter(|name| dir.running(name).is_some())
            .collect();
        if !left.is_empty() {
            return Err(StackError::DidNotStop(left.join(", ")));
        }
        let _ = fs::remove_file(dir.state_file());
        let message = format!("stopped; logs are kept in {}/", dir.logs().display());
        self.say(&message);
        Ok(())
    }

    /// What runs from this RUN_DIR.
    pub fn status(&self) -> Status {
        let run_dir = self.settings.run_dir.clone();
        let Some(dir) = RunDir::existing(&run_dir).filter(|dir| dir.path().join("pids").is_dir())
        else {
            return Status {
                run_dir,
                components: Vec::new(),
                settings: None,
                postgres: None,
            };
        };
        Status {
            components: dir
                .names()
                .into_iter()
                .map(|name| {
                    let running = dir.running(&name);
                    let log = dir.log_file(&name);
                    (name, running, log)
                })
                .collect(),
            settings: fs::read_to_string(dir.state_file()).ok(),
            postgres: fs::read_to_string(dir.postgres_marker())
                .ok()
                .map(|text| text.trim().to_owned()),
            run_dir: dir.path().to_path_buf(),
        }
    }

    /// For running the binaries by hand: PostgreSQL as `run` would have it, the database
    /// created, then (with `migrate`) migrated by `orchestrator-api migrate`. A cluster
    /// started here is not recorded for `stop`, which is about `run`'s components only.
    pub fn db(&mut self, migrate: bool) -> Result<(), StackError> {
        self.build()?;
        if migrate {
            self.check_binaries(&["orchestrator-api"])?;
        }
        self.ensure_postgres()?;
        if !migrate {
            return Ok(());
        }
        let url = self.settings.database_url.clone();
        self.say(&format!("postgres: applying the migrations to {url}"));
        let api = self.settings.bin_dir.join("orchestrator-api");
        let status = Command::new(&api)
            .arg("migrate")
            .env("DATABASE_URL", url.as_str())
            .stdin(Stdio::null())
            .status()
            .map_err(|e| StackError::io(&api, e))?;
        if status.success() {
            Ok(())
        } else {
            Err(StackError::Command(
                format!("{} migrate", api.display()),
                status.to_string(),
            ))
        }
    }

    /// A component's process, if it was started from this RUN_DIR and still runs.
    pub fn process(&self, name: &str) -> Option<Process> {
        RunDir::existing(&self.settings.run_dir)?.running(name)
    }

    /// The running workers, by number.
    pub fn workers(&self) -> Vec<(u16, Process)> {
        RunDir::existing(&self.settings.run_dir)
            .map(|dir| dir.workers())
            .unwrap_or_default()
    }

    /// `make stop` with this stack's settings that are not the defaults, to be pasted as
    /// it is. Only RUN_DIR tells `stop` which stack to stop; the ports tell the reader
    /// which one that is.
    pub fn stop_command(&self) -> String {
        let mut command = "make stop".to_owned();
        let run_dir = fs::canonicalize(&self.settings.run_dir)
            .unwrap_or_else(|_| self.settings.run_dir.clone());
        if !self.is_default_run_dir(&run_dir) {
            command.push_str(&format!(
                " RUN_DIR={}",
                shell_quoted(&run_dir.display().to_string())
            ));
        }
        let (ports, defaults) = (self.settings.ports, Ports::DEFAULT);
        for (name, port, default) in [
            ("API_PORT", ports.api, defaults.api),
            ("MOCK_BASE_PORT", ports.mock_base, defaults.mock_base),
            ("KAFKA_PORT", ports.kafka, defaults.kafka),
            (
                "WORKER_HTTP_BASE_PORT",
                ports.worker_http_base,
                defaults.worker_http_base,
            ),
        ] {
            if port != default {
                command.push_str(&format!(" {name}={port}"));
            }
        }
        command
    }

    /// Whether `run_dir` (canonical) is the repository's `.run`, which the printed
    /// commands may leave implicit.
    fn is_default_run_dir(&self, run_dir: &Path) -> bool {
        let default = fs::canonicalize(&self.settings.repo_root)
            .unwrap_or_else(|_| self.settings.repo_root.clone())
            .join(".run");
        run_dir == default
    }

    fn build(&mut self) -> Result<(), StackError> {
        let Some(build) = self.settings.build.clone() else {
            return Ok(());
        };
        self.say(&format!("building the binaries ({})", build.profile));
        let mut command = Command::new(&build.cargo);
        command.args(["build", "--workspace", "--bins"]);
        match build.profile.as_str() {
            "debug" => {}
            "release" => {
                command.arg("--release");
            }
            profile => {
                command.args(["--profile", profile]);
            }
        }
        let status = command
            .current_dir(&self.settings.repo_root)
            .status()
            .map_err(|e| StackError::io(Path::new(&build.cargo), e))?;
        if status.success() {
            Ok(())
        } else {
            Err(StackError::Command(
                "cargo build --workspace --bins".into(),
                status.to_string(),
            ))
        }
    }

    fn check_binaries(&self, binaries: &[&str]) -> Result<(), StackError> {
        for binary in binaries {
            let path = self.settings.bin_dir.join(binary);
            if !path.is_file() {
                return Err(StackError::MissingBinary(path));
            }
        }
        Ok(())
    }

    /// Drops the pid files of components that are gone (a crash, a reboot).
    fn sweep_stale(&mut self, dir: &RunDir) {
        for name in dir.names() {
            if dir.running(&name).is_some() {
                continue;
            }
            let pid = dir
                .recorded(&name)
                .map_or_else(|| "?".to_owned(), |p| p.pid.to_string());
            self.say(&format!(
                "{name}: removing the stale pid file (pid {pid} is gone)"
            ));
            dir.forget(&name);
        }
    }

    /// A stack already running from this RUN_DIR keeps its ports: starting the missing
    /// components elsewhere would make a stack whose parts do not find each other.
    fn check_same_settings(&mut self, dir: &RunDir) -> Result<(), StackError> {
        let current = self.settings.recorded();
        let state = dir.state_file();
        if let Ok(running) = fs::read_to_string(&state)
            && dir.any_running()
            && running.trim() != current.trim()
        {
            return Err(StackError::OtherSettings {
                run_dir: dir.path().to_path_buf(),
                running: running.lines().map(|line| format!("  {line}\n")).collect(),
            });
        }
        fs::write(&state, current).map_err(|e| StackError::io(&state, e))
    }

    fn install_tansu(&mut self) -> Result<PathBuf, StackError> {
        let script = self.settings.repo_root.join("scripts/install-tansu.sh");
        let output = Command::new("bash")
            .arg(&script)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| StackError::io(&script, e))?;
        if !output.status.success() {
            return Err(StackError::Command(
                script.display().to_string(),
                output.status.to_string(),
            ));
        }
        Ok(PathBuf::from(
            String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        ))
    }

    /// The components in three groups, started in this order: the broker and the mocks,
    /// the API, the workers.
    fn components(&self, tansu: &Path) -> [Vec<Component>; 3] {
        let s = &self.settings;
        let ports = s.ports;
        let bin = |name: &str| s.bin_dir.join(name);
        let kafka = format!("{HOST}:{}", ports.kafka);
        let mut before_api = vec![Component {
            name: "broker".into(),
            program: tansu.to_path_buf(),
            args: vec![
                "broker".into(),
                "--listener-url".into(),
                format!("tcp://{kafka}"),
                "--advertised-listener-url".into(),
                format!("tcp://{kafka}"),
                "--storage-engine".into(),
                "memory://tansu/".into(),
            ],
            env: Vec::new(),
            port: ports.kafka,
            port_variable: "KAFKA_PORT",
            health: Health::Listens(ports.kafka),
        }];
        before_api.extend(MOCK_SERVICES.iter().enumerate().map(|(i, service)| {
            let port = ports.mock(i);
            Component {
                name: format!("mock-{service}"),
                program: bin("mock-services"),
                args: vec![
                    "--host".into(),
                    HOST.into(),
                    "--port".into(),
                    port.to_string(),
                    "--services".into(),
                    (*service).into(),
                ],
                env: Vec::new(),
                port,
                port_variable: "MOCK_BASE_PORT",
                health: Health::Http(port, "/health"),
            }
        }));
        let service_env = vec![
            ("DATABASE_URL", s.database_url.as_str().to_owned()),
            ("KAFKA_BOOTSTRAP_SERVERS", kafka.clone()),
            (
                "REVENUE_SERVICE_URL",
                format!("http://{HOST}:{}", ports.mock(0)),
            ),
            (
                "REBATES_SERVICE_URL",
                format!("http://{HOST}:{}", ports.mock(1)),
            ),
            (
                "SPECIALTY_SERVICE_URL",
                format!("http://{HOST}:{}", ports.mock(2)),
            ),
            ("RUST_LOG", s.rust_log.clone()),
            // Log files, not a terminal: no colour escapes.
            ("NO_COLOR", "1".into()),
        ];
        let mut service_env = service_env;
        service_env.extend(s.service_env.iter().cloned());
        let mut api_env = service_env.clone();
        api_env.extend([
            ("USE_KAFKA", "true".to_owned()),
            ("API_HOST", s.api_host.clone()),
            ("API_PORT", ports.api.to_string()),
        ]);
        api_env.extend(s.api_env.iter().cloned());
        let api = vec![Component {
            name: "api".into(),
            program: bin("orchestrator-api"),
            args: Vec::new(),
            env: api_env,
            port: ports.api,
            port_variable: "API_PORT",
            health: Health::Ready(ports.api),
        }];
        let workers = (1..=s.workers)
            .map(|n| {
                let port = ports.worker(n);
                let mut env = service_env.clone();
                env.extend([
                    ("WORKER_ID", format!("local-worker-{n}")),
                    ("WORKER_HTTP_HOST", HOST.to_owned()),
                    ("WORKER_HTTP_PORT", port.to_string()),
                ]);
                Component {
                    name: format!("worker-{n}"),
                    program: bin("orchestrator-worker"),
                    args: Vec::new(),
                    env,
                    port,
                    port_variable: "WORKER_HTTP_BASE_PORT",
                    health: Health::Ready(port),
                }
            })
            .collect();
        [before_api, api, workers]
    }

    fn require_free_port(&self, component: &Component) -> Result<(), StackError> {
        if health::listens(component.port) {
            return Err(StackError::PortTaken {
                component: component.name.clone(),
                port: component.port,
                variable: component.port_variable,
            });
        }
        Ok(())
    }

    /// Returns the cluster it had to start, if any.
    fn ensure_postgres(&mut self) -> Result<Option<Cluster>, StackError> {
        let url = self.settings.database_url.clone();
        let (host, port) = (url.host().to_owned(), url.port());
        let mut started = None;
        if postgres::answers(&url) {
            self.say(&format!("postgres: answers at {host}:{port}, using it"));
        } else if url.is_local_default_server() {
            self.say(&format!(
                "postgres: nothing answers at {host}:{port}, starting the local cluster"
            ));
            let cluster = postgres::start_local(&self.settings.repo_root)?;
            if !postgres::answers(&url) {
                return Err(StackError::Postgres(format!(
                    "started cluster {}/{}, but {url} does not answer",
                    cluster.version, cluster.name
                )));
            }
            started = Some(cluster);
        } else {
            return Err(StackError::Postgres(format!(
                "{url} does not answer (only a local server on port 5432 is started automatically)"
            )));
        }
        postgres::ensure_psql(&self.settings.repo_root)?;
        postgres::create_database(&url)?;
        Ok(started)
    }

    fn stop_postgres_if_started(&mut self, dir: &RunDir) {
        let marker = dir.postgres_marker();
        let Some(cluster) = fs::read_to_string(&marker)
            .ok()
            .and_then(|text| Cluster::parse(&text))
        else {
            return;
        };
        self.say(&format!(
            "postgres: stopping cluster {}/{}, which 'run' started",
            cluster.version, cluster.name
        ));
        if !cluster.stop() {
            self.say("postgres: pg_ctlcluster stop failed (already stopped?)");
        }
        let _ = fs::remove_file(&marker);
    }

    /// A component that runs is left alone, unless its executable was replaced since it
    /// started (a rebuild): then it is restarted, or it would go on running the old code.
    fn ensure_started(&mut self, dir: &RunDir, component: &Component) -> Result<(), StackError> {
        let name = &component.name;
        if let Some(process) = dir.running(name) {
            let built = fs::metadata(&component.program).and_then(|m| m.modified());
            let rebuilt = match (built, dir.started_at(name)) {
                (Ok(built), Some(started)) => built > started,
                _ => false,
            };
            if !rebuilt {
                self.say(&format!("{name}: already running (pid {})", process.pid));
                return Ok(());
            }
            self.say(&format!(
                "{name}: {} is newer than the running process (pid {}), restarting it",
                component.program.display(),
                process.pid
            ));
            self.stop_group(dir, std::slice::from_ref(name));
        }
        self.require_free_port(component)?;
        self.start(dir, component)
    }

    /// Runs the component in a process group of its own (Ctrl-C in the terminal that ran
    /// `make run` must not reach it), its output to its log.
    fn start(&mut self, dir: &RunDir, component: &Component) -> Result<(), StackError> {
        let log_path = dir.log_file(&component.name);
        let mut log = File::create(&log_path).map_err(|e| StackError::io(&log_path, e))?;
        let command_line: Vec<String> = std::iter::once(component.program.display().to_string())
            .chain(component.args.iter().cloned())
            .collect();
        writeln!(
            log,
            "=== {} started {}: {}",
            component.name,
            chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ"),
            command_line.join(" ")
        )
        .map_err(|e| StackError::io(&log_path, e))?;
        let stderr = log.try_clone().map_err(|e| StackError::io(&log_path, e))?;
        let child = Command::new(&component.program)
            .args(&component.args)
            .envs(component.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .process_group(0)
            .spawn()
            .map_err(|e| StackError::io(&component.program, e))?;
        // The start time is set at fork and survives the exec, so reading it now is
        // exact. A process already gone reads as start time 0, which never runs.
        let process = Process::current(child.id()).unwrap_or(Process {
            pid: child.id(),
            start_time: 0,
        });
        self.children.push(child);
        dir.record(&component.name, &process)?;
        self.say(&format!(
            "{}: started (pid {}), log {}",
            component.name,
            process.pid,
            log_path.display()
        ));
        Ok(())
    }

    /// Polls the component's health until it is healthy, it exits, or the start timeout
    /// passes; the last two fail the run with the end of its log.
    fn wait_healthy(&mut self, dir: &RunDir, component: &Component) -> Result<(), StackError> {
        let deadline = Instant::now() + self.settings.start_timeout;
        loop {
            let Some(process) = dir.running(&component.name) else {
                return Err(self.not_healthy(dir, component, "exited before it was healthy"));
            };
            let seen = match component.health.check() {
                Ok(()) => return Ok(()),
                Err(seen) => seen,
            };
            if Instant::now() >= deadline {
                let reason = format!(
                    "not healthy within {} s (pid {}; {seen})",
                    self.settings.start_timeout.as_secs(),
                    process.pid
                );
                return Err(self.not_healthy(dir, component, &reason));
            }
            self.reap();
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    fn not_healthy(&self, dir: &RunDir, component: &Component, reason: &str) -> StackError {
        let log = dir.log_file(&component.name);
        StackError::NotHealthy {
            component: component.name.clone(),
            reason: reason.to_owned(),
            excerpt: fs::read_to_string(&log)
                .map(|text| log_excerpt(&text))
                .unwrap_or_default(),
            log,
            stop_command: self.stop_command(),
        }
    }

    /// SIGTERM to each component that runs, up to the stop timeout for all of them, then
    /// SIGKILL to those left. Their pid files go once they are gone.
    fn stop_group(&mut self, dir: &RunDir, names: &[String]) {
        let mut stopping = Vec::new();
        for name in names {
            match dir.running(name) {
                Some(process) => {
                    self.say(&format!("{name}: stopping (pid {})", process.pid));
                    process.signal(Signal::SIGTERM);
                    stopping.push((name.clone(), process));
                }
                None => dir.forget(name),
            }
        }
        if stopping.is_empty() {
            return;
        }
        if !self.wait_gone(&stopping, self.settings.stop_timeout) {
            for (name, process) in &stopping {
                if process.is_alive() {
                    let message = format!(
                        "{name}: still running after {} s, sending SIGKILL",
                        self.settings.stop_timeout.as_secs()
                    );
                    self.say(&message);
                    process.signal(Signal::SIGKILL);
                }
            }
            self.wait_gone(&stopping, KILL_TIMEOUT);
        }
        for (name, process) in &stopping {
            if process.is_alive() {
                self.say(&format!("{name}: pid {} did not stop", process.pid));
            } else {
                dir.forget(name);
            }
        }
    }

    /// Whether all of `processes` were gone within `timeout`.
    fn wait_gone(&mut self, processes: &[(String, Process)], timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            self.reap();
            if processes.iter().all(|(_, process)| !process.is_alive()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Collects the exit status of the components this value started that exited.
    fn reap(&mut self) {
        self.children
            .retain_mut(|child| matches!(child.try_wait(), Ok(None)));
    }

    /// A development token in `$RUN_DIR/token` (mode 0600) that the running API
    /// accepts: the one there if it still works, else a new one (every scope, tenant
    /// `default`) made with `orchestrator-api token create`. Its secret is never printed.
    fn ensure_token(&mut self, dir: &RunDir) -> Result<(), StackError> {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};

        let path = dir.token_file();
        let api = self.settings.ports.api;
        if let Ok(token) = fs::read_to_string(&path)
            && health::http_status_as(api, "/api/me", Some(token.trim())) == Some(200)
        {
            return Ok(());
        }
        let token = create_token(
            &self.settings.bin_dir.join("orchestrator-api"),
            self.settings.database_url.as_str(),
            "make run",
        )?;
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| StackError::io(&path, e))?;
        // An existing file keeps its mode through open(): set it.
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .and_then(|()| writeln!(file, "{token}"))
            .map_err(|e| StackError::io(&path, e))?;
        self.say(&format!(
            "created a development token (every scope, tenant default) in {}",
            path.display()
        ));
        Ok(())
    }

    /// The token file as the summary names it: relative to the repository when it is
    /// the default RUN_DIR's (the quick start runs from there), else absolute.
    fn token_path_shown(&self, dir: &RunDir) -> String {
        let run_dir = fs::canonicalize(dir.path()).unwrap_or_else(|_| dir.path().to_path_buf());
        if self.is_default_run_dir(&run_dir) {
            ".run/token".to_owned()
        } else {
            shell_quoted(&run_dir.join("token").display().to_string())
        }
    }

    fn summary(&self, dir: &RunDir) -> Summary {
        let workers = self.settings.workers;
        // Workers of an earlier run with a larger WORKERS keep running until `stop`.
        let mut also_running: Vec<u16> = dir
            .names()
            .iter()
            .filter_map(|name| name.strip_prefix("worker-")?.parse().ok())
            .filter(|n| *n > workers)
            .collect();
        also_running.sort_unstable();
        Summary {
            workers,
            ports: self.settings.ports,
            database_url: self.settings.database_url.clone(),
            also_running,
            logs: dir.logs(),
            token_file: self.token_path_shown(dir),
            stop_command: self.stop_command(),
        }
    }
}

#[cfg(test)]
mod tests;
