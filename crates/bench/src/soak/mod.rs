//! `orchestrator-soak` (`make soak`): the stack run for a long time at a steady share of
//! its measured capacity, retention set to minutes, against a PostgreSQL with autovacuum
//! on; a sample every minute (throughput, p99s, each process's RSS, the database's
//! size) and a verdict ([`verdict`]) on whether anything grows that should not.
//!
//! - [`config`]: flags, and the [`config::SoakPlan`] (`--smoke` shrinks it).
//! - [`verdict`]: the samples, the end state and the checks, without I/O.
//! - [`report`]: JSON, Markdown and an SVG chart.
//!
//! [`run`]: a PostgreSQL cluster of its own (`scripts/soak-postgres.sh`), the stack on
//! it (what `make run` starts), the capacity measured end to end, then the load in
//! sampling intervals, the drain and the end checks; the cluster is removed at the end.

pub mod config;
pub mod report;
pub mod verdict;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio_postgres::Client;
use xtask::DatabaseUrl;

use crate::load::{self, Submitted, Target, Until};
use crate::resources::{CpuSnapshot, Measured as _, Process};
use crate::stack::{Stack, StartSettings};
use crate::{BenchError, SERVICES, db, machine};
use config::{SoakConfig, SoakPlan};
use report::{Capacity, SoakReport};
use verdict::{EndState, Sample};

/// Connections of the capacity measurement's closed loop.
const CAPACITY_CONNECTIONS: usize = 64;
/// How long the workers may take to share the partitions.
const ASSIGNMENT_TIMEOUT: Duration = Duration::from_secs(90);
/// How long the backlog may take to drain after the capacity run and after the soak.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(600);
/// The soak's database, in its own cluster or on the server given.
const DATABASE: &str = "orchestrator_soak";

fn progress(message: &str) {
    eprintln!("soak: {message}");
}

/// Runs the soak, writes its reports, and fails when its verdict did.
pub async fn run(config: SoakConfig) -> Result<(SoakReport, crate::Outputs), BenchError> {
    let plan = config.plan();
    let repo_root = crate::repo_root(config.repo_root.as_deref())?;
    let output_dir = config
        .output_dir
        .clone()
        .unwrap_or_else(|| repo_root.join("target/soak"));
    std::fs::create_dir_all(&output_dir).map_err(|e| BenchError::io(&output_dir, e))?;
    let bin_dir = crate::bin_dir(config.bin_dir.as_deref())?;
    let run_dir = config
        .run_dir
        .clone()
        .unwrap_or_else(|| output_dir.join("run"));
    crate::stack::stop_leftover(&repo_root, &run_dir);

    let cluster = match &config.database_url {
        Some(url) => {
            crate::ensure_postgres(&repo_root, &url.with_database("postgres"))?;
            Cluster::Given(url.clone())
        }
        None => Cluster::start(&repo_root, &config.cluster_name)?,
    };
    let outcome = soak(&config, &plan, &repo_root, &bin_dir, &run_dir, &cluster).await;
    cluster.remove();
    let report = outcome?;
    let outputs = crate::write_outputs(
        &output_dir,
        "soak",
        &report,
        report.markdown(),
        report.svg(),
    )?;
    if !report.verdict.passed {
        return Err(BenchError::ChecksFailed(outputs.markdown));
    }
    Ok((report, outputs))
}

/// The PostgreSQL the soak runs against.
enum Cluster {
    /// `scripts/soak-postgres.sh`'s, on this port; removed at the end.
    Own {
        repo_root: PathBuf,
        name: String,
        port: u16,
    },
    Given(DatabaseUrl),
}

impl Cluster {
    fn start(repo_root: &Path, name: &str) -> Result<Cluster, BenchError> {
        let port = orchestrator_testkit::ports::free_port();
        progress(&format!(
            "creating PostgreSQL cluster {name} on port {port} (autovacuum on)"
        ));
        script(repo_root, &["start", &port.to_string(), name])?;
        Ok(Cluster::Own {
            repo_root: repo_root.to_path_buf(),
            name: name.to_owned(),
            port,
        })
    }

