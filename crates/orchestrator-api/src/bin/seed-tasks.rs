//! Fills a database with finished tasks (and their service requests) to measure the
//! dashboard at size: `make bench-dashboard` seeds a million, then benchmarks. Tops up
//! to `--tasks`, so running it again adds nothing. The tasks belong to the tenant
//! `default` (the column's default), that of `make run`'s token.
//!
//! ```sh
//! cargo run --release -p orchestrator-api --bin seed-tasks -- \
//!     --database-url postgres://postgres@127.0.0.1:5432/orchestrator_dashboard_bench --tasks 1000000
//! ```

use std::time::Instant;

use anyhow::Context;
use clap::{ArgAction, Parser};
use orchestrator_core::TenantName;
use orchestrator_store::seed::{self, SeedPlan};
use orchestrator_store::{dashboard, migrations, pool};

#[derive(Debug, Parser)]
#[command(about = "Fill a database with finished tasks for the dashboard benchmark")]
struct Args {
    /// The database to fill (it must exist; it is migrated first). Not DATABASE_URL,
    /// so that a development database is never filled by accident.
    #[arg(
        long,
        env = "DASHBOARD_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/orchestrator_dashboard_bench"
    )]
    database_url: String,
    /// Tasks the database should hold in the end.
    #[arg(long, default_value_t = 1_000_000)]
    tasks: i64,
    /// Tasks per INSERT statement.
    #[arg(long, default_value_t = 50_000)]
    batch: i64,
    /// Milliseconds between consecutive tasks' creation times (2500: a million tasks
    /// over 29 days, the newest now).
    #[arg(long, default_value_t = 2_500)]
    spacing_ms: i64,
    /// Also three service requests per task.
    #[arg(long, default_value_t = true, action = ArgAction::Set)]
    service_requests: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.batch >= 1, "--batch: must be at least 1");
    anyhow::ensure!(args.spacing_ms >= 0, "--spacing-ms: must not be negative");
    migrations::run_pending(&args.database_url)
        .await
        .context("migrating the database (--database-url)")?;
    let mut conn = pool::establish(&args.database_url)
        .await
        .context("connecting (--database-url)")?;
    let existing = dashboard::status_counts(&mut conn, &TenantName::default())
        .await?
        .total();
    if existing >= args.tasks {
        println!("The database holds {existing} tasks already; nothing to do.");
        return Ok(());
    }
    let plan = SeedPlan {
        total: args.tasks,
        batch: args.batch,
        spacing_ms: args.spacing_ms,
        service_requests: args.service_requests,
    };
    let started = Instant::now();
    let mut first = existing + 1;
    while first <= args.tasks {
        let last = (first + args.batch - 1).min(args.tasks);
        seed::seed_batch(&mut conn, &plan, first, last).await?;
        println!(
            "Seeded tasks {first}..={last} of {} ({:.1} s).",
            args.tasks,
            started.elapsed().as_secs_f64()
        );
        first = last + 1;
    }
    // Fresh statistics and visibility map, as autovacuum would leave a table that size.
    seed::vacuum(&mut conn).await?;
    println!(
        "Done: {} tasks in {:.1} s (vacuumed and analysed).",
        args.tasks - existing,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
