//! `RUN_DIR`, the state of a stack: `logs/<component>.log`, `pids/<component>.pid`
//! (`PID STARTTIME`), `stack.env` (the settings of the running stack), `postgres.started`
//! (the cluster `run` had to start, which `stop` stops again) and `lock`.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use nix::fcntl::{Flock, FlockArg};

use super::StackError;
use crate::process::Process;

/// How long a second `run` or `stop` on the same RUN_DIR waits for the first.
const LOCK_TIMEOUT: Duration = Duration::from_secs(30);
const LOCK_POLL: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// Creates the folders. The path is made canonical (no `..`, no symlinked parts), so
    /// the paths printed are the plain ones.
    pub fn create(path: &Path) -> Result<RunDir, StackError> {
        for dir in [path.join("logs"), path.join("pids")] {
            fs::create_dir_all(&dir).map_err(|e| StackError::io(&dir, e))?;
        }
        let root = fs::canonicalize(path).map_err(|e| StackError::io(path, e))?;
        Ok(RunDir { root })
    }

    /// The RUN_DIR if it exists.
    pub fn existing(path: &Path) -> Option<RunDir> {
        let root = fs::canonicalize(path).ok()?;
        root.is_dir().then_some(RunDir { root })
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }

    pub fn log_file(&self, name: &str) -> PathBuf {
        self.logs().join(format!("{name}.log"))
    }

    fn pids(&self) -> PathBuf {
        self.root.join("pids")
    }

    pub fn pid_file(&self, name: &str) -> PathBuf {
        self.pids().join(format!("{name}.pid"))
    }

    /// The development token `run` creates: every scope, tenant `default`, mode 0600.
    pub fn token_file(&self) -> PathBuf {
        self.root.join("token")
    }

    pub fn state_file(&self) -> PathBuf {
        self.root.join("stack.env")
    }

    pub fn postgres_marker(&self) -> PathBuf {
        self.root.join("postgres.started")
    }

    /// One `run` or `stop` at a time per RUN_DIR; released when the value is dropped.
    /// The file is opened close-on-exec (as std opens every file), so the components
    /// started meanwhile do not hold the lock for as long as they live.
    pub fn lock(&self) -> Result<Flock<File>, StackError> {
        let path = self.root.join("lock");
        let deadline = Instant::now() + LOCK_TIMEOUT;
        let mut file = File::create(&path).map_err(|e| StackError::io(&path, e))?;
        loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => return Ok(lock),
                Err((_, errno)) if errno != nix::errno::Errno::EWOULDBLOCK => {
                    return Err(StackError::io(&path, io::Error::from(errno)));
                }
                Err((returned, _)) if Instant::now() < deadline => {
                    file = returned;
                    std::thread::sleep(LOCK_POLL);
                }
                Err(_) => return Err(StackError::Busy(self.root.clone())),
            }
        }
    }

    /// The components with a pid file, sorted by name.
    pub fn names(&self) -> Vec<String> {
        let Ok(entries) = fs::read_dir(self.pids()) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let name = entry.file_name().to_str()?.strip_suffix(".pid")?.to_owned();
                Some(name)
            })
            .collect();
        names.sort();
        names
    }

    /// What a component's pid file says, whether or not that process still runs.
    pub fn recorded(&self, name: &str) -> Option<Process> {
        Process::from_pid_file(&fs::read_to_string(self.pid_file(name)).ok()?)
    }

    /// The component's process, if it was started from here and still runs.
    pub fn running(&self, name: &str) -> Option<Process> {
        self.recorded(name).filter(Process::is_alive)
    }

    /// When the pid file was written, which is when the process started.
    pub fn started_at(&self, name: &str) -> Option<SystemTime> {
        fs::metadata(self.pid_file(name)).ok()?.modified().ok()
    }

    pub fn record(&self, name: &str, process: &Process) -> Result<(), StackError> {
        let path = self.pid_file(name);
        fs::write(&path, process.to_pid_file()).map_err(|e| StackError::io(&path, e))
    }

    pub fn forget(&self, name: &str) {
        let _ = fs::remove_file(self.pid_file(name));
    }

    /// The workers started from here that still run, by number.
    pub fn workers(&self) -> Vec<(u16, Process)> {
        let mut workers: Vec<(u16, Process)> = self
            .names()
            .iter()
            .filter_map(|name| {
                let n = name.strip_prefix("worker-")?.parse().ok()?;
                Some((n, self.running(name)?))
            })
            .collect();
        workers.sort_by_key(|(n, _)| *n);
        workers
    }

    /// Whether any component started from here still runs.
    pub fn any_running(&self) -> bool {
        self.names().iter().any(|name| self.running(name).is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_waits_for_the_first() {
        let scratch = tempfile::tempdir().expect("a scratch folder");
        let dir = RunDir::create(scratch.path()).expect("creating RUN_DIR");
        let first = dir.lock().expect("the first lock");
        let (sender, receiver) = std::sync::mpsc::channel();
        let second = {
            let dir = dir.clone();
            std::thread::spawn(move || {
                let lock = dir.lock();
                let _ = sender.send(());
                lock.is_ok()
            })
        };
        assert!(
            receiver.recv_timeout(Duration::from_millis(500)).is_err(),
            "the second lock was taken while the first was held"
        );
        drop(first);
        assert!(second.join().expect("the second locker"), "second lock");
    }

    #[test]
    fn a_pid_file_of_a_gone_process_is_recorded_but_not_running() {
        let scratch = tempfile::tempdir().expect("a scratch folder");
        let dir = RunDir::create(scratch.path()).expect("creating RUN_DIR");
        let me = Process::current(std::process::id()).expect("this process");
        dir.record("api", &me).expect("writing a pid file");
        let gone = Process {
            start_time: me.start_time + 1,
            ..me
        };
        dir.record("worker-1", &gone).expect("writing a pid file");
        assert_eq!(dir.names(), ["api", "worker-1"]);
        assert_eq!(dir.running("api"), Some(me));
        assert_eq!(dir.recorded("worker-1"), Some(gone));
        assert_eq!(dir.running("worker-1"), None);
        assert!(dir.any_running());
        dir.forget("api");
        assert!(!dir.any_running());
    }
}