    fn url(&self) -> Result<DatabaseUrl, BenchError> {
        match self {
            Cluster::Own { port, .. } => DatabaseUrl::parse(&format!(
                "postgres://postgres@127.0.0.1:{port}/{DATABASE}?sslmode=disable"
            ))
            .map_err(|e| BenchError::Setup(e.to_string())),
            Cluster::Given(url) => Ok(url.clone()),
        }
    }

    fn remove(&self) {
        if let Cluster::Own {
            repo_root, name, ..
        } = self
            && let Err(error) = script(repo_root, &["stop", name])
        {
            progress(&format!("removing the soak's cluster failed: {error}"));
        }
    }
}

fn script(repo_root: &Path, args: &[&str]) -> Result<(), BenchError> {
    let path = repo_root.join("scripts/soak-postgres.sh");
    let status = Command::new(&path)
        .args(args)
        .status()
        .map_err(|e| BenchError::io(&path, e))?;
    if status.success() {
        Ok(())
    } else {
        Err(BenchError::Setup(format!(
            "{} {}: {status}",
            path.display(),
            args.join(" ")
        )))
    }
}

async fn soak(
    config: &SoakConfig,
    plan: &SoakPlan,
    repo_root: &Path,
    bin_dir: &Path,
    run_dir: &Path,
    cluster: &Cluster,
) -> Result<SoakReport, BenchError> {
    let url = cluster.url()?;
    let admin_url = url.with_database("postgres");
    let db_name = url
        .database()
        .ok_or_else(|| BenchError::Setup("the database URL names no database".into()))?;
    db::recreate_database(admin_url.as_str(), &db_name).await?;
    let ports = crate::stack::pick_ports(0, plan.workers)?;
    progress(&format!(
        "starting the stack from {} (API on port {}, RUN_DIR {}, RETENTION {})",
        bin_dir.display(),
        ports.api,
        run_dir.display(),
        plan.retention
    ));
    let settings = StartSettings {
        repo_root: repo_root.to_path_buf(),
        run_dir: run_dir.to_path_buf(),
        bin_dir: bin_dir.to_path_buf(),
        database_url: url.clone(),
        ports,
        workers: plan.workers,
        keep: false,
        api_env: vec![
            ("RETENTION", plan.retention.clone()),
            (
                "RETENTION_INTERVAL_SECS",
                plan.retention_interval_secs.to_string(),
            ),
        ],
        service_env: Vec::new(),
    };
    let mut stack = tokio::task::block_in_place(|| Stack::start(&settings))?;
    let outcome = measure(config, plan, repo_root, &url, &stack).await;
    if let Err(error) = tokio::task::block_in_place(|| stack.stop()) {
        progress(&format!("stopping the stack failed: {error}"));
    }
    outcome
}

