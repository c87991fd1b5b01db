//! Test support shared by the integration tests of every crate.
//!
//! - [`database`]: a fresh PostgreSQL database per test, cloned from a migrated template.
//! - [`api`]: following a task through the API until it finishes.
//! - [`idp`]: an identity provider on a loopback port: keys, a JWK set, signed JWTs.
//! - [`broker`]: a Kafka-protocol broker (Tansu) on a free loopback port, per test binary or test.
//! - [`otlp`]: an OTLP trace receiver (HTTP or gRPC) that keeps the spans it gets.
//! - [`poll`]: waiting for a condition with a deadline.
//! - [`ports`]: free loopback ports, one or a block away from `make run`'s.
//! - [`proxy`]: a TCP connection a test can cut.
//! - [`webhook`]: a webhook receiver that checks signatures with its own HMAC.
//! - [`workspace`]: the repository, the built binaries, the README's example.

pub mod api;
pub mod broker;
pub mod database;
pub mod idp;
pub mod otlp;
pub mod poll;
pub mod ports;
pub mod proxy;
pub mod sse;
pub mod webhook;
pub mod workspace;
