//! `orchestrator-soak`: see `orchestrator_bench::soak`, and `--help`.

use clap::Parser;
use orchestrator_bench::soak::config::SoakConfig;

// Two worker threads: the load generator shares the machine with the stack it measures.
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let config = SoakConfig::parse();
    let (report, outputs) = orchestrator_bench::soak::run(config).await?;
    println!("{}", report.markdown());
    eprintln!(
        "soak: reports in {}, {} and {}",
        outputs.json.display(),
        outputs.markdown.display(),
        outputs.svg.display()
    );
    Ok(())
}
