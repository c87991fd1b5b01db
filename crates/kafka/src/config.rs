//! Kafka settings both binaries flatten into their configuration.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use rskafka::client::{Credentials, SaslConfig};

/// How to reach the broker and which topic carries tasks.
#[derive(Debug, Clone, clap::Args)]
pub struct KafkaConfig {
    /// Kafka bootstrap servers, HOST:PORT, comma-separated.
    #[arg(
        long = "kafka-bootstrap-servers",
        env = "KAFKA_BOOTSTRAP_SERVERS",
        default_value = "localhost:9092",
        value_delimiter = ','
    )]
    pub bootstrap_servers: Vec<String>,

    /// Topic that carries accepted tasks.
    #[arg(
        long = "kafka-topic",
        env = "KAFKA_TOPIC",
        default_value = "orchestrator-events"
    )]
    pub topic: String,

    /// Partitions of the topic when this process has to create it. An existing topic
    /// keeps its own count.
    #[arg(
        long = "kafka-partitions",
        env = "KAFKA_PARTITIONS",
        default_value_t = 12
    )]
    pub partitions: i32,

    /// Replication factor of topics this process creates.
    #[arg(
        long = "kafka-replication-factor",
        env = "KAFKA_REPLICATION_FACTOR",
        default_value_t = 1
    )]
    pub replication_factor: i16,

    /// How long one Kafka operation (produce, fetch, metadata) may keep retrying before
    /// it fails, in milliseconds.
    #[arg(
        long = "kafka-request-timeout-ms",
        env = "KAFKA_REQUEST_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub request_timeout_ms: u64,

    /// Route broker connections through the in-process relay that turns off Nagle's
    /// algorithm (rskafka cannot); without it every request may stall ~40 ms.
    #[arg(
        long = "kafka-nodelay-relay",
        env = "KAFKA_NODELAY_RELAY",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub nodelay_relay: bool,

    /// How to talk to the brokers, with Kafka's own names: PLAINTEXT, SSL (TLS),
    /// SASL_PLAINTEXT (SASL without TLS) or SASL_SSL (SASL over TLS).
    #[arg(
        long = "kafka-security-protocol",
        env = "KAFKA_SECURITY_PROTOCOL",
        value_enum,
        ignore_case = true,
        default_value = "PLAINTEXT"
    )]
    pub security_protocol: SecurityProtocol,

    /// SASL mechanism, required with SASL_PLAINTEXT and SASL_SSL: PLAIN, SCRAM-SHA-256 or
    /// SCRAM-SHA-512.
    #[arg(
        long = "kafka-sasl-mechanism",
        env = "KAFKA_SASL_MECHANISM",
        value_enum,
        ignore_case = true
    )]
    pub sasl_mechanism: Option<SaslMechanism>,

    /// SASL user name, required with SASL_PLAINTEXT and SASL_SSL.
    #[arg(long = "kafka-sasl-username", env = "KAFKA_SASL_USERNAME")]
    pub sasl_username: Option<String>,

    /// SASL password, required with SASL_PLAINTEXT and SASL_SSL (never logged; keep it in
    /// the environment or a secret store rather than on the command line).
    #[arg(
        long = "kafka-sasl-password",
        env = "KAFKA_SASL_PASSWORD",
        hide_env_values = true
    )]
    pub sasl_password: Option<Secret>,

    /// PEM file of the certificate authorities that sign the brokers' certificates (SSL and
    /// SASL_SSL). Unset: the system's root certificates.
    #[arg(long = "kafka-tls-ca-file", env = "KAFKA_TLS_CA_FILE")]
    pub tls_ca_file: Option<PathBuf>,
}

/// Kafka's `security.protocol`: whether connections use TLS and whether they authenticate
/// with SASL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SecurityProtocol {
    #[default]
    #[value(name = "PLAINTEXT")]
    Plaintext,
    #[value(name = "SSL")]
    Ssl,
    #[value(name = "SASL_PLAINTEXT")]
    SaslPlaintext,
    #[value(name = "SASL_SSL")]
    SaslSsl,
}

impl SecurityProtocol {
    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }

    /// Kafka's name, as in the setting.
    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Kafka's `sasl.mechanism`, of those rskafka implements with a user name and password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SaslMechanism {
    #[value(name = "PLAIN")]
    Plain,
    #[value(name = "SCRAM-SHA-256")]
    ScramSha256,
    #[value(name = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    /// Kafka's name, as in the setting.
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

