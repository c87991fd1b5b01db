//! The stack under test: started with `scripts/stack.sh` (own RUN_DIR, ports and
//! database) or one already running, and its processes found from RUN_DIR's pid files.

use std::collections::hash_map::RandomState;
use std::fs;
use std::hash::BuildHasher as _;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::BenchError;
use crate::resources::Process;

/// The ports `make run` uses by default: a started stack never takes them.
const DEFAULT_PORTS: [u16; 9] = [8000, 8001, 8002, 8003, 9092, 9000, 9001, 9002, 5432];
/// Seconds one component may take to come up (the script's START_TIMEOUT).
const START_TIMEOUT_SECS: &str = "120";
/// Seconds a component may take to stop gracefully (the script's STOP_TIMEOUT).
const STOP_TIMEOUT_SECS: &str = "40";
/// How long a stopped worker may take to exit after SIGTERM.
const WORKER_STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// `scripts/stack.sh` reads these from the environment; a caller's value (a make
/// calling the benchmark, a log filter, a profile) must not leak into the stack.
const SCRUBBED_ENV: [&str; 8] = [
    "MAKEFLAGS",
    "MFLAGS",
    "MAKELEVEL",
    "PROFILE",
    "API_HOST",
    "WORKERS",
    "USE_KAFKA",
    "CARGO_TARGET_DIR",
];

/// The ports of a stack: API, three mock services from `mock_base`, the broker, and the
/// workers' health ports from `worker_http_base`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub api: u16,
    pub mock_base: u16,
    pub kafka: u16,
    pub worker_http_base: u16,
}

impl Ports {
    /// Ports from `base` on; `workers` health ports follow the broker.
    fn from_base(base: u16) -> Ports {
        Ports {
            api: base,
            mock_base: base + 1,
            kafka: base + 4,
            worker_http_base: base + 5,
        }
    }

    fn all(&self, workers: usize) -> Vec<u16> {
        let mut all = vec![self.api, self.kafka];
        all.extend((0..3).map(|i| self.mock_base + i));
        all.extend((0..workers).filter_map(|i| {
            u16::try_from(i)
                .ok()
                .and_then(|i| self.worker_http_base.checked_add(i))
        }));
        all
    }

    fn free(&self, workers: usize) -> bool {
        self.all(workers).iter().all(|port| {
            !DEFAULT_PORTS.contains(port) && TcpListener::bind((Ipv4Addr::LOCALHOST, *port)).is_ok()
        })
    }

    /// A block of free ports from `base`, or (base 0) a random free block between 20000
    /// and 32000: below the kernel's ephemeral range, where port-0 listeners land.
    pub fn pick(base: u16, workers: usize) -> Result<Ports, BenchError> {
        if base != 0 {
            let ports = Ports::from_base(base);
            return if ports.free(workers) {
                Ok(ports)
            } else {
                Err(BenchError::Stack(format!(
                    "ports from {base} on are taken (or include a default one); pick another --base-port"
                )))
            };
        }
        for attempt in 0..200_u32 {
            let random = RandomState::new().hash_one((Instant::now(), attempt));
            let base = 20_000 + u16::try_from(random % 12_000).unwrap_or(0);
            let ports = Ports::from_base(base);
            if ports.free(workers) {
                return Ok(ports);
            }
        }
        Err(BenchError::Stack("no block of free ports found".into()))
    }
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
    /// Set when this run started the stack: how to run `scripts/stack.sh` again.
    script: Option<Script>,
    keep: bool,
    stopped: bool,
}

#[derive(Debug)]
struct Script {
    repo_root: PathBuf,
    env: Vec<(String, String)>,
    /// The output of each script call, for failures.
    log_dir: PathBuf,
    calls: usize,
}

/// Where a started stack lives and what it runs.
#[derive(Debug, Clone)]
pub struct StartSettings {
    pub repo_root: PathBuf,
    pub run_dir: PathBuf,
    pub bin_dir: PathBuf,
    pub database_url: String,
    pub ports: Ports,
    pub workers: usize,
    pub keep: bool,
}

impl Stack {
    /// A stack that runs already.
    pub fn running(endpoints: Endpoints, run_dir: Option<PathBuf>) -> Stack {
        Stack {
            endpoints,
            run_dir,
            script: None,
            keep: true,
            stopped: false,
        }
    }

    /// Starts a stack with `scripts/stack.sh run` and waits until it is healthy (the
    /// script waits). Binaries are taken as built (SKIP_BUILD=1).
    pub fn start(settings: &StartSettings) -> Result<Stack, BenchError> {
        let ports = settings.ports;
        let log_dir = settings.run_dir.join("bench-calls");
        fs::create_dir_all(&log_dir).map_err(|e| BenchError::io(&log_dir, e))?;
        let env = vec![
            ("RUN_DIR", settings.run_dir.display().to_string()),
            ("DATABASE_URL", settings.database_url.clone()),
            ("API_PORT", ports.api.to_string()),
            ("MOCK_BASE_PORT", ports.mock_base.to_string()),
            ("KAFKA_PORT", ports.kafka.to_string()),
            ("WORKER_HTTP_BASE_PORT", ports.worker_http_base.to_string()),
            ("WORKERS", settings.workers.to_string()),
            ("SKIP_BUILD", "1".to_owned()),
            ("BIN_DIR", settings.bin_dir.display().to_string()),
            ("START_TIMEOUT", START_TIMEOUT_SECS.to_owned()),
            ("STOP_TIMEOUT", STOP_TIMEOUT_SECS.to_owned()),
        ];
        let host = "127.0.0.1";
        let mut stack = Stack {
            endpoints: Endpoints {
                api: format!("http://{host}:{}", ports.api),
                mocks: (0..3)
                    .map(|i| format!("http://{host}:{}", ports.mock_base + i))
                    .collect(),
                kafka: format!("{host}:{}", ports.kafka),
            },
            run_dir: Some(settings.run_dir.clone()),
            script: Some(Script {
                repo_root: settings.repo_root.clone(),
                env: env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
                log_dir,
                calls: 0,
            }),
            keep: settings.keep,
            stopped: false,
        };
        stack.script("run")?;
        Ok(stack)
    }

