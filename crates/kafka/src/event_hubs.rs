//! Azure Event Hubs as the broker: its connection string, which sets the bootstrap
//! server, SASL_SSL, PLAIN and the credentials in one setting.
//!
//! Event Hubs speaks the Kafka protocol on `<namespace>.servicebus.windows.net:9093`
//! with SASL PLAIN over TLS, the user name `$ConnectionString` and the whole connection
//! string as the password. Nothing here prints the string or its key: an error names
//! the part that is wrong, never its value.

use std::fmt;

/// Where Event Hubs takes Kafka connections.
pub const KAFKA_PORT: u16 = 9093;
/// The SASL user name Event Hubs expects with a connection string as the password.
pub const SASL_USERNAME: &str = "$ConnectionString";
/// The most Event Hubs takes in one publication (a produce request), whether one event
/// or a batch: 1 MB on every tier.
pub const MAX_PUBLICATION_BYTES: usize = 1_000_000;

/// A parsed Event Hubs connection string: `Endpoint=sb://NAMESPACE.servicebus.windows.net/;
/// SharedAccessKeyName=NAME;SharedAccessKey=KEY[;EntityPath=EVENT_HUB]` (or a
/// `SharedAccessSignature=...` instead of the key name and key). `Debug` shows the
/// namespace and the policy, never the key.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionString {
    /// The namespace's host, `NAMESPACE.servicebus.windows.net`.
    host: String,
    /// The shared access policy, when the string names one.
    key_name: Option<String>,
    /// An event-hub-level policy's event hub (`EntityPath`).
    entity_path: Option<String>,
    /// The string as given, trimmed: the SASL password.
    raw: String,
}

/// What is wrong with a connection string, without its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionStringError {
    #[error("is empty")]
    Empty,
    #[error("has a part that is not KEY=VALUE (parts are separated by `;`)")]
    NotKeyValue,
    #[error("names {0} twice")]
    Repeated(String),
    #[error(
        "has no {0} (copy the whole connection string of a shared access policy from the Azure portal)"
    )]
    Missing(&'static str),
    #[error(
        "has an Endpoint that is not sb://NAMESPACE.servicebus.windows.net/ (or another Azure cloud's host)"
    )]
    BadEndpoint,
}

impl ConnectionString {
    pub fn parse(text: &str) -> Result<ConnectionString, ConnectionStringError> {
        let raw = text.trim();
        if raw.is_empty() {
            return Err(ConnectionStringError::Empty);
        }
        let mut endpoint = None;
        let mut key_name = None;
        let mut key = None;
        let mut signature = None;
        let mut entity_path = None;
        for part in raw
            .split(';')
            .map(str::trim)
            .filter(|part| !part.is_empty())
        {
            // The key ends at the first `=`; a key or signature may hold more of them.
            let (name, value) = part
                .split_once('=')
                .ok_or(ConnectionStringError::NotKeyValue)?;
            let (name, value) = (name.trim(), value.trim());
            // Azure's SDKs read the part names in any case.
            let slot = match name.to_ascii_lowercase().as_str() {
                "endpoint" => &mut endpoint,
                "sharedaccesskeyname" => &mut key_name,
                "sharedaccesskey" => &mut key,
                "sharedaccesssignature" => &mut signature,
                "entitypath" => &mut entity_path,
                // Others (UseDevelopmentEmulator, ...) concern other clients.
                _ => continue,
            };
            if slot.replace(value.to_owned()).is_some() {
                return Err(ConnectionStringError::Repeated(name.to_owned()));
            }
        }
        let endpoint = endpoint
            .filter(|value| !value.is_empty())
            .ok_or(ConnectionStringError::Missing("Endpoint"))?;
        let host = endpoint_host(&endpoint).ok_or(ConnectionStringError::BadEndpoint)?;
        let signed = signature.is_some_and(|value| !value.is_empty());
        if !signed {
            if key_name.as_deref().is_none_or(str::is_empty) {
                return Err(ConnectionStringError::Missing("SharedAccessKeyName"));
            }
            if key.as_deref().is_none_or(str::is_empty) {
                return Err(ConnectionStringError::Missing("SharedAccessKey"));
            }
        }
        Ok(ConnectionString {
            host,
            key_name: key_name.filter(|name| !name.is_empty()),
            entity_path: entity_path.filter(|path| !path.is_empty()),
            raw: raw.to_owned(),
        })
    }

    /// The Kafka bootstrap server: the namespace on port 9093.
    pub fn bootstrap_server(&self) -> String {
        format!("{}:{KAFKA_PORT}", self.host)
    }