impl fmt::Display for SaslMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A setting that must never be printed: `Debug` shows `***`. The value is reached only
/// through [`Secret::expose`], so that each use is deliberate.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl KafkaConfig {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// Checks what clap cannot; the message names the setting.
    pub fn validate(&self) -> Result<(), crate::KafkaError> {
        let invalid = |setting: &'static str, reason: &str| {
            Err(crate::KafkaError::InvalidSetting {
                setting,
                reason: reason.to_owned(),
            })
        };
        if self.bootstrap_servers.iter().all(|s| s.trim().is_empty()) {
            return invalid(
                "KAFKA_BOOTSTRAP_SERVERS",
                "at least one HOST:PORT is needed",
            );
        }
        if let Some(bad) = self.bootstrap_servers.iter().find(|s| {
            s.rsplit_once(':')
                .is_none_or(|(_, port)| port.parse::<u16>().is_err())
        }) {
            return Err(crate::KafkaError::InvalidSetting {
                setting: "KAFKA_BOOTSTRAP_SERVERS",
                reason: format!("{bad:?} is not HOST:PORT"),
            });
        }
        if self.topic.trim().is_empty() {
            return invalid("KAFKA_TOPIC", "must not be empty");
        }
        if self.partitions < 1 {
            return invalid("KAFKA_PARTITIONS", "must be at least 1");
        }
        if self.replication_factor < 1 {
            return invalid("KAFKA_REPLICATION_FACTOR", "must be at least 1");
        }
        if self.request_timeout_ms == 0 {
            return invalid("KAFKA_REQUEST_TIMEOUT_MS", "must be at least 1");
        }
        self.validate_security()
    }

    /// The SASL and TLS settings must agree with KAFKA_SECURITY_PROTOCOL: a setting the
    /// protocol would ignore is a mistake (a password meant for SASL_SSL must not be
    /// silently dropped on a PLAINTEXT connection).
    fn validate_security(&self) -> Result<(), crate::KafkaError> {
        let protocol = self.security_protocol;
        let invalid = |setting: &'static str, reason: String| {
            Err(crate::KafkaError::InvalidSetting { setting, reason })
        };
        let sasl_settings = [
            ("KAFKA_SASL_MECHANISM", self.sasl_mechanism.is_some()),
            ("KAFKA_SASL_USERNAME", is_set(self.sasl_username.as_deref())),
            (
                "KAFKA_SASL_PASSWORD",
                is_set(self.sasl_password.as_ref().map(Secret::expose)),
            ),
        ];
        for (setting, present) in sasl_settings {
            if protocol.uses_sasl() && !present {
                return invalid(
                    setting,
                    format!("is required with KAFKA_SECURITY_PROTOCOL={protocol}"),
                );
            }
            if !protocol.uses_sasl() && present {
                return invalid(
                    setting,
                    format!(
                        "is set, but KAFKA_SECURITY_PROTOCOL={protocol} does not use SASL \
                         (use SASL_PLAINTEXT or SASL_SSL)"
                    ),
                );
            }
        }
        match &self.tls_ca_file {
            Some(path) if !protocol.uses_tls() => invalid(
                "KAFKA_TLS_CA_FILE",
                format!(
                    "is set ({}), but KAFKA_SECURITY_PROTOCOL={protocol} does not use TLS \
                     (use SSL or SASL_SSL)",
                    path.display()
                ),
            ),
            Some(path) if path.as_os_str().is_empty() => {
                invalid("KAFKA_TLS_CA_FILE", "must not be empty".to_owned())
            }
            _ => Ok(()),
        }
    }

    /// What rskafka authenticates with, if the protocol uses SASL. Call after
    /// [`KafkaConfig::validate`], which makes sure the mechanism and credentials are there.
    pub fn sasl_config(&self) -> Option<SaslConfig> {
        if !self.security_protocol.uses_sasl() {
            return None;
        }
        let credentials = Credentials::new(
            self.sasl_username.clone().unwrap_or_default(),
            self.sasl_password
                .as_ref()
                .map(|password| password.expose().to_owned())
                .unwrap_or_default(),
        );
        Some(match self.sasl_mechanism? {
            SaslMechanism::Plain => SaslConfig::Plain(credentials),
            SaslMechanism::ScramSha256 => SaslConfig::ScramSha256(credentials),
            SaslMechanism::ScramSha512 => SaslConfig::ScramSha512(credentials),
        })
    }
}

fn is_set(value: Option<&str>) -> bool {
    value.is_some_and(|value| !value.is_empty())
}

