//! `cargo xtask contract` (`make contract`): the API held to its own OpenAPI document by
//! tools that did not write it.
//!
//! It starts the API in inline mode with the mock services, on free loopback ports and
//! a database of its own, and then:
//!
//! 1. runs schemathesis (an OpenAPI property-based tester) with every check and every
//!    phase, a fixed seed and a bounded number of examples (`contract/schemathesis.toml`):
//!    any finding fails the run;
//! 2. generates a Python client from the served document with openapi-python-client and
//!    runs `contract/client_check.py` with it (submit, wait, get, list, search, a 422);
//! 3. fails if the API logged an ERROR meanwhile: nothing a client sends may be a
//!    server fault.
//!
//! Both tools are pinned in `contract/requirements.txt` and installed with pip into a
//! virtual environment under the target directory, once per change of that file.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::ports::{MOCK_SERVICES, free_block};
use crate::stack::health::Health;
use crate::stack::{LocalStack, StackSettings, postgres};

/// The run's webhook signing secret (nothing verifies it: the receiver is a mock).
const CONTRACT_WEBHOOK_SECRET: &str = "whsec_Y29udHJhY3QtcnVuLXdlYmhvb2stc2VjcmV0";

/// Where and how the contract checks run.
#[derive(Debug, Clone)]
pub struct ContractSettings {
    /// The binaries, how to build them and the PostgreSQL server to use (its
    /// `database_url` names the server; the checks use a database of their own on it).
    pub stack: StackSettings,
    /// Logs, reports, the generated client and the Python tools' virtual environment.
    pub out_dir: PathBuf,
    /// The Python that creates the virtual environment.
    pub python: String,
}

/// The database the checks use, created empty for each run and dropped after it.
const DATABASE: &str = "orchestrator_contract";
const HOST: &str = "127.0.0.1";

/// Runs both checks; `Ok` when neither found anything.
pub fn run(settings: &ContractSettings) -> anyhow::Result<()> {
    let repo = settings.stack.repo_root.clone();
    let contract_dir = repo.join("contract");
    fs::create_dir_all(&settings.out_dir)
        .with_context(|| format!("creating {}", settings.out_dir.display()))?;
    let database_url = settings.stack.database_url.with_database(DATABASE);
    // A database left by an interrupted run goes first; if PostgreSQL is down, there is
    // nothing to drop, and `db` below starts it.
    postgres::drop_database(&database_url);
    let mut stack_settings = settings.stack.clone();
    stack_settings.database_url = database_url.clone();
    LocalStack::new(stack_settings).db(false)?;
    let result = run_against_api(settings, &contract_dir, database_url.as_str());
    postgres::drop_database(&database_url);
    result
}

