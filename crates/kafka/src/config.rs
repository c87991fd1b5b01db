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

    /// Create the task topic and the dead-letter topic when they are missing. `false`
    /// for a broker whose topics are made elsewhere (Azure Event Hubs, a managed
    /// cluster that forbids it): the binaries then only check at start that they exist.
    #[arg(
        long = "kafka-create-topics",
        env = "KAFKA_CREATE_TOPICS",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub create_topics: bool,

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

    /// An Azure Event Hubs connection string (a shared access policy's, from the Azure
    /// portal): sets the broker (NAMESPACE.servicebus.windows.net:9093), SASL_SSL, PLAIN
    /// and the credentials in one setting, so none of KAFKA_BOOTSTRAP_SERVERS,
    /// KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_* may be set with it. Never logged.
    #[arg(
        long = "kafka-connection-string",
        env = "KAFKA_CONNECTION_STRING",
        hide_env_values = true,
        conflicts_with = "connection_string_file"
    )]
    pub connection_string: Option<Secret>,

    /// The same, read from a file (a mounted secret).
    #[arg(
        long = "kafka-connection-string-file",
        env = "KAFKA_CONNECTION_STRING_FILE"
    )]
    pub connection_string_file: Option<PathBuf>,
}

/// The settings an Event Hubs connection string replaces: (argument id, variable).
const REPLACED_BY_CONNECTION_STRING: [(&str, &str); 5] = [
    ("bootstrap_servers", "KAFKA_BOOTSTRAP_SERVERS"),
    ("security_protocol", "KAFKA_SECURITY_PROTOCOL"),
    ("sasl_mechanism", "KAFKA_SASL_MECHANISM"),
    ("sasl_username", "KAFKA_SASL_USERNAME"),
    ("sasl_password", "KAFKA_SASL_PASSWORD"),
];

