//! Connecting to the broker.

use std::sync::Arc;
use std::time::Duration;

use rskafka::BackoffConfig;
use rskafka::client::{Client, ClientBuilder};

use crate::relay::NodelayRelay;
use crate::{KafkaConfig, KafkaError};

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

impl KafkaConnection {
    /// Connects to the bootstrap servers (fetching the cluster metadata), within the
    /// request timeout.
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
        let client = tokio::time::timeout(config.request_timeout(), builder.build())
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
