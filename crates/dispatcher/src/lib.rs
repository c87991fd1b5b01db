//! Runs tasks: calls the downstream services for each service request and records
//! what happened. Shared by the worker and the API's inline and direct modes, so both
//! paths behave the same.
//!
//! - [`config`]: the settings both binaries flatten into their own configuration.
//! - [`registry`]: which services exist and where they live.
//! - [`policy`]: a service's retry policy, time limits and protections.
//! - [`breaker`]: the circuit breaker of a service.
//! - [`client`]: one service request's HTTP call: retries, deadline, `Retry-After`,
//!   concurrency limit and breaker.
//! - [`processor`]: a whole task, from `PENDING` to `COMPLETED` or `FAILED`.
//! - [`writer`]: the processor's database writes, with group commit.
//! - [`metrics`]: what all of the above report to Prometheus.

pub mod breaker;
pub mod client;
pub mod config;
pub mod metrics;
pub mod policy;
pub mod processor;
pub mod registry;
pub mod writer;

pub use breaker::BreakerState;
pub use client::{CallError, CallOutcome, Dispatcher, FailedAttempt};
pub use config::{ConfigError, DispatchConfig};
pub use metrics::DispatchMetrics;
pub use policy::ServicePolicy;
pub use processor::{ProcessError, TaskProcessor};
pub use registry::ServiceRegistry;
