//! The long-poll phase: many requests wait (`GET /api/tasks/{id}?wait=60`) for tasks
//! the workers process, one waiter per task, each started as soon as its task was
//! accepted. What counts is how long after a task's final transaction (its
//! `updated_at`, the transaction's `now()`) its waiter had the answer: the push from
//! PostgreSQL's notification through the API replica to the client.

use std::time::Duration;

use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::Value;
use tokio::task::JoinSet;

use crate::BenchError;
use crate::load::README_EXAMPLE;

/// The mock latency of the phase: long enough that every waiter waits before its
/// task finishes.
pub const MOCK_LATENCY_MS: u64 = 2_000;
const WAIT_SECS: u64 = 60;

/// What the phase measured.
#[derive(Debug, Clone, Serialize)]
pub struct LongPoll {
    pub waiters: usize,
    /// Waiters answered with a final task.
    pub answered_final: usize,
    pub mock_latency_ms: u64,
    /// From the final transaction to the answer, over the waiters answered final.
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Submits `waiters` tasks, each followed at once by a request waiting for it, and
/// measures each answer against its task's final transaction.
pub async fn run(
    client: &reqwest::Client,
    api: &str,
    waiters: usize,
) -> Result<LongPoll, BenchError> {
    let mut set: JoinSet<Result<Option<f64>, String>> = JoinSet::new();
    for _ in 0..waiters {
        let response = client
            .post(format!("{api}/api/orchestrate"))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(README_EXAMPLE)
            .send()
            .await
            .map_err(|e| BenchError::Setup(format!("long poll: submitting: {e}")))?;
        if response.status() != 202 {
            return Err(BenchError::Setup(format!(
                "long poll: submitting answered {}",
                response.status()
            )));
        }
        let task: Value = response
            .json()
            .await
            .map_err(|e| BenchError::Setup(format!("long poll: submitting: {e}")))?;
        let task_id = task["task_id"].as_str().unwrap_or_default().to_owned();
        let (client, url) = (
            client.clone(),
            format!("{api}/api/tasks/{task_id}?wait={WAIT_SECS}"),
        );
        set.spawn(async move { wait(&client, &url).await });
    }
    let mut lags = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)
        .map_err(|e| BenchError::Setup(format!("long poll: histogram: {e}")))?;
    let mut answered_final = 0;
    while let Some(joined) = set.join_next().await {
        let lag = joined
            .map_err(|e| BenchError::Setup(format!("long poll: waiter: {e}")))?
            .map_err(|e| BenchError::Setup(format!("long poll: {e}")))?;
        if let Some(lag_us) = lag {
            answered_final += 1;
            #[expect(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "a lag in whole microseconds, clamped to the histogram's range"
            )]
            lags.saturating_record((lag_us.max(1.0)) as u64);
        }
    }
    let ms = |quantile: f64| lags.value_at_quantile(quantile) as f64 / 1_000.0;
    Ok(LongPoll {
        waiters,
        answered_final,
        mock_latency_ms: MOCK_LATENCY_MS,
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
        max_ms: lags.max() as f64 / 1_000.0,
    })
}

/// One waiter: the microseconds from its task's final transaction to the answer, or
/// `None` when the wait ran out first.
async fn wait(client: &reqwest::Client, url: &str) -> Result<Option<f64>, String> {
    let response = client
        .get(url)
        .timeout(Duration::from_secs(WAIT_SECS + 10))
        .send()
        .await
        .map_err(|e| format!("waiting: {e}"))?;
    let answered = Utc::now();
    if response.status() != 200 {
        return Err(format!("waiting answered {}", response.status()));
    }
    let task: Value = response.json().await.map_err(|e| format!("waiting: {e}"))?;
    if !matches!(
        task["status"].as_str(),
        Some("COMPLETED" | "FAILED" | "CANCELLED")
    ) {
        return Ok(None);
    }
    let finished = task["updated_at"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .ok_or("an answer without updated_at")?;
    let lag = answered - finished.with_timezone(&Utc);
    Ok(Some(lag.num_microseconds().unwrap_or(i64::MAX) as f64))
}
