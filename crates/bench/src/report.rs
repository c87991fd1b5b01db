//! The report: what was measured (JSON), the same as Markdown tables, and a chart
//! (hand-written SVG), with the issue's targets beside the figures.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::auth::AuthOverhead;
use crate::ceilings::{MockResult, PgbenchResult, ProduceResult};
use crate::db::{Check, ServerInfo};
use crate::load::Percentiles;
use crate::long_poll::LongPoll;
use crate::machine::Machine;
use crate::resources::CpuUsage;

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub postgres: ServerInfo,
    /// The folder of the stack's binaries, and whether they look like a release build.
    pub binaries: String,
    pub release_build: bool,
    pub smoke: bool,
    pub settings: Settings,
    pub ceilings: Ceilings,
    pub accept: Option<Accept>,
    /// The accept phase's backlog, processed once the workers started again.
    pub backlog_drain: Option<E2eRun>,
    /// The accept path with an API token, a JWT and authentication disabled.
    pub auth: Option<AuthOverhead>,
    /// Two workers processing while tasks arrive at a steady rate.
    pub steady: Option<Steady>,
    /// Requests waiting (`?wait=`) for tasks the workers process.
    pub long_poll: Option<LongPoll>,
    pub e2e: Vec<E2eRun>,
    pub checks: Vec<Check>,
    pub targets: Vec<TargetResult>,
    pub notes: Vec<String>,
    /// Every check passed (targets do not decide this).
    pub passed: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub phase_secs: u64,
    pub connections: usize,
    pub rates: Vec<u32>,
    pub steady_rate: u32,
    pub e2e_tasks: u64,
    pub worker_counts: Vec<usize>,
    pub mock_latencies_ms: Vec<u64>,
    pub pgbench_clients: u32,
    pub produce_in_flight: usize,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Ceilings {
    /// A whole task's rows, 6 transactions per task.
    pub postgres_task: Option<PgbenchResult>,
    /// The accept path's rows, 2 transactions per task.
    pub postgres_accept: Option<PgbenchResult>,
    /// The data-model ceiling: the system's rows for 64 tasks in 3 transactions.
    pub postgres_data_model: Option<PgbenchResult>,
    pub broker: Option<ProduceResult>,
    pub mock: Option<MockResult>,
}

