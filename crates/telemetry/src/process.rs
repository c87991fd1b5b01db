//! The process's own resources under the standard `process_*` names that Prometheus's
//! client libraries export (CPU seconds, resident and virtual memory, open and allowed
//! file descriptors, threads, start time), read from `/proc` at each scrape through the
//! `procfs` crate. Outside Linux there is nothing to read and nothing is exported.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::metrics::{count, encode_one};

/// Registered unprefixed (see [`crate::metrics::render`]): dashboards and alerts written
/// for any process read these names.
#[derive(Debug, Default)]
pub struct ProcessCollector;

/// One reading of `/proc/self`.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Reading {
    cpu_seconds: f64,
    resident_bytes: u64,
    virtual_bytes: u64,
    threads: i64,
    start_time_seconds: f64,
    open_fds: Option<u64>,
    max_fds: Option<u64>,
}

impl Reading {
    #[cfg(target_os = "linux")]
    fn now() -> Option<Self> {
        use procfs::WithCurrentSystemInfo as _;
        use procfs::process::{LimitValue, Process};

        let process = Process::myself().ok()?;
        let stat = process.stat().ok()?;
        // Precision loss only past 2^53 ticks, centuries of CPU time.
        #[allow(clippy::cast_precision_loss)]
        let ticks = procfs::ticks_per_second() as f64;
        #[allow(clippy::cast_precision_loss)]
        let boot = procfs::boot_time_secs().ok()? as f64;
        #[allow(clippy::cast_precision_loss)]
        let reading = Reading {
            cpu_seconds: (stat.utime + stat.stime) as f64 / ticks,
            resident_bytes: stat.rss_bytes().get(),
            virtual_bytes: stat.vsize,
            threads: stat.num_threads,
            start_time_seconds: boot + stat.starttime as f64 / ticks,
            open_fds: process.fd_count().ok().and_then(|n| u64::try_from(n).ok()),
            max_fds: process.limits().ok().and_then(|limits| {
                match limits.max_open_files.soft_limit {
                    LimitValue::Value(value) => Some(value),
                    LimitValue::Unlimited => None,
                }
            }),
        };
        Some(reading)
    }

    #[cfg(not(target_os = "linux"))]
    fn now() -> Option<Self> {
        None
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(reading) = Reading::now() else {
            return Ok(());
        };
        let e = &mut encoder;
        encode_one(
            e,
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
            &ConstCounter::new(reading.cpu_seconds),
        )?;
        encode_one(
            e,
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            &count(reading.resident_bytes),
        )?;
        encode_one(
            e,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            &count(reading.virtual_bytes),
        )?;
        encode_one(
            e,
            "process_threads",
            "Number of OS threads in the process.",
            &ConstGauge::new(reading.threads),
        )?;
        encode_one(
            e,
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch in seconds.",
            &ConstGauge::new(reading.start_time_seconds),
        )?;
        if let Some(open) = reading.open_fds {
            encode_one(
                e,
                "process_open_fds",
                "Number of open file descriptors.",
                &count(open),
            )?;
        }
        if let Some(max) = reading.max_fds {
            encode_one(
                e,
                "process_max_fds",
                "Maximum number of open file descriptors.",
                &count(max),
            )?;
        }
        Ok(())
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let reading = Reading::now().expect("/proc/self");
        assert!(reading.resident_bytes > 0);
        assert!(reading.threads >= 1);
        assert!(
            reading.open_fds.is_some_and(|open| open >= 3),
            "{reading:?}"
        );
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs_f64();
        // Started within the last day, and not in the future (the boot time is whole
        // seconds).
        assert!(
            reading.start_time_seconds <= now + 1.0 && reading.start_time_seconds > now - 86_400.0,
            "{reading:?}"
        );
    }
}
