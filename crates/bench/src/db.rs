//! What the benchmark asks PostgreSQL: whether the tasks finished, when, and whether
//! every one has exactly its rows. Plain tokio-postgres, no TLS: the benchmark runs
//! against the local server.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::{Client, NoTls};

use crate::BenchError;

/// How often a drain is polled. Completion times come from the rows, so this only
/// bounds how late the next phase starts.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Connects and drives the connection in the background.
pub async fn connect(url: &str) -> Result<Client, BenchError> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            eprintln!("bench: PostgreSQL connection ended: {error}");
        }
    });
    Ok(client)
}

/// Names the benchmark refuses to drop.
const PROTECTED: [&str; 4] = ["postgres", "template0", "template1", "orchestrator"];

fn quoted(name: &str) -> Result<String, BenchError> {
    if name.is_empty()
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        || name.len() > 63
    {
        return Err(BenchError::Setup(format!(
            "database name {name:?}: use letters, digits and '_' only (at most 63)"
        )));
    }
    Ok(format!("\"{name}\""))
}

/// Drops the database if it exists (disconnecting its sessions) and creates it empty.
pub async fn recreate_database(admin_url: &str, name: &str) -> Result<(), BenchError> {
    if PROTECTED.contains(&name) {
        return Err(BenchError::Setup(format!(
            "the benchmark drops and recreates its database; it will not do that to {name:?}: name another one"
        )));
    }
    let quoted = quoted(name)?;
    let admin = connect(admin_url).await?;
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))
        .await?;
    admin
        .batch_execute(&format!("CREATE DATABASE {quoted}"))
        .await?;
    Ok(())
}

pub async fn drop_database(admin_url: &str, name: &str) -> Result<(), BenchError> {
    if PROTECTED.contains(&name) {
        return Ok(());
    }
    let quoted = quoted(name)?;
    let admin = connect(admin_url).await?;
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))
        .await?;
    Ok(())
}

/// The server's version and the settings that decide its commit rate.
#[derive(Debug, Clone, Serialize)]
pub struct ServerInfo {
    pub version: String,
    pub synchronous_commit: String,
    pub fsync: String,
    pub wal_sync_method: String,
    pub shared_buffers: String,
    pub max_connections: String,
    /// `off` on some CI-style servers: then the benchmark vacuums between phases.
    pub autovacuum: String,
}

pub async fn server_info(client: &Client) -> Result<ServerInfo, BenchError> {
    let show = async |name: &str| -> Result<String, BenchError> {
        let row = client.query_one(&format!("SHOW {name}"), &[]).await?;
        Ok(row.get(0))
    };
    Ok(ServerInfo {
        version: show("server_version").await?,
        synchronous_commit: show("synchronous_commit").await?,
        fsync: show("fsync").await?,
        wal_sync_method: show("wal_sync_method").await?,
        shared_buffers: show("shared_buffers").await?,
        max_connections: show("max_connections").await?,
        autovacuum: show("autovacuum").await?,
    })
}

/// `VACUUM (ANALYZE)` of this database: what autovacuum would have done by now.
pub async fn vacuum(client: &Client) -> Result<Duration, BenchError> {
    let started = Instant::now();
    client.batch_execute("VACUUM (ANALYZE)").await?;
    Ok(started.elapsed())
}

/// Counts tasks not finished yet (`PENDING` or `IN_PROGRESS`).
const UNFINISHED: &str = "SELECT count(*) FROM tasks WHERE status IN ('PENDING', 'IN_PROGRESS')";

/// Counts completion webhooks neither delivered nor given up.
const UNDELIVERED: &str = "SELECT count(*) FROM webhook_deliveries \
                           WHERE delivered_at IS NULL AND gave_up_at IS NULL";

/// Tasks not finished yet (`PENDING` or `IN_PROGRESS`).
pub async fn unfinished(client: &Client) -> Result<i64, BenchError> {
    Ok(client.query_one(UNFINISHED, &[]).await?.get(0))
}

