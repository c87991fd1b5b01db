//! Process configuration: command-line flags, each with an environment variable.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};

use clap::{Args, Parser};

use crate::behaviour::{Behaviour, DEFAULT_FAILURE_STATUS, Latency};

/// Paths the server uses itself, so no service may take them.
const RESERVED_NAMES: [&str; 3] = ["health", "stats", "control"];

/// Longest accepted service name (matches the orchestrator's own limit).
const MAX_SERVICE_NAME_LEN: usize = 64;

/// Mock downstream services with latency and fault injection.
#[derive(Debug, Clone, Parser)]
#[command(name = "mock-services", version, about)]
pub struct MockConfig {
    /// IP address to listen on.
    #[arg(long, env = "MOCK_HOST", default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub host: IpAddr,

    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "MOCK_PORT", default_value_t = 8001)]
    pub port: u16,

    /// Services to serve, each at `POST /{name}`.
    #[arg(
        long,
        env = "MOCK_SERVICES",
        value_delimiter = ',',
        default_value = "revenue,rebates,specialty"
    )]
    pub services: Vec<String>,

    /// Worker threads, each with its own event loop.
    #[arg(long, env = "MOCK_WORKERS", default_value_t = 2)]
    pub workers: usize,

    /// Idle keep-alive timeout of client connections, in seconds. Longer than typical
    /// client pool idle timeouts, so clients rather than the server close idle connections.
    #[arg(long, env = "MOCK_KEEP_ALIVE_SECS", default_value_t = 120)]
    pub keep_alive_secs: u64,

    /// How long a graceful stop waits for requests in progress, in seconds.
    #[arg(long, env = "MOCK_SHUTDOWN_TIMEOUT_SECS", default_value_t = 10)]
    pub shutdown_timeout_secs: u64,

    #[command(flatten)]
    pub behaviour: BehaviourFlags,

    /// Process default behaviour given directly (library use); replaces what
    /// `behaviour` says when set.
    #[arg(skip)]
    pub default_behaviour: Option<Behaviour>,
}

/// Flags forming the default behaviour of every service.
#[derive(Debug, Clone, PartialEq, Args)]
#[command(next_help_heading = "Default behaviour")]
pub struct BehaviourFlags {
    /// Fixed latency in milliseconds.
    #[arg(long, env = "MOCK_LATENCY_MS", default_value_t = 0)]
    pub latency_ms: u64,

    /// Uniform latency: lower bound in milliseconds (with --latency-max-ms).
    #[arg(
        long,
        env = "MOCK_LATENCY_MIN_MS",
        requires = "latency_max_ms",
        conflicts_with = "latency_median_ms"
    )]
    pub latency_min_ms: Option<u64>,

    /// Uniform latency: upper bound in milliseconds (with --latency-min-ms).
    #[arg(long, env = "MOCK_LATENCY_MAX_MS", requires = "latency_min_ms")]
    pub latency_max_ms: Option<u64>,

    /// Long-tail (log-normal) latency: median in milliseconds (with --latency-p99-ms).
    #[arg(long, env = "MOCK_LATENCY_MEDIAN_MS", requires = "latency_p99_ms")]
    pub latency_median_ms: Option<u64>,

    /// Long-tail (log-normal) latency: 99th percentile in milliseconds.
    #[arg(long, env = "MOCK_LATENCY_P99_MS", requires = "latency_median_ms")]
    pub latency_p99_ms: Option<u64>,

    /// Probability (0..=1) that a request fails.
    #[arg(long, env = "MOCK_FAILURE_RATE", default_value_t = 0.0, value_parser = parse_rate)]
    pub failure_rate: f64,

    /// Status of injected failures.
    #[arg(
        long,
        env = "MOCK_FAILURE_STATUS",
        default_value_t = DEFAULT_FAILURE_STATUS,
        value_parser = clap::value_parser!(u16).range(400..=599)
    )]
    pub failure_status: u16,

    /// `Retry-After` seconds sent with injected failures.
    #[arg(long, env = "MOCK_RETRY_AFTER_SECS")]
    pub retry_after_secs: Option<u64>,

    /// Fail the first N requests of every Idempotency-Key.
    #[arg(long, env = "MOCK_FAIL_FIRST")]
    pub fail_first: Option<u32>,

    /// Never answer: hold every request until the client gives up.
    #[arg(long, env = "MOCK_HANG", default_value_t = false, action = clap::ArgAction::Set)]
    pub hang: bool,

    /// Send the status line and part of the body, then close the connection.
    #[arg(long, env = "MOCK_RESET_CONNECTION", default_value_t = false, action = clap::ArgAction::Set)]
    pub reset_connection: bool,

    /// Answer 200 with a JSON content type and a body that is not JSON.
    #[arg(long, env = "MOCK_MALFORMED_BODY", default_value_t = false, action = clap::ArgAction::Set)]
    pub malformed_body: bool,

    /// Answer 200 with a streamed JSON body of this many bytes (at least 14).
    #[arg(long, env = "MOCK_HUGE_BODY_BYTES", value_parser = clap::value_parser!(u64).range(14..))]
    pub huge_body_bytes: Option<u64>,
}