/// One load phase against `POST /api/orchestrate`.
#[derive(Debug, Clone, Serialize)]
pub struct AcceptRun {
    /// "closed loop, 64 connections" or "open loop, 1000/s".
    pub load: String,
    pub connections: Option<usize>,
    pub offered_rate: Option<u32>,
    pub sent: u64,
    pub accepted: u64,
    pub errors: BTreeMap<String, u64>,
    /// Accepted tasks per second, first send to last answer.
    pub rate: f64,
    pub seconds: f64,
    /// From when each request was sent (closed loop) or due (open loop).
    pub latency: Percentiles,
    pub cpu: Option<CpuUsage>,
    /// CPU seconds per 1,000 accepted tasks, per process group.
    pub cpu_per_1000: BTreeMap<String, f64>,
    pub api_peak_rss_mb: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Accept {
    /// Whether workers ran meanwhile (they are stopped when the benchmark started the
    /// stack, so the accept path is measured alone).
    pub workers_running: bool,
    pub closed_loop: AcceptRun,
    pub open_loop: Vec<AcceptRun>,
}

/// Tasks submitted, processed to the end, and timed from submission to `COMPLETED`.
#[derive(Debug, Clone, Serialize)]
pub struct E2eRun {
    pub label: String,
    pub workers: usize,
    pub mock_latency_ms: u64,
    pub tasks: u64,
    pub submit_errors: BTreeMap<String, u64>,
    /// Accepted tasks per second while submitting.
    pub submit_rate: f64,
    /// Completed tasks per second, first submission to last completion.
    pub throughput: f64,
    pub seconds: f64,
    /// Submission to `COMPLETED` (the settling transaction's time); not for the backlog
    /// drain, whose tasks waited for the workers on purpose.
    pub latency: Option<Percentiles>,
    pub cpu: Option<CpuUsage>,
    pub cpu_per_1000: BTreeMap<String, f64>,
    pub api_peak_rss_mb: Option<f64>,
    pub worker_peak_rss_mb: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Steady {
    pub accept: AcceptRun,
    pub e2e: E2eRun,
}

/// A target of the issue and how the run compares.
#[derive(Debug, Clone, Serialize)]
pub struct TargetResult {
    pub name: String,
    pub goal: String,
    /// `None`: not measured in this run.
    pub measured: Option<f64>,
    pub unit: String,
    pub passed: Option<bool>,
    /// "+23% over", "miss by 46%", ...
    pub margin: String,
}

#[derive(Debug, Clone, Copy)]
enum Goal {
    AtLeast(f64),
    AtMost(f64),
}

fn target(name: &str, goal: Goal, measured: Option<f64>, unit: &str) -> TargetResult {
    let (goal_text, passed, margin) = match (goal, measured) {
        (Goal::AtLeast(g), Some(m)) => {
            let pct = (m / g - 1.0) * 100.0;
            let margin = if m >= g {
                format!("pass, {pct:+.0}%")
            } else {
                format!("miss by {:.0}% ({} short)", -pct, number(g - m))
            };
            (format!("≥ {}", number(g)), Some(m >= g), margin)
        }
        (Goal::AtMost(g), Some(m)) => {
            let pct = (m / g - 1.0) * 100.0;
            let margin = if m <= g {
                format!("pass, {:.0}% under", -pct)
            } else {
                format!("miss by {pct:.0}% ({} over)", number(m - g))
            };
            (format!("≤ {}", number(g)), Some(m <= g), margin)
        }
        (Goal::AtLeast(g), None) => (format!("≥ {}", number(g)), None, "not measured".into()),
        (Goal::AtMost(g), None) => (format!("≤ {}", number(g)), None, "not measured".into()),
    };
    TargetResult {
        name: name.to_owned(),
        goal: format!("{goal_text} {unit}"),
        measured,
        unit: unit.to_owned(),
        passed,
        margin,
    }
}

/// The issue's targets (2 cores, everything on one machine, default durability).
pub const TARGET_E2E: f64 = 1_500.0;
pub const TARGET_E2E_SLOW_RATIO: f64 = 0.9;
pub const TARGET_ACCEPT: f64 = 3_000.0;
/// Authentication may cost the accept path at most this much more CPU per request.
pub const TARGET_AUTH_OVERHEAD_PCT: f64 = 5.0;
pub const TARGET_ACCEPT_P99_MS: f64 = 25.0;
pub const TARGET_ACCEPT_P99_RATE: u32 = 1_000;
pub const TARGET_RSS_MB: f64 = 100.0;
/// From a task's final transaction to the answer of a request waiting for it.
pub const TARGET_LONG_POLL_P99_MS: f64 = 100.0;
/// End to end (2 workers, 0 ms mocks) as a share of the data-model ceiling, in %.
pub const TARGET_DATA_MODEL_SHARE_PCT: f64 = 50.0;
/// The API's and the workers' CPU per task together, end to end (2 workers, 0 ms).
pub const TARGET_OURS_CPU_MS_PER_TASK: f64 = 0.2;

fn max_of(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    values
        .flatten()
        .fold(None, |acc, v| Some(acc.map_or(v, |a: f64| a.max(v))))
}

impl Report {
    /// What the binaries' folder says of their build: cargo's `target/release` or
    /// `target/debug`, else only where they came from (a copy elsewhere says nothing).
    fn build_kind(&self) -> String {
        let folder = self.binaries.trim_end_matches('/');
        if self.release_build {
            "release build".into()
        } else if folder.ends_with("debug") {
            "debug build".into()
        } else {
            format!("binaries from {folder}")
        }
    }

    fn closed_loop(&self) -> Option<&AcceptRun> {
        self.accept.as_ref().map(|a| &a.closed_loop)
    }

    fn open_loop(&self) -> &[AcceptRun] {
        self.accept.as_ref().map_or(&[], |a| a.open_loop.as_slice())
    }

    /// The accept path's closed and open loops.
    fn accept_runs(&self) -> impl Iterator<Item = &AcceptRun> {
        self.closed_loop().into_iter().chain(self.open_loop())
    }

    fn workers_running(&self) -> bool {
        self.accept.as_ref().is_some_and(|a| a.workers_running)
    }

