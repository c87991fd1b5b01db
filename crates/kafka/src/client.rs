//! Connecting to the broker.

use std::sync::Arc;
use std::time::Duration;

use rskafka::BackoffConfig;
use rskafka::client::{Client, ClientBuilder};

use crate::relay::NodelayRelay;
use crate::{KafkaConfig, KafkaError, SaslMechanism, SecurityProtocol};

/// A connected rskafka client, with the relay its connections go through (when on).
/// Cheap to clone; the relay stops when the last clone is dropped.
#[derive(Clone)]
pub struct KafkaConnection {
    client: Arc<Client>,
    _relay: Option<Arc<NodelayRelay>>,
}

impl std::fmt::Debug for KafkaConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaConnection")
            .field("relay", &self._relay.is_some())
            .finish_non_exhaustive()
    }
}

/// Retries with a deadline: without one, rskafka retries a failing request forever and
/// a broker fault hangs its caller.
pub fn backoff(deadline: Duration) -> BackoffConfig {
    BackoffConfig {
        init_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_secs(1),
        base: 2.0,
        deadline: Some(deadline),
    }
}

/// How much longer than rskafka's retry deadline a connect may take before we give up
/// on it without its reason.
const CONNECT_GRACE: Duration = Duration::from_secs(2);

impl KafkaConnection {
    /// Connects to the bootstrap servers (fetching the cluster metadata), within the
    /// request timeout, with TLS and SASL as KAFKA_SECURITY_PROTOCOL says.
    pub async fn connect(config: &KafkaConfig, client_id: &str) -> Result<Self, KafkaError> {
        config.validate()?;
        let relay = if config.nodelay_relay {
            Some(Arc::new(
                NodelayRelay::start().await.map_err(KafkaError::Relay)?,
            ))
        } else {
            None
        };
        let servers = config
            .bootstrap_servers
            .iter()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        let mut builder = ClientBuilder::new(servers)
            .client_id(client_id.to_owned())
            .backoff_config(backoff(config.request_timeout()));
        if let Some(relay) = &relay {
            builder = builder.socks5_proxy(relay.proxy_address());
        }
        if let Some(tls) = crate::security::tls_config(config)? {
            builder = builder.tls_config(tls);
        }
        if let Some(sasl) = config.sasl_config() {
            builder = builder.sasl_config(sasl);
        }
        if config.security_protocol == SecurityProtocol::SaslPlaintext
            && config.sasl_mechanism == Some(SaslMechanism::Plain)
        {
            tracing::warn!(
                "KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT with KAFKA_SASL_MECHANISM=PLAIN sends \
                 the Kafka password unencrypted; use SASL_SSL."
            );
        }
        // rskafka's own retry deadline (the same request timeout) ends first and says
        // why (TLS, SASL, refused); this outer bound only catches a hang past it.
        let client =
            tokio::time::timeout(config.request_timeout() + CONNECT_GRACE, builder.build())
                .await
                .map_err(|_| KafkaError::Timeout("connecting to the bootstrap servers"))?
                .map_err(KafkaError::Client)?;
        Ok(Self {
            client: Arc::new(client),
            _relay: relay,
        })
    }

    pub fn client(&self) -> &Arc<Client> {
        &self.client
    }
}