    /// The event hub an event-hub-level policy is limited to.
    pub fn entity_path(&self) -> Option<&str> {
        self.entity_path.as_deref()
    }

    /// The SASL password: the whole string.
    pub fn expose(&self) -> &str {
        &self.raw
    }
}

impl fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionString")
            .field("host", &self.host)
            .field("key_name", &self.key_name)
            .field("entity_path", &self.entity_path)
            .finish_non_exhaustive()
    }
}

/// The host of `sb://HOST/` (or `sb://HOST`): a DNS name, no port, path or credentials.
fn endpoint_host(endpoint: &str) -> Option<String> {
    let rest = endpoint
        .get(..5)
        .filter(|scheme| scheme.eq_ignore_ascii_case("sb://"))
        .and_then(|_| endpoint.get(5..))?;
    let host = rest.strip_suffix('/').unwrap_or(rest);
    let valid = !host.is_empty()
        && host.contains('.')
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    valid.then(|| host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "c2VjcmV0LWtleS10aGF0LW11c3Qtbm90LWxlYWs=";

    fn namespace_string() -> String {
        format!(
            "Endpoint=sb://orchestrator-prod.servicebus.windows.net/;SharedAccessKeyName=orchestrator;SharedAccessKey={KEY}"
        )
    }

    #[test]
    fn a_namespace_policys_string_gives_the_broker_and_the_password() {
        let parsed =
            ConnectionString::parse(&format!("  {}  ", namespace_string())).expect("valid");
        assert_eq!(
            parsed.bootstrap_server(),
            "orchestrator-prod.servicebus.windows.net:9093"
        );
        assert_eq!(parsed.expose(), namespace_string());
        assert_eq!(parsed.entity_path(), None);
        let debug = format!("{parsed:?}");
        assert!(!debug.contains(KEY), "{debug}");
        assert!(
            debug.contains("orchestrator-prod.servicebus.windows.net"),
            "{debug}"
        );
    }

    #[test]
    fn part_names_are_read_in_any_case_and_an_event_hubs_policy_names_its_hub() {
        let parsed = ConnectionString::parse(&format!(
            "endpoint=SB://NS.servicebus.windows.net;sharedaccesskeyname=send-listen;SHAREDACCESSKEY={KEY};EntityPath=orchestrator-events;"
        ))
        .expect("valid");
        assert_eq!(parsed.bootstrap_server(), "ns.servicebus.windows.net:9093");
        assert_eq!(parsed.entity_path(), Some("orchestrator-events"));
    }

    #[test]
    fn a_shared_access_signature_stands_for_the_key() {
        let parsed = ConnectionString::parse(
            "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessSignature=SharedAccessSignature sr=x&sig=y%3D&se=1&skn=p",
        )
        .expect("valid");
        assert_eq!(parsed.bootstrap_server(), "ns.servicebus.windows.net:9093");
    }

    #[test]
    fn missing_and_malformed_parts_are_named_never_shown() {
        let cases = [
            ("", ConnectionStringError::Empty),
            (
                &format!("SharedAccessKeyName=p;SharedAccessKey={KEY}") as &str,
                ConnectionStringError::Missing("Endpoint"),
            ),
            (
                &format!("Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKey={KEY}"),
                ConnectionStringError::Missing("SharedAccessKeyName"),
            ),
            (
                "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=p",
                ConnectionStringError::Missing("SharedAccessKey"),
            ),
            (
                &format!(
                    "Endpoint=https://ns.servicebus.windows.net/;SharedAccessKeyName=p;SharedAccessKey={KEY}"
                ),
                ConnectionStringError::BadEndpoint,
            ),
            (
                &format!(
                    "Endpoint=sb://user:{KEY}@ns.servicebus.windows.net/;SharedAccessKeyName=p;SharedAccessKey={KEY}"
                ),
                ConnectionStringError::BadEndpoint,
            ),
            (
                "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName",
                ConnectionStringError::NotKeyValue,
            ),
            (
                &format!(
                    "Endpoint=sb://a.b/;Endpoint=sb://c.d/;SharedAccessKeyName=p;SharedAccessKey={KEY}"
                ),
                ConnectionStringError::Repeated("Endpoint".to_owned()),
            ),
        ];
        for (text, expected) in cases {
            let error = ConnectionString::parse(text).expect_err(text);
            assert_eq!(error, expected, "{text}");
            assert!(!error.to_string().contains(KEY), "{error}");
            assert!(!error.to_string().contains("c2VjcmV0"), "{error}");
        }
    }
}