    /// The issue's targets against this run's figures.
    pub fn evaluate_targets(&mut self) {
        let e2e = |workers: usize, latency: u64| {
            self.e2e
                .iter()
                .find(|r| r.workers == workers && r.mock_latency_ms == latency)
                .map(|r| r.throughput)
        };
        let fast = e2e(2, 0);
        let slow = e2e(2, 50);
        let mut targets = vec![
            target(
                "end to end, 2 workers, 0 ms mocks",
                Goal::AtLeast(TARGET_E2E),
                fast,
                "tasks/s",
            ),
            target(
                "end to end, 2 workers, 50 ms mocks",
                Goal::AtLeast(TARGET_E2E * TARGET_E2E_SLOW_RATIO),
                slow,
                "tasks/s",
            ),
            target(
                "end to end, 50 ms mocks vs 0 ms (2 workers)",
                Goal::AtLeast(TARGET_E2E_SLOW_RATIO * 100.0),
                match (slow, fast) {
                    (Some(s), Some(f)) if f > 0.0 => Some(s / f * 100.0),
                    _ => None,
                },
                "%",
            ),
            target(
                "accept path, closed loop",
                Goal::AtLeast(TARGET_ACCEPT),
                self.closed_loop().map(|r| r.rate),
                "tasks/s",
            ),
        ];
        let at_rate = self
            .open_loop()
            .iter()
            .find(|r| r.offered_rate == Some(TARGET_ACCEPT_P99_RATE))
            .map(|r| r.latency.p99_ms);
        let alone = if self.workers_running() {
            ""
        } else {
            " (workers stopped)"
        };
        targets.push(target(
            &format!("accept p99 at {TARGET_ACCEPT_P99_RATE}/s{alone}"),
            Goal::AtMost(TARGET_ACCEPT_P99_MS),
            at_rate,
            "ms",
        ));
        if let Some(steady) = self
            .steady
            .as_ref()
            .filter(|s| s.accept.offered_rate == Some(TARGET_ACCEPT_P99_RATE))
        {
            targets.push(target(
                &format!(
                    "accept p99 at {TARGET_ACCEPT_P99_RATE}/s, {} workers processing",
                    steady.e2e.workers
                ),
                Goal::AtMost(TARGET_ACCEPT_P99_MS),
                Some(steady.accept.latency.p99_ms),
                "ms",
            ));
        }
        targets.push(target(
            "authentication's API CPU per accepted task, over auth disabled",
            Goal::AtMost(TARGET_AUTH_OVERHEAD_PCT),
            self.auth
                .as_ref()
                .and_then(AuthOverhead::worst_overhead_pct),
            "%",
        ));
        let data_model = self
            .ceilings
            .postgres_data_model
            .as_ref()
            .map(|p| p.tasks_per_s);
        targets.push(target(
            "end to end, 2 workers, 0 ms mocks, share of the data-model ceiling",
            Goal::AtLeast(TARGET_DATA_MODEL_SHARE_PCT),
            match (fast, data_model) {
                (Some(f), Some(d)) if d > 0.0 => Some(f / d * 100.0),
                _ => None,
            },
            "%",
        ));
        let ours = self
            .e2e
            .iter()
            .find(|r| r.workers == 2 && r.mock_latency_ms == 0)
            .and_then(|r| {
                // Seconds per 1,000 tasks are milliseconds per task.
                Some(r.cpu_per_1000.get("api")? + r.cpu_per_1000.get("workers")?)
            });
        targets.push(target(
            "API + workers CPU per task, end to end (2 workers, 0 ms mocks)",
            Goal::AtMost(TARGET_OURS_CPU_MS_PER_TASK),
            ours,
            "ms",
        ));
        targets.push(target(
            "long poll: final transaction to answer, p99",
            Goal::AtMost(TARGET_LONG_POLL_P99_MS),
            self.long_poll.as_ref().map(|l| l.p99_ms),
            "ms",
        ));
        let api_peak = max_of(
            self.accept_runs()
                .map(|r| r.api_peak_rss_mb)
                .chain(self.e2e.iter().map(|r| r.api_peak_rss_mb))
                .chain(self.steady.iter().map(|s| s.e2e.api_peak_rss_mb)),
        );
        let worker_peak = max_of(
            self.e2e
                .iter()
                .map(|r| r.worker_peak_rss_mb)
                .chain(self.backlog_drain.iter().map(|r| r.worker_peak_rss_mb))
                .chain(self.steady.iter().map(|s| s.e2e.worker_peak_rss_mb)),
        );
        targets.push(target(
            "API peak RSS",
            Goal::AtMost(TARGET_RSS_MB),
            api_peak,
            "MB",
        ));
        targets.push(target(
            "worker peak RSS",
            Goal::AtMost(TARGET_RSS_MB),
            worker_peak,
            "MB",
        ));
        let checks_passed = self.checks.iter().all(|c| c.passed) && !self.checks.is_empty();
        targets.push(TargetResult {
            name: "every accepted task COMPLETED with exactly 3 service requests".into(),
            goal: "all, after every phase".into(),
            measured: Some(self.checks.iter().filter(|c| c.passed).count() as f64),
            unit: format!("of {} checks", self.checks.len()),
            passed: Some(checks_passed),
            margin: if checks_passed {
                "pass".into()
            } else {
                "FAIL".into()
            },
        });
        self.targets = targets;
        self.passed = checks_passed;
    }

    /// The report as Markdown: targets, ceilings, accept path, end to end, resources.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        self.markdown_header(&mut md);
        self.markdown_targets(&mut md);
        self.markdown_ceilings(&mut md);
        self.markdown_accept(&mut md);
        self.markdown_auth(&mut md);
        self.markdown_long_poll(&mut md);
        self.markdown_e2e(&mut md);
        self.markdown_checks(&mut md);
        self.markdown_notes(&mut md);
        md
    }

