//! Dispatch settings, flattened into each binary's configuration.

use std::time::Duration;

use orchestrator_core::ServiceName;
use url::Url;

use crate::client::RetryPolicy;
use crate::registry::ServiceRegistry;

/// How to reach the downstream services and how hard to try.
#[derive(Debug, Clone, clap::Args)]
pub struct DispatchConfig {
    /// Base URL of the revenue service (called as POST {url}/revenue).
    #[arg(
        long,
        env = "REVENUE_SERVICE_URL",
        default_value = "http://localhost:8001"
    )]
    pub revenue_service_url: String,

    /// Base URL of the rebates service (called as POST {url}/rebates).
    #[arg(
        long,
        env = "REBATES_SERVICE_URL",
        default_value = "http://localhost:8002"
    )]
    pub rebates_service_url: String,

    /// Base URL of the specialty service (called as POST {url}/specialty).
    #[arg(
        long,
        env = "SPECIALTY_SERVICE_URL",
        default_value = "http://localhost:8003"
    )]
    pub specialty_service_url: String,

    /// More services as NAME=BASE_URL, comma-separated or repeated; a name given here
    /// overrides the URL of a built-in service.
    #[arg(
        long = "service",
        env = "EXTRA_SERVICES",
        value_delimiter = ',',
        value_name = "NAME=URL"
    )]
    pub extra_services: Vec<String>,

    /// Time limit of one HTTP attempt, in milliseconds.
    #[arg(long, env = "HTTP_TIMEOUT_MS", default_value_t = 10_000)]
    pub http_timeout_ms: u64,

    /// Attempts per service request, the first included.
    #[arg(long, env = "RETRY_MAX_ATTEMPTS", default_value_t = 3)]
    pub retry_max_attempts: u32,

    /// First retry delay in milliseconds; doubles at each retry (with full jitter).
    #[arg(long, env = "RETRY_INITIAL_BACKOFF_MS", default_value_t = 100)]
    pub retry_initial_backoff_ms: u64,

    /// Longest delay between two attempts, in milliseconds.
    #[arg(long, env = "RETRY_MAX_BACKOFF_MS", default_value_t = 10_000)]
    pub retry_max_backoff_ms: u64,

    /// Largest downstream response body accepted, in bytes.
    #[arg(long, env = "MAX_RESPONSE_BYTES", default_value_t = 1024 * 1024)]
    pub max_response_bytes: usize,

    /// Service requests of one task run at the same time, at most.
    #[arg(long, env = "TASK_CONCURRENCY", default_value_t = 16)]
    pub task_concurrency: usize,
}

/// A setting that cannot be used; the message names it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{setting}: {value:?} is not a valid URL: {reason}")]
    InvalidUrl {
        setting: &'static str,
        value: String,
        reason: String,
    },
    #[error("--service / EXTRA_SERVICES: {0:?} must look like NAME=URL with a valid service name")]
    InvalidService(String),
    #[error("{setting}: must be at least 1")]
    Zero { setting: &'static str },
}

impl DispatchConfig {
    pub fn registry(&self) -> Result<ServiceRegistry, ConfigError> {
        let mut bases = std::collections::BTreeMap::new();
        for (name, setting, value) in [
            ("revenue", "REVENUE_SERVICE_URL", &self.revenue_service_url),
            ("rebates", "REBATES_SERVICE_URL", &self.rebates_service_url),
            (
                "specialty",
                "SPECIALTY_SERVICE_URL",
                &self.specialty_service_url,
            ),
        ] {
            let name =
                ServiceName::parse(name).map_err(|_| ConfigError::InvalidService(name.into()))?;
            bases.insert(name, parse_url(setting, value)?);
        }
        for entry in &self.extra_services {
            let (name, url) = entry
                .split_once('=')
                .ok_or_else(|| ConfigError::InvalidService(entry.clone()))?;
            let name = ServiceName::parse(name.trim())
                .map_err(|_| ConfigError::InvalidService(entry.clone()))?;
            bases.insert(name, parse_url("EXTRA_SERVICES", url.trim())?);
        }
        Ok(ServiceRegistry::new(bases))
    }

    pub fn retry_policy(&self) -> Result<RetryPolicy, ConfigError> {
        if self.retry_max_attempts == 0 {
            return Err(ConfigError::Zero {
                setting: "RETRY_MAX_ATTEMPTS",
            });
        }
        if self.task_concurrency == 0 {
            return Err(ConfigError::Zero {
                setting: "TASK_CONCURRENCY",
            });
        }
        Ok(RetryPolicy {
            max_attempts: self.retry_max_attempts,
            initial_backoff: Duration::from_millis(self.retry_initial_backoff_ms),
            max_backoff: Duration::from_millis(self.retry_max_backoff_ms),
            attempt_timeout: Duration::from_millis(self.http_timeout_ms),
            max_response_bytes: self.max_response_bytes,
        })
    }
}

fn parse_url(setting: &'static str, value: &str) -> Result<Url, ConfigError> {
    let invalid = |reason: String| ConfigError::InvalidUrl {
        setting,
        value: value.to_owned(),
        reason,
    };
    let url = Url::parse(value).map_err(|e| invalid(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err(invalid("expected an http:// or https:// base URL".into()));
    }
    Ok(url)
}
