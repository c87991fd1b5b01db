//! Runs tasks: calls the downstream services for each service request and records
//! what happened. Shared by the worker and the API's inline and direct modes, so both
//! paths behave the same.
//!
//! - [`config`]: the settings both binaries flatten into their own configuration.
//! - [`registry`]: which services exist and where they live.
//! - [`client`]: one service request's HTTP call, with retries.
//! - [`processor`]: a whole task, from `PENDING` to `COMPLETED` or `FAILED`.

pub mod client;
pub mod config;
pub mod processor;
pub mod registry;

pub use client::{CallError, CallOutcome, Dispatcher, RetryPolicy};
pub use config::{ConfigError, DispatchConfig};
pub use processor::{ProcessError, TaskProcessor};
pub use registry::ServiceRegistry;