    /// The heading and the line saying what the figures were measured on.
    fn markdown_header(&self, md: &mut String) {
        let m = &self.machine;
        let pg = &self.postgres;
        let _ = writeln!(md, "## Benchmark results\n");
        let _ = writeln!(
            md,
            "{} · {} cores ({}) · {} GiB · Linux {} · PostgreSQL {} (synchronous_commit={}, fsync={}, autovacuum={}) · {} · revision {} · load average at start {}\n",
            m.date,
            m.cores,
            m.cpu_model,
            m.memory_gib,
            m.kernel,
            pg.version,
            pg.synchronous_commit,
            pg.fsync,
            pg.autovacuum,
            self.build_kind(),
            m.revision,
            m.load_average_at_start,
        );
        if self.smoke {
            let _ = writeln!(
                md,
                "**Smoke run: tiny phases, the figures mean nothing.**\n"
            );
        }
    }

    fn markdown_targets(&self, md: &mut String) {
        let _ = writeln!(md, "### Targets\n");
        let _ = writeln!(md, "| target | goal | measured | result |");
        let _ = writeln!(md, "|---|---|---|---|");
        for t in &self.targets {
            let measured = t
                .measured
                .map_or("—".to_owned(), |v| format!("{} {}", number(v), t.unit));
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                t.name, t.goal, measured, t.margin
            );
        }
    }

    fn markdown_ceilings(&self, md: &mut String) {
        let _ = writeln!(md, "\n### Ceilings (same machine, same run)\n");
        let _ = writeln!(md, "| ceiling | how | rate |");
        let _ = writeln!(md, "|---|---|---|");
        if let Some(p) = &self.ceilings.postgres_task {
            let _ = writeln!(
                md,
                "| PostgreSQL, a task's rows written naively | `{}`: {} transactions per task, pgbench {} clients | {} tasks/s ({} commits/s) |",
                p.script,
                p.transactions_per_task,
                p.clients,
                number(p.tasks_per_s),
                number(p.transactions_per_s)
            );
        }
        if let Some(p) = &self.ceilings.postgres_data_model {
            let _ = writeln!(
                md,
                "| PostgreSQL, the data model: the system's rows, 64 tasks per batch | `{}`: {:.3} transactions per task, pgbench {} clients | {} tasks/s ({} commits/s) |",
                p.script,
                p.transactions_per_task,
                p.clients,
                number(p.tasks_per_s),
                number(p.transactions_per_s)
            );
        }
        if let Some(p) = &self.ceilings.postgres_accept {
            let _ = writeln!(
                md,
                "| PostgreSQL, the accept path's rows written naively | `{}`: {} transactions per task, pgbench {} clients | {} tasks/s ({} commits/s) |",
                p.script,
                p.transactions_per_task,
                p.clients,
                number(p.tasks_per_s),
                number(p.transactions_per_s)
            );
        }
        if let Some(b) = &self.ceilings.broker {
            let _ = writeln!(
                md,
                "| broker (Tansu) produce | rskafka batch producers, {} partitions, linger {} ms, {} in flight, {} B envelopes | {} records/s |",
                b.partitions,
                b.linger_ms,
                b.in_flight,
                b.record_value_bytes,
                number(b.records_per_s)
            );
        }
        if let Some(c) = &self.ceilings.mock {
            let _ = writeln!(
                md,
                "| one mock service process | closed loop, {} kept-alive connections, `POST /{}` | {} requests/s (p99 {} ms) |",
                c.connections,
                c.service,
                number(c.requests_per_s),
                ms(c.latency.p99_ms)
            );
        }
    }

