//! The API's configuration: one struct, from flags or environment variables.

use std::time::Duration;

use orchestrator_calls::DispatchConfig;
use orchestrator_kafka::KafkaConfig;
use orchestrator_store::PoolConfig;
use orchestrator_telemetry::LogFormat;

/// Configuration of `orchestrator-api`. Every setting is a flag with an environment
/// variable fallback; a `.env` file in the working directory is read first.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "orchestrator-api",
    version,
    about = "HTTP API of the task orchestrator"
)]
pub struct ApiConfig {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Address to listen on.
    #[arg(long, env = "API_HOST", default_value = "0.0.0.0")]
    pub host: String,

    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "API_PORT", default_value_t = 8000)]
    pub port: u16,

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

    /// How long a request waits for a database connection, in milliseconds.
    #[arg(long, env = "DATABASE_TIMEOUT_MS", default_value_t = 5_000)]
    pub database_timeout_ms: u64,

    /// Hand accepted tasks to Kafka for the workers (true) or process them in this
    /// process (false, "inline mode").
    #[arg(long, env = "USE_KAFKA", default_value_t = false, action = clap::ArgAction::Set)]
    pub use_kafka: bool,

    #[command(flatten)]
    pub kafka: KafkaConfig,

    /// Kafka mode: how long the producer waits for more records to batch with the
    /// first, in milliseconds. Higher batches more under load; it adds to accept latency.
    #[arg(long, env = "KAFKA_LINGER_MS", default_value_t = 2)]
    pub kafka_linger_ms: u64,

    /// Kafka mode: a produce batch is sent once it holds this many bytes.
    #[arg(long, env = "KAFKA_MAX_BATCH_BYTES", default_value_t = 512 * 1024)]
    pub kafka_max_batch_bytes: usize,

    /// Kafka mode: how often the outbox sweeper looks for tasks that were stored but
    /// never published (their API process died in between), in seconds.
    #[arg(long, env = "OUTBOX_SWEEP_INTERVAL_SECS", default_value_t = 10)]
    pub outbox_sweep_interval_secs: u64,

    /// Kafka mode: how old an unpublished task must be before the sweeper publishes it,
    /// in seconds. Must exceed KAFKA_REQUEST_TIMEOUT_MS.
    #[arg(long, env = "OUTBOX_GRACE_SECS", default_value_t = 60)]
    pub outbox_grace_secs: u64,

    /// Largest request body accepted, in bytes (larger: 413).
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Proxies whose `Forwarded` / `X-Forwarded-For` headers are believed, as
    /// comma-separated CIDR networks or addresses (e.g. the load balancer's subnet).
    /// Empty: the TCP peer is the client.
    #[arg(long, env = "TRUSTED_PROXIES", default_value = "",
          value_parser = crate::client_address::TrustedProxies::parse)]
    pub trusted_proxies: crate::client_address::TrustedProxies,

    /// Most payload items accepted in one request (more: 422).
    #[arg(long, env = "MAX_ITEMS", default_value_t = 1_000)]
    pub max_items: usize,

    /// The longest `deadline_seconds` a request may ask for, in seconds (more: 422).
    #[arg(long, env = "MAX_TASK_DEADLINE_SECS", default_value_t = orchestrator_core::RequestLimits::DEFAULT_MAX_DEADLINE_SECS,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_task_deadline_secs: u32,

    /// The deadline of a task submitted without `deadline_seconds`, in seconds. Unset: no
    /// deadline.
    #[arg(long, env = "TASK_DEADLINE_SECS", value_parser = clap::value_parser!(u32).range(1..))]
    pub task_deadline_secs: Option<u32>,

    /// Tasks a bulk operation (POST /api/tasks/bulk/retry, /cancel) handles per second,
    /// at most: kept with the operation, so every replica paces it the same.
    #[arg(long, env = "BULK_RATE_PER_SECOND", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub bulk_rate_per_second: u32,

    /// How long a replica's hold on a bulk operation lasts without progress, in
    /// seconds: after a replica dies, another carries on its operation this long after.
    #[arg(long, env = "BULK_CLAIM_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..=3_600))]
    pub bulk_claim_secs: u32,

    /// How often each replica looks for a bulk operation nobody works on, in
    /// milliseconds (one made on this replica starts at once).
    #[arg(long, env = "BULK_POLL_INTERVAL_MS", default_value_t = 1_000,
          value_parser = clap::value_parser!(u64).range(10..))]
    pub bulk_poll_interval_ms: u64,

    /// How long one search request looks, in milliseconds, before it answers with what
    /// it found so far and where to continue (`searched_back_to`, `next_cursor`). A
    /// request may run one bounded slice past it.
    #[arg(long, env = "SEARCH_BUDGET_MS", default_value_t = 20)]
    pub search_budget_ms: u64,

    /// A link to a task's trace in your tracing UI, shown on the dashboard's task page
    /// and answered as `trace_url`: an http(s) URL with `{trace_id}` where the id goes,
    /// e.g. `http://localhost:16686/trace/{trace_id}` (Jaeger). Unset: no link.
    #[arg(long, env = "TRACE_URL_TEMPLATE",
          value_parser = crate::tracing_http::TraceUrlTemplate::parse)]
    pub trace_url_template: Option<crate::tracing_http::TraceUrlTemplate>,

    /// How often this replica reads the metrics that come from the database (tasks per
    /// status, the oldest unfinished task's age, the outbox, table sizes), in
    /// milliseconds: one task per process reads them, whoever scrapes and how often.
    #[arg(long, env = "DATA_METRICS_INTERVAL_MS", default_value_t = 15_000,
          value_parser = clap::value_parser!(u64).range(10..))]
    pub data_metrics_interval_ms: u64,

    /// Tasks processed at the same time by this process in inline mode.
    #[arg(long, env = "INLINE_CONCURRENCY", default_value_t = 64)]
    pub inline_concurrency: usize,

    /// HTTP worker threads (0: one per CPU core).
    #[arg(long, env = "HTTP_WORKERS", default_value_t = 0)]
    pub http_workers: usize,

    /// How long a graceful shutdown may take before in-flight work is abandoned, in
    /// seconds (abandoned inline tasks resume at the next start).
    #[arg(long, env = "SHUTDOWN_TIMEOUT_SECS", default_value_t = 30)]
    pub shutdown_timeout_secs: u64,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(flatten)]
    pub auth: crate::auth::AuthConfig,

    #[command(flatten)]
    pub webhooks: crate::webhooks::WebhookConfig,

    #[command(flatten)]
    pub retention: crate::retention::RetentionConfig,

    #[command(flatten)]
    pub dispatch: DispatchConfig,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Serve the API (the default).
    Serve,
    /// Apply pending database migrations, then exit.
    Migrate,
    /// Create, list and revoke API tokens, for any tenant (needs DATABASE_URL).
    Token {
        #[command(subcommand)]
        command: crate::token_command::TokenCommand,
    },
    /// Write finished tasks to an archive file, or restore them from one (needs
    /// DATABASE_URL).
    Archive(crate::archive::ArchiveArgs),
    /// Remove finished tasks past their retention period (needs DATABASE_URL).
    Retention {
        #[command(subcommand)]
        command: RetentionCommand,
    },
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum RetentionCommand {
    /// Do one pass now, under the same lease as the replicas' job, print what it
    /// removed, then exit (logs go to stderr).
    Run,
}

impl ApiConfig {
    pub fn pool_config(&self) -> PoolConfig {
        let timeout = Duration::from_millis(self.database_timeout_ms);
        PoolConfig {
            database_url: self.database_url.clone(),
            max_size: self.database_pool_size,
            acquire_timeout: timeout,
            connect_timeout: timeout,
        }
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_secs)
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn verify_cli() {
        ApiConfig::command().debug_assert();
    }
}