async fn measure(
    config: &SoakConfig,
    plan: &SoakPlan,
    repo_root: &Path,
    url: &DatabaseUrl,
    stack: &Stack,
) -> Result<SoakReport, BenchError> {
    let db = db::connect(url.as_str()).await?;
    let autovacuum: String = db.query_one("SHOW autovacuum", &[]).await?.get(0);
    if autovacuum != "on" {
        return Err(BenchError::Setup(format!(
            "the server runs with autovacuum {autovacuum}: the soak is for a server with it on (leave out --database-url for a cluster of its own)"
        )));
    }
    let client = load::http_client(&stack.token()?)?;
    let api = stack.endpoints.api.clone();
    progress(&format!(
        "waiting for {} workers to share the partitions",
        plan.workers
    ));
    db::wait_assignment(&db, &config.topic, plan.workers, ASSIGNMENT_TIMEOUT).await?;
    let machine = machine::Machine::describe(repo_root);
    let processes = watched(stack);
    let target = Target::orchestrate(&client, &api);

    // Capacity: end to end, as fast as it goes.
    progress(&format!(
        "measuring the capacity: {} tasks end to end",
        plan.capacity_tasks
    ));
    let started = Instant::now();
    let loaded = load::closed_loop(
        &target,
        CAPACITY_CONNECTIONS,
        Until::Count(plan.capacity_tasks),
    )
    .await;
    db::wait_drained(&db, DRAIN_TIMEOUT).await?;
    let elapsed = started.elapsed();
    let capacity = Capacity {
        tasks: loaded.ok,
        seconds: elapsed.as_secs_f64(),
        tasks_per_sec: load::per_second(loaded.ok, elapsed),
        failed_submissions: loaded.sent - loaded.ok,
    };
    let rate = plan
        .rate
        .unwrap_or_else(|| ((capacity.tasks_per_sec * plan.capacity_share).round() as u32).max(1));
    progress(&format!(
        "capacity {:.0} tasks/s: soaking at {rate} tasks/s for {:.0} minutes",
        capacity.tasks_per_sec,
        plan.duration.as_secs_f64() / 60.0
    ));
    let mut accepted = loaded.ok;
    let mut unanswered = unanswered_of(&loaded.errors);
    let mut failed_submissions = loaded.sent - loaded.ok;

    let soak_started = Instant::now();
    let mut samples: Vec<Sample> = Vec::new();
    // The last interval's tasks: their end-to-end latency is read one interval later,
    // when they have finished.
    let mut previous: Option<(usize, Vec<Submitted>, DateTime<Utc>)> = None;
    while soak_started.elapsed() < plan.duration {
        let interval_start = Utc::now();
        let groups = crate::measured_processes(stack, &db).await?;
        let cpu = CpuSnapshot::take(&groups);
        let result = load::open_loop(&target, rate, plan.sample, plan.max_in_flight).await;
        let usage = cpu.until(&groups);
        let interval_end = Utc::now();
        accepted += result.ok;
        unanswered += unanswered_of(&result.errors);
        failed_submissions += result.sent - result.ok;
        if let Some((index, submitted, since)) = previous.take() {
            samples[index].e2e_p99_ms = Some(e2e_p99(&db, &submitted, since).await?);
        }
        let mut sample = observe(&db, &client, &api, &processes).await?;
        sample.at_secs = soak_started.elapsed().as_secs_f64();
        sample.accepted = result.ok;
        sample.failed_submissions = result.sent - result.ok;
        sample.unanswered = unanswered_of(&result.errors);
        let seconds = (interval_end - interval_start)
            .to_std()
            .unwrap_or(plan.sample)
            .as_secs_f64()
            .max(1e-3);
        sample.accepted_per_sec = result.ok as f64 / seconds;
        sample.completed = completed_between(&db, interval_start, interval_end).await?;
        sample.completed_per_sec = sample.completed as f64 / seconds;
        sample.accept_p99_ms = load::Percentiles::of(&result.latency).p99_ms;
        if result.ok > 0 {
            let per_task = 1000.0 / result.ok as f64;
            sample.cpu_ms_per_task = ["api", "workers", "postgres"]
                .into_iter()
                .filter_map(|group| {
                    let seconds = usage.per_group.get(group)?;
                    Some((group.to_owned(), seconds * per_task))
                })
                .collect();
        }
        progress(&sample.line());
        previous = Some((samples.len(), result.submitted, interval_start));
        samples.push(sample);
    }

    progress("load stopped: waiting for the workers to finish");
    db::wait_drained(&db, DRAIN_TIMEOUT).await?;
    if let Some((index, submitted, since)) = previous.take() {
        samples[index].e2e_p99_ms = Some(e2e_p99(&db, &submitted, since).await?);
    }
    let mut end = end_state(&db, &client, &api, stack, &processes, accepted).await?;
    end.unanswered = unanswered;
    end.failed_submissions = failed_submissions;
    let verdict = verdict::judge(
        &samples,
        plan.warmup.as_secs_f64(),
        &end,
        plan.judge_figures,
    );
    Ok(SoakReport {
        machine,
        smoke: config.smoke,
        minutes: plan.duration.as_secs_f64() / 60.0,
        warmup_minutes: plan.warmup.as_secs_f64() / 60.0,
        sample_secs: plan.sample.as_secs_f64(),
        retention: plan.retention.clone(),
        retention_interval_secs: plan.retention_interval_secs,
        workers: plan.workers,
        autovacuum,
        capacity,
        capacity_share: plan.rate.map_or(plan.capacity_share, |r| {
            f64::from(r) / capacity.tasks_per_sec.max(1e-9)
        }),
        rate,
        samples,
        end,
        verdict,
    })
}

