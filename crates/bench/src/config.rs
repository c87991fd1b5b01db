//! The benchmark's settings: flags, each with an environment variable.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use xtask::DatabaseUrl;

/// Measures the orchestrator on this machine: the accept path, end to end with one and
/// two workers and mock latencies, and the machine's ceilings (PostgreSQL written the
/// naive way, the broker, a mock service), in one run. Writes `report.json`,
/// `report.md` and `report.svg` to the output folder.
///
/// Without `--api-url` it starts a stack of its own, as `make run` does (own RUN_DIR,
/// free ports, a fresh database named by `--database-url`, which is dropped and created
/// again) and stops it at the end.
#[derive(Debug, Clone, Parser)]
#[command(name = "orchestrator-bench", version, about, long_about = None)]
pub struct BenchConfig {
    /// PostgreSQL database of the stack. When the benchmark starts the stack, this
    /// database is DROPPED and created empty first; a second one, `<name>_pgbench`, holds
    /// the naive-writes ceiling's rows and is dropped at the end. The default talks to
    /// the server on loopback without TLS (`sslmode=disable`): encryption there protects
    /// nothing and costs every process CPU; pgbench's ceilings run the same way.
    #[arg(
        long,
        env = "BENCH_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/orchestrator_bench?sslmode=disable"
    )]
    pub database_url: DatabaseUrl,

    /// Target a running stack at this API URL instead of starting one. Needs
    /// `--mock-urls` and `--kafka-bootstrap-servers`; `--run-dir` adds the resource
    /// figures. Workers are then neither stopped nor started: the accept path is measured
    /// with them running, and end to end only with the workers that run.
    #[arg(long, env = "BENCH_API_URL", requires_all = ["mock_urls", "kafka_bootstrap_servers"])]
    pub api_url: Option<String>,

    /// Base URLs of the running stack's mock services, in the order revenue, rebates,
    /// specialty (with `--api-url`).
    #[arg(long, env = "BENCH_MOCK_URLS", value_delimiter = ',')]
    pub mock_urls: Vec<String>,

    /// The running stack's broker, `host:port` (with `--api-url`).
    #[arg(long, env = "BENCH_KAFKA_BOOTSTRAP_SERVERS")]
    pub kafka_bootstrap_servers: Option<String>,

    /// RUN_DIR of the stack: where the benchmark starts its own (default
    /// `<output>/run`), or that of the running stack given by `--api-url` (for the pids).
    #[arg(long, env = "BENCH_RUN_DIR")]
    pub run_dir: Option<PathBuf>,

    /// Where the stack's binaries are (default: the folder of this binary, where cargo
    /// put them). The benchmark never builds: `make bench` builds first.
    #[arg(long, env = "BENCH_BIN_DIR")]
    pub bin_dir: Option<PathBuf>,

    /// The repository (for its `scripts/`, which install the broker and PostgreSQL);
    /// default: the first folder holding them from the working directory up, else the one
    /// this binary was built from.
    #[arg(long, env = "BENCH_REPO_ROOT")]
    pub repo_root: Option<PathBuf>,

    /// Where the reports go (default `<repository>/target/bench`).
    #[arg(long, env = "BENCH_OUTPUT_DIR")]
    pub output_dir: Option<PathBuf>,

    /// First port of the block the started stack uses (API, three mocks, broker,
    /// workers' health ports); 0 picks a free block.
    #[arg(long, env = "BENCH_BASE_PORT", default_value_t = 0)]
    pub base_port: u16,

    /// A tiny run (a few hundred tasks, about a second per phase) that checks the
    /// benchmark works, not the figures: what `make test` runs.
    #[arg(long)]
    pub smoke: bool,

    /// Leave the started stack running at the end (to look at it; `make stop
    /// RUN_DIR=...` stops it).
    #[arg(long)]
    pub keep_stack: bool,

    /// Seconds of each timed phase: the closed loop, each open-loop rate, each ceiling.
    #[arg(long, env = "BENCH_PHASE_SECS", default_value_t = 10)]
    pub phase_secs: u64,

    /// Connections of the accept path's closed loop.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,

    /// Open-loop rates of the accept path, tasks/s.
    #[arg(long, value_delimiter = ',', default_value = "250,500,1000,2000")]
    pub rates: Vec<u32>,

    /// Open-loop rate of the steady-state phase (accept and end-to-end latency with
    /// two workers processing).
    #[arg(long, default_value_t = 1000)]
    pub steady_rate: u32,

    /// Open-loop rate of each run of the auth phase (the accept path with each kind of
    /// credential).
    #[arg(long, default_value_t = 1000)]
    pub auth_rate: u32,

    /// Requests waiting (`?wait=60`) at once in the long-poll phase, one per task.
    #[arg(long, default_value_t = 1000)]
    pub long_poll_waiters: usize,

    /// Give every task of the steady and end-to-end phases a `callback_url` to a
    /// receiver this run starts on loopback, so the API signs and sends a completion
    /// webhook for each. `--e2e-callbacks=false` for a build that predates webhooks.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub e2e_callbacks: bool,

    /// Export every span of the API and the workers over OTLP/HTTP to a receiver this
    /// run starts on loopback (it decodes nothing), with a queue deep enough that none
    /// is dropped: compare runs with and without it for what tracing costs.
    #[arg(long)]
    pub export_spans: bool,

    /// Tasks submitted by each end-to-end run.
    #[arg(long, env = "BENCH_E2E_TASKS", default_value_t = 20_000)]
    pub e2e_tasks: u64,

    /// Worker counts of the end-to-end runs (the stack starts with the largest).
    #[arg(long, value_delimiter = ',', default_value = "2,1")]
    pub worker_counts: Vec<usize>,

    /// Mock latencies of the end-to-end runs, milliseconds.
    #[arg(long, value_delimiter = ',', default_value = "0,50")]
    pub mock_latencies_ms: Vec<u64>,

    /// pgbench clients of the PostgreSQL ceilings (the API's pool has 16 connections).
    #[arg(long, default_value_t = 16)]
    pub pgbench_clients: u32,

    /// Produce calls in flight for the broker ceiling.
    #[arg(long, default_value_t = 1024)]
    pub produce_in_flight: usize,

    /// Most requests in flight of an open loop; later sends wait for a slot, and their
    /// latency still counts from when they were due.
    #[arg(long, default_value_t = 4096)]
    pub max_in_flight: usize,

    /// How long all accepted tasks may take to finish after a phase, seconds.
    #[arg(long, default_value_t = 600)]
    pub drain_timeout_secs: u64,

    /// Phases to run (all by default): ceilings, accept (with the backlog drain), auth
    /// (the accept path with each kind of credential; needs accept), steady, e2e. A
    /// subset is for iterating on one figure; `make bench` runs all.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "ceilings,accept,auth,steady,long-poll,e2e"
    )]
    pub phases: Vec<Phase>,

    /// The task topic (for the partition leases).
    #[arg(long, env = "KAFKA_TOPIC", default_value = "orchestrator-events")]
    pub topic: String,
}

