//! Reading the files, running the binaries' `--help`, and the allow-lists.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use serde_norway::Value;

/// Ports the deployment contract documents.
pub const API_PORT: u16 = 8000;
pub const WORKER_HTTP_PORT: u16 = 9000;
pub const MOCK_PORTS: [u16; 3] = [8001, 8002, 8003];

/// Defaults of the contract, for settings a file leaves unset.
pub const DEFAULT_SHUTDOWN_TIMEOUT_SECS: u64 = 30;
pub const DEFAULT_TOPIC: &str = "orchestrator-events";
pub const DEFAULT_DLQ_TOPIC: &str = "orchestrator-events.dlq";
pub const DEFAULT_PARTITIONS: u32 = 12;

/// PENDING: variables of the deployment contract that the binaries do not read yet; they
/// are being added to the code at the same time as these files. Remove each entry once
/// the binary's `--help` lists it (the test prints a note when that happens).
pub const PENDING_ENV: &[(&str, &[Binary])] = &[];

/// Variables the binaries read that are not command-line flags, so `--help` does not list
/// them: `RUST_LOG` is the log filter (`crates/telemetry`, `mock-services/src/telemetry.rs`).
pub const NON_FLAG_ENV: &[&str] = &["RUST_LOG"];

/// OpenTelemetry's standard variables, which the API and the worker leave to its SDK
/// and OTLP exporter to read (`crates/telemetry/src/export.rs`).
pub const OTEL_ENV: &[&str] = &[
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_BSP_SCHEDULE_DELAY",
    "OTEL_BSP_MAX_QUEUE_SIZE",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
    "OTEL_BSP_EXPORT_TIMEOUT",
];

pub use orchestrator_testkit::workspace::workspace_root;

/// A file of the workspace, as text.
pub fn read(relative: &str) -> String {
    let path = workspace_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Every YAML document of a file, with merge keys (`<<: *anchor`) applied. Empty
/// documents (a trailing `---`) are skipped.
pub fn yaml_documents(relative: &str) -> Vec<Value> {
    use serde::Deserialize as _;
    let text = read(relative);
    serde_norway::Deserializer::from_str(&text)
        .map(|document| {
            let mut value = Value::deserialize(document)
                .unwrap_or_else(|e| panic!("{relative} is not valid YAML: {e}"));
            value
                .apply_merge()
                .unwrap_or_else(|e| panic!("{relative}: merge keys: {e}"));
            value
        })
        .filter(|value| !value.is_null())
        .collect()
}

/// The value at a path of mapping keys.
pub fn at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |value, key| value.get(*key))
}

/// A scalar as text: YAML strings, numbers and booleans are all settings to a process.
pub fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The text at a path, if it is a scalar.
pub fn text_at(value: &Value, path: &[&str]) -> Option<String> {
    at(value, path).and_then(scalar)
}

/// A list of strings, or a single string split at white space (compose accepts both for
/// `command`).
pub fn words(value: &Value) -> Vec<String> {
    match value {
        Value::Sequence(items) => items.iter().filter_map(scalar).collect(),
        Value::String(s) => s.split_whitespace().map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

/// A duration as compose writes them (`45s`, `1m30s`, `500ms`).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        let number: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (unit, tail) = rest.split_at(unit_len);
        total += match unit {
            "h" => Duration::from_secs(number * 3600),
            "m" => Duration::from_secs(number * 60),
            "s" => Duration::from_secs(number),
            "ms" => Duration::from_millis(number),
            _ => return None,
        };
        rest = tail;
    }
    Some(total)
}

/// Fails the test with every problem found, one per line.
pub fn assert_no_problems(what: &str, problems: &[String]) {
    assert!(
        problems.is_empty(),
        "{what}:\n  - {}",
        problems.join("\n  - ")
    );
}

/// The binaries of the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Binary {
    Api,
    Worker,
    Mocks,
}

impl Binary {
    pub fn file_name(self) -> &'static str {
        match self {
            Binary::Api => "orchestrator-api",
            Binary::Worker => "orchestrator-worker",
            Binary::Mocks => "mock-services",
        }
    }

    /// The binary a container command starts, by the file name of its first word.
    pub fn of_command(command: &[String]) -> Option<Binary> {
        let program = command.first()?;
        let name = program.rsplit('/').next().unwrap_or(program);
        [Binary::Api, Binary::Worker, Binary::Mocks]
            .into_iter()
            .find(|binary| binary.file_name() == name)
    }

    /// Where `cargo build` put the binary: the target folder this test runs from
    /// (`target/<profile>/deps/<test>` → `target/<profile>`), else `target/debug`.
    pub fn path(self) -> PathBuf {
        let beside_tests = std::env::current_exe().ok().and_then(|exe| {
            let profile_dir = exe.parent()?.parent()?;
            let path = profile_dir.join(self.file_name());
            path.is_file().then_some(path)
        });
        beside_tests.unwrap_or_else(|| workspace_root().join("target/debug").join(self.file_name()))
    }

    /// What the binary's `--help` says, run once per test process.
    pub fn help(self) -> &'static Help {
        static HELPS: [OnceLock<Help>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
        HELPS[self as usize].get_or_init(|| Help::of(self))
    }

    /// The binary reads this variable, or the contract says it soon will (the
    /// allow-lists above).
    pub fn accepts_env(self, name: &str) -> bool {
        self.help().env.contains(name)
            || NON_FLAG_ENV.contains(&name)
            || (self != Binary::Mocks && OTEL_ENV.contains(&name))
            || PENDING_ENV
                .iter()
                .any(|(pending, binaries)| *pending == name && binaries.contains(&self))
    }
}

