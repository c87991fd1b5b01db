//! Kafka settings both binaries flatten into their configuration.

use std::time::Duration;

/// How to reach the broker and which topic carries tasks.
#[derive(Debug, Clone, clap::Args)]
pub struct KafkaConfig {
    /// Kafka bootstrap servers, HOST:PORT, comma-separated.
    #[arg(
        long = "kafka-bootstrap-servers",
        env = "KAFKA_BOOTSTRAP_SERVERS",
        default_value = "localhost:9092",
        value_delimiter = ','
    )]
    pub bootstrap_servers: Vec<String>,

    /// Topic that carries accepted tasks.
    #[arg(
        long = "kafka-topic",
        env = "KAFKA_TOPIC",
        default_value = "orchestrator-events"
    )]
    pub topic: String,

    /// Partitions of the topic when this process has to create it. An existing topic
    /// keeps its own count.
    #[arg(
        long = "kafka-partitions",
        env = "KAFKA_PARTITIONS",
        default_value_t = 12
    )]
    pub partitions: i32,

    /// Replication factor of topics this process creates.
    #[arg(
        long = "kafka-replication-factor",
        env = "KAFKA_REPLICATION_FACTOR",
        default_value_t = 1
    )]
    pub replication_factor: i16,

    /// How long one Kafka operation (produce, fetch, metadata) may keep retrying before
    /// it fails, in milliseconds.
    #[arg(
        long = "kafka-request-timeout-ms",
        env = "KAFKA_REQUEST_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub request_timeout_ms: u64,

    /// Route broker connections through the in-process relay that turns off Nagle's
    /// algorithm (rskafka cannot); without it every request may stall ~40 ms.
    #[arg(
        long = "kafka-nodelay-relay",
        env = "KAFKA_NODELAY_RELAY",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub nodelay_relay: bool,
}

impl KafkaConfig {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// Checks what clap cannot; the message names the setting.
    pub fn validate(&self) -> Result<(), crate::KafkaError> {
        let invalid = |setting: &'static str, reason: &str| {
            Err(crate::KafkaError::InvalidSetting {
                setting,
                reason: reason.to_owned(),
            })
        };
        if self.bootstrap_servers.iter().all(|s| s.trim().is_empty()) {
            return invalid(
                "KAFKA_BOOTSTRAP_SERVERS",
                "at least one HOST:PORT is needed",
            );
        }
        if let Some(bad) = self.bootstrap_servers.iter().find(|s| {
            s.rsplit_once(':')
                .is_none_or(|(_, port)| port.parse::<u16>().is_err())
        }) {
            return Err(crate::KafkaError::InvalidSetting {
                setting: "KAFKA_BOOTSTRAP_SERVERS",
                reason: format!("{bad:?} is not HOST:PORT"),
            });
        }
        if self.topic.trim().is_empty() {
            return invalid("KAFKA_TOPIC", "must not be empty");
        }
        if self.partitions < 1 {
            return invalid("KAFKA_PARTITIONS", "must be at least 1");
        }
        if self.replication_factor < 1 {
            return invalid("KAFKA_REPLICATION_FACTOR", "must be at least 1");
        }
        if self.request_timeout_ms == 0 {
            return invalid("KAFKA_REQUEST_TIMEOUT_MS", "must be at least 1");
        }
        Ok(())
    }
}