fn parse_rate(value: &str) -> Result<f64, String> {
    let rate: f64 = value.parse().map_err(|err| format!("{err}"))?;
    if (0.0..=1.0).contains(&rate) {
        Ok(rate)
    } else {
        Err(format!("must be within 0..=1, got {rate}"))
    }
}

impl Default for BehaviourFlags {
    /// The same values as the flags' defaults: healthy and instant.
    fn default() -> Self {
        Self {
            latency_ms: 0,
            latency_min_ms: None,
            latency_max_ms: None,
            latency_median_ms: None,
            latency_p99_ms: None,
            failure_rate: 0.0,
            failure_status: DEFAULT_FAILURE_STATUS,
            retry_after_secs: None,
            fail_first: None,
            hang: false,
            reset_connection: false,
            malformed_body: false,
            huge_body_bytes: None,
        }
    }
}

impl BehaviourFlags {
    /// The behaviour these flags describe. Uniform and long-tail latency take precedence
    /// over `latency_ms`.
    pub fn to_behaviour(&self) -> Behaviour {
        let latency = match (
            self.latency_min_ms,
            self.latency_max_ms,
            self.latency_median_ms,
            self.latency_p99_ms,
        ) {
            (Some(min_ms), Some(max_ms), _, _) => Latency::Uniform { min_ms, max_ms },
            (_, _, Some(median_ms), Some(p99_ms)) => Latency::LongTail { median_ms, p99_ms },
            _ => Latency::Fixed {
                ms: self.latency_ms,
            },
        };
        Behaviour {
            latency,
            failure_rate: self.failure_rate,
            failure_status: self.failure_status,
            retry_after_secs: self.retry_after_secs,
            fail_first: self.fail_first,
            hang: self.hang,
            reset_connection: self.reset_connection,
            malformed_body: self.malformed_body,
            huge_body_bytes: self.huge_body_bytes,
            // Set per service through PUT /control/{service}.
            required_header: None,
        }
    }
}

impl MockConfig {
    /// For in-process tests: 127.0.0.1 on a free port, the default services, healthy
    /// behaviour, one worker and short timeouts. Reads no environment variables.
    pub fn for_tests() -> Self {
        Self {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            services: ["revenue", "rebates", "specialty"]
                .map(str::to_owned)
                .to_vec(),
            workers: 1,
            keep_alive_secs: 120,
            shutdown_timeout_secs: 2,
            behaviour: BehaviourFlags::default(),
            default_behaviour: None,
        }
    }

    /// The same configuration with this process default behaviour.
    pub fn with_default_behaviour(mut self, behaviour: Behaviour) -> Self {
        self.default_behaviour = Some(behaviour);
        self
    }

    /// The behaviour every service starts with and returns to on reset.
    pub fn resolved_default_behaviour(&self) -> Behaviour {
        self.default_behaviour
            .clone()
            .unwrap_or_else(|| self.behaviour.to_behaviour())
    }