    /// Whether this run started the stack (and so may stop and start its workers).
    pub fn controllable(&self) -> bool {
        self.script.is_some()
    }

    /// Runs `scripts/stack.sh COMMAND` with the stack's settings. Output goes to a file,
    /// not a pipe: the components it starts outlive it, and a pipe they inherited would
    /// hold a read open until they exit.
    fn script(&mut self, command: &str) -> Result<String, BenchError> {
        let Some(script) = self.script.as_mut() else {
            return Err(BenchError::Stack(format!(
                "stack.sh {command}: the stack was not started by this run"
            )));
        };
        script.calls += 1;
        let out_path = script
            .log_dir
            .join(format!("{}-{command}.out", script.calls));
        let out = fs::File::create(&out_path).map_err(|e| BenchError::io(&out_path, e))?;
        let err = out.try_clone().map_err(|e| BenchError::io(&out_path, e))?;
        let mut cmd = Command::new("bash");
        cmd.arg(script.repo_root.join("scripts/stack.sh"))
            .arg(command)
            .current_dir(&script.repo_root)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        for var in SCRUBBED_ENV {
            cmd.env_remove(var);
        }
        cmd.envs(script.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let status = cmd
            .status()
            .map_err(|e| BenchError::io(Path::new("scripts/stack.sh"), e))?;
        let output = fs::read_to_string(&out_path).unwrap_or_default();
        if status.success() {
            Ok(output)
        } else {
            Err(BenchError::Stack(format!(
                "scripts/stack.sh {command} failed ({status}):\n{output}"
            )))
        }
    }

    /// Starts the workers that are not running, up to `workers` (`stack.sh run` with
    /// WORKERS set; the running components are left alone).
    pub fn start_workers(&mut self, workers: usize) -> Result<(), BenchError> {
        if let Some(script) = self.script.as_mut() {
            for (key, value) in &mut script.env {
                if key == "WORKERS" {
                    *value = workers.to_string();
                }
            }
        }
        self.script("run").map(|_| ())
    }

    /// Stops every component this run started (`stack.sh stop`), for a restart with
    /// [`Stack::start_workers`]; unlike [`Stack::stop`] the stack may be started again.
    pub fn stop_components(&mut self) -> Result<(), BenchError> {
        self.script("stop").map(|_| ())
    }

    /// Stops worker N gracefully (SIGTERM: it finishes its records, commits and releases
    /// its partitions) and waits until it exited.
    pub fn stop_worker(&self, n: usize) -> Result<(), BenchError> {
        if !self.controllable() {
            return Err(BenchError::Stack(
                "workers of a stack this run did not start are left alone".into(),
            ));
        }
        let name = format!("worker-{n}");
        let Some(process) = self.process(&name) else {
            return Ok(());
        };
        let status = Command::new("kill")
            .args(["-TERM", &process.pid.to_string()])
            .status()
            .map_err(|e| BenchError::io(Path::new("kill"), e))?;
        if !status.success() {
            return Err(BenchError::Stack(format!("kill -TERM {name}: {status}")));
        }
        let deadline = Instant::now() + WORKER_STOP_TIMEOUT;
        while process.is_alive() {
            if Instant::now() >= deadline {
                return Err(BenchError::Timeout(format!(
                    "{name} (pid {}) still runs {WORKER_STOP_TIMEOUT:?} after SIGTERM",
                    process.pid
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// A component's process from its pid file ("PID STARTTIME"), if it still runs.
    pub fn process(&self, name: &str) -> Option<Process> {
        let run_dir = self.run_dir.as_ref()?;
        let text = fs::read_to_string(run_dir.join("pids").join(format!("{name}.pid"))).ok()?;
        let mut words = text.split_whitespace();
        let process = Process {
            pid: words.next()?.parse().ok()?,
            start_time: words.next()?.parse().ok()?,
        };
        process.is_alive().then_some(process)
    }

    /// The running workers, by number.
    pub fn workers(&self) -> Vec<(usize, Process)> {
        let Some(run_dir) = self.run_dir.as_ref() else {
            return Vec::new();
        };
        let Ok(entries) = fs::read_dir(run_dir.join("pids")) else {
            return Vec::new();
        };
        let mut workers: Vec<(usize, Process)> = entries
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                let n = name
                    .strip_prefix("worker-")?
                    .strip_suffix(".pid")?
                    .parse()
                    .ok()?;
                Some((n, self.process(&format!("worker-{n}"))?))
            })
            .collect();
        workers.sort_by_key(|(n, _)| *n);
        workers
    }

    /// Stops a stack this run started (`stack.sh stop`), unless told to keep it.
    pub fn stop(&mut self) -> Result<(), BenchError> {
        if self.stopped || self.keep || self.script.is_none() {
            return Ok(());
        }
        self.stopped = true;
        self.script("stop").map(|_| ())
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
