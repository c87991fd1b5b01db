//! The worker's configuration: one struct, from flags or environment variables.

use orchestrator_dispatcher::DispatchConfig;
use orchestrator_telemetry::LogFormat;

/// Configuration of `orchestrator-worker`.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "orchestrator-worker",
    version,
    about = "Worker of the task orchestrator"
)]
pub struct WorkerConfig {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// PostgreSQL connection URL.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/orchestrator",
        hide_env_values = true
    )]
    pub database_url: String,

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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn verify_cli() {
        WorkerConfig::command().debug_assert();
    }
}
