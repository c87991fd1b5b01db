use std::process::ExitCode;

use orchestrator_worker::WorkerConfig;
use tokio_util::sync::CancellationToken;

/// Shown when the worker's HTTP port is taken, the usual surprise when starting a second
/// worker by hand.
const PORT_IN_USE_HINT: &str = "another process listens on this port. `make run` starts workers on ports 9000 and up \
(`make status` lists what it started, `make stop` stops it), and each worker on a machine needs its own \
WORKER_HTTP_PORT.";

/// How long the last spans may take to export at exit.
const SPAN_FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// mimalloc rather than glibc's malloc: in `make bench`'s end-to-end phase glibc's
/// malloc and free (their arenas' locking and consolidation) took about a fifth of the
/// worker's CPU samples and a sixth of the API's, for the many short-lived buffers of
/// each task (records, rows, requests, spans).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    // A missing .env is normal; a broken one is worth stopping for.
    if let Err(error) = dotenvy::dotenv()
        && !error.not_found()
    {
        let error = anyhow::Error::new(error).context("reading .env");
        return orchestrator_stdx::exit_on_startup_error(&error, PORT_IN_USE_HINT);
    }
    let config = match orchestrator_kafka::config::parse_resolved(|config: &mut WorkerConfig| {
        &mut config.kafka
    }) {
        Ok(config) => config,
        Err(error) => {
            return orchestrator_stdx::exit_on_startup_error(&error.into(), PORT_IN_USE_HINT);
        }
    };
    let telemetry = match orchestrator_telemetry::init(config.log_format, "orchestrator-worker") {
        Ok(telemetry) => telemetry,
        Err(error) => {
            return orchestrator_stdx::exit_on_startup_error(&error.into(), PORT_IN_USE_HINT);
        }
    };
    let result = orchestrator_worker::run(config, CancellationToken::new()).await;
    telemetry.shutdown(SPAN_FLUSH_TIMEOUT);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => orchestrator_stdx::exit_on_startup_error(&error, PORT_IN_USE_HINT),
    }
}
