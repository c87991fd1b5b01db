//! Downstream calls: one service request's HTTP call to its service, with the
//! protections a service is owed. Knows nothing of tasks, PostgreSQL or Kafka: the task
//! processor (`orchestrator-processing`) decides what to call and records the outcome.
//!
//! - [`config`]: the settings both binaries flatten into their own configuration.
//! - [`registry`]: which services exist and where they live.
//! - [`policy`]: a service's retry policy, time limits and protections.
//! - [`breaker`]: the circuit breaker of a service.
//! - [`client`]: one service request's HTTP call: retries, deadline, `Retry-After`,
//!   concurrency limit and breaker.
//! - [`metrics`]: what calls and the tasks they serve report to Prometheus.

pub mod breaker;
pub mod client;
pub mod config;
pub mod credential;
pub mod metrics;
pub mod policy;
pub mod registry;

pub use breaker::BreakerState;
pub use client::{CallError, CallOrigin, CallOutcome, Dispatcher, FailedAttempt};
pub use config::{ConfigError, DispatchConfig};
pub use credential::Credential;
pub use metrics::DispatchMetrics;
pub use policy::ServicePolicy;
pub use registry::ServiceRegistry;
