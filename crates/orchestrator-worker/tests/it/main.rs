//! End-to-end tests of the Kafka pipeline: the API in Kafka mode, a real
//! Kafka-protocol broker, workers (in-process and as processes), real PostgreSQL, and
//! the mock services over HTTP.

mod control;
mod event_hubs;
mod lost_records;
mod monitoring;
mod operations;
mod pipeline;
mod scaling;
mod support;
mod tracing;
