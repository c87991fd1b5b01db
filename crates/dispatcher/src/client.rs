//! One service request's downstream call, with retries.

use std::time::Duration;

use chrono::{DateTime, Utc};
use orchestrator_core::status::excerpt;
use rand::Rng;
use reqwest::StatusCode;
use serde_json::Value;
use uuid::Uuid;

use crate::registry::ServiceRegistry;

/// When to try again and how long to wait.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub attempt_timeout: Duration,
    pub max_response_bytes: usize,
}

impl RetryPolicy {
    /// Exponential backoff with full jitter: a uniform draw from zero up to
    /// `initial * 2^(retry-1)`, capped. The jitter spreads out the retries of many
    /// requests that failed together, so they don't hit a recovering service at once.
    fn backoff(&self, retry: u32) -> Duration {
        let exp = self
            .initial_backoff
            .saturating_mul(2u32.saturating_pow(retry.saturating_sub(1)));
        let ceiling = exp.min(self.max_backoff);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::rng().random_range(0..=millis))
    }
}

/// Why a call did not produce a usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("no service named {0:?} is configured")]
    UnknownService(String),
    #[error("HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("timed out after {0} ms")]
    Timeout(u64),
    #[error("transport error: {0}")]
    Transport(String),
    #[error("response is not JSON: {0}")]
    InvalidBody(String),
    #[error("response body exceeds {limit} bytes")]
    TooLarge { limit: usize },
}

impl CallError {
    /// Whether another attempt may succeed: transport faults, timeouts, throttling
    /// and the server errors that mean "not now". Other answers will not change.
    pub fn is_retryable(&self) -> bool {
        match self {
            CallError::Timeout(_) | CallError::Transport(_) => true,
            CallError::Status { status, .. } => {
                matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
            }
            CallError::UnknownService(_)
            | CallError::InvalidBody(_)
            | CallError::TooLarge { .. } => false,
        }
    }
}

/// What one service request's call came to, over all its attempts.
#[derive(Debug, Clone)]
pub struct CallOutcome {
    pub result: Result<Value, CallError>,
    pub attempts: u32,
    pub started_at: DateTime<Utc>,
    pub completed_at: DateTime<Utc>,
}

/// Calls downstream services. Cheap to clone: the HTTP client and its connection
/// pool are shared.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    http: reqwest::Client,
    registry: ServiceRegistry,
    policy: RetryPolicy,
}

/// How much of an error body goes into the recorded error.
const ERROR_BODY_EXCERPT_CHARS: usize = 200;

impl Dispatcher {
    pub fn new(registry: ServiceRegistry, policy: RetryPolicy) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            // Small JSON requests: send them at once rather than wait to coalesce.
            .tcp_nodelay(true)
            .pool_max_idle_per_host(256)
            .pool_idle_timeout(Duration::from_secs(60))
            .connect_timeout(policy.attempt_timeout)
            .build()?;
        Ok(Self {
            http,
            registry,
            policy,
        })
    }

    pub fn registry(&self) -> &ServiceRegistry {
        &self.registry
    }

    /// Calls `POST {endpoint}` for one service request until it succeeds, fails for
    /// good, or runs out of attempts. The `Idempotency-Key` is the service request's id,
    /// identical on every attempt and every re-run.
    pub async fn call(&self, service: &str, idempotency_key: Uuid, payload: &Value) -> CallOutcome {
        let started_at = Utc::now();
        let Some(endpoint) = self.registry.endpoint(service) else {
            return CallOutcome {
                result: Err(CallError::UnknownService(service.to_owned())),
                attempts: 0,
                started_at,
                completed_at: Utc::now(),
            };
        };
        let mut attempts = 0;
        let result = loop {
            attempts += 1;
            let result = self.attempt(endpoint, idempotency_key, payload).await;
            match result {
                Err(ref error) if error.is_retryable() && attempts < self.policy.max_attempts => {
                    let delay = self.policy.backoff(attempts);
                    tracing::debug!(service, attempt = attempts, error = %error, delay_ms = delay.as_millis(), "Retrying service request.");
                    tokio::time::sleep(delay).await;
                }
                other => break other,
            }
        };
        CallOutcome {
            result,
            attempts,
            started_at,
            completed_at: Utc::now(),
        }
    }

    async fn attempt(
        &self,
        endpoint: &url::Url,
        idempotency_key: Uuid,
        payload: &Value,
    ) -> Result<Value, CallError> {
        let timeout_ms = u64::try_from(self.policy.attempt_timeout.as_millis()).unwrap_or(u64::MAX);
        let exchange = async {
            let mut response = self
                .http
                .post(endpoint.clone())
                .header("Idempotency-Key", idempotency_key.to_string())
                .json(payload)
                .send()
                .await
                .map_err(transport_error)?;
            let status = response.status();
            let body = read_limited(&mut response, self.policy.max_response_bytes).await?;
            if !status.is_success() {
                let text = String::from_utf8_lossy(&body);
                return Err(CallError::Status {
                    status: status.as_u16(),
                    body: excerpt(text.trim(), ERROR_BODY_EXCERPT_CHARS),
                });
            }
            if status == StatusCode::NO_CONTENT || body.is_empty() {
                return Err(CallError::InvalidBody("empty body".into()));
            }
            serde_json::from_slice(&body).map_err(|e| CallError::InvalidBody(e.to_string()))
        };
        tokio::time::timeout(self.policy.attempt_timeout, exchange)
            .await
            .unwrap_or(Err(CallError::Timeout(timeout_ms)))
    }
}

/// Reads the body chunk by chunk, refusing it as soon as it passes `limit`, so an
/// oversized answer never sits whole in memory.
async fn read_limited(
    response: &mut reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, CallError> {
    if response
        .content_length()
        .is_some_and(|len| len > limit as u64)
    {
        return Err(CallError::TooLarge { limit });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        if body.len() + chunk.len() > limit {
            return Err(CallError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn transport_error(error: reqwest::Error) -> CallError {
    // reqwest's Display stops at the outermost layer ("error sending request");
    // the cause chain says what actually happened (refused, reset, DNS, ...).
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    CallError::Transport(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1_000),
            attempt_timeout: Duration::from_secs(1),
            max_response_bytes: 1024,
        }
    }

    #[test]
    fn backoff_stays_under_the_exponential_ceiling_and_the_cap() {
        let policy = policy();
        for _ in 0..200 {
            assert!(policy.backoff(1) <= Duration::from_millis(100));
            assert!(policy.backoff(3) <= Duration::from_millis(400));
            assert!(policy.backoff(30) <= Duration::from_millis(1_000));
        }
    }

    #[test]
    fn only_transient_failures_are_retried() {
        for status in [408, 429, 500, 502, 503, 504] {
            assert!(
                CallError::Status {
                    status,
                    body: String::new()
                }
                .is_retryable()
            );
        }
        for status in [400, 401, 404, 409, 422, 501] {
            assert!(
                !CallError::Status {
                    status,
                    body: String::new()
                }
                .is_retryable()
            );
        }
        assert!(CallError::Timeout(1).is_retryable());
        assert!(CallError::Transport("reset".into()).is_retryable());
        assert!(!CallError::InvalidBody("x".into()).is_retryable());
        assert!(!CallError::TooLarge { limit: 1 }.is_retryable());
    }
}
