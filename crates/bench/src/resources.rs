//! CPU time and peak memory of processes, from `/proc` (Linux only).

use std::collections::BTreeMap;
use std::fs;
use std::process::Command;
use std::sync::OnceLock;

use serde::Serialize;

pub use xtask::process::Process;
use xtask::process::stat_fields;

/// What the benchmark reads of a process, from `/proc`; `None` (or `false`) once that
/// very process is gone, so a reused pid is never measured for it.
pub trait Measured {
    /// User plus system CPU time so far, in seconds.
    fn cpu_seconds(&self) -> Option<f64>;
    /// Peak resident set size (VmHWM) in MB (10^6 bytes, as the targets say).
    fn peak_rss_mb(&self) -> Option<f64>;
    /// Resident set size now (VmRSS) in MB.
    fn rss_mb(&self) -> Option<f64>;
    /// Starts a new peak: writing 5 to `clear_refs` resets VmHWM to the current RSS
    /// (Linux 4.0+, needs permission); returns whether it did.
    fn reset_peak_rss(&self) -> bool;
}

impl Measured for Process {
    fn cpu_seconds(&self) -> Option<f64> {
        let fields = stat_fields(self.pid)?;
        if fields.get(19).and_then(|s| s.parse().ok()) != Some(self.start_time) {
            return None;
        }
        // utime and stime are fields 14 and 15 of the whole line.
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        Some((utime + stime) as f64 / clock_ticks())
    }

    fn peak_rss_mb(&self) -> Option<f64> {
        if !self.is_alive() {
            return None;
        }
        status_kib(self.pid, "VmHWM:").map(|kib| kib as f64 * 1024.0 / 1e6)
    }

    fn rss_mb(&self) -> Option<f64> {
        if !self.is_alive() {
            return None;
        }
        status_kib(self.pid, "VmRSS:").map(|kib| kib as f64 * 1024.0 / 1e6)
    }

    fn reset_peak_rss(&self) -> bool {
        fs::write(format!("/proc/{}/clear_refs", self.pid), "5").is_ok()
    }
}

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// Clock ticks per second of `/proc` CPU times (`getconf CLK_TCK`; 100 on Linux).
fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|text| text.trim().parse::<f64>().ok())
            .filter(|ticks| *ticks > 0.0)
            .unwrap_or(100.0)
    })
}

/// CPU seconds the whole machine spent busy so far (all cores; everything in
/// `/proc/stat`'s first line but idle and iowait).
pub fn machine_busy_seconds() -> Option<f64> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let values: Vec<u64> = line
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal [guest guest_nice, within user]
    let busy: u64 = values
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| v)
        .sum();
    Some(busy as f64 / clock_ticks())
}

/// The processes measured, grouped as the report shows them.
#[derive(Debug, Clone, Default)]
pub struct Groups {
    pub groups: BTreeMap<&'static str, Vec<Process>>,
}

impl Groups {
    pub fn add(&mut self, group: &'static str, process: Process) {
        let list = self.groups.entry(group).or_default();
        if !list.contains(&process) {
            list.push(process);
        }
    }

    fn cpu(&self) -> BTreeMap<&'static str, BTreeMap<u32, f64>> {
        self.groups
            .iter()
            .map(|(group, processes)| {
                let per_pid = processes
                    .iter()
                    .filter_map(|p| Some((p.pid, p.cpu_seconds()?)))
                    .collect();
                (*group, per_pid)
            })
            .collect()
    }
}

/// CPU times at a moment, to subtract from a later one.
#[derive(Debug, Clone)]
pub struct CpuSnapshot {
    per_group: BTreeMap<&'static str, BTreeMap<u32, f64>>,
    machine_busy: Option<f64>,
}

impl CpuSnapshot {
    pub fn take(groups: &Groups) -> CpuSnapshot {
        CpuSnapshot {
            per_group: groups.cpu(),
            machine_busy: machine_busy_seconds(),
        }
    }

    /// CPU seconds spent since `self` per group, measured with `groups` as they are
    /// now: a process that appeared since (a new pool connection) counts from zero, one
    /// that ended since is lost.
    pub fn until(&self, groups: &Groups) -> CpuUsage {
        let now = CpuSnapshot::take(groups);
        let mut per_group = BTreeMap::new();
        for (group, pids) in &now.per_group {
            let before = self.per_group.get(group);
            let spent: f64 = pids
                .iter()
                .map(|(pid, seconds)| {
                    seconds - before.and_then(|b| b.get(pid)).copied().unwrap_or(0.0)
                })
                .map(|d| d.max(0.0))
                .sum();
            per_group.insert((*group).to_owned(), spent);
        }
        let measured: f64 = per_group.values().sum();
        let machine = match (self.machine_busy, now.machine_busy) {
            (Some(a), Some(b)) => Some((b - a).max(0.0)),
            _ => None,
        };
        CpuUsage {
            other_seconds: machine.map(|m| (m - measured).max(0.0)),
            machine_seconds: machine,
            per_group,
        }
    }
}

/// CPU seconds spent over a phase.
#[derive(Debug, Clone, Serialize)]
pub struct CpuUsage {
    /// Per group (api, workers, postgres, broker, mocks, bench).
    pub per_group: BTreeMap<String, f64>,
    /// The whole machine, all processes.
    pub machine_seconds: Option<f64>,
    /// What processes outside the groups spent (other work on the machine).
    pub other_seconds: Option<f64>,
}

impl CpuUsage {
    /// The stack's own CPU (every group but the load generator).
    pub fn stack_seconds(&self) -> f64 {
        self.per_group
            .iter()
            .filter(|(group, _)| group.as_str() != "bench")
            .map(|(_, seconds)| seconds)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_process() {
        let me = Process::current(std::process::id()).expect("this process");
        assert!(me.is_alive());
        // Burn a little CPU so the reading is positive.
        let mut x = 0_u64;
        for i in 0..5_000_000_u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(me.cpu_seconds().expect("cpu time") >= 0.0);
        assert!(me.peak_rss_mb().expect("VmHWM") > 0.0);
        assert!(me.rss_mb().expect("VmRSS") <= me.peak_rss_mb().expect("VmHWM"));
        assert!(machine_busy_seconds().expect("/proc/stat") > 0.0);
    }

    #[test]
    fn a_reused_pid_is_not_the_same_process() {
        let me = Process::current(std::process::id()).expect("this process");
        let other = Process {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(!other.is_alive());
        assert!(other.cpu_seconds().is_none());
    }

    #[test]
    fn usage_subtracts_and_groups() {
        let me = Process::current(std::process::id()).expect("this process");
        let mut groups = Groups::default();
        groups.add("bench", me);
        groups.add("bench", me);
        assert_eq!(groups.groups["bench"].len(), 1);
        let before = CpuSnapshot::take(&groups);
        let usage = before.until(&groups);
        assert!(usage.per_group["bench"] >= 0.0);
        assert_eq!(usage.stack_seconds(), 0.0);
    }
}
