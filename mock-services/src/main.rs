//! `mock-services`: serves the mock downstream services until SIGINT/SIGTERM.

use clap::Parser;
use orchestrator_mock_services::{MockConfig, init_tracing, run};

// The runtime only drives the server's control loop and signals; requests are handled
// on actix's own worker threads.
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let config = MockConfig::parse();
    init_tracing()?;
    run(config).await
}
