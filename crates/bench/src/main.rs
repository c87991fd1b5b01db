//! `orchestrator-bench`: see the library, and `--help`.

use clap::Parser;
use orchestrator_bench::config::BenchConfig;

// Two worker threads: the load generator shares the machine with the stack it measures.
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let config = BenchConfig::parse();
    let (report, outputs) = orchestrator_bench::run(config).await?;
    println!("{}", report.markdown());
    eprintln!(
        "bench: reports in {}, {} and {}",
        outputs.json.display(),
        outputs.markdown.display(),
        outputs.svg.display()
    );
    Ok(())
}