    /// What authentication costs the accept path.
    fn markdown_auth(&self, md: &mut String) {
        let Some(auth) = &self.auth else {
            return;
        };
        let _ = writeln!(
            md,
            "\n### Authentication on the accept path ({} rounds alternating the three, open loop at {}/s, workers stopped)\n",
            auth.rounds,
            number(f64::from(auth.rate))
        );
        let _ = writeln!(
            md,
            "| credential | runs | tasks/s (median) | API CPU-ms per task (median) | CPU over auth disabled |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|");
        for s in &auth.summary {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:.3} | {} |",
                s.credential,
                s.runs,
                number(s.median_rate),
                s.median_api_cpu_ms_per_task,
                s.cpu_over_disabled_pct
                    .map_or("—".into(), |pct| format!("{pct:+.1}%"))
            );
        }
    }

    /// The accept path's runs, and the steady phase's submission.
    fn markdown_long_poll(&self, md: &mut String) {
        let Some(l) = &self.long_poll else {
            return;
        };
        let _ = writeln!(
            md,
            "\n### Long poll (`GET /api/tasks/{{id}}?wait=60`, one waiter per task, mocks taking {} ms)\n",
            l.mock_latency_ms
        );
        let _ = writeln!(
            md,
            "| waiters | answered final | p50 | p99 | max |\n|---|---|---|---|---|"
        );
        let _ = writeln!(
            md,
            "| {} | {} | {:.1} ms | {:.1} ms | {:.1} ms |",
            l.waiters, l.answered_final, l.p50_ms, l.p99_ms, l.max_ms
        );
        let _ = writeln!(
            md,
            "\nFrom each task's final transaction (`updated_at`, the transaction's `now()`) to its waiter's answer: the commit, the PostgreSQL notification, the API's listener and the task read again."
        );
    }

    fn markdown_accept(&self, md: &mut String) {
        let _ = writeln!(
            md,
            "\n### Accept path (`POST /api/orchestrate`, README example){}\n",
            if self.workers_running() {
                ", workers running"
            } else {
                ", workers stopped"
            }
        );
        let _ = writeln!(
            md,
            "| load | accepted | errors | tasks/s | p50 ms | p95 ms | p99 ms | max ms | vs PostgreSQL naive accept | vs broker | API CPU s / 1,000 | API peak RSS MB | other load |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        let pg_accept = self
            .ceilings
            .postgres_accept
            .as_ref()
            .map(|p| p.tasks_per_s);
        let broker = self.ceilings.broker.as_ref().map(|b| b.records_per_s);
        let accept_rows = self
            .accept_runs()
            .chain(self.steady.iter().map(|s| &s.accept));
        for r in accept_rows {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                r.load,
                r.accepted,
                errors(&r.errors),
                number(r.rate),
                ms(r.latency.p50_ms),
                ms(r.latency.p95_ms),
                ms(r.latency.p99_ms),
                ms(r.latency.max_ms),
                ratio(r.rate, pg_accept),
                ratio(r.rate, broker),
                r.cpu_per_1000
                    .get("api")
                    .map_or("—".into(), |v| format!("{v:.2}")),
                opt(r.api_peak_rss_mb),
                other_load(r.cpu.as_ref()),
            );
        }
    }

    /// The end-to-end runs, the backlog drain and the steady phase, with what *other
    /// load* means.
    fn markdown_e2e(&self, md: &mut String) {
        let _ = writeln!(
            md,
            "\n### End to end (submitted → `COMPLETED`, 1 item × 3 services)\n"
        );
        let _ = writeln!(
            md,
            "| run | tasks | completed/s | p50 ms | p95 ms | p99 ms | max ms | vs PostgreSQL naive | vs data model | vs one mock | CPU s / 1,000 tasks (API · workers · PostgreSQL · broker · mocks = stack) | peak RSS MB (API · worker) | other load |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        let pg_task = self.ceilings.postgres_task.as_ref().map(|p| p.tasks_per_s);
        let data_model = self
            .ceilings
            .postgres_data_model
            .as_ref()
            .map(|p| p.tasks_per_s);
        let mock = self.ceilings.mock.as_ref().map(|c| c.requests_per_s);
        let e2e_rows = self
            .e2e
            .iter()
            .chain(self.backlog_drain.iter())
            .chain(self.steady.iter().map(|s| &s.e2e));
        for r in e2e_rows {
            let cpu = |g: &str| {
                r.cpu_per_1000
                    .get(g)
                    .map_or("—".into(), |v| format!("{v:.2}"))
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} · {} · {} · {} · {} = {} | {} · {} | {} |",
                r.label,
                r.tasks,
                number(r.throughput),
                r.latency.map_or("—".into(), |l| ms(l.p50_ms)),
                r.latency.map_or("—".into(), |l| ms(l.p95_ms)),
                r.latency.map_or("—".into(), |l| ms(l.p99_ms)),
                r.latency.map_or("—".into(), |l| ms(l.max_ms)),
                ratio(r.throughput, pg_task),
                ratio(r.throughput, data_model),
                ratio(r.throughput, mock),
                cpu("api"),
                cpu("workers"),
                cpu("postgres"),
                cpu("broker"),
                cpu("mocks"),
                cpu("stack"),
                opt(r.api_peak_rss_mb),
                opt(r.worker_peak_rss_mb),
                other_load(r.cpu.as_ref()),
            );
        }

        let _ = writeln!(
            md,
            "\n*other load*: the share of the machine's CPU time that went to processes outside the stack and the load generator during the phase (other work on the machine; PostgreSQL autovacuum workers that came and went within it count here too). The load generator's own CPU is in the JSON (group `bench`)."
        );
    }

    fn markdown_checks(&self, md: &mut String) {
        let _ = writeln!(md, "\n### Checks\n");
        let _ = writeln!(
            md,
            "| after | accepted | tasks | COMPLETED | FAILED | unfinished | service requests | tasks without exactly 3 completed | result |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|");
        for c in &self.checks {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                c.after,
                c.accepted,
                c.tasks,
                c.completed,
                c.failed,
                c.unfinished,
                c.service_requests,
                c.tasks_with_wrong_rows,
                if c.passed { "pass" } else { "FAIL" }
            );
        }
    }

    fn markdown_notes(&self, md: &mut String) {
        if !self.notes.is_empty() {
            let _ = writeln!(md, "\nNotes:\n");
            for note in &self.notes {
                let _ = writeln!(md, "- {note}");
            }
        }
    }

    /// Three panels: end-to-end throughput against the target and the PostgreSQL
    /// ceiling; accept latency percentiles per rate against the p99 target (log
    /// scale); accept rate against its target and the ceilings (log scale).
    pub fn svg(&self) -> String {
        let mut svg = Svg::new(960, 1000);
        svg.text(
            20.0,
            28.0,
            16,
            "start",
            &format!(
                "orchestrator benchmark — {} — {} cores, {}{}",
                self.machine.date,
                self.machine.cores,
                self.machine.cpu_model,
                if self.smoke { " (smoke run)" } else { "" }
            ),
        );

        // Panel 1: end to end.
        let mut bars: Vec<(String, f64)> = self
            .e2e
            .iter()
            .chain(self.backlog_drain.iter())
            .chain(self.steady.iter().map(|s| &s.e2e))
            .map(|r| (r.label.clone(), r.throughput))
            .collect();
        if let Some(p) = &self.ceilings.postgres_task {
            bars.push(("PostgreSQL naive (ceiling)".into(), p.tasks_per_s));
        }
        if let Some(p) = &self.ceilings.postgres_data_model {
            bars.push(("PostgreSQL data model (ceiling)".into(), p.tasks_per_s));
        }
        let lines = vec![(format!("target {}", number(TARGET_E2E)), TARGET_E2E)];
        svg.bar_panel(60.0, 300.0, "End to end: completed tasks/s", &bars, &lines);

        // Panel 2: accept latency.
        let groups: Vec<(String, [f64; 4])> = self
            .open_loop()
            .iter()
            .chain(self.steady.iter().map(|s| &s.accept))
            .map(|r| {
                let l = r.latency;
                (
                    r.load.replace("open loop, ", ""),
                    [l.p50_ms, l.p95_ms, l.p99_ms, l.max_ms],
                )
            })
            .collect();
        svg.latency_panel(380.0, 620.0, &groups);

        // Panel 3: accept rate vs ceilings (log).
        let mut rates: Vec<(String, f64)> = self
            .closed_loop()
            .map(|r| ("accept, closed loop".to_owned(), r.rate))
            .into_iter()
            .collect();
        if let Some(p) = &self.ceilings.postgres_accept {
            rates.push(("PostgreSQL naive accept".into(), p.tasks_per_s));
        }
        if let Some(b) = &self.ceilings.broker {
            rates.push(("broker produce".into(), b.records_per_s));
        }
        if let Some(c) = &self.ceilings.mock {
            rates.push(("one mock service".into(), c.requests_per_s));
        }
        svg.log_bar_panel(
            700.0,
            960.0,
            "Accept rate and ceilings, per second (log scale)",
            &rates,
            TARGET_ACCEPT,
        );
        svg.finish()
    }
}

