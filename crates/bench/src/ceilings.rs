//! What this machine can do at most, measured in the same run as the stack: PostgreSQL
//! writing a task's rows the naive way (pgbench), the broker taking records of our
//! envelope's size, and a mock service answering calls.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use orchestrator_core::envelope::ENVELOPE_CONTENT_TYPE;
use orchestrator_core::{EnvelopeKind, TaskEnvelope, partition_for_key};
use orchestrator_kafka::{KafkaConfig, KafkaConnection, ensure_topic};
use rskafka::client::partition::UnknownTopicHandling;
use rskafka::client::producer::BatchProducerBuilder;
use rskafka::client::producer::aggregator::RecordAggregator;
use rskafka::record::Record;
use serde::Serialize;
use tokio::task::JoinSet;

use crate::BenchError;
use crate::load::{self, Percentiles, Target, Until};

/// A pgbench script shipped in `crates/bench/pgbench/`.
#[derive(Debug, Clone, Copy)]
pub struct Script {
    pub name: &'static str,
    pub sql: &'static str,
    /// Tasks one run of it writes.
    pub tasks_per_run: u32,
    /// Commits per run.
    pub transactions_per_run: u32,
}

/// The naive writes of a whole task: 6 transactions (see the file).
pub const NAIVE_TASK: Script = Script {
    name: "naive_task.sql",
    sql: include_str!("../pgbench/naive_task.sql"),
    tasks_per_run: 1,
    transactions_per_run: 6,
};
/// The naive writes of the accept path: 2 transactions.
pub const NAIVE_ACCEPT: Script = Script {
    name: "naive_accept.sql",
    sql: include_str!("../pgbench/naive_accept.sql"),
    tasks_per_run: 1,
    transactions_per_run: 2,
};
/// The data-model ceiling: the system's rows for 64 tasks in 3 transactions.
pub const DATA_MODEL: Script = Script {
    name: "data_model.sql",
    sql: include_str!("../pgbench/data_model.sql"),
    tasks_per_run: 64,
    transactions_per_run: 3,
};

/// The API's producer settings (KAFKA_LINGER_MS, KAFKA_MAX_BATCH_BYTES defaults).
const PRODUCE_LINGER: Duration = Duration::from_millis(2);
const PRODUCE_MAX_BATCH_BYTES: usize = 512 * 1024;
const PRODUCE_PARTITIONS: i32 = 12;
const KAFKA_TIMEOUT: Duration = Duration::from_secs(30);

/// One pgbench run.
#[derive(Debug, Clone, Serialize)]
pub struct PgbenchResult {
    /// The script, as shipped in `crates/bench/pgbench/`.
    pub script: String,
    pub clients: u32,
    pub seconds: f64,
    /// Script runs per second: tasks/s.
    pub tasks_per_s: f64,
    /// Commits per second (tasks/s × transactions per task).
    pub transactions_per_s: f64,
    /// Commits per task (a fraction when a run writes many tasks).
    pub transactions_per_task: f64,
    /// Average latency of one script run.
    pub latency_avg_ms: Option<f64>,
}

/// pgbench: on PATH, else the newest in Debian's server packages.
pub fn find_pgbench() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("pgbench");
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_string_lossy().parse().ok()?;
            let path = entry.path().join("bin/pgbench");
            path.is_file().then_some((version, path))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, path)| path)
}

