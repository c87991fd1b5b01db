//! Creating the topics the orchestrator needs.

use std::time::{Duration, Instant};

use rskafka::client::error::{Error as ClientError, ProtocolError};

use crate::{KafkaConnection, KafkaError};

/// Makes sure `topic` exists and returns its partition count. When it is missing and
/// `create` holds (`KAFKA_CREATE_TOPICS`, the default), creates it with `partitions`
/// partitions; else fails with [`KafkaError::TopicMissing`] (a broker whose topics are
/// made elsewhere, such as Azure Event Hubs). Several processes may call this at once:
/// the losers of the creation race see `TopicAlreadyExists` and use the winner's topic.
pub async fn ensure_topic(
    kafka: &KafkaConnection,
    topic: &str,
    partitions: i32,
    replication_factor: i16,
    timeout: Duration,
    create: bool,
) -> Result<i32, KafkaError> {
    if let Some(count) = partition_count(kafka, topic).await? {
        return Ok(count);
    }
    if !create {
        return Err(KafkaError::TopicMissing(topic.to_owned()));
    }
    let controller = kafka
        .client()
        .controller_client()
        .map_err(KafkaError::Client)?;
    let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    match controller
        .create_topic(topic, partitions, replication_factor, timeout_ms)
        .await
    {
        Ok(()) => tracing::info!(topic, partitions, "Created topic."),
        Err(ClientError::ServerError {
            protocol_error: ProtocolError::TopicAlreadyExists,
            ..
        }) => {}
        Err(error) => return Err(KafkaError::Client(error)),
    }
    // Metadata may lag the creation for a moment; poll until the topic shows.
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(count) = partition_count(kafka, topic).await? {
            return Ok(count);
        }
        if Instant::now() >= deadline {
            return Err(KafkaError::Timeout("waiting for a created topic to appear"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The partition count of `topic`, or `None` when the cluster does not know it.
pub async fn partition_count(
    kafka: &KafkaConnection,
    topic: &str,
) -> Result<Option<i32>, KafkaError> {
    let topics = kafka
        .client()
        .list_topics()
        .await
        .map_err(KafkaError::Client)?;
    Ok(topics
        .into_iter()
        .find(|t| t.name == topic)
        .map(|t| i32::try_from(t.partitions.len()).unwrap_or(i32::MAX))
        .filter(|count| *count > 0))
}
