//! `cargo xtask`: repository tasks. Settings come from flags or, as `make` passes them,
//! from the environment (`make run API_PORT=18000`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use xtask::contract::{self, ContractSettings};
use xtask::ports::Ports;
use xtask::stack::{Build, DEFAULT_DATABASE_URL, DEFAULT_RUST_LOG, LocalStack, StackSettings};
use xtask::{DatabaseUrl, repo_root};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "Repository tasks", long_about = None)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// The whole stack on this machine, without Docker (`make run`, `make stop`, ...).
    Stack {
        #[command(subcommand)]
        command: StackCommand,
        #[command(flatten)]
        settings: StackArgs,
    },
    /// The API against its OpenAPI document: schemathesis and a generated Python client
    /// (`make contract`). Builds the binaries, starts the API in inline mode with the
    /// mock services on free ports and a database of its own, and stops them after.
    Contract {
        #[command(flatten)]
        settings: StackArgs,
        /// The Python that creates the tools' virtual environment.
        #[arg(long, env = "PYTHON", default_value = "python3")]
        python: String,
    },
}

#[derive(Debug, Subcommand)]
enum StackCommand {
    /// Build, start what is not running yet, wait until every component is healthy.
    Run,
    /// Stop what `run` started from RUN_DIR, and only that.
    Stop,
    /// What runs from RUN_DIR, and where.
    Status,
    /// Start a Prometheus (Debian's package) that scrapes the running stack with the
    /// alert rules loaded; `stop` stops it with the rest.
    Monitoring {
        /// Where Prometheus listens (127.0.0.1).
        #[arg(long, env = "PROMETHEUS_PORT", default_value_t = 9090)]
        port: u16,
    },
    /// Create DATABASE_URL's database if it is missing, and migrate it.
    Db {
        /// Only create the database (a tool that migrates it itself comes next).
        #[arg(long)]
        no_migrate: bool,
    },
}

#[derive(Debug, Args)]
struct StackArgs {
    /// Where the stack keeps its logs, pid files and settings [default: <repo>/.run].
    #[arg(long, env = "RUN_DIR", global = true)]
    run_dir: Option<PathBuf>,
    /// How many workers run.
    #[arg(long, env = "WORKERS", default_value_t = 2, global = true,
          value_parser = clap::value_parser!(u16).range(1..))]
    workers: u16,
    /// The cargo profile of the binaries: debug, release or a custom one.
    #[arg(long, env = "PROFILE", default_value = "debug", global = true)]
    profile: String,
    /// 1: take the binaries in BIN_DIR as they are, without building.
    #[arg(long, env = "SKIP_BUILD", default_value = "0", global = true)]
    skip_build: String,
    /// Where the binaries are [default: $CARGO_TARGET_DIR or <repo>/target, then PROFILE].
    #[arg(long, env = "BIN_DIR", global = true)]
    bin_dir: Option<PathBuf>,
    #[arg(long, env = "CARGO_TARGET_DIR", global = true, hide = true)]
    cargo_target_dir: Option<PathBuf>,
    #[arg(
        long,
        env = "CARGO",
        default_value = "cargo",
        global = true,
        hide = true
    )]
    cargo: String,
    #[arg(long, env = "API_HOST", default_value = "127.0.0.1", global = true)]
    api_host: String,
    #[arg(long, env = "API_PORT", default_value_t = Ports::DEFAULT.api, global = true,
          value_parser = clap::value_parser!(u16).range(1..))]
    api_port: u16,
    /// revenue here, rebates +1, specialty +2.
    #[arg(long, env = "MOCK_BASE_PORT", default_value_t = Ports::DEFAULT.mock_base, global = true,
          value_parser = clap::value_parser!(u16).range(1..))]
    mock_base_port: u16,
    #[arg(long, env = "KAFKA_PORT", default_value_t = Ports::DEFAULT.kafka, global = true,
          value_parser = clap::value_parser!(u16).range(1..))]
    kafka_port: u16,
    /// Worker N's health port is this + N - 1.
    #[arg(long, env = "WORKER_HTTP_BASE_PORT", default_value_t = Ports::DEFAULT.worker_http_base,
          global = true, value_parser = clap::value_parser!(u16).range(1..))]
    worker_http_base_port: u16,
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, global = true)]
    database_url: DatabaseUrl,
    /// Seconds one component may take to become healthy.
    #[arg(long, env = "START_TIMEOUT", default_value_t = 90, global = true)]
    start_timeout: u64,
    /// Seconds a group of components may take to stop after SIGTERM, before SIGKILL.
    #[arg(long, env = "STOP_TIMEOUT", default_value_t = 40, global = true)]
    stop_timeout: u64,
    /// The log filter of the API and the workers.
    #[arg(long, env = "RUST_LOG", default_value = DEFAULT_RUST_LOG, global = true)]
    rust_log: String,
}

