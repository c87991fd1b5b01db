//! `orchestrator-api`: the HTTP API of the orchestrator.
//!
//! It validates and stores orchestration requests, then has them processed: by the
//! workers through Kafka (Kafka mode, [`queue`]) or by this process in the background
//! (inline mode, [`inline`]); the direct endpoint processes before answering. Clients
//! follow tasks through `GET /api/tasks`, and operators through the dashboard at `/ui`
//! ([`ui`]).
//!
//! `main.rs` only parses [`config::ApiConfig`] and calls [`run`]; tests build an
//! [`startup::Application`] on port 0 and talk to it over HTTP.

pub mod archive;
pub mod audit;
pub mod auth;
pub mod bulk;
pub mod client_address;
pub mod config;
pub mod dto;
pub mod error;
pub mod events;
pub mod inline;
pub mod intake;
pub mod json;
pub mod metrics;
pub mod openapi;
pub mod queue;
pub mod retention;
pub mod routes;
pub mod startup;
pub mod state;
pub mod token_command;
pub mod tracing_http;
pub mod ui;
pub mod waiting;
pub mod webhooks;

use anyhow::Context;

pub use config::{ApiConfig, Command, RetentionCommand};
pub use startup::Application;

/// Runs the command the configuration names: serve (default), migrate, token,
/// retention or archive.
pub async fn run(config: ApiConfig) -> anyhow::Result<()> {
    match config.command {
        Some(Command::Migrate) => migrate(&config.database_url).await,
        Some(Command::Retention {
            command: RetentionCommand::Run,
        }) => retention_run(&config).await,
        Some(Command::Archive(ref args)) => archive_command(&config, args).await,
        Some(Command::Token { ref command }) => token_command::run(&config, command).await,
        None | Some(Command::Serve) => Application::build(config).await?.run_until_stopped().await,
    }
}

/// Applies pending migrations: the `migrate` command, and the first step of every start.
pub(crate) async fn migrate(database_url: &str) -> anyhow::Result<()> {
    orchestrator_store::migrations::apply(database_url)
        .await
        .context("applying database migrations (DATABASE_URL)")
}

/// The pool of a one-shot command (token, retention, archive), on a migrated database.
pub(crate) async fn command_pool(config: &ApiConfig) -> anyhow::Result<orchestrator_store::DbPool> {
    migrate(&config.database_url).await?;
    Ok(orchestrator_store::build_pool(&config.pool_config())?)
}

/// `retention run`: one pass, its report on stdout.
async fn retention_run(config: &ApiConfig) -> anyhow::Result<()> {
    let pool = command_pool(config).await?;
    let job = retention::RetentionJob::new(config.retention.clone());
    let outcome = job
        .pass(&pool, &tokio_util::sync::CancellationToken::new())
        .await
        .context("running the retention pass")?;
    let total = outcome.total();
    match outcome {
        retention::PassOutcome::Busy { holder } => anyhow::bail!(
            "another process ({holder}) is running the retention job; try again when it is done"
        ),
        retention::PassOutcome::Ran(tenants) => {
            for pass in &tenants {
                println!(
                    "tenant {}: removed {} finished tasks and {} service requests",
                    pass.tenant, pass.removed.tasks, pass.removed.service_requests
                );
                if let Some(archive) = &pass.archive {
                    println!(
                        "tenant {}: archived them first to {}",
                        pass.tenant,
                        archive.display()
                    );
                }
            }
            println!(
                "removed {} finished tasks and {} service requests past their retention period",
                total.tasks, total.service_requests
            );
        }
    }
    Ok(())
}

/// `archive --before DATE --out FILE` and `archive restore FILE`: what was done on stdout.
async fn archive_command(config: &ApiConfig, args: &archive::ArchiveArgs) -> anyhow::Result<()> {
    let pool = command_pool(config).await?;
    match (&args.command, args.before, &args.out) {
        (Some(archive::ArchiveCommand::Restore { file }), _, _) => {
            let restored = archive::restore(&pool, file).await?;
            println!(
                "restored {} tasks from {} ({} already present or their idempotency key taken, left alone)",
                restored.tasks,
                file.display(),
                restored.skipped
            );
        }
        (None, Some(before), Some(out)) => {
            let written = archive::write(&pool, before, out).await?;
            println!(
                "wrote {} tasks and {} service requests that finished before {} to {} ({} bytes); nothing was removed",
                written.tasks,
                written.service_requests,
                before.to_rfc3339(),
                written.path().display(),
                written.bytes()
            );
        }
        // clap requires --before and --out without a subcommand.
        _ => anyhow::bail!("archive needs --before and --out, or restore FILE"),
    }
    Ok(())
}