fn run_against_api(
    settings: &ContractSettings,
    contract_dir: &Path,
    database_url: &str,
) -> anyhow::Result<()> {
    let out = &settings.out_dir;
    let venv = python_tools(settings, &contract_dir.join("requirements.txt"))?;
    let base = free_block(2)?;
    let (api_port, mock_port) = (base, base + 1);
    let bin = |name: &str| settings.stack.bin_dir.join(name);
    let mut mocks = Running::start(
        "mock-services",
        Command::new(bin("mock-services")).args([
            "--host",
            HOST,
            "--port",
            &mock_port.to_string(),
            "--services",
            &MOCK_SERVICES.join(","),
            // Some calls fail (503, retried), so some tasks end FAILED and the stateful
            // phase's re-drives find tasks to re-drive.
            "--failure-rate",
            "0.25",
        ]),
        &out.join("mocks.log"),
    )?;
    let mut api_command = Command::new(bin("orchestrator-api"));
    api_command
        .env("USE_KAFKA", "false")
        .env("API_HOST", HOST)
        .env("API_PORT", api_port.to_string())
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", &settings.stack.rust_log)
        .env("NO_COLOR", "1")
        // The fuzzer sends invalid credentials by the hundred from one address, which
        // would otherwise have it refused (429) for the rest of the run.
        .env("AUTH_FAILURES_PER_MINUTE", "1000000")
        // Callbacks go to the mocks on loopback (which answer 404: the deliveries are
        // retried in the background and change nothing the fuzzer sees).
        .env("WEBHOOK_SECRET", CONTRACT_WEBHOOK_SECRET)
        .env("WEBHOOK_ALLOW_INSECURE", "true");
    for service in MOCK_SERVICES {
        api_command.env(
            format!("{}_SERVICE_URL", service.to_ascii_uppercase()),
            format!("http://{HOST}:{mock_port}"),
        );
    }
    let api_log = out.join("api.log");
    let mut api = Running::start("orchestrator-api", &mut api_command, &api_log)?;
    let deadline = Instant::now() + settings.stack.start_timeout;
    mocks.wait_healthy(Health::Http(mock_port, "/health"), deadline)?;
    api.wait_healthy(Health::Ready(api_port), deadline)?;

    // Every scope, for the run's checks; handed to the tools in their environment.
    let token =
        crate::stack::create_token(&bin("orchestrator-api"), database_url, "make contract")?;
    let url = format!("http://{HOST}:{api_port}");
    let document = format!("{url}/openapi.json");
    println!("contract: schemathesis against {document}");
    let fuzzed = Command::new(venv.join("bin/st"))
        .arg("--config-file")
        .arg(contract_dir.join("schemathesis.toml"))
        .args(["run", &document, "--report", "junit", "--report-dir"])
        .arg(out.join("report"))
        .env("ORCHESTRATOR_TOKEN", &token)
        // A callback URL this API takes, for the hooks to put in place of generated ones.
        .env(
            "CONTRACT_CALLBACK_URL",
            format!("http://{HOST}:{mock_port}/webhook"),
        )
        // The configuration names its hooks file from the repository's root.
        .current_dir(&settings.stack.repo_root)
        .status()
        .context("running schemathesis")?;

    println!("contract: a Python client generated from {document}");
    let client_dir = out.join("client");
    let generated = Command::new(venv.join("bin/openapi-python-client"))
        .args([
            "generate",
            "--url",
            &document,
            "--meta",
            "none",
            "--overwrite",
        ])
        .arg("--fail-on-warning")
        .arg("--config")
        .arg(contract_dir.join("openapi-python-client.yaml"))
        .arg("--output-path")
        .arg(client_dir.join("orchestrator_client"))
        .status()
        .context("running openapi-python-client")?;
    let client_ran = generated.success()
        && Command::new(venv.join("bin/python"))
            .arg(contract_dir.join("client_check.py"))
            .arg(&url)
            .env("PYTHONPATH", &client_dir)
            .env("ORCHESTRATOR_TOKEN", &token)
            .status()
            .context("running contract/client_check.py")?
            .success();

    drop(api);
    drop(mocks);
    let errors = logged_errors(&api_log)?;
    ensure!(
        fuzzed.success(),
        "schemathesis found problems (above; report in {})",
        out.join("report").display()
    );
    ensure!(
        generated.success(),
        "openapi-python-client could not generate a client from the document"
    );
    ensure!(client_ran, "the generated client's check failed (above)");
    ensure!(
        errors.is_empty(),
        "the API logged {} ERROR line(s) during the checks; no client request may cause one:\n{}",
        errors.len(),
        errors.join("\n")
    );
    println!("contract: the API holds to its document; the generated client works");
    Ok(())
}

/// The virtual environment with the pinned tools, (re)installed when the requirements
/// changed since the last install.
fn python_tools(settings: &ContractSettings, requirements: &Path) -> anyhow::Result<PathBuf> {
    let venv = settings.out_dir.join("venv");
    let stamp = venv.join("installed-requirements.txt");
    let wanted = fs::read_to_string(requirements)
        .with_context(|| format!("reading {}", requirements.display()))?;
    if fs::read_to_string(&stamp).is_ok_and(|installed| installed == wanted) {
        return Ok(venv);
    }
    println!(
        "contract: installing the pinned Python tools into {}",
        venv.display()
    );
    let created = Command::new(&settings.python)
        .args(["-m", "venv", "--clear"])
        .arg(&venv)
        .status()
        .with_context(|| format!("running {} -m venv", settings.python))?;
    ensure!(created.success(), "{} -m venv failed", settings.python);
    let installed = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
        .arg(requirements)
        .status()
        .context("running pip")?;
    ensure!(
        installed.success(),
        "pip could not install {}",
        requirements.display()
    );
    fs::write(&stamp, wanted).with_context(|| format!("writing {}", stamp.display()))?;
    Ok(venv)
}

/// The lines of the API's log at level ERROR.
fn logged_errors(log: &Path) -> anyhow::Result<Vec<String>> {
    let text = fs::read_to_string(log).with_context(|| format!("reading {}", log.display()))?;
    Ok(text
        .lines()
        .filter(|line| line.contains(" ERROR "))
        .map(str::to_owned)
        .collect())
}

/// A child process that is stopped (SIGTERM, then SIGKILL) when dropped.
struct Running {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Running {
    fn start(name: &'static str, command: &mut Command, log: &Path) -> anyhow::Result<Running> {
        let file = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Running {
            name,
            child,
            log: log.to_path_buf(),
        })
    }

    /// Polls `health` until it passes; fails at the deadline or as soon as the process
    /// exits, with its log.
    fn wait_healthy(&mut self, health: Health, deadline: Instant) -> anyhow::Result<()> {
        loop {
            let seen = match health.check() {
                Ok(()) => return Ok(()),
                Err(seen) => seen,
            };
            let exited = matches!(self.child.try_wait(), Ok(Some(_)));
            if exited || Instant::now() > deadline {
                let log = fs::read_to_string(&self.log).unwrap_or_default();
                bail!(
                    "{} did not come up ({seen}); {}:\n{log}",
                    self.name,
                    self.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
