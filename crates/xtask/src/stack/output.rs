//! What the stack prints: the summary of `run`, the status, the stop command's quoting
//! and the part of a failed component's log that says why.

use std::fmt;
use std::path::PathBuf;

use super::HOST;
use crate::database_url::DatabaseUrl;
use crate::ports::Ports;
use crate::process::Process;

/// Lines of a failed component's log shown with the error.
const LOG_EXCERPT_LINES: usize = 25;

/// The part of a log that tells why a binary gave up: from its last `Error: ` line (it
/// prints that and the causes) up to the backtrace, if any; else the log's end.
pub(super) fn log_excerpt(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let shown: Vec<&str> = match lines.iter().rposition(|line| line.starts_with("Error: ")) {
        Some(start) => lines[start..]
            .iter()
            .take_while(|line| !line.starts_with("Stack backtrace:"))
            .take(LOG_EXCERPT_LINES)
            .copied()
            .collect(),
        None => lines[lines.len().saturating_sub(LOG_EXCERPT_LINES)..].to_vec(),
    };
    shown.iter().map(|line| format!("{line}\n")).collect()
}

/// `text` as one shell word: as it is when that is safe, else in single quotes.
pub(super) fn shell_quoted(text: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// What `make run` prints once the stack is up.
#[derive(Debug, Clone)]
pub struct Summary {
    pub workers: u16,
    pub ports: Ports,
    pub database_url: DatabaseUrl,
    /// Workers above `workers` that an earlier run started.
    pub also_running: Vec<u16>,
    pub logs: PathBuf,
    /// The development token's file, as a shell word.
    pub token_file: String,
    pub stop_command: String,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.ports;
        let api = format!("http://{HOST}:{}", p.api);
        writeln!(f)?;
        writeln!(f, "The stack is up (Kafka mode, {} workers):", self.workers)?;
        writeln!(f, "  API             {api}")?;
        writeln!(f, "  dashboard       {api}/ui")?;
        writeln!(f, "  Swagger UI      {api}/docs")?;
        writeln!(
            f,
            "  mock services   revenue http://{HOST}:{}, rebates http://{HOST}:{}, specialty http://{HOST}:{}",
            p.mock(0),
            p.mock(1),
            p.mock(2)
        )?;
        writeln!(
            f,
            "  broker          {HOST}:{} (Tansu, memory storage)",
            p.kafka
        )?;
        writeln!(f, "  PostgreSQL      {}", self.database_url)?;
        for n in 1..=self.workers {
            writeln!(
                f,
                "  worker-{n}        local-worker-{n}, health http://{HOST}:{}/health",
                p.worker(n)
            )?;
        }
        if !self.also_running.is_empty() {
            let names: String = self
                .also_running
                .iter()
                .map(|n| format!(" worker-{n}"))
                .collect();
            writeln!(f, "  also running from an earlier run:{names}")?;
        }
        writeln!(
            f,
            "Token (every scope, tenant default), for curl and the dashboard's sign-in:"
        )?;
        writeln!(f, "  export ORCHESTRATOR_TOKEN=$(cat {})", self.token_file)?;
        writeln!(f, "Logs: {}/", self.logs.display())?;
        writeln!(f, "Stop: {}", self.stop_command)
    }
}

/// What `make status` prints.
#[derive(Debug, Clone)]
pub struct Status {
    pub run_dir: PathBuf,
    /// Name, the process if it still runs, log file.
    pub components: Vec<(String, Option<Process>, PathBuf)>,
    /// `stack.env`, if there.
    pub settings: Option<String>,
    /// The PostgreSQL cluster `run` started, if any.
    pub postgres: Option<String>,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, process, log) in &self.components {
            match process {
                Some(process) => writeln!(
                    f,
                    "  {name:<16} running (pid {}), log {}",
                    process.pid,
                    log.display()
                )?,
                None => writeln!(f, "  {name:<16} gone (stale pid file)")?,
            }
        }
        if self.components.is_empty() {
            writeln!(f, "nothing started from {}", self.run_dir.display())?;
        }
        if let Some(settings) = &self.settings {
            writeln!(f, "settings:")?;
            for line in settings.lines() {
                writeln!(f, "  {line}")?;
            }
        }
        if let Some(cluster) = &self.postgres {
            writeln!(
                f,
                "PostgreSQL cluster {cluster} was started by 'run' and is stopped by 'stop'"
            )?;
        }
        Ok(())
    }
}