    /// Checks what the flag parsers cannot see in isolation.
    pub fn validate(&self) -> Result<(), String> {
        if self.workers == 0 {
            return Err("workers must be at least 1".to_owned());
        }
        if self.services.is_empty() {
            return Err("at least one service is needed".to_owned());
        }
        let mut seen = HashSet::new();
        for name in &self.services {
            validate_service_name(name)?;
            if !seen.insert(name.as_str()) {
                return Err(format!("service {name:?} is listed twice"));
            }
        }
        self.resolved_default_behaviour()
            .validate()
            .map_err(|err| format!("default behaviour: {err}"))
    }
}

fn validate_service_name(name: &str) -> Result<(), String> {
    let valid_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if name.is_empty() || name.len() > MAX_SERVICE_NAME_LEN || !valid_chars {
        return Err(format!(
            "invalid service name {name:?}: use 1 to {MAX_SERVICE_NAME_LEN} lower-case letters, \
             digits, '_' or '-'"
        ));
    }
    if RESERVED_NAMES.contains(&name) {
        return Err(format!(
            "invalid service name {name:?}: the path is reserved"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<MockConfig, clap::Error> {
        MockConfig::try_parse_from(std::iter::once("mock-services").chain(args.iter().copied()))
    }

    #[test]
    fn flags_form_the_default_behaviour() {
        let config = parse(&[
            "--port",
            "8003",
            "--services",
            "revenue,tax",
            "--latency-min-ms",
            "5",
            "--latency-max-ms",
            "9",
            "--failure-rate",
            "0.5",
            "--failure-status",
            "503",
            "--retry-after-secs",
            "2",
        ])
        .expect("parses");
        assert_eq!(config.port, 8003);
        assert_eq!(config.services, ["revenue", "tax"]);
        assert_eq!(
            config.resolved_default_behaviour(),
            Behaviour {
                latency: Latency::Uniform {
                    min_ms: 5,
                    max_ms: 9
                },
                failure_rate: 0.5,
                failure_status: 503,
                retry_after_secs: Some(2),
                ..Behaviour::default()
            }
        );
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn fault_flags_form_the_default_behaviour() {
        let config = parse(&["--hang", "true", "--huge-body-bytes", "2000000"]).expect("parses");
        let behaviour = config.resolved_default_behaviour();
        assert!(behaviour.hang);
        assert_eq!(behaviour.huge_body_bytes, Some(2_000_000));
        let config =
            parse(&["--reset-connection", "true", "--malformed-body", "true"]).expect("parses");
        let behaviour = config.resolved_default_behaviour();
        assert!(behaviour.reset_connection && behaviour.malformed_body);
        assert!(parse(&["--huge-body-bytes", "3"]).is_err());
    }

    #[test]
    fn rejects_bad_flags() {
        for args in [
            &["--failure-rate", "1.5"][..],
            &["--failure-status", "200"],
            &["--latency-min-ms", "5"],
            &[
                "--latency-min-ms",
                "1",
                "--latency-max-ms",
                "2",
                "--latency-median-ms",
                "1",
            ],
        ] {
            assert!(parse(args).is_err(), "{args:?} was accepted");
        }
    }

    #[test]
    fn rejects_bad_service_lists() {
        for services in [&["Revenue"][..], &["stats"], &["a", "a"], &[], &["a/b"]] {
            let config = MockConfig {
                services: services.iter().map(|s| (*s).to_owned()).collect(),
                ..MockConfig::for_tests()
            };
            assert!(config.validate().is_err(), "{services:?} was accepted");
        }
        assert_eq!(MockConfig::for_tests().validate(), Ok(()));
    }

    #[test]
    fn explicit_default_behaviour_wins_over_flags() {
        let behaviour = Behaviour {
            hang: true,
            ..Behaviour::default()
        };
        let config = MockConfig::for_tests().with_default_behaviour(behaviour.clone());
        assert_eq!(config.resolved_default_behaviour(), behaviour);
    }

    #[test]
    fn help_is_well_formed() {
        use clap::CommandFactory;
        MockConfig::command().debug_assert();
    }
}
