//! Mock downstream services for the orchestrator: `POST /revenue`, `POST /rebates` and
//! `POST /specialty` (the set is configurable) answering deterministically from the
//! request, with injectable latency and faults.
//!
//! Behaviour is configured at three levels, the most specific winning:
//!
//! 1. process flags ([`MockConfig`]) form the default [`Behaviour`] of every service;
//! 2. `PUT /control/{service}` (or [`MockServer::set_behaviour`]) replaces one service's
//!    behaviour, `DELETE /control` (or [`MockServer::reset_behaviours`]) restores the
//!    default;
//! 3. `X-Mock-*` request headers override single requests: `X-Mock-Status`,
//!    `X-Mock-Delay-Ms`, `X-Mock-Retry-After`, `X-Mock-Fail-First`, `X-Mock-Hang`,
//!    `X-Mock-Reset`, `X-Mock-Malformed`, `X-Mock-Huge-Bytes`.
//!
//! `GET /stats` (or [`MockServer::stats`]) counts every service request exactly, per
//! path and per `Idempotency-Key`, with current and peak in-flight counts, so tests can
//! count retries and check concurrency limits.
//!
//! ```no_run
//! # async fn example() -> std::io::Result<()> {
//! use orchestrator_mock_services::{Behaviour, MockConfig, MockServer};
//!
//! let server = MockServer::start(MockConfig::for_tests()).await?;
//! server.set_behaviour("revenue", Behaviour { fail_first: Some(2), ..Behaviour::default() });
//! // ... point the client at server.base_url() ...
//! assert_eq!(server.stats().key_count("some-key"), 0);
//! server.stop().await;
//! # Ok(())
//! # }
//! ```

mod behaviour;
mod bodies;
mod config;
mod handlers;
mod hash;
mod overrides;
mod payload;
mod plan;
mod responses;
mod server;
mod state;
mod stats;
mod telemetry;

pub use behaviour::{Behaviour, DEFAULT_FAILURE_STATUS, Latency, RequiredHeader};
pub use config::{BehaviourFlags, MockConfig};
pub use payload::{Currency, ServiceRequest, ServiceResponse, ServiceResult, mock_result};
pub use server::{MockServer, run};
pub use stats::StatsSnapshot;
pub use telemetry::init_tracing;
