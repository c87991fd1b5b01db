//! HTTP load: a closed loop (N connections, each sending its next request when the
//! last one answered) and an open loop (requests due at a fixed rate, latency counted
//! from when each was due, so a stalled server is not hidden by a stalled generator:
//! coordinated omission corrected).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;
use reqwest::header::CONTENT_TYPE;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::BenchError;

/// The README's quick-start body: 1 item × 3 services. A test keeps it equal to the
/// README's.
pub const README_EXAMPLE: &str = r#"{
    "task_name": "Quarterly forecast",
    "task_description": "Revenue, rebates and specialty for Q4",
    "payload": [{
      "revenue":   {"scenario_id": "3fa85f64-5717-4562-b3fc-2c963f66afa6", "business_type_id": "9b2f4e2a-6c4d-4d3e-8f1a-2b3c4d5e6f70"},
      "rebates":   {"scenario_id": "3fa85f64-5717-4562-b3fc-2c963f66afa6", "business_type_id": "9b2f4e2a-6c4d-4d3e-8f1a-2b3c4d5e6f70"},
      "specialty": {"scenario_id": "3fa85f64-5717-4562-b3fc-2c963f66afa6", "business_type_id": "9b2f4e2a-6c4d-4d3e-8f1a-2b3c4d5e6f70"}
    }]
  }"#;

/// The body a mock service gets from the workers.
pub const MOCK_CALL: &str = r#"{"scenario_id": "3fa85f64-5717-4562-b3fc-2c963f66afa6", "business_type_id": "9b2f4e2a-6c4d-4d3e-8f1a-2b3c4d5e6f70"}"#;

/// Longest latency a histogram holds, microseconds (larger values are clamped).
const HISTOGRAM_MAX_US: u64 = 600_000_000;
/// Requests that take longer fail (and count as errors).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// One kind of request, sent again and again.
#[derive(Debug, Clone)]
pub struct Target {
    client: reqwest::Client,
    url: String,
    body: Arc<str>,
    /// The answer a success has.
    expect: u16,
    /// Read `task_id` from successful answers.
    collect_ids: bool,
}

/// What one request came to.
enum Outcome {
    Ok(Option<String>),
    Failed(String),
}

#[derive(Deserialize)]
struct Accepted {
    task_id: String,
}

/// A client that keeps connections open (many per host), sends small requests at once
/// (no Nagle) and authenticates with `token` as a bearer token.
pub fn http_client(token: &str) -> Result<reqwest::Client, BenchError> {
    let mut authorization = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| BenchError::Setup("the API token is not a valid header value".into()))?;
    authorization.set_sensitive(true);
    Ok(reqwest::Client::builder()
        .default_headers(reqwest::header::HeaderMap::from_iter([(
            reqwest::header::AUTHORIZATION,
            authorization,
        )]))
        .pool_max_idle_per_host(usize::MAX)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .timeout(REQUEST_TIMEOUT)
        .no_proxy()
        .build()?)
}

impl Target {
    /// `POST {api}/api/orchestrate` with the README example; 202 is a success.
    pub fn orchestrate(client: &reqwest::Client, api: &str) -> Target {
        Target {
            client: client.clone(),
            url: format!("{}/api/orchestrate", api.trim_end_matches('/')),
            body: README_EXAMPLE.into(),
            expect: 202,
            collect_ids: true,
        }
    }

    /// [`Target::orchestrate`] with the README example calling back `callback_url` when
    /// the task is final.
    pub fn orchestrate_with_callback(
        client: &reqwest::Client,
        api: &str,
        callback_url: &str,
    ) -> Target {
        let mut body: serde_json::Value = serde_json::from_str(README_EXAMPLE).unwrap_or_default();
        body["callback_url"] = serde_json::Value::from(callback_url);
        Target {
            body: body.to_string().into(),
            ..Target::orchestrate(client, api)
        }
    }

    /// `POST {mock}/{service}` as a worker calls it; 200 is a success.
    pub fn mock(client: &reqwest::Client, base: &str, service: &str) -> Target {
        Target {
            client: client.clone(),
            url: format!("{}/{service}", base.trim_end_matches('/')),
            body: MOCK_CALL.into(),
            expect: 200,
            collect_ids: false,
        }
    }

