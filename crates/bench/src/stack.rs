//! The stack under test: started in-process with [`xtask::LocalStack`] (what `make run`
//! runs; own RUN_DIR, ports and database), or one already running, and its processes
//! found from RUN_DIR's pid files.

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use xtask::stack::{DEFAULT_RUST_LOG, RunDir};
use xtask::{DatabaseUrl, LocalStack, Ports, StackSettings};

use crate::BenchError;
use crate::resources::Process;

/// How long one component may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a component may take to stop gracefully.
const STOP_TIMEOUT: Duration = Duration::from_secs(40);
/// How long a stopped worker may take to exit after SIGTERM.
const COMPONENT_STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// A block of free ports from `base`, or (base 0) a random free block; never one of `make
/// run`'s defaults.
pub fn pick_ports(base: u16, workers: usize) -> Result<Ports, BenchError> {
    let workers = count(workers);
    let ports = if base == 0 {
        Ports::pick_free(workers)
    } else {
        Ports::free_at(base, workers)
    };
    ports.map_err(|e| BenchError::Stack(format!("{e}; pick another --base-port")))
}

/// Where the stack's parts answer.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub api: String,
    /// revenue, rebates, specialty.
    pub mocks: Vec<String>,
    pub kafka: String,
}

/// How the benchmark reaches and controls the stack.
#[derive(Debug)]
pub struct Stack {
    pub endpoints: Endpoints,
    /// RUN_DIR, when known: the pid files.
    pub run_dir: Option<PathBuf>,
    /// Set when this run started the stack.
    local: Option<LocalStack>,
    keep: bool,
    stopped: bool,
    /// The API's environment beyond the stack's own, kept over restarts.
    base_api_env: Vec<(&'static str, String)>,
}

/// Where a started stack lives and what it runs.
#[derive(Debug, Clone)]
pub struct StartSettings {
    pub repo_root: PathBuf,
    pub run_dir: PathBuf,
    pub bin_dir: PathBuf,
    pub database_url: DatabaseUrl,
    pub ports: Ports,
    pub workers: usize,
    pub keep: bool,
    /// Added to the API's environment.
    pub api_env: Vec<(&'static str, String)>,
    /// Added to the API's and the workers' environment.
    pub service_env: Vec<(&'static str, String)>,
}

impl Stack {
    /// A stack that runs already.
    pub fn running(endpoints: Endpoints, run_dir: Option<PathBuf>) -> Stack {
        Stack {
            endpoints,
            run_dir,
            local: None,
            keep: true,
            stopped: false,
            base_api_env: Vec::new(),
        }
    }

    /// Starts a stack and waits until it is healthy. Binaries are taken as built. Its
    /// progress lines go to `<run_dir>/stack.log`, not among the benchmark's.
    pub fn start(settings: &StartSettings) -> Result<Stack, BenchError> {
        let ports = settings.ports;
        fs::create_dir_all(&settings.run_dir).map_err(|e| BenchError::io(&settings.run_dir, e))?;
        let log_path = settings.run_dir.join("stack.log");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| BenchError::io(&log_path, e))?;
        let mut stack_settings = StackSettings::new(&settings.repo_root);
        stack_settings.run_dir = settings.run_dir.clone();
        stack_settings.bin_dir = settings.bin_dir.clone();
        stack_settings.database_url = settings.database_url.clone();
        stack_settings.ports = ports;
        stack_settings.workers = count(settings.workers);
        stack_settings.api_env = settings.api_env.clone();
        stack_settings.service_env = settings.service_env.clone();
        stack_settings.start_timeout = START_TIMEOUT;
        stack_settings.stop_timeout = STOP_TIMEOUT;
        stack_settings.rust_log =
            std::env::var("RUST_LOG").unwrap_or_else(|_| DEFAULT_RUST_LOG.to_owned());
        let host = "127.0.0.1";
        let mut stack = Stack {
            endpoints: Endpoints {
                api: format!("http://{host}:{}", ports.api),
                mocks: (0..3)
                    .map(|i| format!("http://{host}:{}", ports.mock(i)))
                    .collect(),
                kafka: format!("{host}:{}", ports.kafka),
            },
            run_dir: Some(settings.run_dir.clone()),
            local: Some(LocalStack::with_log(stack_settings, Box::new(log))),
            keep: settings.keep,
            stopped: false,
            base_api_env: settings.api_env.clone(),
        };
        stack.local()?.run().map_err(stack_error)?;
        Ok(stack)
    }

    /// The API token the load is sent with: `ORCHESTRATOR_TOKEN` if set, else the one
    /// the stack's `make run` wrote to `$RUN_DIR/token` (a stack this run started has
    /// made one of its own).
    pub fn token(&self) -> Result<String, BenchError> {
        if let Ok(token) = std::env::var("ORCHESTRATOR_TOKEN")
            && !token.trim().is_empty()
        {
            return Ok(token.trim().to_owned());
        }
        let Some(run_dir) = &self.run_dir else {
            return Err(BenchError::Setup(
                "no API token: set ORCHESTRATOR_TOKEN (a token with tasks:submit and tasks:read)"
                    .into(),
            ));
        };
        let path = run_dir.join("token");
        fs::read_to_string(&path)
            .map(|token| token.trim().to_owned())
            .map_err(|e| BenchError::io(&path, e))
    }

    /// Whether this run started the stack (and so may stop and start its workers).
    pub fn controllable(&self) -> bool {
        self.local.is_some()
    }

    fn local(&mut self) -> Result<&mut LocalStack, BenchError> {
        self.local.as_mut().ok_or_else(|| {
            BenchError::Stack("the stack was not started by this run: it is left alone".into())
        })
    }

    /// Starts the workers that are not running, up to `workers` (a run with that many
    /// workers; the running components are left alone).
    pub fn start_workers(&mut self, workers: usize) -> Result<(), BenchError> {
        let local = self.local()?;
        local.set_workers(count(workers));
        local.run().map(drop).map_err(stack_error)
    }

    /// Stops every component this run started, for a restart with
    /// [`Stack::start_workers`]; unlike [`Stack::stop`] the stack may be started again.
    pub fn stop_components(&mut self) -> Result<(), BenchError> {
        self.local()?.stop().map_err(stack_error)
    }

    /// Stops worker N gracefully (SIGTERM: it finishes its records, commits and releases
    /// its partitions) and waits until it exited.
    pub fn stop_worker(&self, n: usize) -> Result<(), BenchError> {
        self.stop_component(&format!("worker-{n}"))
    }

    /// Starts the API again with `env` added to its environment (and nothing else
    /// changed: the workers that run keep running, those stopped stay stopped), and
    /// waits until it is ready.
    pub fn restart_api(&mut self, env: Vec<(&'static str, String)>) -> Result<(), BenchError> {
        self.stop_component("api")?;
        // Workers are stopped from the highest number down, so those running are 1..=n.
        let running = self.workers().len();
        let mut with_base = self.base_api_env.clone();
        with_base.extend(env);
        let local = self.local()?;
        local.set_workers(count(running));
        local.set_api_env(with_base);
        local.run().map(drop).map_err(stack_error)
    }

    /// Stops a component gracefully (SIGTERM) and waits until it exited.
    fn stop_component(&self, name: &str) -> Result<(), BenchError> {
        if !self.controllable() {
            return Err(BenchError::Stack(
                "components of a stack this run did not start are left alone".into(),
            ));
        }
        let Some(process) = self.process(name) else {
            return Ok(());
        };
        process.signal(Signal::SIGTERM);
        let deadline = Instant::now() + COMPONENT_STOP_TIMEOUT;
        while process.is_alive() {
            if Instant::now() >= deadline {
                return Err(BenchError::Timeout(format!(
                    "{name} (pid {}) still runs {COMPONENT_STOP_TIMEOUT:?} after SIGTERM",
                    process.pid
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// A component's process from its pid file, if it still runs.
    pub fn process(&self, name: &str) -> Option<Process> {
        RunDir::existing(self.run_dir.as_ref()?)?.running(name)
    }

    /// The running workers, by number.
    pub fn workers(&self) -> Vec<(usize, Process)> {
        let Some(dir) = self.run_dir.as_ref().and_then(|dir| RunDir::existing(dir)) else {
            return Vec::new();
        };
        dir.workers()
            .into_iter()
            .map(|(n, process)| (usize::from(n), process))
            .collect()
    }

    /// Stops a stack this run started, unless told to keep it.
    pub fn stop(&mut self) -> Result<(), BenchError> {
        if self.stopped || self.keep || self.local.is_none() {
            return Ok(());
        }
        self.stopped = true;
        self.stop_components()
    }
}

/// A worker count as the stack takes it; the benchmark's are far below the limit.
fn count(workers: usize) -> u16 {
    u16::try_from(workers).unwrap_or(u16::MAX)
}

fn stack_error(error: xtask::stack::StackError) -> BenchError {
    BenchError::Stack(error.to_string())
}

/// Stops what an earlier run that did not finish left running in `run_dir` (its ports
/// and database would be taken otherwise).
pub fn stop_leftover(repo_root: &std::path::Path, run_dir: &std::path::Path) {
    if !run_dir.join("pids").is_dir() {
        return;
    }
    crate::progress(&format!(
        "stopping what an earlier run left in {}",
        run_dir.display()
    ));
    let mut settings = StackSettings::new(repo_root);
    settings.run_dir = run_dir.to_path_buf();
    if let Err(error) = LocalStack::new(settings).stop() {
        crate::progress(&format!(
            "stopping the earlier stack failed ({error}); starting anyway"
        ));
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // A failed run still stops what it started.
        if let Err(error) = self.stop() {
            eprintln!("bench: stopping the stack failed: {error}");
        }
    }
}