/// The smallest 1, 2 or 5 × 10^k at or above `v` (an axis maximum with round ticks).
pub(crate) fn nice_ceiling(v: f64) -> f64 {
    let magnitude = 10f64.powf(v.max(1e-9).log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|step| step * magnitude)
        .find(|candidate| *candidate >= v)
        .unwrap_or(10.0 * magnitude)
}

/// "1,234" for large numbers, "12.3" for small ones.
pub fn number(v: f64) -> String {
    if !v.is_finite() {
        return "—".into();
    }
    if v.abs() >= 100.0 {
        let rounded = v.round() as i64;
        let digits = rounded.unsigned_abs().to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        if rounded < 0 { format!("-{out}") } else { out }
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The share of the machine's CPU that processes outside the stack used.
fn other_load(cpu: Option<&CpuUsage>) -> String {
    match cpu.and_then(|c| Some((c.other_seconds?, c.machine_seconds?))) {
        Some((other, machine)) if machine > 0.0 => format!("{:.0}%", other / machine * 100.0),
        _ => "—".into(),
    }
}

fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn opt(v: Option<f64>) -> String {
    v.map_or("—".into(), |v| format!("{v:.0}"))
}

fn ratio(v: f64, ceiling: Option<f64>) -> String {
    match ceiling {
        Some(c) if c > 0.0 => format!("{:.2}×", v / c),
        _ => "—".into(),
    }
}

fn errors(errors: &BTreeMap<String, u64>) -> String {
    if errors.is_empty() {
        return "0".into();
    }
    errors
        .iter()
        .map(|(kind, n)| format!("{n} {kind}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub(crate) const COLOURS: [&str; 4] = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2"];

/// A little SVG writer: just what the benchmark's and the soak's panels need.
pub(crate) struct Svg {
    width: f64,
    height: f64,
    body: String,
}

impl Svg {
    pub(crate) fn new(width: u32, height: u32) -> Svg {
        Svg {
            width: f64::from(width),
            height: f64::from(height),
            body: String::new(),
        }
    }

    pub(crate) fn text(&mut self, x: f64, y: f64, size: u32, anchor: &str, text: &str) {
        let _ = writeln!(
            self.body,
            r#"<text x="{x:.1}" y="{y:.1}" font-size="{size}" text-anchor="{anchor}">{}</text>"#,
            escape(text)
        );
    }

    /// Text broken into lines at ", " (bar labels), one under the other.
    pub(crate) fn label(&mut self, x: f64, y: f64, text: &str) {
        for (i, line) in text.split(", ").enumerate() {
            self.text(x, y + 12.0 * i as f64, 10, "middle", line);
        }
    }

    pub(crate) fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, fill: &str) {
        let _ = writeln!(
            self.body,
            r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{fill}"/>"#,
            w.max(0.0),
            h.max(0.0)
        );
    }

    pub(crate) fn line(&mut self, x1: f64, y1: f64, x2: f64, y2: f64, stroke: &str, dashed: bool) {
        let dash = if dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let _ = writeln!(
            self.body,
            r#"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" stroke="{stroke}" stroke-width="1.5"{dash}/>"#
        );
    }

    /// Vertical bars with horizontal reference lines, linear scale, between y `top` and
    /// `bottom`.
    fn bar_panel(
        &mut self,
        top: f64,
        bottom: f64,
        title: &str,
        bars: &[(String, f64)],
        lines: &[(String, f64)],
    ) {
        self.text(20.0, top, 14, "start", title);
        let (left, right) = (80.0, self.width - 40.0);
        let (plot_top, plot_bottom) = (top + 20.0, bottom - 40.0);
        let max = nice_ceiling(
            bars.iter()
                .map(|(_, v)| *v)
                .chain(lines.iter().map(|(_, v)| *v))
                .fold(1.0_f64, f64::max)
                * 1.05,
        );
        let y = |v: f64| plot_bottom - (v / max) * (plot_bottom - plot_top);
        self.axis(left, right, plot_top, plot_bottom, max, y);
        let slot = (right - left) / bars.len().max(1) as f64;
        for (i, (label, value)) in bars.iter().enumerate() {
            let x = left + slot * i as f64 + slot * 0.15;
            let colour = if label.contains("ceiling") {
                "#bab0ac"
            } else {
                COLOURS[0]
            };
            self.rect(x, y(*value), slot * 0.7, plot_bottom - y(*value), colour);
            self.text(
                x + slot * 0.35,
                y(*value) - 4.0,
                11,
                "middle",
                &number(*value),
            );
            self.label(x + slot * 0.35, plot_bottom + 14.0, label);
        }
        for (label, value) in lines {
            self.line(left, y(*value), right, y(*value), "#e15759", true);
            self.text(right, y(*value) - 4.0, 11, "end", label);
        }
    }

    pub(crate) fn axis(
        &mut self,
        left: f64,
        right: f64,
        top: f64,
        bottom: f64,
        max: f64,
        y: impl Fn(f64) -> f64,
    ) {
        self.line(left, bottom, right, bottom, "#333", false);
        self.line(left, top, left, bottom, "#333", false);
        for i in 0..=4 {
            let v = max * f64::from(i) / 4.0;
            self.line(left - 4.0, y(v), left, y(v), "#333", false);
            self.text(left - 6.0, y(v) + 4.0, 10, "end", &number(v));
        }
    }

    /// Grouped bars (p50, p95, p99, max) per rate, log scale in ms, with the p99 target.
    fn latency_panel(&mut self, top: f64, bottom: f64, groups: &[(String, [f64; 4])]) {
        self.text(
            20.0,
            top,
            14,
            "start",
            "Accept latency, ms (log scale; due time to answer, coordinated omission corrected)",
        );
        let (left, right) = (80.0, self.width - 40.0);
        let (plot_top, plot_bottom) = (top + 20.0, bottom - 50.0);
        let max = groups
            .iter()
            .flat_map(|(_, v)| v.iter().copied())
            .fold(TARGET_ACCEPT_P99_MS, f64::max);
        let (lo, hi) = (0.1_f64.log10(), (max * 2.0).log10().ceil());
        let y = |v: f64| {
            let v = v.max(0.1).log10();
            plot_bottom - (v - lo) / (hi - lo) * (plot_bottom - plot_top)
        };
        self.line(left, plot_bottom, right, plot_bottom, "#333", false);
        self.line(left, plot_top, left, plot_bottom, "#333", false);
        let mut decade = lo;
        while decade <= hi + 1e-9 {
            let v = 10f64.powf(decade);
            self.line(left - 4.0, y(v), right, y(v), "#ddd", false);
            self.text(left - 6.0, y(v) + 4.0, 10, "end", &number(v));
            decade += 1.0;
        }
        let slot = (right - left) / groups.len().max(1) as f64;
        for (i, (label, values)) in groups.iter().enumerate() {
            let width = slot * 0.8 / 4.0;
            for (j, value) in values.iter().enumerate() {
                let x = left + slot * i as f64 + slot * 0.1 + width * j as f64;
                self.rect(
                    x,
                    y(*value),
                    width * 0.9,
                    plot_bottom - y(*value),
                    COLOURS[j],
                );
            }
            self.label(left + slot * (i as f64 + 0.5), plot_bottom + 14.0, label);
        }
        let ty = y(TARGET_ACCEPT_P99_MS);
        self.line(left, ty, right, ty, "#e15759", true);
        self.text(
            right,
            ty - 4.0,
            11,
            "end",
            &format!("p99 target {TARGET_ACCEPT_P99_MS} ms at {TARGET_ACCEPT_P99_RATE}/s"),
        );
        for (j, name) in ["p50", "p95", "p99", "max"].iter().enumerate() {
            let x = left + 70.0 * j as f64;
            self.rect(x, bottom - 26.0, 12.0, 12.0, COLOURS[j]);
            self.text(x + 16.0, bottom - 16.0, 11, "start", name);
        }
    }

    /// Horizontal bars on a log scale with a target line.
    fn log_bar_panel(
        &mut self,
        top: f64,
        bottom: f64,
        title: &str,
        bars: &[(String, f64)],
        target: f64,
    ) {
        self.text(20.0, top, 14, "start", title);
        let (left, right) = (200.0, self.width - 80.0);
        let (plot_top, plot_bottom) = (top + 20.0, bottom - 30.0);
        let max = bars.iter().map(|(_, v)| *v).fold(target, f64::max);
        let (lo, hi) = (1.0_f64, (max * 2.0).log10().ceil());
        let x = |v: f64| left + (v.max(10.0).log10() - lo) / (hi - lo) * (right - left);
        let mut decade = lo;
        while decade <= hi + 1e-9 {
            let v = 10f64.powf(decade);
            self.line(x(v), plot_top, x(v), plot_bottom, "#ddd", false);
            self.text(x(v), plot_bottom + 14.0, 10, "middle", &number(v));
            decade += 1.0;
        }
        let slot = (plot_bottom - plot_top) / bars.len().max(1) as f64;
        for (i, (label, value)) in bars.iter().enumerate() {
            let y = plot_top + slot * i as f64 + slot * 0.2;
            let colour = if label.starts_with("accept") {
                COLOURS[0]
            } else {
                "#bab0ac"
            };
            self.rect(left, y, x(*value) - left, slot * 0.6, colour);
            self.text(left - 8.0, y + slot * 0.4, 11, "end", label);
            self.text(
                x(*value) + 6.0,
                y + slot * 0.4,
                11,
                "start",
                &number(*value),
            );
        }
        self.line(x(target), plot_top, x(target), plot_bottom, "#e15759", true);
        self.text(
            x(target),
            plot_top - 4.0,
            11,
            "middle",
            &format!("target {}", number(target)),
        );
    }

    /// A line through `points`.
    pub(crate) fn polyline(&mut self, points: &[(f64, f64)], stroke: &str, dashed: bool) {
        if points.is_empty() {
            return;
        }
        let dash = if dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let list: Vec<String> = points
            .iter()
            .map(|(x, y)| format!("{x:.1},{y:.1}"))
            .collect();
        let _ = writeln!(
            self.body,
            r#"<polyline points="{}" fill="none" stroke="{stroke}" stroke-width="2"{dash}/>"#,
            list.join(" ")
        );
    }

    pub(crate) fn finish(self) -> String {
        format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n{body}</svg>\n",
            w = self.width,
            h = self.height,
            body = self.body
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(number(1234.4), "1,234");
        assert_eq!(number(1_234_567.0), "1,234,567");
        assert_eq!(number(12.345), "12.3");
        assert_eq!(number(1.234), "1.23");
        assert_eq!(number(-1500.0), "-1,500");
    }

    #[test]
    fn targets_say_by_how_much() {
        let miss = target("x", Goal::AtLeast(1500.0), Some(750.0), "tasks/s");
        assert_eq!(miss.passed, Some(false));
        assert_eq!(miss.margin, "miss by 50% (750 short)");
        let pass = target("x", Goal::AtMost(25.0), Some(20.0), "ms");
        assert_eq!(pass.passed, Some(true));
        assert_eq!(pass.margin, "pass, 20% under");
        let over = target("x", Goal::AtMost(100.0), Some(150.0), "MB");
        assert_eq!(over.margin, "miss by 50% (50.0 over)");
        let unknown = target("x", Goal::AtLeast(1.0), None, "tasks/s");
        assert_eq!(unknown.passed, None);
    }

    #[test]
    fn axis_maxima_are_round() {
        assert_eq!(nice_ceiling(1_650.0), 2_000.0);
        assert_eq!(nice_ceiling(2_100.0), 2_500.0);
        assert_eq!(nice_ceiling(90.0), 100.0);
        assert_eq!(nice_ceiling(100.0), 100.0);
    }

    #[test]
    fn escapes_svg_text() {
        assert_eq!(escape("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
    }
}
