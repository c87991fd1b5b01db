//! Kafka plumbing shared by `orchestrator-api` (which publishes tasks) and
//! `orchestrator-worker` (which consumes them).
//!
//! - [`config`]: the settings both binaries flatten into their configuration.
//! - [`event_hubs`]: Azure Event Hubs' connection string.
//! - [`client`]: connecting, with retries bounded by a deadline, TLS and SASL.
//! - [`security`]: the TLS configuration (certificate authorities) for SSL and SASL_SSL.
//! - [`relay`]: an in-process SOCKS5 relay that takes rskafka's connections and sets
//!   `TCP_NODELAY` on the broker side, removing the ~40 ms Nagle stall per request.
//! - [`topics`]: creating the topics when missing.
//! - [`publisher`]: publishing task envelopes through rskafka's batching producer.

pub mod client;
pub mod config;
pub mod event_hubs;
pub mod health;
pub mod metrics;
pub mod publisher;
pub mod relay;
pub mod security;
pub mod topics;

pub use client::KafkaConnection;
pub use config::{KafkaConfig, SaslMechanism, Secret, SecurityProtocol};
pub use metrics::ProduceMetrics;
pub use publisher::{BatchSettings, HEADER_TRACEPARENT, Published, TaskPublisher};
pub use topics::{ensure_topic, partition_count};

/// Ways talking to Kafka can fail.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("{setting}: {reason}")]
    InvalidSetting {
        setting: &'static str,
        reason: String,
    },
    #[error("could not start the connection relay")]
    Relay(#[source] std::io::Error),
    #[error("could not set up TLS for Kafka")]
    Tls(#[source] rustls::Error),
    #[error("Kafka request failed")]
    Client(#[source] rskafka::client::error::Error),
    #[error("the broker did not take the record")]
    Produce(#[source] rskafka::client::producer::Error),
    #[error("timed out {0}")]
    Timeout(&'static str),
    #[error("the topic has no partitions")]
    NoPartitions,
    #[error(
        "topic {0} does not exist and KAFKA_CREATE_TOPICS=false: create it first, with its partitions \
         (on Azure Event Hubs: an event hub named {0} in the namespace, e.g. \
         `az eventhubs eventhub create --resource-group RG --namespace-name NAMESPACE --name {0} --partition-count 12`)"
    )]
    TopicMissing(String),
}
