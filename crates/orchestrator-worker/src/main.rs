use clap::Parser;
use orchestrator_worker::WorkerConfig;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // A missing .env is normal; a broken one is worth stopping for.
    if let Err(error) = dotenvy::dotenv()
        && !error.not_found()
    {
        anyhow::bail!("reading .env: {error}");
    }
    let config = WorkerConfig::parse();
    orchestrator_telemetry::init(config.log_format);
    orchestrator_worker::run(config, CancellationToken::new()).await
}
