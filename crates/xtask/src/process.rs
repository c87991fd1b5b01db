//! A process named by its pid *and* its start time, so that a pid the kernel has given to
//! another process since is never taken for it, nor signalled.

use std::fs;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A process: its pid and its start time (field 22 of `/proc/PID/stat`, clock ticks
/// since boot), which is set at fork and survives exec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Process {
    pub pid: u32,
    pub start_time: u64,
}

/// The fields of `/proc/PID/stat` from the state on (field 3): the command name before
/// them may hold spaces and parentheses, so the line is split after the last `)`.
pub fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(") ")?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// Field 22, the start time, is the 20th after the command name.
const START_TIME: usize = 19;

impl Process {
    /// The process that runs as `pid` now, whatever its start time.
    pub fn current(pid: u32) -> Option<Process> {
        let fields = stat_fields(pid)?;
        Some(Process {
            pid,
            start_time: fields.get(START_TIME)?.parse().ok()?,
        })
    }

    /// The same process still runs. A zombie counts as gone: it holds no port any more,
    /// and where PID 1 does not reap orphans it would never disappear.
    pub fn is_alive(&self) -> bool {
        stat_fields(self.pid).is_some_and(|fields| {
            fields
                .first()
                .is_some_and(|state| state != "Z" && state != "X")
                && fields.get(START_TIME).and_then(|s| s.parse().ok()) == Some(self.start_time)
        })
    }

    /// Sends `signal` if this very process still runs; whether it was sent.
    pub fn signal(&self, signal: Signal) -> bool {
        let Ok(pid) = i32::try_from(self.pid) else {
            return false;
        };
        // The window between this check and the kill is a few microseconds; for the pid
        // to be reused in it, the process must exit and the kernel must go through every
        // other pid first.
        self.is_alive() && kill(Pid::from_raw(pid), signal).is_ok()
    }

    /// The text of a pid file: `PID STARTTIME`.
    pub fn to_pid_file(&self) -> String {
        format!("{} {}\n", self.pid, self.start_time)
    }

    /// Reads `PID STARTTIME`; `None` for anything else.
    pub fn from_pid_file(text: &str) -> Option<Process> {
        let mut words = text.split_whitespace();
        Some(Process {
            pid: words.next()?.parse().ok()?,
            start_time: words.next()?.parse().ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn this_process_is_alive_and_another_start_time_is_not() {
        let me = Process::current(std::process::id()).expect("reading /proc/self");
        assert!(me.is_alive());
        let impostor = Process {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(!impostor.is_alive());
        assert!(
            !impostor.signal(Signal::SIGTERM),
            "a process with another start time must not be signalled"
        );
    }

    #[test]
    fn a_pid_file_round_trips() {
        let process = Process {
            pid: 42,
            start_time: 123_456,
        };
        assert_eq!(
            Process::from_pid_file(&process.to_pid_file()),
            Some(process)
        );
        assert_eq!(Process::from_pid_file("42"), None);
        assert_eq!(Process::from_pid_file("x 1"), None);
    }

    #[test]
    fn a_terminated_process_is_gone_even_as_a_zombie() {
        let mut child = Command::new("sleep")
            .arg("60")
            .stdout(Stdio::null())
            .spawn()
            .expect("starting sleep");
        let process = Process::current(child.id()).expect("the child runs");
        assert!(process.signal(Signal::SIGTERM));
        // Not reaped on purpose: a zombie must count as gone.
        let deadline = Instant::now() + Duration::from_secs(10);
        while process.is_alive() {
            assert!(Instant::now() < deadline, "sleep survived SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait().expect("reaping sleep");
    }
}