/// Parses a binary's configuration `C` from its arguments and environment (exiting with
/// clap's message on a bad flag, as `Parser::parse` does) and resolves its Kafka
/// settings' Event Hubs connection string ([`KafkaConfig::resolve`]), which needs to
/// know which settings were given explicitly.
pub fn parse_resolved<C: clap::Parser>(
    kafka: impl FnOnce(&mut C) -> &mut KafkaConfig,
) -> Result<C, crate::KafkaError> {
    let matches = C::command().get_matches();
    let mut config = C::from_arg_matches(&matches)
        .map_err(|error| error.format(&mut C::command()))
        .unwrap_or_else(|error| error.exit());
    kafka(&mut config).resolve(&matches)?;
    Ok(config)
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
    /// Applies an Event Hubs connection string (KAFKA_CONNECTION_STRING or
    /// KAFKA_CONNECTION_STRING_FILE), if one is set: the broker, SASL_SSL, PLAIN and the
    /// credentials come from it. `matches` are the binary's parsed arguments: a setting
    /// the string replaces that was given explicitly (flag or environment, not a
    /// default) is an error naming both, and so is an `EntityPath` other than the topic.
    /// Call before [`KafkaConfig::validate`].
    pub fn resolve(&mut self, matches: &clap::ArgMatches) -> Result<(), crate::KafkaError> {
        let explicit = |id: &str| {
            matches
                .value_source(id)
                .is_some_and(|source| source != clap::parser::ValueSource::DefaultValue)
        };
        self.apply_connection_string(explicit)
    }

    fn apply_connection_string(
        &mut self,
        explicit: impl Fn(&str) -> bool,
    ) -> Result<(), crate::KafkaError> {
        let (setting, text) = match (&self.connection_string, &self.connection_string_file) {
            (Some(text), _) => ("KAFKA_CONNECTION_STRING", text.expose().to_owned()),
            (None, Some(path)) => (
                "KAFKA_CONNECTION_STRING_FILE",
                std::fs::read_to_string(path).map_err(|error| {
                    crate::KafkaError::InvalidSetting {
                        setting: "KAFKA_CONNECTION_STRING_FILE",
                        reason: format!("cannot read {}: {error}", path.display()),
                    }
                })?,
            ),
            (None, None) => return Ok(()),
        };
        if let Some((_, variable)) = REPLACED_BY_CONNECTION_STRING
            .iter()
            .find(|(id, _)| explicit(id))
        {
            return Err(crate::KafkaError::InvalidSetting {
                setting,
                reason: format!(
                    "is set together with {variable}: the connection string sets the broker, \
                     the security protocol and the credentials; unset {variable}"
                ),
            });
        }
        let parsed = crate::event_hubs::ConnectionString::parse(&text).map_err(|error| {
            crate::KafkaError::InvalidSetting {
                setting,
                reason: error.to_string(),
            }
        })?;
        if let Some(event_hub) = parsed.entity_path()
            && event_hub != self.topic
        {
            return Err(crate::KafkaError::InvalidSetting {
                setting,
                reason: format!(
                    "is an event hub's policy (EntityPath={event_hub}) but KAFKA_TOPIC is {}: \
                     use a policy of the namespace (it also reaches the dead-letter event hub) \
                     or set KAFKA_TOPIC={event_hub}",
                    self.topic
                ),
            });
        }
        self.bootstrap_servers = vec![parsed.bootstrap_server()];
        self.security_protocol = SecurityProtocol::SaslSsl;
        self.sasl_mechanism = Some(SaslMechanism::Plain);
        self.sasl_username = Some(crate::event_hubs::SASL_USERNAME.to_owned());
        self.sasl_password = Some(Secret::from(parsed.expose().to_owned()));
        Ok(())
    }

    /// Whether an Event Hubs connection string configures the broker.
    pub fn is_event_hubs(&self) -> bool {
        self.connection_string.is_some() || self.connection_string_file.is_some()
    }

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

    /// The configuration these flags give, its connection string applied.
    fn resolved(flags: &[&str]) -> Result<KafkaConfig, crate::KafkaError> {
        use clap::{CommandFactory, FromArgMatches};
        let args = std::iter::once("test").chain(flags.iter().copied());
        let matches = Cli::command()
            .try_get_matches_from(args)
            .expect("valid flags");
        let mut config = Cli::from_arg_matches(&matches).expect("valid flags").kafka;
        config.resolve(&matches)?;
        Ok(config)
    }

    const EVENT_HUBS: &str = "Endpoint=sb://orchestrator-prod.servicebus.windows.net/;SharedAccessKeyName=orchestrator;SharedAccessKey=a2V5LW9mLXRoZS1uYW1lc3BhY2U=";

    #[test]
    fn an_event_hubs_connection_string_sets_the_broker_and_the_credentials() {
        let config = resolved(&["--kafka-connection-string", EVENT_HUBS]).expect("resolved");
        config.validate().expect("valid");
        assert!(config.is_event_hubs());
        assert_eq!(
            config.bootstrap_servers,
            ["orchestrator-prod.servicebus.windows.net:9093"]
        );
        assert_eq!(config.security_protocol, SecurityProtocol::SaslSsl);
        match config.sasl_config() {
            Some(SaslConfig::Plain(credentials)) => {
                assert_eq!(credentials.username, "$ConnectionString");
                assert_eq!(credentials.password, EVENT_HUBS);
            }
            other => panic!("expected PLAIN, got {other:?}"),
        }
        let debug = format!("{config:?}");
        assert!(!debug.contains("a2V5LW9m"), "{debug}");

        // From a file (a mounted secret), with a trailing newline.
        let dir = tempfile::tempdir().expect("a folder");
        let path = dir.path().join("connection-string");
        std::fs::write(&path, format!("{EVENT_HUBS}\n")).expect("written");
        let path = path.to_str().expect("a UTF-8 path");
        let config =
            resolved(&["--kafka-connection-string-file", path]).expect("resolved from a file");
        assert_eq!(
            config.sasl_password.as_ref().map(Secret::expose),
            Some(EVENT_HUBS)
        );

        // Without one, nothing changes.
        let config = resolved(&[]).expect("resolved");
        assert!(!config.is_event_hubs());
        assert_eq!(config.bootstrap_servers, ["localhost:9092"]);
    }

    #[test]
    fn a_connection_string_with_an_explicit_broker_setting_is_refused_naming_both() {
        for (flag, value, variable) in [
            (
                "--kafka-bootstrap-servers",
                "localhost:9092",
                "KAFKA_BOOTSTRAP_SERVERS",
            ),
            (
                "--kafka-security-protocol",
                "PLAINTEXT",
                "KAFKA_SECURITY_PROTOCOL",
            ),
            ("--kafka-sasl-mechanism", "PLAIN", "KAFKA_SASL_MECHANISM"),
            ("--kafka-sasl-username", "u", "KAFKA_SASL_USERNAME"),
            ("--kafka-sasl-password", "p", "KAFKA_SASL_PASSWORD"),
        ] {
            let error = resolved(&["--kafka-connection-string", EVENT_HUBS, flag, value])
                .expect_err(flag)
                .to_string();
            assert!(error.starts_with("KAFKA_CONNECTION_STRING: "), "{error}");
            assert!(error.contains(variable), "{error}");
            assert!(!error.contains("a2V5LW9m"), "{error}");
        }
    }

    #[test]
    fn an_event_hubs_policy_must_name_the_topic() {
        let hub_policy = |hub: &str| format!("{EVENT_HUBS};EntityPath={hub}");
        let config = resolved(&[
            "--kafka-connection-string",
            &hub_policy("orchestrator-events"),
        ])
        .expect("the default topic");
        config.validate().expect("valid");
        let error = resolved(&["--kafka-connection-string", &hub_policy("other-hub")])
            .expect_err("another event hub")
            .to_string();
        assert!(error.contains("EntityPath=other-hub"), "{error}");
        assert!(
            error.contains("KAFKA_TOPIC is orchestrator-events"),
            "{error}"
        );
        assert!(!error.contains("a2V5LW9m"), "{error}");
    }

    #[test]
    fn a_malformed_connection_string_is_named_not_shown() {
        let error = resolved(&[
            "--kafka-connection-string",
            "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKey=c2VjcmV0",
        ])
        .expect_err("no key name")
        .to_string();
        assert!(
            error.starts_with("KAFKA_CONNECTION_STRING: has no SharedAccessKeyName"),
            "{error}"
        );
        assert!(!error.contains("c2VjcmV0"), "{error}");
        let help = <Cli as clap::CommandFactory>::command()
            .render_long_help()
            .to_string();
        assert!(help.contains("[env: KAFKA_CONNECTION_STRING]"), "{help}");
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
