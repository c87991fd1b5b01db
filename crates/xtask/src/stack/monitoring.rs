//! `make monitoring`: a Prometheus beside a running `make run` stack, scraping its API
//! and workers with the project's alert rules loaded, as a component of the stack (its
//! pid file in RUN_DIR, so `make stop` stops it too).

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::health::Health;
use super::{Component, HOST, LocalStack, RunDir, StackError};

/// Debian's `prometheus` package puts the server here.
const PROMETHEUS: &str = "/usr/bin/prometheus";
/// The component's name: its pid file and log in RUN_DIR.
const NAME: &str = "prometheus";

/// The configuration scraping the API on `api_port` and the workers on `worker_ports`
/// under the job names the rules expect, with `rules` loaded. With `metrics_token`, the
/// API is scraped with it.
pub(super) fn config(
    rules: &Path,
    api_port: u16,
    worker_ports: &[u16],
    metrics_token: Option<&Path>,
) -> String {
    let targets = |ports: &[u16]| {
        ports
            .iter()
            .map(|port| format!("\"{HOST}:{port}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut text = format!(
        "# Written by `make monitoring` for this stack; rewritten at each run.\n\
         global:\n  scrape_interval: 5s\n  evaluation_interval: 5s\n\
         rule_files:\n  - \"{}\"\n\
         scrape_configs:\n  - job_name: orchestrator-api\n    static_configs:\n      - targets: [{}]\n",
        rules.display(),
        targets(&[api_port])
    );
    if let Some(token) = metrics_token {
        let _ = writeln!(
            text,
            "    authorization:\n      credentials_file: \"{}\"",
            token.display()
        );
    }
    let _ = writeln!(
        text,
        "  - job_name: orchestrator-worker\n    static_configs:\n      - targets: [{}]",
        targets(worker_ports)
    );
    text
}

impl LocalStack {
    /// Starts (or leaves running) a Prometheus on 127.0.0.1:`port` for this stack, which
    /// must be running; installs Debian's `prometheus` package when its server is
    /// missing. Returns what to open.
    pub fn monitoring(&mut self, port: u16) -> Result<String, StackError> {
        let Some(dir) = RunDir::existing(&self.settings.run_dir) else {
            return Err(StackError::Command(
                "make monitoring".into(),
                "no stack runs from this RUN_DIR: start it with `make run` first".into(),
            ));
        };
        let _lock = dir.lock()?;
        if dir.running("api").is_none() {
            return Err(StackError::Command(
                "make monitoring".into(),
                "the stack's API is not running: start it with `make run` first".into(),
            ));
        }
        let program = self.ensure_prometheus()?;
        let worker_ports: Vec<u16> = self
            .workers()
            .into_iter()
            .map(|(number, _)| self.settings.ports.worker(number))
            .collect();
        let rules = self
            .settings
            .repo_root
            .join("deploy/monitoring/alerts.yaml");
        let config_path = dir.path().join("prometheus.yml");
        let text = config(&rules, self.settings.ports.api, &worker_ports, None);
        fs::write(&config_path, text).map_err(|e| StackError::io(&config_path, e))?;
        let data = dir.path().join("prometheus-data");
        let component = Component {
            name: NAME.to_owned(),
            program,
            args: vec![
                format!("--config.file={}", config_path.display()),
                format!("--storage.tsdb.path={}", data.display()),
                "--storage.tsdb.retention.time=1d".to_owned(),
                format!("--web.listen-address={HOST}:{port}"),
            ],
            env: Vec::new(),
            port,
            port_variable: "PROMETHEUS_PORT",
            health: Health::Http(port, "/-/ready"),
        };
        // A Prometheus already running keeps its configuration: restart it so that it
        // scrapes the workers running now.
        if dir.running(NAME).is_some() {
            self.stop_group(&dir, &[NAME.to_owned()]);
        }
        self.ensure_started(&dir, &component)?;
        self.wait_healthy(&dir, &component)?;
        Ok(format!(
            "Prometheus: http://{HOST}:{port} scrapes the API and {} worker(s)\n\
             \x20 alerts:  http://{HOST}:{port}/classic/alerts (Debian's Prometheus 2 serves its classic pages)\n\
             \x20 targets: http://{HOST}:{port}/classic/targets\n\
             stop it with the stack: {}\n",
            worker_ports.len(),
            self.stop_command()
        ))
    }

    fn ensure_prometheus(&mut self) -> Result<PathBuf, StackError> {
        let program = PathBuf::from(PROMETHEUS);
        if program.exists() {
            return Ok(program);
        }
        self.say("prometheus: installing Debian's prometheus package");
        for args in [
            &["update", "-qq"][..],
            &["install", "-y", "-qq", "prometheus"],
        ] {
            let status = Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .map_err(|e| StackError::io(Path::new("apt-get"), e))?;
            if !status.success() {
                return Err(StackError::Command(
                    format!("apt-get {}", args.join(" ")),
                    status.to_string(),
                ));
            }
        }
        Ok(program)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrapes_the_api_and_each_worker_under_the_rules_job_names() {
        let text = config(
            Path::new("/repo/deploy/monitoring/alerts.yaml"),
            8000,
            &[9000, 9001],
            None,
        );
        assert!(
            text.contains("rule_files:\n  - \"/repo/deploy/monitoring/alerts.yaml\"\n"),
            "{text}"
        );
        assert!(
            text.contains("job_name: orchestrator-api\n    static_configs:\n      - targets: [\"127.0.0.1:8000\"]\n"),
            "{text}"
        );
        assert!(
            text.contains("job_name: orchestrator-worker\n    static_configs:\n      - targets: [\"127.0.0.1:9000\", \"127.0.0.1:9001\"]"),
            "{text}"
        );
        assert!(!text.contains("authorization"), "{text}");
        let with_token = config(Path::new("/r.yaml"), 8000, &[9000], Some(Path::new("/t")));
        assert!(
            with_token.contains("credentials_file: \"/t\""),
            "{with_token}"
        );
    }
}
