//! The worker's configuration: one struct, from flags or environment variables.

use std::time::Duration;

use orchestrator_calls::DispatchConfig;
use orchestrator_kafka::KafkaConfig;
use orchestrator_store::PoolConfig;
use orchestrator_telemetry::LogFormat;

/// Configuration of `orchestrator-worker`. Every setting is a flag with an environment
/// variable fallback; a `.env` file in the working directory is read first.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "orchestrator-worker",
    version,
    about = "Worker of the task orchestrator: consumes tasks from Kafka and runs them"
)]
pub struct WorkerConfig {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// PostgreSQL connection URL. TLS as libpq's `sslmode` (disable, prefer, require,
    /// verify-ca, verify-full) and `sslrootcert` (CA file, or `system`) parameters say.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/orchestrator",
        hide_env_values = true
    )]
    pub database_url: String,

    /// Database connections kept by this process, at most.
    #[arg(long, env = "DATABASE_POOL_SIZE", default_value_t = 16)]
    pub database_pool_size: usize,

    /// How long a write waits for a database connection, in milliseconds.
    #[arg(long, env = "DATABASE_TIMEOUT_MS", default_value_t = 5_000)]
    pub database_timeout_ms: u64,

    #[command(flatten)]
    pub kafka: KafkaConfig,

    /// Dead-letter topic: records that cannot be decoded or validated go here.
    #[arg(
        long = "kafka-dlq-topic",
        env = "KAFKA_DLQ_TOPIC",
        default_value = "orchestrator-events.dlq"
    )]
    pub dlq_topic: String,

    /// This replica's name in the partition leases [default: <host name>-<pid>]. Must
    /// be unique among the running replicas.
    #[arg(long, env = "WORKER_ID")]
    pub worker_id: Option<String>,

    /// Records of one partition processed at the same time, at most.
    #[arg(long, env = "MAX_IN_FLIGHT", default_value_t = 64)]
    pub max_in_flight: usize,

    /// Most bytes one fetch returns.
    #[arg(long, env = "FETCH_MAX_BYTES", default_value_t = 1024 * 1024)]
    pub fetch_max_bytes: i32,

    /// How long the broker may hold a fetch open waiting for records, in milliseconds.
    #[arg(long, env = "FETCH_MAX_WAIT_MS", default_value_t = 500)]
    pub fetch_max_wait_ms: i32,

    /// How long a partition lease (and this replica's membership) lasts without a
    /// heartbeat, in milliseconds. A replica that died loses its partitions after this.
    #[arg(long, env = "LEASE_TTL_MS", default_value_t = 10_000)]
    pub lease_ttl_ms: u64,

    /// How often leases are renewed and the assignment recomputed, in milliseconds.
    /// Must be well below the lease TTL.
    #[arg(long, env = "HEARTBEAT_INTERVAL_MS", default_value_t = 3_000)]
    pub heartbeat_interval_ms: u64,

    /// How often processed offsets are committed, in milliseconds.
    #[arg(long, env = "COMMIT_INTERVAL_MS", default_value_t = 200)]
    pub commit_interval_ms: u64,

    /// How long a graceful stop (SIGTERM, or a partition handed to another replica) may
    /// wait for records in flight, in seconds. Records still running then are handed
    /// back: the next owner processes them again from the committed offset.
    #[arg(long, env = "SHUTDOWN_TIMEOUT_SECS", default_value_t = 30)]
    pub shutdown_timeout_secs: u64,

    /// Address of the worker's HTTP port (`/health`, `/ready`, `/metrics`).
    #[arg(long, env = "WORKER_HTTP_HOST", default_value = "0.0.0.0")]
    pub http_host: String,

    /// The worker's HTTP port (0 picks a free one).
    #[arg(long, env = "WORKER_HTTP_PORT", default_value_t = 9000)]
    pub http_port: u16,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(flatten)]
    pub dispatch: DispatchConfig,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Run the worker (the default).
    Run,
    /// Apply pending database migrations, then exit.
    Migrate,
}

/// A setting that cannot be used; the message names it.
#[derive(Debug, thiserror::Error)]
#[error("{setting}: {reason}")]
pub struct InvalidSetting {
    pub setting: &'static str,
    pub reason: String,
}

impl WorkerConfig {
    pub fn pool_config(&self) -> PoolConfig {
        let timeout = Duration::from_millis(self.database_timeout_ms);
        PoolConfig {
            database_url: self.database_url.clone(),
            max_size: self.database_pool_size,
            acquire_timeout: timeout,
            connect_timeout: timeout,
        }
    }

    /// The configured worker id, or `<host name>-<pid>`.
    pub fn worker_id(&self) -> String {
        self.worker_id
            .clone()
            .filter(|id| !id.trim().is_empty())
            .unwrap_or_else(|| format!("{}-{}", host_name(), std::process::id()))
    }

    pub fn lease_ttl(&self) -> Duration {
        Duration::from_millis(self.lease_ttl_ms)
    }

    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval_ms)
    }

    pub fn commit_interval(&self) -> Duration {
        Duration::from_millis(self.commit_interval_ms)
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_secs)
    }

    /// Checks what clap cannot.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        let invalid = |setting, reason: &str| {
            Err(InvalidSetting {
                setting,
                reason: reason.to_owned(),
            })
        };
        if self.max_in_flight == 0 {
            return invalid("MAX_IN_FLIGHT", "must be at least 1");
        }
        if self.database_pool_size == 0 {
            return invalid("DATABASE_POOL_SIZE", "must be at least 1");
        }
        if self.fetch_max_bytes < 1 {
            return invalid("FETCH_MAX_BYTES", "must be at least 1");
        }
        if self.fetch_max_wait_ms < 0 {
            return invalid("FETCH_MAX_WAIT_MS", "must not be negative");
        }
        if self.heartbeat_interval_ms == 0 || self.heartbeat_interval_ms * 2 > self.lease_ttl_ms {
            return invalid(
                "HEARTBEAT_INTERVAL_MS",
                "must be at least 1 and at most half of LEASE_TTL_MS, so a lease is renewed before it expires",
            );
        }
        if self.commit_interval_ms == 0 {
            return invalid("COMMIT_INTERVAL_MS", "must be at least 1");
        }
        if self.dlq_topic.trim().is_empty() || self.dlq_topic == self.kafka.topic {
            return invalid("KAFKA_DLQ_TOPIC", "must be set and differ from KAFKA_TOPIC");
        }
        // Before the migrations run, not at the first Kafka connection.
        if let Err(orchestrator_kafka::KafkaError::InvalidSetting { setting, reason }) =
            self.kafka.validate()
        {
            return Err(InvalidSetting { setting, reason });
        }
        Ok(())
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "worker".to_owned())
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[test]
    fn verify_cli() {
        WorkerConfig::command().debug_assert();
    }

    #[test]
    fn defaults_are_valid_and_bad_settings_are_named() {
        let config = WorkerConfig::parse_from(["orchestrator-worker"]);
        config.validate().expect("defaults are valid");
        assert!(
            config
                .worker_id()
                .ends_with(&format!("-{}", std::process::id()))
        );

        let config =
            WorkerConfig::parse_from(["orchestrator-worker", "--heartbeat-interval-ms", "9000"]);
        let error = config
            .validate()
            .expect_err("heartbeat too slow for the TTL");
        assert_eq!(error.setting, "HEARTBEAT_INTERVAL_MS");

        let config = WorkerConfig::parse_from(["orchestrator-worker", "--max-in-flight", "0"]);
        assert_eq!(
            config.validate().expect_err("zero").setting,
            "MAX_IN_FLIGHT"
        );
    }
}
