//! Test support shared by the integration tests of every crate.
//!
//! - [`database`]: a fresh PostgreSQL database per test, cloned from a migrated template.
//! - [`broker`]: a Kafka-protocol broker (Tansu) on a free loopback port, per test binary or test.

pub mod broker;
pub mod database;
pub mod proxy;
pub mod workspace;