/// A part of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Phase {
    /// PostgreSQL (pgbench), broker and mock service ceilings.
    Ceilings,
    /// The accept path, workers stopped, then the backlog drain.
    Accept,
    /// Within the accept phase: its closed loop with an API token, a JWT and
    /// authentication disabled, alternating, for the CPU authentication costs.
    Auth,
    /// A steady open-loop rate with the workers processing.
    Steady,
    /// Requests waiting for their tasks (`?wait=`): from the final transaction to the
    /// answer.
    LongPoll,
    /// End to end per worker count and mock latency.
    E2e,
}

impl Phase {
    pub const ALL: [Phase; 6] = [
        Phase::Ceilings,
        Phase::Accept,
        Phase::Auth,
        Phase::Steady,
        Phase::LongPoll,
        Phase::E2e,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Phase::Ceilings => "ceilings",
            Phase::Accept => "accept",
            Phase::Auth => "auth",
            Phase::Steady => "steady",
            Phase::LongPoll => "long-poll",
            Phase::E2e => "e2e",
        }
    }
}

/// The sizes of one run, after `--smoke` shrank them.
#[derive(Debug, Clone)]
pub struct Plan {
    pub phase: Duration,
    pub connections: usize,
    pub rates: Vec<u32>,
    pub steady_rate: u32,
    pub auth_rate: u32,
    pub long_poll_waiters: usize,
    pub e2e_tasks: u64,
    pub worker_counts: Vec<usize>,
    pub mock_latencies_ms: Vec<u64>,
    pub pgbench_clients: u32,
    pub produce_in_flight: usize,
    pub max_in_flight: usize,
    pub drain_timeout: Duration,
    pub smoke: bool,
    pub phases: Vec<Phase>,
}