/// Failed submissions that got no HTTP answer (see `load`'s error kinds).
fn unanswered_of(errors: &BTreeMap<String, u64>) -> u64 {
    errors
        .iter()
        .filter(|(kind, _)| !kind.starts_with("HTTP "))
        .map(|(_, n)| n)
        .sum()
}

/// The processes whose RSS is sampled, by name, as they were when the soak started (a
/// process that restarts is a new one, and shows as gone).
fn watched(stack: &Stack) -> Vec<(String, Process)> {
    let mut processes = Vec::new();
    if let Some(api) = stack.process("api") {
        processes.push(("api".to_owned(), api));
    }
    for (n, worker) in stack.workers() {
        processes.push((format!("worker-{n}"), worker));
    }
    if let Some(broker) = stack.process("broker") {
        processes.push(("broker".to_owned(), broker));
    }
    for service in SERVICES {
        let name = format!("mock-{service}");
        if let Some(mock) = stack.process(&name) {
            processes.push((name, mock));
        }
    }
    processes
}

/// RSS, database size, rows and the retention job's count now.
async fn observe(
    db: &Client,
    client: &reqwest::Client,
    api: &str,
    processes: &[(String, Process)],
) -> Result<Sample, BenchError> {
    let row = db
        .query_one(
            "SELECT pg_database_size(current_database())::float8 / 1e6, count(*), \
                    count(*) FILTER (WHERE status IN ('PENDING', 'IN_PROGRESS')) \
             FROM tasks",
            &[],
        )
        .await?;
    let tables = db
        .query(
            "SELECT relname::text, pg_total_relation_size(relid)::float8 / 1e6 \
             FROM pg_stat_user_tables",
            &[],
        )
        .await?;
    Ok(Sample {
        table_mb: tables.iter().map(|t| (t.get(0), t.get(1))).collect(),
        rss_mb: processes
            .iter()
            .filter_map(|(name, p)| Some((name.clone(), p.rss_mb()?)))
            .collect(),
        database_mb: row.get(0),
        task_rows: row.get(1),
        unfinished: row.get(2),
        removed: removed_by_retention(client, api).await?,
        ..Sample::default()
    })
}

