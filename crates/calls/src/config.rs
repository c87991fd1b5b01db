//! Dispatch settings, flattened into each binary's configuration.

use std::collections::BTreeMap;
use std::time::Duration;

use orchestrator_core::ServiceName;
use url::Url;

use crate::client::Dispatcher;
use crate::policy::ServicePolicy;
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

    /// Time limit of a whole service request (every attempt, wait and backoff), in
    /// milliseconds.
    #[arg(long, env = "REQUEST_DEADLINE_MS", default_value_t = 60_000)]
    pub request_deadline_ms: u64,

    /// Attempts per service request, the first included.
    #[arg(long, env = "RETRY_MAX_ATTEMPTS", default_value_t = 5)]
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

    /// Calls to one service in flight from this process, at most.
    #[arg(long, env = "SERVICE_MAX_IN_FLIGHT", default_value_t = 64)]
    pub service_max_in_flight: usize,

    /// Consecutive failures of a service that open its circuit breaker (0: never).
    #[arg(long, env = "BREAKER_FAILURE_THRESHOLD", default_value_t = 10)]
    pub breaker_failure_threshold: u32,

    /// How long an open circuit breaker waits before one probe call, in milliseconds.
    #[arg(long, env = "BREAKER_COOLDOWN_MS", default_value_t = 5_000)]
    pub breaker_cooldown_ms: u64,

    /// Per-service overrides of the settings above, as SERVICE.KEY=VALUE,
    /// comma-separated or repeated; KEY is one of max_attempts, initial_backoff_ms,
    /// max_backoff_ms, attempt_timeout_ms, deadline_ms, max_response_bytes,
    /// max_in_flight, breaker_threshold, breaker_cooldown_ms; or bearer_token_file
    /// (a file holding a token sent as `Authorization: Bearer`) or header_file (a file
    /// holding one `Name: value` header), for a service that is itself protected.
    #[arg(
        long = "service-policy",
        env = "SERVICE_POLICIES",
        value_delimiter = ',',
        value_name = "SERVICE.KEY=VALUE"
    )]
    pub service_policies: Vec<String>,

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
    #[error("--service-policy / SERVICE_POLICIES: {entry:?}: {reason}")]
    InvalidPolicy { entry: String, reason: String },
    #[error("building the HTTP client failed")]
    HttpClient(#[source] crate::client::ClientError),
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

    /// The policy every service gets unless overridden.
    pub fn default_policy(&self) -> ServicePolicy {
        ServicePolicy {
            max_attempts: self.retry_max_attempts,
            initial_backoff: Duration::from_millis(self.retry_initial_backoff_ms),
            max_backoff: Duration::from_millis(self.retry_max_backoff_ms),
            attempt_timeout: Duration::from_millis(self.http_timeout_ms),
            deadline: Duration::from_millis(self.request_deadline_ms),
            max_response_bytes: self.max_response_bytes,
            max_in_flight: self.service_max_in_flight,
            breaker_threshold: self.breaker_failure_threshold,
            breaker_cooldown: Duration::from_millis(self.breaker_cooldown_ms),
            credential: None,
        }
    }

    /// Each configured service's policy: the defaults with its overrides applied.
    pub fn policies(&self) -> Result<BTreeMap<ServiceName, ServicePolicy>, ConfigError> {
        let registry = self.registry()?;
        let default = self.default_policy();
        let mut policies: BTreeMap<ServiceName, ServicePolicy> = registry
            .names()
            .into_iter()
            .map(|name| (name, default.clone()))
            .collect();
        for entry in self
            .service_policies
            .iter()
            .map(|e| e.trim())
            .filter(|e| !e.is_empty())
        {
            let invalid = |reason: String| ConfigError::InvalidPolicy {
                entry: entry.to_owned(),
                reason,
            };
            let (target, value) = entry
                .split_once('=')
                .ok_or_else(|| invalid("expected SERVICE.KEY=VALUE".into()))?;
            let (service, key) = target
                .split_once('.')
                .ok_or_else(|| invalid("expected SERVICE.KEY=VALUE".into()))?;
            let policy = ServiceName::parse(service.trim())
                .ok()
                .and_then(|name| policies.get_mut(&name))
                .ok_or_else(|| invalid(format!("no service named {service:?} is configured")))?;
            policy.set(key.trim(), value.trim()).map_err(invalid)?;
        }
        for (name, policy) in &policies {
            policy
                .validate()
                .map_err(|reason| ConfigError::InvalidPolicy {
                    entry: name.to_string(),
                    reason,
                })?;
        }
        if self.task_concurrency == 0 {
            return Err(ConfigError::Zero {
                setting: "TASK_CONCURRENCY",
            });
        }
        Ok(policies)
    }

    /// The dispatcher these settings describe; fails on any unusable setting.
    pub fn dispatcher(&self) -> Result<Dispatcher, ConfigError> {
        let registry = self.registry()?;
        let mut policies = self.policies()?;
        let services: Vec<_> = registry
            .iter()
            .filter_map(|(name, endpoint)| {
                let policy = policies.remove(name)?;
                Some((name.clone(), endpoint.clone(), policy))
            })
            .collect();
        let connect_timeout = Duration::from_millis(self.http_timeout_ms.max(1));
        Dispatcher::new(services, connect_timeout).map_err(ConfigError::HttpClient)
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