impl Plan {
    pub fn runs(&self, phase: Phase) -> bool {
        self.phases.contains(&phase)
    }
}

impl BenchConfig {
    pub fn plan(&self) -> Plan {
        let mut worker_counts = self.worker_counts.clone();
        // Largest first: the stack starts with that many and workers are only stopped.
        worker_counts.sort_unstable_by(|a, b| b.cmp(a));
        worker_counts.dedup();
        worker_counts.retain(|&n| n > 0);
        if worker_counts.is_empty() {
            worker_counts.push(2);
        }
        let mut plan = Plan {
            phase: Duration::from_secs(self.phase_secs.max(1)),
            connections: self.connections.max(1),
            rates: self.rates.iter().copied().filter(|&r| r > 0).collect(),
            steady_rate: self.steady_rate,
            auth_rate: self.auth_rate.max(1),
            long_poll_waiters: self.long_poll_waiters.max(1),
            e2e_tasks: self.e2e_tasks.max(1),
            worker_counts,
            mock_latencies_ms: self.mock_latencies_ms.clone(),
            pgbench_clients: self.pgbench_clients.max(1),
            produce_in_flight: self.produce_in_flight.max(1),
            max_in_flight: self.max_in_flight.max(1),
            drain_timeout: Duration::from_secs(self.drain_timeout_secs.max(1)),
            smoke: self.smoke,
            phases: self.phases.clone(),
        };
        if self.smoke {
            plan.phase = Duration::from_secs(1);
            plan.connections = plan.connections.min(8);
            plan.rates = vec![50, 100];
            plan.steady_rate = 50;
            plan.auth_rate = 50;
            plan.long_poll_waiters = plan.long_poll_waiters.min(50);
            plan.e2e_tasks = 60;
            plan.pgbench_clients = plan.pgbench_clients.min(4);
            plan.produce_in_flight = plan.produce_in_flight.min(64);
            plan.drain_timeout = plan.drain_timeout.min(Duration::from_secs(120));
        }
        plan
    }

    /// The largest worker count: what the stack runs with at first.
    pub fn max_workers(&self) -> usize {
        self.plan().worker_counts.first().copied().unwrap_or(2)
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn verify_cli() {
        BenchConfig::command().debug_assert();
    }

    #[test]
    fn smoke_shrinks_every_phase() {
        let config = BenchConfig::parse_from(["orchestrator-bench", "--smoke"]);
        let plan = config.plan();
        assert_eq!(plan.phase, Duration::from_secs(1));
        assert!(plan.e2e_tasks * 4 < 1_000);
        assert_eq!(plan.worker_counts, vec![2, 1]);
        assert!(Phase::ALL.iter().all(|phase| plan.runs(*phase)));
    }

    #[test]
    fn phases_can_be_picked() {
        let config = BenchConfig::parse_from(["orchestrator-bench", "--phases", "e2e"]);
        let plan = config.plan();
        assert!(plan.runs(Phase::E2e));
        assert!(!plan.runs(Phase::Ceilings));
    }

    #[test]
    fn worker_counts_run_largest_first() {
        let config = BenchConfig::parse_from(["orchestrator-bench", "--worker-counts", "1,3,0,3"]);
        assert_eq!(config.plan().worker_counts, vec![3, 1]);
        assert_eq!(config.max_workers(), 3);
    }
}
