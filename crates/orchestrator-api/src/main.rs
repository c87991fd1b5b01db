use clap::Parser;
use orchestrator_api::ApiConfig;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // A missing .env is normal; a broken one is worth stopping for.
    if let Err(error) = dotenvy::dotenv()
        && !error.not_found()
    {
        anyhow::bail!("reading .env: {error}");
    }
    let config = ApiConfig::parse();
    orchestrator_telemetry::init(config.log_format);
    orchestrator_api::run(config).await
}
