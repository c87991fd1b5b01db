//! `orchestrator-worker`: consumes accepted tasks and runs them against the downstream
//! services.
//!
//! In this release the worker applies migrations, validates its configuration and
//! waits for a stop signal; consuming from Kafka arrives with the Kafka pipeline.

pub mod config;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

pub use config::{Command, WorkerConfig};

/// Runs the command the configuration names: run (default) or migrate.
pub async fn run(config: WorkerConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    // Fail on bad settings at startup, not at the first task.
    config.dispatch.registry()?;
    config.dispatch.retry_policy()?;
    let applied = orchestrator_store::migrations::run_pending(&config.database_url)
        .await
        .context("applying database migrations (DATABASE_URL)")?;
    if !applied.is_empty() {
        tracing::info!(?applied, "Applied migrations.");
    }
    if matches!(config.command, Some(Command::Migrate)) {
        return Ok(());
    }
    tracing::info!("Worker started; waiting for a stop signal.");
    wait_for_stop(&shutdown).await;
    tracing::info!("Worker stopped.");
    Ok(())
}

/// Resolves on SIGTERM, SIGINT or cancellation of `token`.
pub async fn wait_for_stop(token: &CancellationToken) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
        () = token.cancelled() => {}
    }
}