/// The parts of a `--help` output the checks use.
#[derive(Debug)]
pub struct Help {
    /// `[env: NAME]` of every option.
    pub env: BTreeSet<String>,
    /// Every `--long` flag.
    pub flags: BTreeSet<String>,
    /// Names under `Commands:`.
    pub commands: BTreeSet<String>,
    /// `[default: ...]` by env name.
    pub defaults: BTreeMap<String, String>,
}

impl Help {
    fn of(binary: Binary) -> Help {
        let path = binary.path();
        assert!(
            path.is_file(),
            "{} not found at {}. These tests read the binaries' --help: build them first with \
             `cargo build --workspace --bins` (`cargo nextest run --workspace` builds them too).",
            binary.file_name(),
            path.display()
        );
        // Run outside the workspace, so a developer's .env is neither read nor shown.
        let output = Command::new(&path)
            .arg("--help")
            .current_dir(std::env::temp_dir())
            .output()
            .unwrap_or_else(|e| panic!("running {} --help: {e}", path.display()));
        assert!(
            output.status.success(),
            "{} --help failed: {}",
            path.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let help = Help::parse(&text);
        for (name, binaries) in PENDING_ENV {
            if binaries.contains(&binary) && help.env.contains(*name) {
                eprintln!(
                    "note: {name} is now in {} --help; remove it from PENDING_ENV \
                     (crates/deploy-check/tests/deploy/support.rs)",
                    binary.file_name()
                );
            }
        }
        help
    }

    fn parse(text: &str) -> Help {
        let mut help = Help {
            env: BTreeSet::new(),
            flags: BTreeSet::new(),
            commands: BTreeSet::new(),
            defaults: BTreeMap::new(),
        };
        let mut in_commands = false;
        // One entry per option: its flag line and the description lines below it.
        let mut entry = String::new();
        let flush = |entry: &mut String, help: &mut Help| {
            let env = env_name(entry);
            if let Some(env) = &env {
                help.env.insert(env.clone());
            }
            if let (Some(env), Some(default)) = (env, bracketed(entry, "[default: ")) {
                help.defaults.insert(env, default);
            }
            entry.clear();
        };
        for line in text.lines() {
            let trimmed = line.trim_start();
            if line.starts_with(char::is_alphabetic) {
                in_commands = line.starts_with("Commands:");
                continue;
            }
            if in_commands {
                if let Some(name) = trimmed.split_whitespace().next() {
                    help.commands.insert(name.to_owned());
                }
                continue;
            }
            // `--long` or `-s, --long`; not a `- value: ...` line of a description.
            let is_flag_line = trimmed.starts_with('-')
                && trimmed
                    .chars()
                    .nth(1)
                    .is_some_and(|c| c == '-' || c.is_ascii_alphanumeric());
            if is_flag_line {
                flush(&mut entry, &mut help);
                help.flags.extend(
                    trimmed
                        .split(|c: char| c.is_whitespace() || c == ',' || c == '=')
                        .filter(|word| word.starts_with("--") && word.len() > 2)
                        .map(str::to_owned),
                );
            }
            entry.push_str(line);
            entry.push('\n');
        }
        flush(&mut entry, &mut help);
        help
    }
}

/// `NAME` of the first `[env: NAME=...]` or `[env: NAME]` in `text`.
fn env_name(text: &str) -> Option<String> {
    let start = text.find("[env: ")? + "[env: ".len();
    let name: String = text[start..]
        .chars()
        .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

/// What follows `opening` up to the closing bracket.
fn bracketed(text: &str, opening: &str) -> Option<String> {
    let start = text.find(opening)? + opening.len();
    let end = text[start..].find(']')? + start;
    Some(text[start..end].to_owned())
}

#[test]
fn help_parsing_finds_env_flags_commands_and_defaults() {
    let help = Help::parse(
        "Usage: x [OPTIONS] [COMMAND]\n\nCommands:\n  serve    Serve\n  migrate  Migrate\n\n\
         Options:\n      --port <PORT>\n          Port\n          \n          [env: API_PORT=]\n          \
         [default: 8000]\n\n      --database-url <URL>\n          [env: DATABASE_URL]\n  \
         -h, --help\n          Print help\n      --log-format <F>\n          Possible values:\n          \
         - text: Lines\n          [env: LOG_FORMAT=]\n          [default: text]\n      --latency-ms <MS>  Fixed [env: MOCK_LATENCY_MS=] [default: 0]\n",
    );
    assert_eq!(
        help.env.iter().map(String::as_str).collect::<Vec<_>>(),
        ["API_PORT", "DATABASE_URL", "LOG_FORMAT", "MOCK_LATENCY_MS"]
    );
    assert!(help.flags.contains("--port") && help.flags.contains("--help"));
    assert!(help.commands.contains("migrate"));
    assert_eq!(
        help.defaults.get("API_PORT").map(String::as_str),
        Some("8000")
    );
    assert_eq!(
        help.defaults.get("MOCK_LATENCY_MS").map(String::as_str),
        Some("0")
    );
    assert_eq!(
        help.defaults.get("LOG_FORMAT").map(String::as_str),
        Some("text")
    );
    assert!(!help.flags.contains("--log") && help.flags.contains("--log-format"));
    assert!(!help.defaults.contains_key("DATABASE_URL"));
}

#[test]
fn durations_parse_as_compose_writes_them() {
    assert_eq!(parse_duration("45s"), Some(Duration::from_secs(45)));
    assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
    assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
    assert_eq!(parse_duration("soon"), None);
}