/// Runs one pgbench script for `duration` with `clients` connections, prepared
/// statements, no vacuum; the script is written to `work_dir` first.
pub async fn pgbench(
    pgbench: &Path,
    database_url: &str,
    work_dir: &Path,
    script: Script,
    clients: u32,
    duration: Duration,
) -> Result<PgbenchResult, BenchError> {
    let Script {
        name,
        sql,
        tasks_per_run,
        transactions_per_run,
    } = script;
    let script = work_dir.join(name);
    std::fs::write(&script, sql).map_err(|e| BenchError::io(&script, e))?;
    let seconds = duration.as_secs().max(1);
    let threads = clients.min(2);
    let mut command = Command::new(pgbench);
    command
        .args(["-n", "-M", "prepared"])
        .args(["-c", &clients.to_string(), "-j", &threads.to_string()])
        .args(["-T", &seconds.to_string()])
        .arg("-f")
        .arg(&script)
        .arg(database_url);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .map_err(|e| BenchError::Pgbench(format!("pgbench did not finish: {e}")))?
        .map_err(|e| BenchError::io(pgbench, e))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(BenchError::Pgbench(format!(
            "{name}: {}\n{stdout}\n{stderr}",
            output.status
        )));
    }
    let runs_per_s = parse_pgbench(&stdout, "tps = ").ok_or_else(|| {
        BenchError::Pgbench(format!(
            "{name}: no 'tps = ' in its output:\n{stdout}\n{stderr}"
        ))
    })?;
    Ok(PgbenchResult {
        script: format!("crates/bench/pgbench/{name}"),
        clients,
        seconds: seconds as f64,
        tasks_per_s: runs_per_s * f64::from(tasks_per_run),
        transactions_per_s: runs_per_s * f64::from(transactions_per_run),
        transactions_per_task: f64::from(transactions_per_run) / f64::from(tasks_per_run),
        latency_avg_ms: parse_pgbench(&stdout, "latency average = "),
    })
}

/// The number after `prefix` on the first line starting with it.
fn parse_pgbench(output: &str, prefix: &str) -> Option<f64> {
    output
        .lines()
        .find_map(|line| line.trim().strip_prefix(prefix))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
}

/// The broker ceiling.
#[derive(Debug, Clone, Serialize)]
pub struct ProduceResult {
    pub records_per_s: f64,
    pub records: u64,
    pub errors: u64,
    pub record_value_bytes: usize,
    pub partitions: i32,
    pub in_flight: usize,
    pub linger_ms: u64,
    pub seconds: f64,
}

/// Produces task envelopes (same size, key and headers as the API's) to a topic of its
/// own through rskafka's batching producer, one per partition with the API's linger,
/// `in_flight` produce calls at a time, for `duration`: the most records per second
/// the broker takes from one client like ours.
pub async fn broker_produce(
    bootstrap: &str,
    in_flight: usize,
    duration: Duration,
) -> Result<ProduceResult, BenchError> {
    #[derive(Parser)]
    struct Args {
        #[command(flatten)]
        kafka: KafkaConfig,
    }
    let topic = format!("bench-produce-{}", uuid::Uuid::new_v4().simple());
    let args = Args::try_parse_from([
        "orchestrator-bench",
        "--kafka-bootstrap-servers",
        bootstrap,
        "--kafka-topic",
        &topic,
    ])
    .map_err(|e| BenchError::Setup(format!("Kafka settings: {e}")))?;
    let kafka = KafkaConnection::connect(&args.kafka, "orchestrator-bench").await?;
    let partitions =
        ensure_topic(&kafka, &topic, PRODUCE_PARTITIONS, 1, KAFKA_TIMEOUT, true).await?;
    let mut producers = Vec::new();
    for partition in 0..partitions {
        let client = kafka
            .client()
            .partition_client(topic.clone(), partition, UnknownTopicHandling::Retry)
            .await
            .map_err(orchestrator_kafka::KafkaError::Client)?;
        producers.push(
            BatchProducerBuilder::new(Arc::new(client))
                .with_linger(PRODUCE_LINGER)
                .build(RecordAggregator::new(PRODUCE_MAX_BATCH_BYTES)),
        );
    }
    let producers = Arc::new(producers);
    let record_value_bytes = envelope().encode().len();
    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let mut loops = JoinSet::new();
    for _ in 0..in_flight {
        let producers = Arc::clone(&producers);
        let ok = Arc::clone(&ok);
        let errors = Arc::clone(&errors);
        loops.spawn(async move {
            let count = u32::try_from(producers.len()).unwrap_or(1);
            while Instant::now() < deadline {
                let envelope = envelope();
                let key = envelope.key();
                let partition = usize::try_from(partition_for_key(&key, count)).unwrap_or(0);
                let Some(producer) = producers.get(partition) else {
                    break;
                };
                let mut headers = BTreeMap::new();
                headers.insert(
                    "content-type".to_owned(),
                    ENVELOPE_CONTENT_TYPE.as_bytes().to_vec(),
                );
                headers.insert(
                    "x-request-id".to_owned(),
                    uuid::Uuid::new_v4().to_string().into_bytes(),
                );
                let record = Record {
                    key: Some(key),
                    value: Some(envelope.encode()),
                    headers,
                    timestamp: envelope.published_at,
                };
                match tokio::time::timeout(KAFKA_TIMEOUT, producer.produce(record)).await {
                    Ok(Ok(_)) => ok.fetch_add(1, Ordering::Relaxed),
                    _ => errors.fetch_add(1, Ordering::Relaxed),
                };
            }
        });
    }
    while loops.join_next().await.is_some() {}
    let elapsed = started.elapsed();
    let records = ok.load(Ordering::Relaxed);
    Ok(ProduceResult {
        records_per_s: load::per_second(records, elapsed),
        records,
        errors: errors.load(Ordering::Relaxed),
        record_value_bytes,
        partitions,
        in_flight,
        linger_ms: u64::try_from(PRODUCE_LINGER.as_millis()).unwrap_or(0),
        seconds: elapsed.as_secs_f64(),
    })
}

