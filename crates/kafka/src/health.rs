//! Is the broker reachable? For readiness probes.

use std::time::Duration;

use crate::{KafkaConnection, KafkaError};

/// Asks the cluster for its metadata (never answered from rskafka's cache) and
/// succeeds once a broker answers, within `timeout`.
pub async fn ping(connection: &KafkaConnection, timeout: Duration) -> Result<(), KafkaError> {
    tokio::time::timeout(timeout, connection.client().list_topics())
        .await
        .map_err(|_| KafkaError::Timeout("waiting for the broker's metadata"))?
        .map_err(KafkaError::Client)?;
    Ok(())
}
