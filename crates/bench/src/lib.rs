//! `orchestrator-bench`: measures the orchestrator on the machine it runs on, against
//! that machine's own ceilings, in one run (`make bench`).
//!
//! - [`config`]: flags, and the [`config::Plan`] of a run (`--smoke` shrinks it).
//! - [`stack`]: starts the stack in-process with `xtask::LocalStack` (what `make run`
//!   runs) or targets a running one, stops and starts its workers, finds its processes.
//! - [`load`]: HTTP load, closed loop and open loop (coordinated omission corrected).
//! - [`ceilings`]: pgbench with the naive-writes scripts, the broker's produce rate, a
//!   mock service's raw rate.
//! - [`db`]: drains, completion times and the end-of-phase checks in PostgreSQL.
//! - [`resources`]: CPU seconds and peak RSS from `/proc`.
//! - [`report`]: JSON, Markdown and SVG, with the targets.
//!
//! [`run`] runs the phases in order: ceilings (stack idle), accept path (workers
//! stopped, when the benchmark owns the stack), the backlog drain, a steady rate with
//! the workers processing, then end to end for each worker count and mock latency.
//! After each phase that submitted tasks, every accepted task must be `COMPLETED` with
//! exactly three `COMPLETED` service requests, or the run fails.

pub mod auth;
pub mod ceilings;
pub mod config;
pub mod db;
pub mod load;
pub mod long_poll;
pub mod machine;
pub mod report;
pub mod resources;
pub mod soak;
pub mod stack;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_postgres::Client;

use crate::auth::{AuthOverhead, AuthRun, Credential};
use crate::config::{BenchConfig, Phase, Plan};
use crate::load::{LoadResult, Percentiles, Submitted, Target, Until};
use crate::report::{Accept, AcceptRun, Ceilings, E2eRun, Report, Settings, Steady};
use crate::resources::{CpuSnapshot, CpuUsage, Groups, Measured as _, Process};
use crate::stack::{Endpoints, Stack, StartSettings};
use xtask::DatabaseUrl;
use xtask::stack::postgres;