impl StackArgs {
    fn settings(self, root: &Path) -> anyhow::Result<StackSettings> {
        // Relative paths are taken from where the task was called, as a shell would.
        let absolute = |path: PathBuf| std::path::absolute(path);
        let bin_dir = match self.bin_dir {
            Some(dir) => dir,
            None => self
                .cargo_target_dir
                .unwrap_or_else(|| root.join("target"))
                .join(&self.profile),
        };
        Ok(StackSettings {
            repo_root: root.to_path_buf(),
            run_dir: absolute(self.run_dir.unwrap_or_else(|| root.join(".run")))?,
            bin_dir: absolute(bin_dir)?,
            build: (self.skip_build != "1").then_some(Build {
                cargo: self.cargo,
                profile: self.profile,
            }),
            workers: self.workers,
            api_host: self.api_host,
            ports: Ports {
                api: self.api_port,
                mock_base: self.mock_base_port,
                kafka: self.kafka_port,
                worker_http_base: self.worker_http_base_port,
            },
            database_url: self.database_url,
            start_timeout: Duration::from_secs(self.start_timeout),
            stop_timeout: Duration::from_secs(self.stop_timeout),
            rust_log: self.rust_log,
            api_env: Vec::new(),
            service_env: Vec::new(),
        })
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let (command, settings) = match cli.task {
        Task::Stack { command, settings } => (command, settings),
        Task::Contract { settings, python } => {
            let root = repo_root();
            let out_dir = settings
                .cargo_target_dir
                .clone()
                .unwrap_or_else(|| root.join("target"))
                .join("contract");
            return contract::run(&ContractSettings {
                stack: settings.settings(&root)?,
                out_dir,
                python,
            });
        }
    };
    let mut stack = LocalStack::new(settings.settings(&repo_root())?);
    match command {
        StackCommand::Run => print!("{}", stack.run()?),
        StackCommand::Stop => stack.stop()?,
        StackCommand::Status => print!("{}", stack.status()),
        StackCommand::Monitoring { port } => print!("{}", stack.monitoring(port)?),
        StackCommand::Db { no_migrate } => stack.db(!no_migrate)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn settings_default_to_make_runs() {
        let cli = Cli::try_parse_from(["xtask", "stack", "status"]).expect("parsing");
        let Task::Stack { settings, .. } = cli.task else {
            panic!("parsed as another task")
        };
        // The environment of the test run may set some of these; only the parsing of
        // flags is looked at below.
        let settings = StackArgs {
            run_dir: None,
            bin_dir: None,
            cargo_target_dir: None,
            ..settings
        }
        .settings(Path::new("/repo"))
        .expect("settings");
        assert_eq!(settings.run_dir, Path::new("/repo/.run"));
        assert!(settings.bin_dir.starts_with("/repo/target"));
    }

    #[test]
    fn flags_after_the_command_set_the_ports() {
        let cli = Cli::try_parse_from([
            "xtask",
            "stack",
            "run",
            "--api-port",
            "18000",
            "--workers",
            "3",
        ])
        .expect("parsing");
        let Task::Stack { settings, .. } = cli.task else {
            panic!("parsed as another task")
        };
        assert_eq!(settings.api_port, 18_000);
        assert_eq!(settings.workers, 3);
        assert!(
            Cli::try_parse_from(["xtask", "stack", "run", "--workers", "0"]).is_err(),
            "WORKERS must be positive"
        );
        assert!(
            Cli::try_parse_from(["xtask", "stack", "run", "--database-url", "orchestrator"])
                .is_err(),
            "DATABASE_URL must be a postgres URL"
        );
    }
}
