//! The soak's settings: flags, each with an environment variable.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use xtask::DatabaseUrl;

/// Runs the orchestrator for a long time at a steady share of its measured capacity,
/// with retention set to a few minutes, and reports every minute the throughput, the
/// p99 latencies, each process's RSS and the database's size (`make soak`). Passes when
/// every process's RSS is flat after the warm-up, the database's size is bounded, the
/// workers keep up, nothing fails and nothing is lost.
///
/// PostgreSQL is a cluster of the soak's own (`scripts/soak-postgres.sh`, autovacuum
/// on), created at the start and removed at the end, unless `--database-url` names a
/// server (whose autovacuum must be on). Writes `soak.json`, `soak.md` and `soak.svg`
/// to the output folder.
#[derive(Debug, Clone, Parser)]
#[command(name = "orchestrator-soak", version)]
pub struct SoakConfig {
    /// Length of the soak after the capacity measurement, minutes.
    #[arg(long, env = "SOAK_MINUTES", default_value_t = 30.0)]
    pub minutes: f64,

    /// The first minutes, left out of the flatness checks (caches, pools, the table
    /// reaching its retained size).
    #[arg(long, env = "SOAK_WARMUP_MINUTES", default_value_t = 10.0)]
    pub warmup_minutes: f64,

    /// Seconds between two samples.
    #[arg(long, env = "SOAK_SAMPLE_SECS", default_value_t = 60)]
    pub sample_secs: u64,

    /// Submission rate, tasks/s; by default `--capacity-share` of the capacity measured
    /// first.
    #[arg(long, env = "SOAK_RATE")]
    pub rate: Option<u32>,

    /// Share of the measured capacity the soak submits at.
    #[arg(long, default_value_t = 0.7)]
    pub capacity_share: f64,

    /// Tasks of the capacity measurement (submitted by 64 connections as fast as the API
    /// takes them, timed until the workers have finished them).
    #[arg(long, default_value_t = 20_000)]
    pub capacity_tasks: u64,

    /// The API's RETENTION: finished tasks older than this are removed.
    #[arg(long, env = "SOAK_RETENTION", default_value = "3m", value_parser = retention)]
    pub retention: String,

    /// The API's RETENTION_INTERVAL_SECS.
    #[arg(long, default_value_t = 20)]
    pub retention_interval_secs: u64,

    /// Workers of the stack.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,

    /// A PostgreSQL database to soak against instead of a cluster of the soak's own; it
    /// is DROPPED and created empty first. Its server must run autovacuum.
    #[arg(long, env = "SOAK_DATABASE_URL")]
    pub database_url: Option<DatabaseUrl>,

    /// Name of the soak's own PostgreSQL cluster (`pg_lsclusters` lists it while the
    /// soak runs; `scripts/soak-postgres.sh stop NAME` removes one a killed soak left).
    #[arg(long, default_value = "orchestrator_soak", value_parser = cluster_name)]
    pub cluster_name: String,

    /// Where the stack's binaries are (default: the folder of this binary). The soak
    /// never builds: `make soak` builds first.
    #[arg(long, env = "BENCH_BIN_DIR")]
    pub bin_dir: Option<PathBuf>,

    /// The repository (for its `scripts/`); found from the working directory by default.
    #[arg(long, env = "BENCH_REPO_ROOT")]
    pub repo_root: Option<PathBuf>,

    /// Where the reports go (default `<repository>/target/soak`).
    #[arg(long, env = "SOAK_OUTPUT_DIR")]
    pub output_dir: Option<PathBuf>,

    /// RUN_DIR of the started stack (default `<output>/run`).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,

    /// Most submissions in flight.
    #[arg(long, default_value_t = 4096)]
    pub max_in_flight: usize,

    /// A short run (a minute, a sample every 10 s, retention 30 s) that checks the soak
    /// works, not the figures: the flatness checks are reported but not judged.
    #[arg(long)]
    pub smoke: bool,

    /// The task topic (for the partition leases).
    #[arg(long, env = "KAFKA_TOPIC", default_value = "orchestrator-events")]
    pub topic: String,
}

/// A cluster name Debian's tools take, and that is safe in a path.
fn cluster_name(name: &str) -> Result<String, String> {
    let valid = !name.is_empty()
        && name.len() <= 40
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if valid {
        Ok(name.to_owned())
    } else {
        Err("lower-case letters, digits and _ only, at most 40".into())
    }
}

/// A RETENTION the API takes.
fn retention(text: &str) -> Result<String, String> {
    orchestrator_core::retention::RetentionPeriod::parse(text)
        .map(|_| text.to_owned())
        .map_err(|e| e.to_string())
}

/// The sizes of one soak, after `--smoke` shrank them.
#[derive(Debug, Clone)]
pub struct SoakPlan {
    pub duration: Duration,
    pub warmup: Duration,
    pub sample: Duration,
    pub capacity_tasks: u64,
    pub capacity_share: f64,
    pub rate: Option<u32>,
    pub retention: String,
    pub retention_interval_secs: u64,
    pub workers: usize,
    pub max_in_flight: usize,
    /// Whether the flatness and keeping-up checks decide the verdict.
    pub judge_figures: bool,
}

impl SoakConfig {
    pub fn plan(&self) -> SoakPlan {
        let minutes = |m: f64| Duration::from_secs_f64((m * 60.0).max(1.0));
        let mut plan = SoakPlan {
            duration: minutes(self.minutes),
            warmup: minutes(self.warmup_minutes),
            sample: Duration::from_secs(self.sample_secs.max(1)),
            capacity_tasks: self.capacity_tasks.max(1),
            capacity_share: self.capacity_share.clamp(0.01, 1.0),
            rate: self.rate.filter(|r| *r > 0),
            retention: self.retention.clone(),
            retention_interval_secs: self.retention_interval_secs.max(1),
            workers: self.workers.max(1),
            max_in_flight: self.max_in_flight.max(1),
            judge_figures: true,
        };
        if self.smoke {
            plan.duration = Duration::from_secs(60);
            plan.warmup = Duration::from_secs(20);
            plan.sample = Duration::from_secs(10);
            plan.capacity_tasks = 300;
            plan.rate = Some(plan.rate.unwrap_or(40).min(40));
            plan.retention = "30s".into();
            plan.retention_interval_secs = 5;
            plan.judge_figures = false;
        }
        plan
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn verify_cli() {
        SoakConfig::command().debug_assert();
    }

    #[test]
    fn the_default_is_half_an_hour_at_seventy_percent() {
        let plan = SoakConfig::parse_from(["orchestrator-soak"]).plan();
        assert_eq!(plan.duration, Duration::from_secs(1800));
        assert_eq!(plan.warmup, Duration::from_secs(600));
        assert_eq!(plan.capacity_share, 0.7);
        assert!(plan.rate.is_none());
        assert!(plan.judge_figures);
    }

    #[test]
    fn refuses_names_and_periods_the_tools_would_not_take() {
        for bad in [
            vec!["orchestrator-soak", "--cluster-name", "../x"],
            vec!["orchestrator-soak", "--retention", "soon"],
        ] {
            assert!(SoakConfig::try_parse_from(bad).is_err());
        }
    }

    #[test]
    fn smoke_is_a_minute_that_judges_no_figure() {
        let plan = SoakConfig::parse_from(["orchestrator-soak", "--smoke"]).plan();
        assert_eq!(plan.duration, Duration::from_secs(60));
        assert!(plan.sample < plan.warmup && plan.warmup < plan.duration);
        assert!(!plan.judge_figures);
        assert!(plan.rate.is_some());
    }
}
