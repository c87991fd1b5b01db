//! The dead-letter topic: records that cannot be processed, kept for people to inspect.

use std::collections::BTreeMap;
use std::sync::Arc;

use orchestrator_kafka::{KafkaConnection, KafkaError};
use rskafka::client::partition::{Compression, PartitionClient, UnknownTopicHandling};
use rskafka::record::{Record, RecordAndOffset};
use tokio::sync::OnceCell;

/// Header with why the record was dead-lettered.
pub const HEADER_ERROR: &str = "dlq-error";
/// Headers with where the record came from.
pub const HEADER_SOURCE_TOPIC: &str = "dlq-source-topic";
pub const HEADER_SOURCE_PARTITION: &str = "dlq-source-partition";
pub const HEADER_SOURCE_OFFSET: &str = "dlq-source-offset";

/// Sends records to the dead-letter topic, keeping their key, value and headers and
/// adding the reason and the source position as headers. Source partition `p` goes to
/// dead-letter partition `p mod n`, so one partition's poison stays together (records
/// of a partition are processed concurrently, so not necessarily in order).
pub struct DeadLetters {
    kafka: KafkaConnection,
    topic: String,
    source_topic: String,
    partitions: i32,
    clients: Vec<OnceCell<Arc<PartitionClient>>>,
}

impl DeadLetters {
    pub fn new(
        kafka: KafkaConnection,
        topic: String,
        source_topic: String,
        partitions: i32,
    ) -> Self {
        let count = usize::try_from(partitions.max(1)).unwrap_or(1);
        Self {
            kafka,
            topic,
            source_topic,
            partitions: partitions.max(1),
            clients: (0..count).map(|_| OnceCell::new()).collect(),
        }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Publishes `record` (read from `source_partition`) with the reason it failed.
    pub async fn send(
        &self,
        source_partition: i32,
        record: &RecordAndOffset,
        error: &str,
    ) -> Result<(), KafkaError> {
        let partition = source_partition.rem_euclid(self.partitions);
        let slot = usize::try_from(partition)
            .ok()
            .and_then(|p| self.clients.get(p))
            .ok_or(KafkaError::NoPartitions)?;
        let client = slot
            .get_or_try_init(|| async {
                self.kafka
                    .client()
                    .partition_client(self.topic.clone(), partition, UnknownTopicHandling::Retry)
                    .await
                    .map(Arc::new)
                    .map_err(KafkaError::Client)
            })
            .await?;
        let mut headers: BTreeMap<String, Vec<u8>> = record.record.headers.clone();
        headers.insert(HEADER_ERROR.into(), error.as_bytes().to_vec());
        headers.insert(
            HEADER_SOURCE_TOPIC.into(),
            self.source_topic.as_bytes().to_vec(),
        );
        headers.insert(
            HEADER_SOURCE_PARTITION.into(),
            source_partition.to_string().into_bytes(),
        );
        headers.insert(
            HEADER_SOURCE_OFFSET.into(),
            record.offset.to_string().into_bytes(),
        );
        let dead = Record {
            key: record.record.key.clone(),
            value: record.record.value.clone(),
            headers,
            timestamp: record.record.timestamp,
        };
        client
            .produce(vec![dead], Compression::NoCompression)
            .await
            .map_err(KafkaError::Client)?;
        Ok(())
    }
}