/// An envelope as the API publishes one, with a request id like the API's.
fn envelope() -> TaskEnvelope {
    TaskEnvelope::new(
        uuid::Uuid::new_v4(),
        EnvelopeKind::Submitted,
        Some(uuid::Uuid::new_v4().to_string()),
        chrono::Utc::now(),
    )
}

/// The mock service ceiling.
#[derive(Debug, Clone, Serialize)]
pub struct MockResult {
    pub service: String,
    pub requests_per_s: f64,
    pub requests: u64,
    pub errors: u64,
    pub connections: usize,
    pub seconds: f64,
    pub latency: Percentiles,
}

/// `POST {base}/{service}` in a closed loop over `connections` kept-alive connections
/// for `duration`: the most calls per second one mock service process answers here.
pub async fn mock_raw(
    client: &reqwest::Client,
    base: &str,
    service: &str,
    connections: usize,
    duration: Duration,
) -> MockResult {
    let target = Target::mock(client, base, service);
    let result = load::closed_loop(&target, connections, Until::Elapsed(duration)).await;
    MockResult {
        service: service.to_owned(),
        requests_per_s: result.rate(),
        requests: result.ok,
        errors: result.errors.values().sum(),
        connections,
        seconds: result.elapsed.as_secs_f64(),
        latency: Percentiles::of(&result.latency),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pgbench_output() {
        let out = "number of failed transactions: 0 (0.000%)\n\
                   latency average = 41.818 ms\n\
                   initial connection time = 87.962 ms\n\
                   tps = 191.307306 (without initial connection time)\n";
        assert_eq!(parse_pgbench(out, "tps = "), Some(191.307306));
        assert_eq!(parse_pgbench(out, "latency average = "), Some(41.818));
        assert_eq!(parse_pgbench("nothing", "tps = "), None);
    }

    #[test]
    fn scripts_name_only_our_tables() {
        for script in [NAIVE_TASK, NAIVE_ACCEPT, DATA_MODEL] {
            assert!(script.sql.contains("INSERT INTO tasks"));
        }
        let commits = NAIVE_TASK.sql.matches("COMMIT;").count();
        let standalone = NAIVE_TASK
            .sql
            .matches("\nUPDATE service_requests\nSET status = 'COMPLETED'")
            .count();
        // Insert + start + 3 outcomes + settle.
        assert_eq!(
            1 + commits + standalone,
            NAIVE_TASK.transactions_per_run as usize
        );
        // Insert (the task and, through a CTE, its outbox row) + mark. Lines of a CTE are
        // indented, so each statement has one unindented INSERT, UPDATE or DELETE.
        let statements = NAIVE_ACCEPT
            .sql
            .lines()
            .filter(|line| {
                ["INSERT", "UPDATE", "DELETE"]
                    .iter()
                    .any(|s| line.starts_with(s))
            })
            .count();
        assert_eq!(statements, NAIVE_ACCEPT.transactions_per_run as usize);
        assert_eq!(
            DATA_MODEL.sql.matches("\nCOMMIT;").count(),
            DATA_MODEL.transactions_per_run as usize
        );
        assert_eq!(
            DATA_MODEL.sql.matches("generate_series(1, 64)").count() > 0,
            DATA_MODEL.tasks_per_run == 64
        );
    }
}