#[cfg(test)]
pub(crate) mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        kafka: KafkaConfig,
    }

    /// The configuration these flags give (the test modules of this crate share it).
    pub(crate) fn parse(flags: &[&str]) -> KafkaConfig {
        let args = std::iter::once("test").chain(flags.iter().copied());
        Cli::try_parse_from(args).expect("valid flags").kafka
    }

    fn invalid_setting(config: &KafkaConfig) -> (&'static str, String) {
        match config.validate() {
            Err(crate::KafkaError::InvalidSetting { setting, reason }) => (setting, reason),
            other => panic!("expected an invalid setting, got {other:?}"),
        }
    }

    const SASL: [&str; 8] = [
        "--kafka-security-protocol",
        "SASL_SSL",
        "--kafka-sasl-mechanism",
        "SCRAM-SHA-512",
        "--kafka-sasl-username",
        "orchestrator",
        "--kafka-sasl-password",
        "s3cret",
    ];

    #[test]
    fn verify_cli() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn plaintext_is_the_default_and_needs_no_security_settings() {
        let config = parse(&[]);
        assert_eq!(config.security_protocol, SecurityProtocol::Plaintext);
        config.validate().expect("defaults are valid");
        assert!(config.sasl_config().is_none());
    }

    #[test]
    fn protocols_and_mechanisms_take_kafkas_names_in_any_case() {
        for (name, protocol) in [
            ("PLAINTEXT", SecurityProtocol::Plaintext),
            ("SSL", SecurityProtocol::Ssl),
            ("SASL_PLAINTEXT", SecurityProtocol::SaslPlaintext),
            ("sasl_ssl", SecurityProtocol::SaslSsl),
        ] {
            let config = parse(&["--kafka-security-protocol", name]);
            assert_eq!(config.security_protocol, protocol);
            assert!(name.eq_ignore_ascii_case(protocol.name()));
        }
        for (name, mechanism) in [
            ("PLAIN", SaslMechanism::Plain),
            ("scram-sha-256", SaslMechanism::ScramSha256),
            ("SCRAM-SHA-512", SaslMechanism::ScramSha512),
        ] {
            let config = parse(&["--kafka-sasl-mechanism", name]);
            assert_eq!(config.sasl_mechanism, Some(mechanism));
        }
        assert!(Cli::try_parse_from(["test", "--kafka-security-protocol", "TLS"]).is_err());
        assert!(Cli::try_parse_from(["test", "--kafka-sasl-mechanism", "GSSAPI"]).is_err());
    }

    #[test]
    fn each_mechanism_maps_to_its_sasl_config_with_the_credentials() {
        for (mechanism, expected) in [
            ("PLAIN", "Plain"),
            ("SCRAM-SHA-256", "ScramSha256"),
            ("SCRAM-SHA-512", "ScramSha512"),
        ] {
            let mut flags = SASL;
            flags[3] = mechanism;
            let config = parse(&flags);
            config.validate().expect("valid SASL settings");
            let (variant, credentials) = match config.sasl_config() {
                Some(SaslConfig::Plain(c)) => ("Plain", c),
                Some(SaslConfig::ScramSha256(c)) => ("ScramSha256", c),
                Some(SaslConfig::ScramSha512(c)) => ("ScramSha512", c),
                other => panic!("unexpected SASL config for {mechanism}: {other:?}"),
            };
            assert_eq!(variant, expected);
            assert_eq!(credentials.username, "orchestrator");
            assert_eq!(credentials.password, "s3cret");
        }
    }

    #[test]
    fn sasl_protocols_need_a_mechanism_a_user_name_and_a_password() {
        for (missing, setting) in [
            (2, "KAFKA_SASL_MECHANISM"),
            (4, "KAFKA_SASL_USERNAME"),
            (6, "KAFKA_SASL_PASSWORD"),
        ] {
            let mut flags = SASL.to_vec();
            flags.drain(missing..missing + 2);
            let (named, reason) = invalid_setting(&parse(&flags));
            assert_eq!(named, setting);
            assert_eq!(reason, "is required with KAFKA_SECURITY_PROTOCOL=SASL_SSL");
        }
        let mut flags = SASL;
        flags[7] = "";
        assert_eq!(invalid_setting(&parse(&flags)).0, "KAFKA_SASL_PASSWORD");
    }

    #[test]
    fn sasl_settings_without_a_sasl_protocol_are_refused() {
        for (protocol, flags, setting) in [
            (
                "PLAINTEXT",
                ["--kafka-sasl-mechanism", "PLAIN"],
                "KAFKA_SASL_MECHANISM",
            ),
            ("SSL", ["--kafka-sasl-username", "u"], "KAFKA_SASL_USERNAME"),
            (
                "PLAINTEXT",
                ["--kafka-sasl-password", "p"],
                "KAFKA_SASL_PASSWORD",
            ),
        ] {
            let mut all = vec!["--kafka-security-protocol", protocol];
            all.extend(flags);
            let (named, reason) = invalid_setting(&parse(&all));
            assert_eq!(named, setting);
            assert!(
                reason.contains(&format!(
                    "KAFKA_SECURITY_PROTOCOL={protocol} does not use SASL"
                )),
                "{reason}"
            );
        }
    }

    #[test]
    fn a_ca_file_without_tls_is_refused() {
        for protocol in ["PLAINTEXT", "SASL_PLAINTEXT"] {
            let mut flags = vec!["--kafka-security-protocol", protocol];
            if protocol == "SASL_PLAINTEXT" {
                flags.extend(&SASL[2..]);
            }
            flags.extend(["--kafka-tls-ca-file", "/etc/kafka/ca.pem"]);
            let (named, reason) = invalid_setting(&parse(&flags));
            assert_eq!(named, "KAFKA_TLS_CA_FILE");
            assert!(reason.contains("does not use TLS"), "{reason}");
        }
    }

    #[test]
    fn the_password_is_never_shown() {
        let config = parse(&SASL);
        let debug = format!("{config:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(debug.contains("sasl_password: Some(***)"), "{debug}");

        let help = <Cli as clap::CommandFactory>::command()
            .render_long_help()
            .to_string();
        assert!(help.contains("[env: KAFKA_SASL_PASSWORD]"), "{help}");
    }
}