/// Waits until no task is unfinished; returns how long that took.
pub async fn wait_drained(client: &Client, timeout: Duration) -> Result<Duration, BenchError> {
    wait_for_none(client, UNFINISHED, "tasks still unfinished", timeout).await
}

/// Waits until every completion webhook has been delivered (or given up); returns how
/// long that took. The deliveries follow the tasks' final transactions, so a phase's CPU
/// counts them only when its window ends after them.
pub async fn wait_delivered(client: &Client, timeout: Duration) -> Result<Duration, BenchError> {
    wait_for_none(client, UNDELIVERED, "webhooks still undelivered", timeout).await
}

/// Polls the count `count` until it is 0; `left` says what a timeout left over.
async fn wait_for_none(
    client: &Client,
    count: &str,
    left: &str,
    timeout: Duration,
) -> Result<Duration, BenchError> {
    let started = Instant::now();
    loop {
        let remaining: i64 = client.query_one(count, &[]).await?.get(0);
        if remaining == 0 {
            return Ok(started.elapsed());
        }
        if started.elapsed() >= timeout {
            return Err(BenchError::Timeout(format!(
                "{remaining} {left} {timeout:?} after the phase"
            )));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Waits until every partition of `topic` is leased to a live worker and exactly
/// `workers` workers hold them (a stable assignment).
pub async fn wait_assignment(
    client: &Client,
    topic: &str,
    workers: usize,
    timeout: Duration,
) -> Result<(), BenchError> {
    let started = Instant::now();
    let expected = i64::try_from(workers).unwrap_or(i64::MAX);
    loop {
        let row = client
            .query_one(
                "SELECT count(*), \
                        count(*) FILTER (WHERE owner IS NULL OR expires_at < now()), \
                        count(DISTINCT owner) FILTER (WHERE expires_at >= now()) \
                 FROM partition_leases WHERE topic = $1",
                &[&topic],
            )
            .await?;
        let (partitions, unowned, owners): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        if partitions > 0 && unowned == 0 && owners == expected {
            return Ok(());
        }
        if started.elapsed() >= timeout {
            return Err(BenchError::Timeout(format!(
                "partitions of {topic} not assigned to {workers} workers within {timeout:?} \
                 ({partitions} partitions, {unowned} without a live owner, {owners} owners)"
            )));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// How many workers hold live leases on `topic`'s partitions.
/// Forgets the topic's partition leases and members: their offsets belong to records of
/// a broker that is gone. Only while no worker runs.
pub async fn forget_topic(client: &Client, topic: &str) -> Result<(), BenchError> {
    client
        .execute("DELETE FROM partition_leases WHERE topic = $1", &[&topic])
        .await?;
    client
        .execute("DELETE FROM consumer_members WHERE topic = $1", &[&topic])
        .await?;
    Ok(())
}

pub async fn live_owners(client: &Client, topic: &str) -> Result<usize, BenchError> {
    let row = client
        .query_one(
            "SELECT count(DISTINCT owner) FROM partition_leases \
             WHERE topic = $1 AND owner IS NOT NULL AND expires_at >= now()",
            &[&topic],
        )
        .await?;
    Ok(usize::try_from(row.get::<_, i64>(0)).unwrap_or(0))
}

/// When each task created since `since` was last updated (for a `COMPLETED` task: when
/// it was settled), by task id.
pub async fn finish_times(
    client: &Client,
    since: DateTime<Utc>,
) -> Result<Vec<(String, DateTime<Utc>, String)>, BenchError> {
    // A second of slack: `created_at` is the inserting transaction's start.
    let since = (since - chrono::Duration::seconds(1)).to_rfc3339();
    let rows = client
        .query(
            "SELECT task_id::text, extract(epoch FROM updated_at)::float8, status \
             FROM tasks WHERE created_at >= $1::text::timestamptz",
            &[&since],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| {
            let epoch: f64 = row.get(1);
            let micros = (epoch * 1_000_000.0).round() as i64;
            (
                row.get::<_, String>(0),
                DateTime::from_timestamp_micros(micros).unwrap_or_default(),
                row.get::<_, String>(2),
            )
        })
        .collect())
}

/// The state of every task in the database, checked against what was accepted.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What the check was made after.
    pub after: String,
    /// 202 answers received so far.
    pub accepted: u64,
    pub tasks: i64,
    pub completed: i64,
    pub failed: i64,
    pub unfinished: i64,
    pub service_requests: i64,
    /// Tasks without exactly three `COMPLETED` service requests.
    pub tasks_with_wrong_rows: i64,
    pub passed: bool,
}

/// Every task accepted since `since` is `COMPLETED`, with exactly three `COMPLETED`
/// service requests, and the database holds no task since then that was not accepted.
/// (On a fresh database `since` is the run's start; on a running stack older tasks are
/// left out.)
pub async fn check(
    client: &Client,
    after: &str,
    accepted: u64,
    since: DateTime<Utc>,
) -> Result<Check, BenchError> {
    let since = since.to_rfc3339();
    let row = client
        .query_one(
            "WITH t AS (SELECT task_id, status FROM tasks WHERE created_at >= $1::text::timestamptz) \
             SELECT \
               (SELECT count(*) FROM t), \
               (SELECT count(*) FROM t WHERE status = 'COMPLETED'), \
               (SELECT count(*) FROM t WHERE status = 'FAILED'), \
               (SELECT count(*) FROM t WHERE status IN ('PENDING', 'IN_PROGRESS')), \
               (SELECT count(*) FROM service_requests s JOIN t ON t.task_id = s.task_id), \
               (SELECT count(*) FROM ( \
                  SELECT t.task_id FROM t \
                  LEFT JOIN service_requests s ON s.task_id = t.task_id AND s.status = 'COMPLETED' \
                  GROUP BY t.task_id HAVING count(s.id) <> 3) wrong)",
            &[&since],
        )
        .await?;
    let tasks: i64 = row.get(0);
    let completed: i64 = row.get(1);
    let service_requests: i64 = row.get(4);
    let wrong: i64 = row.get(5);
    let accepted_i64 = i64::try_from(accepted).unwrap_or(i64::MAX);
    Ok(Check {
        after: after.to_owned(),
        accepted,
        tasks,
        completed,
        failed: row.get(2),
        unfinished: row.get(3),
        service_requests,
        tasks_with_wrong_rows: wrong,
        passed: tasks == accepted_i64
            && completed == tasks
            && wrong == 0
            && service_requests == 3 * tasks,
    })
}

/// The server processes working for this database (its connections) and the server's
/// own background processes (WAL writer, checkpointer, ...), shared with any other
/// database on the server.
pub async fn server_pids(client: &Client) -> Result<(Vec<u32>, Vec<u32>), BenchError> {
    let rows = client
        .query(
            "SELECT pid, backend_type = 'client backend' AND datname = current_database() \
             FROM pg_stat_activity \
             WHERE pid <> pg_backend_pid() \
               AND (backend_type <> 'client backend' OR datname = current_database())",
            &[],
        )
        .await?;
    let mut backends = Vec::new();
    let mut background = Vec::new();
    for row in rows {
        let pid: i32 = row.get(0);
        let Ok(pid) = u32::try_from(pid) else {
            continue;
        };
        if row.get::<_, bool>(1) {
            backends.push(pid);
        } else {
            background.push(pid);
        }
    }
    Ok((backends, background))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refuses_to_drop_the_development_database() {
        let error = recreate_database("postgres://postgres@127.0.0.1:1/postgres", "orchestrator")
            .await
            .expect_err("refused");
        assert!(error.to_string().contains("will not"), "{error}");
        assert!(quoted("a; DROP").is_err());
    }
}