    async fn send(&self) -> Outcome {
        let response = match self
            .client
            .post(&self.url)
            .header(CONTENT_TYPE, "application/json")
            .body(self.body.to_string())
            .send()
            .await
        {
            Ok(response) => response,
            Err(error) => return Outcome::Failed(transport_error(&error)),
        };
        let status = response.status().as_u16();
        let body = response.bytes().await;
        if status != self.expect {
            return Outcome::Failed(format!("HTTP {status}"));
        }
        let body = match body {
            Ok(body) => body,
            Err(error) => return Outcome::Failed(transport_error(&error)),
        };
        if !self.collect_ids {
            return Outcome::Ok(None);
        }
        match serde_json::from_slice::<Accepted>(&body) {
            Ok(accepted) => Outcome::Ok(Some(accepted.task_id)),
            Err(_) => Outcome::Failed(format!("HTTP {status} without a task_id")),
        }
    }
}

fn transport_error(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timeout".into()
    } else if error.is_connect() {
        "connect error".into()
    } else {
        "transport error".into()
    }
}

/// An accepted task and when its request was sent (for an open loop: when it was due).
#[derive(Debug, Clone)]
pub struct Submitted {
    pub task_id: String,
    pub sent_at: DateTime<Utc>,
}

/// Latency percentiles, milliseconds.
#[derive(Debug, Clone, Copy, Serialize, Default)]
pub struct Percentiles {
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Percentiles {
    pub fn of(histogram: &Histogram<u64>) -> Percentiles {
        if histogram.is_empty() {
            return Percentiles::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            p50_ms: ms(histogram.value_at_quantile(0.50)),
            p95_ms: ms(histogram.value_at_quantile(0.95)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            max_ms: ms(histogram.max()),
            mean_ms: histogram.mean() / 1000.0,
        }
    }
}

/// A histogram of microseconds, 3 significant digits, up to ten minutes.
pub fn new_histogram() -> Histogram<u64> {
    // Constant bounds that hdrhistogram accepts (low >= 1, high >= 2 * low, 3 digits).
    Histogram::new_with_bounds(1, HISTOGRAM_MAX_US, 3).expect("valid constant histogram bounds")
}

/// What a load phase measured.
#[derive(Debug)]
pub struct LoadResult {
    /// Requests sent (answered or failed).
    pub sent: u64,
    /// Successful answers.
    pub ok: u64,
    /// Failures by kind.
    pub errors: BTreeMap<String, u64>,
    /// Latency of the successful requests, microseconds.
    pub latency: Histogram<u64>,
    /// From the first send (or due time) to the last answer.
    pub elapsed: Duration,
    /// Accepted tasks, when the target collects them.
    pub submitted: Vec<Submitted>,
}

impl LoadResult {
    pub fn rate(&self) -> f64 {
        per_second(self.ok, self.elapsed)
    }
}

pub fn per_second(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

/// Collects outcomes from concurrent requests.
struct Recorder {
    started: Instant,
    started_wall: DateTime<Utc>,
    inner: Mutex<Recorded>,
}

struct Recorded {
    sent: u64,
    ok: u64,
    errors: BTreeMap<String, u64>,
    latency: Histogram<u64>,
    submitted: Vec<Submitted>,
    last_answer: Instant,
}

impl Recorder {
    fn new() -> Arc<Recorder> {
        let started = Instant::now();
        Arc::new(Recorder {
            started,
            started_wall: Utc::now(),
            inner: Mutex::new(Recorded {
                sent: 0,
                ok: 0,
                errors: BTreeMap::new(),
                latency: new_histogram(),
                submitted: Vec::new(),
                last_answer: started,
            }),
        })
    }

    /// The wall-clock time of an instant of this phase.
    fn wall(&self, at: Instant) -> DateTime<Utc> {
        let offset = at.saturating_duration_since(self.started);
        self.started_wall + chrono::Duration::from_std(offset).unwrap_or_default()
    }

    fn record(&self, due: Instant, outcome: Outcome) {
        let now = Instant::now();
        let micros =
            u64::try_from(now.saturating_duration_since(due).as_micros()).unwrap_or(u64::MAX);
        let sent_at = self.wall(due);
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        inner.sent += 1;
        inner.last_answer = inner.last_answer.max(now);
        match outcome {
            Outcome::Ok(task_id) => {
                inner.ok += 1;
                inner.latency.saturating_record(micros.max(1));
                if let Some(task_id) = task_id {
                    inner.submitted.push(Submitted { task_id, sent_at });
                }
            }
            Outcome::Failed(kind) => *inner.errors.entry(kind).or_default() += 1,
        }
    }

    fn finish(self: Arc<Self>) -> LoadResult {
        let started = self.started;
        let recorded = match Arc::try_unwrap(self) {
            Ok(recorder) => recorder.inner.into_inner().ok(),
            Err(shared) => shared.inner.lock().ok().map(|inner| Recorded {
                sent: inner.sent,
                ok: inner.ok,
                errors: inner.errors.clone(),
                latency: inner.latency.clone(),
                submitted: inner.submitted.clone(),
                last_answer: inner.last_answer,
            }),
        };
        let Some(recorded) = recorded else {
            return LoadResult {
                sent: 0,
                ok: 0,
                errors: BTreeMap::from([("recorder poisoned".to_owned(), 1)]),
                latency: new_histogram(),
                elapsed: Duration::ZERO,
                submitted: Vec::new(),
            };
        };
        LoadResult {
            sent: recorded.sent,
            ok: recorded.ok,
            errors: recorded.errors,
            latency: recorded.latency,
            elapsed: recorded.last_answer.saturating_duration_since(started),
            submitted: recorded.submitted,
        }
    }
}

/// When a closed loop stops.
#[derive(Debug, Clone, Copy)]
pub enum Until {
    /// Sends no new request after this long.
    Elapsed(Duration),
    /// Sends this many requests in all.
    Count(u64),
}

/// `connections` loops, each sending a request as soon as its last one was answered.
pub async fn closed_loop(target: &Target, connections: usize, until: Until) -> LoadResult {
    let recorder = Recorder::new();
    let deadline = match until {
        Until::Elapsed(d) => Some(recorder.started + d),
        Until::Count(_) => None,
    };
    let budget = Arc::new(AtomicU64::new(match until {
        Until::Count(n) => n,
        Until::Elapsed(_) => u64::MAX,
    }));
    let mut loops = JoinSet::new();
    for _ in 0..connections {
        let target = target.clone();
        let recorder = Arc::clone(&recorder);
        let budget = Arc::clone(&budget);
        loops.spawn(async move {
            loop {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let taken = budget.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                    left.checked_sub(1)
                });
                if taken.is_err() {
                    break;
                }
                let sent = Instant::now();
                let outcome = target.send().await;
                recorder.record(sent, outcome);
            }
        });
    }
    while loops.join_next().await.is_some() {}
    recorder.finish()
}

/// Requests due every `1/rate` seconds for `duration`, each sent at its due time
/// whatever the earlier ones are doing (at most `max_in_flight` at once; a request
/// waiting for a slot still counts its latency from when it was due).
pub async fn open_loop(
    target: &Target,
    rate: u32,
    duration: Duration,
    max_in_flight: usize,
) -> LoadResult {
    let total = (f64::from(rate) * duration.as_secs_f64()).round() as u64;
    let slots = Arc::new(Semaphore::new(max_in_flight));
    let recorder = Recorder::new();
    let start = recorder.started;
    let mut requests = JoinSet::new();
    for i in 0..total {
        let due = start + Duration::from_secs_f64(i as f64 / f64::from(rate));
        tokio::time::sleep_until(due.into()).await;
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            break;
        };
        let target = target.clone();
        let recorder = Arc::clone(&recorder);
        requests.spawn(async move {
            let outcome = target.send().await;
            recorder.record(due, outcome);
            drop(slot);
        });
        // Reap finished requests as we go, so the set stays small.
        while requests.try_join_next().is_some() {}
    }
    while requests.join_next().await.is_some() {}
    recorder.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_is_the_readmes() {
        let readme_body = orchestrator_testkit::workspace::readme_example();
        let ours: serde_json::Value =
            serde_json::from_str(README_EXAMPLE).expect("our body is JSON");
        assert_eq!(ours, readme_body);
    }

    #[test]
    fn percentiles_are_in_milliseconds() {
        let mut histogram = new_histogram();
        for us in 1..=1000_u64 {
            histogram.record(us * 1000).expect("in range");
        }
        let p = Percentiles::of(&histogram);
        assert!((p.p50_ms - 500.0).abs() < 1.0, "{p:?}");
        assert!((p.p99_ms - 990.0).abs() < 2.0, "{p:?}");
        assert!((p.max_ms - 1000.0).abs() < 1.0, "{p:?}");
    }

    #[test]
    fn rate_of_nothing_is_zero() {
        assert_eq!(per_second(10, Duration::ZERO), 0.0);
        assert_eq!(per_second(10, Duration::from_secs(2)), 5.0);
    }
}