/// Tasks that became `COMPLETED` between the two times (retention keeps them for
/// minutes, so they are all still there).
async fn completed_between(
    db: &Client,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<u64, BenchError> {
    let row = db
        .query_one(
            "SELECT count(*) FROM tasks WHERE status = 'COMPLETED' \
             AND updated_at >= $1::text::timestamptz AND updated_at < $2::text::timestamptz",
            &[&from.to_rfc3339(), &to.to_rfc3339()],
        )
        .await?;
    Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
}

/// p99 from submission to `COMPLETED` of `submitted`, ms.
async fn e2e_p99(
    db: &Client,
    submitted: &[Submitted],
    since: DateTime<Utc>,
) -> Result<f64, BenchError> {
    let finished = db::finish_times(db, since).await?;
    Ok(crate::completion_latency(submitted, &finished).0.p99_ms)
}

/// The API's `orchestrator_retention_removed_tasks_total` (its metrics' prefix is
/// `orchestrator_`).
async fn removed_by_retention(client: &reqwest::Client, api: &str) -> Result<u64, BenchError> {
    let text = client
        .get(format!("{}/metrics", api.trim_end_matches('/')))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    Ok(metric(&text, "orchestrator_retention_removed_tasks_total").unwrap_or(0.0) as u64)
}

/// The value of an unlabelled series in Prometheus's text format.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix(' ')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// The database and the processes once the backlog drained. The retention job may run
/// meanwhile: its count is read before and after the rows, and again until both agree.
async fn end_state(
    db: &Client,
    client: &reqwest::Client,
    api: &str,
    stack: &Stack,
    processes: &[(String, Process)],
    accepted: u64,
) -> Result<EndState, BenchError> {
    let mut attempts = 0;
    let (removed, row) = loop {
        let before = removed_by_retention(client, api).await?;
        let row = db
            .query_one(
                "SELECT count(*), count(*) FILTER (WHERE status = 'COMPLETED'), \
                        count(*) FILTER (WHERE status = 'FAILED'), \
                        count(*) FILTER (WHERE status IN ('PENDING', 'IN_PROGRESS')), \
                        (SELECT count(*) FROM ( \
                           SELECT t.task_id FROM tasks t \
                           LEFT JOIN service_requests s \
                             ON s.task_id = t.task_id AND s.status = 'COMPLETED' \
                           GROUP BY t.task_id HAVING count(s.id) <> 3) wrong) \
                 FROM tasks",
                &[],
            )
            .await?;
        let after = removed_by_retention(client, api).await?;
        attempts += 1;
        if before == after || attempts >= 20 {
            break (after, row);
        }
    };
    let mut error_lines = BTreeMap::new();
    let mut warn_lines = BTreeMap::new();
    if let Some(run_dir) = &stack.run_dir {
        for (name, _) in processes {
            let path = run_dir.join("logs").join(format!("{name}.log"));
            for (level, counts) in [("ERROR", &mut error_lines), ("WARN", &mut warn_lines)] {
                let count = count_lines_at(&path, level);
                if count > 0 {
                    counts.insert(name.clone(), count);
                }
            }
        }
    }
    Ok(EndState {
        accepted,
        failed_submissions: 0,
        unanswered: 0,
        task_rows: row.get(0),
        removed,
        completed: row.get(1),
        failed: row.get(2),
        unfinished: row.get(3),
        tasks_with_wrong_rows: row.get(4),
        error_lines,
        warn_lines,
        dead_processes: processes
            .iter()
            .filter(|(_, p)| !p.is_alive())
            .map(|(name, _)| name.clone())
            .collect(),
    })
}

/// Lines a process logged at `level` (ERROR, WARN): the level is the word after the
/// timestamp in the stack's text format, a field in JSON.
fn count_lines_at(path: &Path, level: &str) -> u64 {
    let Ok(text) = std::fs::read_to_string(path) else {
        return 0;
    };
    let json = format!(r#""level":"{level}""#);
    text.lines()
        .filter(|line| {
            let mut words = line.split_whitespace();
            let timestamp = words
                .next()
                .is_some_and(|w| w.starts_with(|c: char| c.is_ascii_digit()));
            (timestamp && words.next() == Some(level)) || line.contains(&json)
        })
        .count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_unlabelled_counter() {
        let text = "# HELP retention_removed_tasks Finished tasks removed\n\
                    # TYPE retention_removed_tasks counter\n\
                    retention_removed_tasks_total 1234\n\
                    retention_removed_tasks_total_other 9\n";
        assert_eq!(metric(text, "retention_removed_tasks_total"), Some(1234.0));
        assert_eq!(metric(text, "retention_removed"), None);
    }

    #[test]
    fn counts_error_lines_in_either_format() {
        let dir = std::env::temp_dir().join(format!("soak-errors-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("worker-1.log");
        std::fs::write(
            &path,
            "2026-12-06T11:00:00Z  INFO worker: started\n\
             2026-12-06T11:00:01Z ERROR worker: lost\n\
             {\"level\":\"ERROR\",\"message\":\"x\"}\n\
             {\"level\":\"INFO\",\"message\":\"an ERROR in a message is not a level\"}\n",
        )
        .expect("writing the log");
        assert_eq!(count_lines_at(&path, "ERROR"), 2);
        assert_eq!(count_lines_at(&path, "INFO"), 2);
        assert_eq!(count_lines_at(&dir.join("missing.log"), "ERROR"), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