/// Ways a run fails.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Setup(String),
    #[error("stack: {0}")]
    Stack(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("PostgreSQL: {0}")]
    Database(#[from] tokio_postgres::Error),
    #[error("HTTP: {0}")]
    Http(#[from] reqwest::Error),
    #[error("Kafka: {0}")]
    Kafka(#[from] orchestrator_kafka::KafkaError),
    #[error("pgbench: {0}")]
    Pgbench(String),
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("the run's checks failed; see {0}")]
    ChecksFailed(PathBuf),
}

impl BenchError {
    fn io(path: &Path, source: std::io::Error) -> BenchError {
        BenchError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The three services of the README example, in the order of the stack's mock ports.
const SERVICES: [&str; 3] = ["revenue", "rebates", "specialty"];
/// How long the workers may take to share the partitions after a start or stop.
const ASSIGNMENT_TIMEOUT: Duration = Duration::from_secs(90);

fn progress(message: &str) {
    eprintln!("bench: {message}");
}

/// Where the files of a run go.
#[derive(Debug, Clone)]
pub struct Outputs {
    pub json: PathBuf,
    pub markdown: PathBuf,
    pub svg: PathBuf,
}

/// Runs the benchmark and writes its reports; fails when a check failed.
///
/// The phases, in order: [`Setup::prepare`], [`open_stack`], [`Bench::connect`],
/// [`Bench::wait_for_workers`], then the measurements ([`Bench::ceilings`],
/// [`Bench::accept_phase`], [`Bench::steady_phase`], [`Bench::e2e_phases`]), and
/// [`Bench::into_report`].
pub async fn run(config: BenchConfig) -> Result<(Report, Outputs), BenchError> {
    let setup = Setup::prepare(&config)?;
    // The completion webhooks' receiver, when tasks carry a callback_url: on loopback,
    // answering 200 and checking each signature.
    let receiver = match config.e2e_callbacks {
        true => Some(orchestrator_testkit::webhook::WebhookReceiver::start().await),
        false => None,
    };
    // The spans' receiver, when they are exported.
    let sink = match config.export_spans {
        true => Some(orchestrator_testkit::otlp::OtlpSink::start().await),
        false => None,
    };
    let service_env = sink.as_ref().map(|sink| sink.env()).unwrap_or_default();
    let logs_before = SpanLogs::mark(&run_dir_of(&config, &setup), config.max_workers());
    let mut stack = open_stack(&config, &setup, receiver.is_some(), service_env).await?;
    let mut bench =
        Bench::connect(&config, &stack, receiver.as_ref().map(|r| r.url.as_str())).await?;
    let mut workers = bench.wait_for_workers(&stack).await?;

    let ceilings = if bench.plan.runs(Phase::Ceilings) {
        bench.ceilings(&stack, &setup).await?
    } else {
        Ceilings::default()
    };
    let accept = bench.accept_phase(&mut stack, workers).await?;
    let steady = bench.steady_phase(&mut stack, workers).await?;
    let long_poll = bench.long_poll_phase(&stack, workers).await?;
    let e2e = bench.e2e_phases(&mut stack, &mut workers).await?;
    bench.set_mock_latency(&stack, 0).await?;

    if let Some(receiver) = &receiver {
        let received = receiver.received();
        let signed = received
            .iter()
            .filter(|delivery| delivery.signed_with(orchestrator_testkit::webhook::SECRET))
            .count();
        bench.notes.push(format!(
            "every task of the steady and end-to-end phases carried a callback_url to a receiver on loopback: {} webhooks received, {signed} with a valid signature",
            received.len()
        ));
    }
    let mut report = bench.into_report(&setup, ceilings, accept, steady, e2e);
    report.long_poll = long_poll;
    report.evaluate_targets();
    if let Err(error) = tokio::task::block_in_place(|| stack.stop()) {
        progress(&format!("stopping the stack failed: {error}"));
    }
    drop(stack);
    // Counted once the processes stopped: each exports what it still queued as it exits,
    // then logs what became of its spans.
    if let Some(sink) = &sink {
        let (exports, bytes) = sink.received();
        let (ended, dropped) = logs_before.spans_since();
        report.notes.push(format!(
            "the spans of the API and the workers were exported over OTLP/HTTP to a receiver on loopback: {ended} spans ended, {dropped} dropped (a full export queue), {exports} exports, {:.1} MB",
            bytes as f64 / 1e6
        ));
        if dropped > 0 {
            report.passed = false;
            progress(&format!(
                "{dropped} of {ended} spans were dropped: their CPU was not all spent"
            ));
        }
    }

    let outputs = write_reports(&report, &setup.output_dir)?;
    if !report.passed {
        return Err(BenchError::ChecksFailed(outputs.markdown));
    }
    Ok((report, outputs))
}

/// Where the stack this run starts keeps its files and logs.
fn run_dir_of(config: &BenchConfig, setup: &Setup) -> PathBuf {
    config
        .run_dir
        .clone()
        .unwrap_or_else(|| setup.output_dir.join("run"))
}

/// The processes' logs as a run found them, to read what each process said of its spans
/// as it stopped (`Spans exported.`, or `Spans were dropped` with the counts) in the
/// lines written since.
struct SpanLogs {
    /// Each log of the API and the workers, and its length at the start.
    logs: Vec<(PathBuf, u64)>,
}

impl SpanLogs {
    /// The logs of the API and of `workers` workers in `run_dir`, as the stack names them.
    fn mark(run_dir: &Path, workers: usize) -> Self {
        let dir = run_dir.join("logs");
        let length = |path: &Path| std::fs::metadata(path).map_or(0, |meta| meta.len());
        let mut logs = vec![dir.join("api.log")];
        logs.extend((1..=workers).map(|n| dir.join(format!("worker-{n}.log"))));
        Self {
            logs: logs
                .into_iter()
                .map(|path| {
                    let before = length(&path);
                    (path, before)
                })
                .collect(),
        }
    }

    /// Spans ended and dropped, summed over the processes that stopped since the mark.
    fn spans_since(&self) -> (u64, u64) {
        use std::io::{Read as _, Seek as _};
        let mut totals = (0, 0);
        for (path, before) in &self.logs {
            let Ok(mut file) = std::fs::File::open(path) else {
                continue;
            };
            let mut text = String::new();
            if file.seek(std::io::SeekFrom::Start(*before)).is_err()
                || file.read_to_string(&mut text).is_err()
            {
                continue;
            }
            let (ended, dropped) = spans_logged(&text);
            totals = (totals.0 + ended, totals.1 + dropped);
        }
        totals
    }
}

/// The spans ended and dropped that the stop lines of `log` report.
fn spans_logged(log: &str) -> (u64, u64) {
    let field = |line: &str, name: &str| {
        line.split_whitespace()
            .find_map(|word| word.strip_prefix(name)?.strip_prefix('='))
            .and_then(|value| {
                value
                    .trim_matches(|c: char| !c.is_ascii_digit())
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or(0)
    };
    log.lines()
        .filter(|line| line.contains("Spans exported.") || line.contains("Spans were dropped"))
        .fold((0, 0), |(ended, dropped), line| {
            (
                ended + field(line, "ended"),
                dropped + field(line, "dropped"),
            )
        })
}

/// Where a run reads and writes, and what it runs on.
struct Setup {
    repo_root: PathBuf,
    output_dir: PathBuf,
    bin_dir: PathBuf,
    machine: machine::Machine,
    /// The benchmark's database, and the URL of its server's `postgres` database.
    db_name: String,
    admin_url: DatabaseUrl,
}

impl Setup {
    fn prepare(config: &BenchConfig) -> Result<Setup, BenchError> {
        let repo_root = repo_root(config.repo_root.as_deref())?;
        let output_dir = config
            .output_dir
            .clone()
            .unwrap_or_else(|| repo_root.join("target/bench"));
        std::fs::create_dir_all(&output_dir).map_err(|e| BenchError::io(&output_dir, e))?;
        let bin_dir = bin_dir(config.bin_dir.as_deref())?;
        let db_name = config
            .database_url
            .database()
            .ok_or_else(|| BenchError::Setup("--database-url names no database".into()))?;
        Ok(Setup {
            machine: machine::Machine::describe(&repo_root),
            admin_url: config.database_url.with_database("postgres"),
            db_name,
            repo_root,
            output_dir,
            bin_dir,
        })
    }
}

/// The stack given by `--api-url`, or one of its own, started on a fresh database.
async fn open_stack(
    config: &BenchConfig,
    setup: &Setup,
    webhooks: bool,
    service_env: Vec<(&'static str, String)>,
) -> Result<Stack, BenchError> {
    if let Some(api) = &config.api_url {
        let kafka = config.kafka_bootstrap_servers.clone().unwrap_or_default();
        if config.mock_urls.len() != SERVICES.len() {
            return Err(BenchError::Setup(
                "--mock-urls needs the three mock services: revenue,rebates,specialty".into(),
            ));
        }
        return Ok(Stack::running(
            Endpoints {
                api: api.clone(),
                mocks: config.mock_urls.clone(),
                kafka,
            },
            config.run_dir.clone(),
        ));
    }
    ensure_postgres(&setup.repo_root, &setup.admin_url)?;
    let run_dir = run_dir_of(config, setup);
    stack::stop_leftover(&setup.repo_root, &run_dir);
    db::recreate_database(setup.admin_url.as_str(), &setup.db_name).await?;
    let ports = stack::pick_ports(config.base_port, config.max_workers())?;
    progress(&format!(
        "starting the stack from {} (API on port {}, RUN_DIR {})",
        setup.bin_dir.display(),
        ports.api,
        run_dir.display()
    ));
    let settings = StartSettings {
        repo_root: setup.repo_root.clone(),
        run_dir,
        bin_dir: setup.bin_dir.clone(),
        database_url: config.database_url.clone(),
        ports,
        workers: config.max_workers(),
        keep: config.keep_stack,
        api_env: if webhooks {
            vec![
                (
                    "WEBHOOK_SECRET",
                    orchestrator_testkit::webhook::SECRET.to_owned(),
                ),
                // The receiver is on loopback.
                ("WEBHOOK_ALLOW_INSECURE", "true".to_owned()),
            ]
        } else {
            Vec::new()
        },
        service_env,
    };
    tokio::task::block_in_place(|| Stack::start(&settings))
}

fn write_reports(report: &Report, dir: &Path) -> Result<Outputs, BenchError> {
    write_outputs(dir, "report", report, report.markdown(), report.svg())
}

/// Writes `<stem>.json` (`report` serialised), `<stem>.md` and `<stem>.svg` to `dir`.
fn write_outputs(
    dir: &Path,
    stem: &str,
    report: &impl serde::Serialize,
    markdown: String,
    svg: String,
) -> Result<Outputs, BenchError> {
    let outputs = Outputs {
        json: dir.join(format!("{stem}.json")),
        markdown: dir.join(format!("{stem}.md")),
        svg: dir.join(format!("{stem}.svg")),
    };
    let json = serde_json::to_string_pretty(report)
        .map_err(|e| BenchError::Setup(format!("serialising the report: {e}")))?;
    for (path, text) in [
        (&outputs.json, json),
        (&outputs.markdown, markdown),
        (&outputs.svg, svg),
    ] {
        std::fs::write(path, text).map_err(|e| BenchError::io(path, e))?;
    }
    Ok(outputs)
}

/// The stack's binaries: given, else beside this binary (where cargo put them).
fn bin_dir(given: Option<&Path>) -> Result<PathBuf, BenchError> {
    match given {
        Some(dir) => Ok(dir.to_path_buf()),
        None => std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(Path::to_path_buf))
            .ok_or_else(|| {
                BenchError::Setup("cannot tell where this binary is: pass --bin-dir".into())
            }),
    }
}

/// The repository: given, else the first folder holding `scripts/install-tansu.sh` (which
/// the stack needs) from the working directory up, else the one this crate was built from.
fn repo_root(given: Option<&Path>) -> Result<PathBuf, BenchError> {
    let holds_scripts = |dir: &Path| dir.join("scripts/install-tansu.sh").is_file();
    if let Some(dir) = given {
        return if holds_scripts(dir) {
            Ok(dir.to_path_buf())
        } else {
            Err(BenchError::Setup(format!(
                "{} holds no scripts/install-tansu.sh",
                dir.display()
            )))
        };
    }
    let cwd = std::env::current_dir().map_err(|e| BenchError::io(Path::new("."), e))?;
    if let Some(dir) = cwd.ancestors().find(|dir| holds_scripts(dir)) {
        return Ok(dir.to_path_buf());
    }
    let built_from = xtask::repo_root();
    if holds_scripts(&built_from) {
        Ok(built_from)
    } else {
        Err(BenchError::Setup(
            "cannot find the repository (scripts/install-tansu.sh): pass --repo-root".into(),
        ))
    }
}

/// Starts the local PostgreSQL when the server is the local default one and does not
/// answer (what `make run` does too), so the database can be created first.
fn ensure_postgres(repo_root: &Path, admin_url: &DatabaseUrl) -> Result<(), BenchError> {
    if postgres::answers(admin_url) || !admin_url.is_local_default_server() {
        return Ok(());
    }
    progress("PostgreSQL does not answer: scripts/ensure-postgres.sh");
    postgres::start_local(repo_root)
        .map(drop)
        .map_err(|e| BenchError::Setup(e.to_string()))
}

/// How an end-to-end phase submits.
#[derive(Debug, Clone, Copy)]
enum Load {
    /// This many tasks, as fast as the connections go.
    Closed(u64),
    /// A fixed rate for the phase's duration.
    Open(u32),
}

/// The state of a run.
struct Bench {
    plan: Plan,
    config: BenchConfig,
    client: reqwest::Client,
    orchestrate: Target,
    /// What the steady and end-to-end phases submit: with a `callback_url` when the run
    /// has a webhook receiver.
    processed: Target,
    db: Client,
    /// 202 answers so far: what the database must hold.
    accepted: u64,
    checks: Vec<db::Check>,
    notes: Vec<String>,
    rss_reset_works: bool,
    /// When the first load started: the checks look at tasks created since.
    since: DateTime<Utc>,
    /// The server does not vacuum by itself: vacuum after each phase (not timed).
    vacuum_between_phases: bool,
    postgres: db::ServerInfo,
}

/// What the accept phase measured.
#[derive(Default)]
struct AcceptResults {
    accept: Option<Accept>,
    backlog_drain: Option<E2eRun>,
    /// Whether the workers were stopped while the accept path was measured.
    workers_stopped: bool,
    auth: Option<AuthOverhead>,
}

impl Bench {
    /// Connects to the stack's database and the API, and reads the server's settings.
    async fn connect(
        config: &BenchConfig,
        stack: &Stack,
        callback_url: Option<&str>,
    ) -> Result<Bench, BenchError> {
        let client = load::http_client(&stack.token()?)?;
        let db = db::connect(config.database_url.as_str()).await?;
        let postgres = db::server_info(&db).await?;
        let mut bench = Bench {
            plan: config.plan(),
            config: config.clone(),
            orchestrate: Target::orchestrate(&client, &stack.endpoints.api),
            processed: match callback_url {
                Some(url) => Target::orchestrate_with_callback(&client, &stack.endpoints.api, url),
                None => Target::orchestrate(&client, &stack.endpoints.api),
            },
            client,
            db,
            accepted: 0,
            checks: Vec::new(),
            notes: Vec::new(),
            rss_reset_works: true,
            since: Utc::now(),
            vacuum_between_phases: postgres.autovacuum == "off",
            postgres,
        };
        if bench.vacuum_between_phases {
            bench.notes.push(
                "the PostgreSQL server runs with autovacuum=off (this machine's configuration), so the benchmark ran VACUUM (ANALYZE) on its database after each phase, outside the timed windows, as autovacuum would have in the background".into(),
            );
        }
        Ok(bench)
    }

    /// How many workers run, once they share the partitions; the checks count tasks
    /// from here on.
    async fn wait_for_workers(&mut self, stack: &Stack) -> Result<usize, BenchError> {
        let topic = &self.config.topic;
        let workers = if stack.controllable() {
            self.config.max_workers()
        } else if stack.run_dir.is_some() {
            stack.workers().len()
        } else {
            db::live_owners(&self.db, topic).await?
        };
        if workers == 0 {
            return Err(BenchError::Setup(format!(
                "no worker holds the partitions of {topic}: start the workers"
            )));
        }
        progress(&format!(
            "waiting for {workers} workers to share the partitions"
        ));
        db::wait_assignment(&self.db, topic, workers, ASSIGNMENT_TIMEOUT).await?;
        self.since = Utc::now();
        Ok(workers)
    }

    /// The accept path, alone when the workers can be stopped, then the backlog it left
    /// processed.
    async fn accept_phase(
        &mut self,
        stack: &mut Stack,
        workers: usize,
    ) -> Result<AcceptResults, BenchError> {
        if !self.plan.runs(Phase::Accept) {
            return Ok(AcceptResults::default());
        }
        let workers_stopped = stack.controllable();
        if workers_stopped {
            progress("stopping the workers: the accept path is measured alone");
            for n in (1..=workers).rev() {
                tokio::task::block_in_place(|| stack.stop_worker(n))?;
            }
        }
        let accept = Some(self.accept(stack, !workers_stopped).await?);
        let auth = if self.plan.runs(Phase::Auth) && workers_stopped {
            Some(self.auth_overhead(stack).await?)
        } else {
            None
        };
        let backlog_drain = if workers_stopped {
            Some(self.drain_backlog(stack, workers).await?)
        } else {
            db::wait_drained(&self.db, self.plan.drain_timeout).await?;
            None
        };
        self.check("accept path").await?;
        db::wait_assignment(&self.db, &self.config.topic, workers, ASSIGNMENT_TIMEOUT).await?;
        Ok(AcceptResults {
            accept,
            backlog_drain,
            workers_stopped,
            auth,
        })
    }

    /// A fixed rate with the workers processing.
    async fn steady_phase(
        &mut self,
        stack: &mut Stack,
        workers: usize,
    ) -> Result<Option<Steady>, BenchError> {
        let rate = self.plan.steady_rate;
        if !self.plan.runs(Phase::Steady) || rate == 0 {
            return Ok(None);
        }
        progress(&format!(
            "steady state: {rate}/s for {:?} with {workers} workers processing",
            self.plan.phase
        ));
        self.on_an_empty_broker(stack, workers).await?;
        let label = format!("steady {rate}/s, {workers} workers, 0 ms");
        let (accept, e2e) = self
            .e2e_phase(stack, &label, workers, 0, Load::Open(rate))
            .await?;
        self.check(&label).await?;
        Ok(Some(Steady { accept, e2e }))
    }

    /// Waiters on tasks the workers process, with slow mocks so that each waits.
    async fn long_poll_phase(
        &mut self,
        stack: &Stack,
        workers: usize,
    ) -> Result<Option<long_poll::LongPoll>, BenchError> {
        if !self.plan.runs(Phase::LongPoll) || workers == 0 {
            return Ok(None);
        }
        let waiters = self.plan.long_poll_waiters;
        progress(&format!(
            "long poll: {waiters} waiters, mocks taking {} ms, {workers} workers",
            long_poll::MOCK_LATENCY_MS
        ));
        self.set_mock_latency(stack, long_poll::MOCK_LATENCY_MS)
            .await?;
        let result = long_poll::run(&self.client, &stack.endpoints.api, waiters).await;
        self.set_mock_latency(stack, 0).await?;
        let result = result?;
        self.accepted += result.waiters as u64;
        progress(&format!(
            "  {} of {waiters} answered final; final transaction to answer p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            result.answered_final, result.p50_ms, result.p99_ms, result.max_ms
        ));
        self.check("long poll").await?;
        Ok(Some(result))
    }

    /// End to end, per worker count (largest first: workers are only stopped) and mock
    /// latency.
    async fn e2e_phases(
        &mut self,
        stack: &mut Stack,
        workers: &mut usize,
    ) -> Result<Vec<E2eRun>, BenchError> {
        let mut runs = Vec::new();
        if !self.plan.runs(Phase::E2e) {
            return Ok(runs);
        }
        for count in self.plan.worker_counts.clone() {
            if count > *workers {
                self.notes.push(format!(
                    "end to end with {count} workers skipped: only {workers} run"
                ));
                continue;
            }
            if count < *workers {
                if !stack.controllable() {
                    self.notes.push(format!(
                        "end to end with {count} workers skipped: the benchmark does not stop the workers of a stack it did not start"
                    ));
                    continue;
                }
                progress(&format!("stopping workers {}..={workers}", count + 1));
                for n in (count + 1..=*workers).rev() {
                    tokio::task::block_in_place(|| stack.stop_worker(n))?;
                }
                *workers = count;
                db::wait_assignment(&self.db, &self.config.topic, count, ASSIGNMENT_TIMEOUT)
                    .await?;
            }
            for latency in self.plan.mock_latencies_ms.clone() {
                runs.push(self.e2e_run(stack, count, latency).await?);
            }
        }
        Ok(runs)
    }

    /// One end-to-end run: `plan.e2e_tasks` tasks with `workers` workers and mocks that
    /// take `latency` ms, on an empty broker.
    async fn e2e_run(
        &mut self,
        stack: &mut Stack,
        workers: usize,
        latency: u64,
    ) -> Result<E2eRun, BenchError> {
        self.on_an_empty_broker(stack, workers).await?;
        self.set_mock_latency(stack, latency).await?;
        let label = format!(
            "{workers} worker{}, {latency} ms mocks",
            if workers == 1 { "" } else { "s" }
        );
        progress(&format!(
            "end to end: {label}, {} tasks",
            self.plan.e2e_tasks
        ));
        let (_, run) = self
            .e2e_phase(
                stack,
                &label,
                workers,
                latency,
                Load::Closed(self.plan.e2e_tasks),
            )
            .await?;
        let measured = run.latency.unwrap_or_default();
        progress(&format!(
            "  {} completed/s, p50 {:.0} ms, p99 {:.0} ms",
            report::number(run.throughput),
            measured.p50_ms,
            measured.p99_ms
        ));
        self.check(&label).await?;
        Ok(run)
    }

    /// The report of the run, with the notes on how it went and the targets evaluated.
    fn into_report(
        mut self,
        setup: &Setup,
        ceilings: Ceilings,
        accept: AcceptResults,
        steady: Option<Steady>,
        e2e: Vec<E2eRun>,
    ) -> Report {
        let plan = self.plan.clone();
        if !self.rss_reset_works {
            self.notes.push(
                "peak RSS could not be reset between phases (/proc/PID/clear_refs refused): peaks are since each process started".into(),
            );
        }
        if accept.accept.is_some() && !accept.workers_stopped {
            self.notes.push("the accept path was measured with the workers running (a stack the benchmark did not start)".into());
        }
        let skipped: Vec<&str> = Phase::ALL
            .iter()
            .filter(|phase| !plan.runs(**phase))
            .map(|phase| phase.name())
            .collect();
        if !skipped.is_empty() {
            self.notes
                .push(format!("phases not run: {}", skipped.join(", ")));
        }
        self.notes.push(
            "completion time is the settling transaction's now() (tasks.updated_at); submission time is when the request was sent (closed loop) or due (open loop), both on this machine's clock".into(),
        );

        let binaries = setup.bin_dir.display().to_string();
        let mut report = Report {
            machine: setup.machine.clone(),
            postgres: self.postgres,
            release_build: binaries.ends_with("release") || binaries.ends_with("release/"),
            binaries,
            smoke: plan.smoke,
            settings: Settings {
                phase_secs: plan.phase.as_secs(),
                connections: plan.connections,
                rates: plan.rates.clone(),
                steady_rate: plan.steady_rate,
                e2e_tasks: plan.e2e_tasks,
                worker_counts: plan.worker_counts.clone(),
                mock_latencies_ms: plan.mock_latencies_ms.clone(),
                pgbench_clients: plan.pgbench_clients,
                produce_in_flight: plan.produce_in_flight,
            },
            ceilings,
            accept: accept.accept,
            backlog_drain: accept.backlog_drain,
            auth: accept.auth,
            steady,
            long_poll: None,
            e2e,
            checks: self.checks,
            targets: Vec::new(),
            notes: self.notes,
            passed: false,
        };
        report.evaluate_targets();
        report
    }

    /// Restarts the stack on an empty broker before a phase that produces records.
    ///
    /// The broker here is Tansu with memory storage, and its produce path costs more the
    /// more records a topic holds: its CPU per task grew from 0.08 to 2.3 ms over a
    /// run that left 150,000 records behind, until the broker alone capped the end-to-end
    /// phases. A Kafka broker appends to a log and does not slow down like that, so each
    /// such phase starts from a fresh one instead of from whatever the phases before it
    /// left. The topic's leases go too: their offsets point into the old broker's records.
    async fn on_an_empty_broker(
        &mut self,
        stack: &mut Stack,
        workers: usize,
    ) -> Result<(), BenchError> {
        if !stack.controllable() {
            return Ok(());
        }
        progress("restarting the stack on an empty broker");
        tokio::task::block_in_place(|| stack.stop_components())?;
        db::forget_topic(&self.db, &self.config.topic).await?;
        tokio::task::block_in_place(|| stack.start_workers(workers))?;
        db::wait_assignment(&self.db, &self.config.topic, workers, ASSIGNMENT_TIMEOUT).await?;
        const NOTE: &str = "before the steady phase and each end-to-end run the stack was restarted on an empty broker: Tansu's memory storage (the broker here) spends more CPU per produced record the more records a topic holds, which a Kafka broker does not";
        if !self.notes.iter().any(|n| n == NOTE) {
            self.notes.push(NOTE.to_owned());
        }
        Ok(())
    }

    /// This machine's ceilings, with the stack idle.
    async fn ceilings(&mut self, stack: &Stack, setup: &Setup) -> Result<Ceilings, BenchError> {
        let (bin_dir, output_dir) = (&setup.bin_dir, &setup.output_dir);
        let admin_url = setup.admin_url.as_str();
        let plan = &self.plan;
        let mut ceilings = Ceilings::default();

        match ceilings::find_pgbench() {
            Some(pgbench) => {
                let name = format!("{}_pgbench", setup.db_name);
                let url = self.config.database_url.with_database(&name);
                let url = url.as_str();
                db::recreate_database(admin_url, &name).await?;
                migrate(bin_dir, url)?;
                for script in [
                    ceilings::NAIVE_TASK,
                    ceilings::NAIVE_ACCEPT,
                    ceilings::DATA_MODEL,
                ] {
                    progress(&format!(
                        "ceiling: PostgreSQL, {} with pgbench, {} clients, {:?}",
                        script.name, plan.pgbench_clients, plan.phase
                    ));
                    let result = ceilings::pgbench(
                        &pgbench,
                        url,
                        output_dir,
                        script,
                        plan.pgbench_clients,
                        plan.phase,
                    )
                    .await?;
                    progress(&format!(
                        "  {} tasks/s ({} commits/s)",
                        report::number(result.tasks_per_s),
                        report::number(result.transactions_per_s)
                    ));
                    let slot = if script.name == ceilings::NAIVE_TASK.name {
                        &mut ceilings.postgres_task
                    } else if script.name == ceilings::DATA_MODEL.name {
                        &mut ceilings.postgres_data_model
                    } else {
                        &mut ceilings.postgres_accept
                    };
                    *slot = Some(result);
                }
                db::drop_database(admin_url, &name).await?;
            }
            None => self.notes.push(
                "no pgbench found (Debian: the postgresql package): PostgreSQL ceilings not measured".into(),
            ),
        }

        progress(&format!(
            "ceiling: broker produce, {} in flight, {:?}",
            plan.produce_in_flight, plan.phase
        ));
        let broker =
            ceilings::broker_produce(&stack.endpoints.kafka, plan.produce_in_flight, plan.phase)
                .await?;
        progress(&format!(
            "  {} records/s",
            report::number(broker.records_per_s)
        ));
        ceilings.broker = Some(broker);

        let mock_base = stack
            .endpoints
            .mocks
            .first()
            .ok_or_else(|| BenchError::Setup("no mock service URL".into()))?;
        progress(&format!(
            "ceiling: mock service {}, {} connections, {:?}",
            SERVICES[0], plan.connections, plan.phase
        ));
        let mock = ceilings::mock_raw(
            &self.client,
            mock_base,
            SERVICES[0],
            plan.connections,
            plan.phase,
        )
        .await;
        progress(&format!(
            "  {} requests/s",
            report::number(mock.requests_per_s)
        ));
        ceilings.mock = Some(mock);
        Ok(ceilings)
    }

    /// The accept path: a closed loop, then each open-loop rate.
    async fn accept(&mut self, stack: &Stack, workers_running: bool) -> Result<Accept, BenchError> {
        let plan = self.plan.clone();
        progress(&format!(
            "accept path: closed loop, {} connections, {:?}",
            plan.connections, plan.phase
        ));
        let closed_loop = self
            .accept_run(
                stack,
                format!("closed loop, {} connections", plan.connections),
                Some(plan.connections),
                None,
            )
            .await?;
        progress(&format!(
            "  {} tasks/s, p99 {:.1} ms",
            report::number(closed_loop.rate),
            closed_loop.latency.p99_ms
        ));
        let mut open_loop = Vec::new();
        for &rate in &plan.rates {
            progress(&format!(
                "accept path: open loop, {rate}/s, {:?}",
                plan.phase
            ));
            let run = self
                .accept_run(stack, format!("open loop, {rate}/s"), None, Some(rate))
                .await?;
            progress(&format!(
                "  p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                run.latency.p50_ms, run.latency.p99_ms, run.latency.max_ms
            ));
            open_loop.push(run);
        }
        Ok(Accept {
            workers_running,
            closed_loop,
            open_loop,
        })
    }

    /// The same fixed rate against the API started with each kind of credential in
    /// turn, alternating them over the rounds; the API is started as it was at the end.
    /// A fixed rate, not a closed loop: the API then batches alike in every run, and the
    /// broker (slower as its topic grows, here) does not set the pace.
    async fn auth_overhead(&mut self, stack: &mut Stack) -> Result<AuthOverhead, BenchError> {
        // Only a stack this run started is restarted, and it has a RUN_DIR.
        let dir = stack
            .run_dir
            .clone()
            .ok_or_else(|| BenchError::Stack("the auth runs need the stack's RUN_DIR".into()))?;
        let jwt = auth::jwt_setup(&dir)?;
        let jwt_client = load::http_client(&jwt.token)?;
        let rounds = if self.plan.smoke { 1 } else { 3 };
        let rate = self.plan.auth_rate;
        let mut runs = Vec::new();
        for round in 0..rounds {
            for credential in Credential::order(round) {
                let (env, client) = match credential {
                    Credential::Token => (Vec::new(), &self.client),
                    Credential::Jwt => (jwt.env.clone(), &jwt_client),
                    // The token is sent, and ignored.
                    Credential::Disabled => {
                        (vec![("AUTH_DISABLED", "true".to_owned())], &self.client)
                    }
                };
                tokio::task::block_in_place(|| stack.restart_api(env))?;
                let target = Target::orchestrate(client, &stack.endpoints.api);
                progress(&format!(
                    "auth: round {}/{rounds}, {}, open loop, {rate}/s, {:?}",
                    round + 1,
                    credential.name(),
                    self.plan.phase
                ));
                let groups = self.groups(stack).await?;
                let cpu = CpuSnapshot::take(&groups);
                let result =
                    load::open_loop(&target, rate, self.plan.phase, self.plan.max_in_flight).await;
                let usage = cpu.until(&self.groups(stack).await?);
                self.accepted += result.ok;
                if result.ok == 0 {
                    return Err(BenchError::Setup(format!(
                        "auth: the API accepted no task with {} ({:?})",
                        credential.name(),
                        result.errors
                    )));
                }
                let api_seconds = usage.per_group.get("api").copied().unwrap_or(0.0);
                let run = AuthRun {
                    credential: credential.name(),
                    round,
                    accepted: result.ok,
                    rate: result.rate(),
                    api_cpu_ms_per_task: api_seconds * 1_000.0 / result.ok as f64,
                };
                progress(&format!(
                    "  {} tasks/s, {:.3} API CPU-ms per task",
                    report::number(run.rate),
                    run.api_cpu_ms_per_task
                ));
                runs.push(run);
            }
        }
        tokio::task::block_in_place(|| stack.restart_api(Vec::new()))?;
        Ok(AuthOverhead::new(rounds, rate, runs))
    }

    /// Starts the stopped workers again and times how fast they process the backlog
    /// the accept path left.
    async fn drain_backlog(
        &mut self,
        stack: &mut Stack,
        workers: usize,
    ) -> Result<E2eRun, BenchError> {
        let backlog = db::unfinished(&self.db).await?;
        progress(&format!(
            "starting {workers} workers again; they process the backlog of {backlog} tasks"
        ));
        let groups = self.groups(stack).await?;
        self.reset_peaks(&groups);
        let cpu = CpuSnapshot::take(&groups);
        let restarted = Utc::now();
        tokio::task::block_in_place(|| stack.start_workers(workers))?;
        db::wait_drained(&self.db, self.plan.drain_timeout).await?;
        let groups = self.groups(stack).await?;
        let usage = cpu.until(&groups);
        let finished = db::finish_times(&self.db, self.since).await?;
        let last = finished
            .iter()
            .map(|(_, at, _)| *at)
            .max()
            .unwrap_or(restarted);
        let tasks = u64::try_from(backlog).unwrap_or(0);
        let seconds = (last - restarted).to_std().unwrap_or_default();
        Ok(E2eRun {
            label: format!("backlog drain, {workers} workers, 0 ms (includes worker start)"),
            workers,
            mock_latency_ms: 0,
            tasks,
            submit_errors: BTreeMap::new(),
            submit_rate: 0.0,
            throughput: load::per_second(tasks, seconds),
            seconds: seconds.as_secs_f64(),
            latency: None,
            cpu_per_1000: per_1000(&usage, tasks),
            cpu: Some(usage),
            api_peak_rss_mb: None,
            worker_peak_rss_mb: self.worker_peak(stack),
        })
    }

    async fn accept_run(
        &mut self,
        stack: &Stack,
        load: String,
        connections: Option<usize>,
        rate: Option<u32>,
    ) -> Result<AcceptRun, BenchError> {
        let groups = self.groups(stack).await?;
        self.reset_peaks(&groups);
        let cpu = CpuSnapshot::take(&groups);
        let result = match (connections, rate) {
            (_, Some(rate)) => {
                load::open_loop(
                    &self.orchestrate,
                    rate,
                    self.plan.phase,
                    self.plan.max_in_flight,
                )
                .await
            }
            (connections, None) => {
                load::closed_loop(
                    &self.orchestrate,
                    connections.unwrap_or(self.plan.connections),
                    Until::Elapsed(self.plan.phase),
                )
                .await
            }
        };
        self.accepted += result.ok;
        let groups = self.groups(stack).await?;
        let usage = cpu.until(&groups);
        Ok(self.accept_record(stack, load, connections, rate, &result, usage))
    }

    fn accept_record(
        &self,
        stack: &Stack,
        load: String,
        connections: Option<usize>,
        rate: Option<u32>,
        result: &LoadResult,
        usage: CpuUsage,
    ) -> AcceptRun {
        AcceptRun {
            load,
            connections,
            offered_rate: rate,
            sent: result.sent,
            accepted: result.ok,
            errors: result.errors.clone(),
            rate: result.rate(),
            seconds: result.elapsed.as_secs_f64(),
            latency: Percentiles::of(&result.latency),
            cpu_per_1000: per_1000(&usage, result.ok),
            cpu: Some(usage),
            api_peak_rss_mb: stack.process("api").and_then(|p| p.peak_rss_mb()),
        }
    }

    /// Submits tasks, waits until all finished, and times them from submission to
    /// `COMPLETED`.
    async fn e2e_phase(
        &mut self,
        stack: &Stack,
        label: &str,
        workers: usize,
        mock_latency_ms: u64,
        load: Load,
    ) -> Result<(AcceptRun, E2eRun), BenchError> {
        let groups = self.groups(stack).await?;
        self.reset_peaks(&groups);
        let cpu = CpuSnapshot::take(&groups);
        let started = Utc::now();
        let (result, accept_label, connections, rate) = match load {
            Load::Closed(tasks) => (
                load::closed_loop(&self.processed, self.plan.connections, Until::Count(tasks))
                    .await,
                format!("{label}: submission, closed loop"),
                Some(self.plan.connections),
                None,
            ),
            Load::Open(rate) => (
                load::open_loop(
                    &self.processed,
                    rate,
                    self.plan.phase,
                    self.plan.max_in_flight,
                )
                .await,
                format!("open loop, {rate}/s, {workers} workers processing"),
                None,
                Some(rate),
            ),
        };
        self.accepted += result.ok;
        let submit_usage = cpu.until(&self.groups(stack).await?);
        db::wait_drained(&self.db, self.plan.drain_timeout).await?;
        if self.config.e2e_callbacks {
            // What the tasks cost includes telling their callers.
            db::wait_delivered(&self.db, self.plan.drain_timeout).await?;
        }
        let groups = self.groups(stack).await?;
        let usage = cpu.until(&groups);
        let finished = db::finish_times(&self.db, started).await?;
        let (latency, last_finish) = completion_latency(&result.submitted, &finished);
        let first_sent = result
            .submitted
            .iter()
            .map(|s| s.sent_at)
            .min()
            .unwrap_or(started);
        let seconds = last_finish
            .map(|last| (last - first_sent).to_std().unwrap_or_default())
            .unwrap_or_default();
        let run = E2eRun {
            label: label.to_owned(),
            workers,
            mock_latency_ms,
            tasks: result.ok,
            submit_errors: result.errors.clone(),
            submit_rate: result.rate(),
            throughput: load::per_second(result.ok, seconds),
            seconds: seconds.as_secs_f64(),
            latency: Some(latency),
            cpu_per_1000: per_1000(&usage, result.ok),
            cpu: Some(usage),
            api_peak_rss_mb: stack.process("api").and_then(|p| p.peak_rss_mb()),
            worker_peak_rss_mb: self.worker_peak(stack),
        };
        let accept = self.accept_record(
            stack,
            accept_label,
            connections,
            rate,
            &result,
            submit_usage,
        );
        Ok((accept, run))
    }

    /// Checks the database against what was accepted so far; a failure is recorded (the
    /// run goes on and fails at the end).
    async fn check(&mut self, after: &str) -> Result<(), BenchError> {
        let check = db::check(&self.db, after, self.accepted, self.since).await?;
        if !check.passed {
            progress(&format!("CHECK FAILED after {after}: {check:?}"));
        }
        self.checks.push(check);
        if self.vacuum_between_phases {
            let took = db::vacuum(&self.db).await?;
            progress(&format!("VACUUM (ANALYZE) after {after}: {took:.1?}"));
        }
        Ok(())
    }

    /// Sets every mock service's latency (`PUT /control/{service}`).
    async fn set_mock_latency(&self, stack: &Stack, ms: u64) -> Result<(), BenchError> {
        let behaviour = serde_json::json!({"latency": {"kind": "fixed", "ms": ms}});
        for (base, service) in stack.endpoints.mocks.iter().zip(SERVICES) {
            let response = self
                .client
                .put(format!("{}/control/{service}", base.trim_end_matches('/')))
                .json(&behaviour)
                .send()
                .await?;
            if !response.status().is_success() {
                return Err(BenchError::Setup(format!(
                    "PUT {base}/control/{service}: HTTP {}",
                    response.status()
                )));
            }
        }
        Ok(())
    }

    async fn groups(&self, stack: &Stack) -> Result<Groups, BenchError> {
        measured_processes(stack, &self.db).await
    }

    fn reset_peaks(&mut self, groups: &Groups) {
        for group in ["api", "workers"] {
            for process in groups.groups.get(group).into_iter().flatten() {
                if !process.reset_peak_rss() {
                    self.rss_reset_works = false;
                }
            }
        }
    }

    fn worker_peak(&self, stack: &Stack) -> Option<f64> {
        stack
            .workers()
            .iter()
            .filter_map(|(_, p)| p.peak_rss_mb())
            .fold(None, |acc, v| Some(acc.map_or(v, |a: f64| a.max(v))))
    }
}

/// The processes measured now: the stack's (from RUN_DIR), PostgreSQL's (this
/// database's connections and the server's background processes) and this one.
async fn measured_processes(stack: &Stack, db: &Client) -> Result<Groups, BenchError> {
    let mut groups = Groups::default();
    if let Some(api) = stack.process("api") {
        groups.add("api", api);
    }
    for (_, worker) in stack.workers() {
        groups.add("workers", worker);
    }
    if let Some(broker) = stack.process("broker") {
        groups.add("broker", broker);
    }
    for service in SERVICES {
        if let Some(mock) = stack.process(&format!("mock-{service}")) {
            groups.add("mocks", mock);
        }
    }
    let (backends, background) = db::server_pids(db).await?;
    for pid in backends.into_iter().chain(background) {
        if let Some(process) = Process::current(pid) {
            groups.add("postgres", process);
        }
    }
    if let Some(me) = Process::current(std::process::id()) {
        groups.add("bench", me);
    }
    Ok(groups)
}

/// `orchestrator-api migrate` against `url` (the pgbench database gets our schema).
fn migrate(bin_dir: &Path, url: &str) -> Result<(), BenchError> {
    let api = bin_dir.join("orchestrator-api");
    let output = std::process::Command::new(&api)
        .arg("migrate")
        .env("DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .output()
        .map_err(|e| BenchError::io(&api, e))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(BenchError::Setup(format!(
            "{} migrate: {}\n{}",
            api.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )))
    }
}

/// CPU seconds per 1,000 tasks per group, plus `stack` (all groups but the load
/// generator).
fn per_1000(usage: &CpuUsage, tasks: u64) -> BTreeMap<String, f64> {
    if tasks == 0 {
        return BTreeMap::new();
    }
    let scale = 1000.0 / tasks as f64;
    let mut out: BTreeMap<String, f64> = usage
        .per_group
        .iter()
        .map(|(group, seconds)| (group.clone(), seconds * scale))
        .collect();
    out.insert("stack".into(), usage.stack_seconds() * scale);
    out
}

/// Submission-to-`COMPLETED` latency of the submitted tasks, and the last completion.
fn completion_latency(
    submitted: &[Submitted],
    finished: &[(String, DateTime<Utc>, String)],
) -> (Percentiles, Option<DateTime<Utc>>) {
    let sent: HashMap<&str, DateTime<Utc>> = submitted
        .iter()
        .map(|s| (s.task_id.as_str(), s.sent_at))
        .collect();
    let mut histogram = load::new_histogram();
    let mut last = None;
    for (task_id, at, status) in finished {
        let Some(sent_at) = sent.get(task_id.as_str()) else {
            continue;
        };
        if status != "COMPLETED" {
            continue;
        }
        last = Some(last.map_or(*at, |l: DateTime<Utc>| l.max(*at)));
        let micros = (*at - *sent_at)
            .num_microseconds()
            .unwrap_or(i64::MAX)
            .max(1);
        histogram.saturating_record(u64::try_from(micros).unwrap_or(1));
    }
    (Percentiles::of(&histogram), last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spans_each_process_reported_as_it_stopped_are_summed() {
        let log = "\
2026-12-07T03:57:53.2Z  INFO orchestrator_worker: Task processed. status=COMPLETED
2026-12-07T03:57:53.3Z  INFO orchestrator_telemetry::export: Spans exported. ended=1200 exported=1200 failed=0 dropped=0
2026-12-07T03:58:10.1Z  WARN orchestrator_telemetry::export: Spans were dropped: the export queue was full (OTEL_BSP_MAX_QUEUE_SIZE), or the stop's deadline passed before they were exported. ended=900 exported=800 failed=0 dropped=100
";
        assert_eq!(spans_logged(log), (2100, 100));
        assert_eq!(spans_logged("no stop line\n"), (0, 0));
    }

    #[test]
    fn completion_latency_joins_on_task_id() {
        let t0 = Utc::now();
        let ms = chrono::Duration::milliseconds;
        let submitted = vec![
            Submitted {
                task_id: "a".into(),
                sent_at: t0,
            },
            Submitted {
                task_id: "b".into(),
                sent_at: t0 + ms(10),
            },
        ];
        let finished = vec![
            ("a".to_owned(), t0 + ms(100), "COMPLETED".to_owned()),
            ("b".to_owned(), t0 + ms(60), "COMPLETED".to_owned()),
            ("c".to_owned(), t0 + ms(900), "COMPLETED".to_owned()),
        ];
        let (latency, last) = completion_latency(&submitted, &finished);
        assert_eq!(last, Some(t0 + ms(100)));
        assert!((latency.max_ms - 100.0).abs() < 0.5, "{latency:?}");
        assert!((latency.p50_ms - 50.0).abs() < 0.5, "{latency:?}");
    }

    #[test]
    fn cpu_per_thousand_tasks() {
        let usage = CpuUsage {
            per_group: BTreeMap::from([
                ("api".to_owned(), 2.0),
                ("workers".to_owned(), 3.0),
                ("bench".to_owned(), 1.0),
            ]),
            machine_seconds: Some(7.0),
            other_seconds: Some(1.0),
        };
        let per = per_1000(&usage, 2000);
        assert_eq!(per["api"], 1.0);
        assert_eq!(per["stack"], 2.5);
        assert!(per_1000(&usage, 0).is_empty());
    }
}
