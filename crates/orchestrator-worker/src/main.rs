use std::process::ExitCode;

use clap::Parser;
use orchestrator_worker::WorkerConfig;
use tokio_util::sync::CancellationToken;

/// Shown when the worker's HTTP port is taken, the usual surprise when starting a second
/// worker by hand.
const PORT_IN_USE_HINT: &str = "another process listens on this port. `make run` starts workers on ports 9000 and up \
(`make status` lists what it started, `make stop` stops it), and each worker on a machine needs its own \
WORKER_HTTP_PORT.";

#[tokio::main]
async fn main() -> ExitCode {
    // A missing .env is normal; a broken one is worth stopping for.
    if let Err(error) = dotenvy::dotenv()
        && !error.not_found()
    {
        let error = anyhow::Error::new(error).context("reading .env");
        return orchestrator_stdx::exit_on_startup_error(&error, PORT_IN_USE_HINT);
    }
    let config = WorkerConfig::parse();
    orchestrator_telemetry::init(config.log_format);
    match orchestrator_worker::run(config, CancellationToken::new()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => orchestrator_stdx::exit_on_startup_error(&error, PORT_IN_USE_HINT),
    }
}
