//! Publishing task records, batched per partition.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use orchestrator_core::envelope::ENVELOPE_CONTENT_TYPE;
use orchestrator_core::{TaskEnvelope, partition_for_key};
use rskafka::client::partition::UnknownTopicHandling;
use rskafka::client::producer::aggregator::RecordAggregator;
use rskafka::client::producer::{BatchProducer, BatchProducerBuilder};
use rskafka::record::Record;

use crate::metrics::ProduceMetrics;
use crate::topics::ensure_topic;
use crate::{KafkaConfig, KafkaConnection, KafkaError};

/// Record header with the value's content type.
pub const HEADER_CONTENT_TYPE: &str = "content-type";
/// Record header with the request id of the API request that accepted the task.
pub const HEADER_REQUEST_ID: &str = "x-request-id";
/// The task's W3C trace context.
pub const HEADER_TRACEPARENT: &str = orchestrator_telemetry::trace::TRACEPARENT;

/// How often, at most, a failing publisher checks whether the topic still exists.
const TOPIC_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Batching of the producer.
#[derive(Debug, Clone, Copy)]
pub struct BatchSettings {
    /// How long the first record of a batch waits for others to join it.
    pub linger: Duration,
    /// A batch is sent once it holds this many bytes of records.
    pub max_batch_bytes: usize,
}

/// Where a record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub partition: i32,
    pub offset: i64,
}

/// Publishes task envelopes to the task topic: one rskafka batch producer per
/// partition, so concurrent publishes share produce requests (group commit at the
/// broker) while each caller still learns its own record's fate.
pub struct TaskPublisher {
    kafka: KafkaConnection,
    config: KafkaConfig,
    producers: Vec<BatchProducer<RecordAggregator>>,
    last_topic_check: Mutex<Option<Instant>>,
    metrics: ProduceMetrics,
}

impl std::fmt::Debug for TaskPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskPublisher")
            .field("topic", &self.config.topic)
            .field("partitions", &self.producers.len())
            .finish_non_exhaustive()
    }
}

impl TaskPublisher {
    /// Makes sure the topic exists and prepares a producer for each of its partitions.
    pub async fn new(
        kafka: KafkaConnection,
        config: &KafkaConfig,
        batch: BatchSettings,
        metrics: ProduceMetrics,
    ) -> Result<Arc<Self>, KafkaError> {
        let timeout = config.request_timeout();
        let partitions = ensure_topic(
            &kafka,
            &config.topic,
            config.partitions,
            config.replication_factor,
            timeout,
            config.create_topics,
        )
        .await?;
        let mut producers = Vec::new();
        for partition in 0..partitions {
            let client = tokio::time::timeout(
                timeout,
                kafka.client().partition_client(
                    config.topic.clone(),
                    partition,
                    // A deleted topic surfaces as an error at once; `publish` then has
                    // it recreated instead of retrying into the deadline.
                    UnknownTopicHandling::Error,
                ),
            )
            .await
            .map_err(|_| KafkaError::Timeout("preparing partition clients"))?
            .map_err(KafkaError::Client)?;
            producers.push(
                BatchProducerBuilder::new(Arc::new(client))
                    .with_linger(batch.linger)
                    .build(RecordAggregator::new(batch.max_batch_bytes)),
            );
        }
        Ok(Arc::new(Self {
            kafka,
            config: config.clone(),
            producers,
            last_topic_check: Mutex::new(None),
            metrics,
        }))
    }

    pub fn topic(&self) -> &str {
        &self.config.topic
    }

    pub fn partitions(&self) -> usize {
        self.producers.len()
    }

    /// The connection records go out on.
    pub fn connection(&self) -> &KafkaConnection {
        &self.kafka
    }

    /// Publishes one envelope and returns once the broker acknowledged it (or failed to,
    /// within the request timeout).
    pub async fn publish(&self, envelope: &TaskEnvelope) -> Result<Published, KafkaError> {
        let key = envelope.key();
        let count = u32::try_from(self.producers.len()).unwrap_or(u32::MAX);
        let partition = partition_for_key(&key, count);
        let producer = usize::try_from(partition)
            .ok()
            .and_then(|p| self.producers.get(p))
            .ok_or(KafkaError::NoPartitions)?;
        let record = record_of(envelope, key);
        let started = Instant::now();
        let result = tokio::time::timeout(self.config.request_timeout(), producer.produce(record))
            .await
            .map_err(|_| KafkaError::Timeout("waiting for the broker to acknowledge a record"))
            .and_then(|r| r.map_err(KafkaError::Produce));
        self.metrics
            .produced(started.elapsed().as_secs_f64(), result.is_ok());
        match result {
            Ok(offset) => Ok(Published {
                partition: i32::try_from(partition).unwrap_or(i32::MAX),
                offset,
            }),
            Err(error) => {
                self.recreate_topic_if_missing();
                Err(error)
            }
        }
    }

    /// After a failure, checks in the background (at most once a second) whether the
    /// topic is gone, e.g. a broker that lost its storage, and creates it again so that
    /// publishing recovers without a restart.
    fn recreate_topic_if_missing(&self) {
        {
            let Ok(mut last) = self.last_topic_check.lock() else {
                return;
            };
            if last.is_some_and(|at| at.elapsed() < TOPIC_CHECK_INTERVAL) {
                return;
            }
            *last = Some(Instant::now());
        }
        let kafka = self.kafka.clone();
        let config = self.config.clone();
        tokio::spawn(async move {
            let created = ensure_topic(
                &kafka,
                &config.topic,
                config.partitions,
                config.replication_factor,
                config.request_timeout(),
                config.create_topics,
            )
            .await;
            if let Err(error) = created {
                tracing::debug!(topic = %config.topic, %error, "Topic check after a publish failure failed.");
            }
        });
    }
}

/// The record of a task: its id as the key, the envelope as the value, the request id
/// and trace context as headers. Never the task's request, which stays in PostgreSQL:
/// so a record's size is bounded whatever a client submits, far below any broker's
/// limit (Event Hubs' 1 MB publication among them).
fn record_of(envelope: &TaskEnvelope, key: Vec<u8>) -> Record {
    let mut headers = BTreeMap::new();
    headers.insert(
        HEADER_CONTENT_TYPE.to_owned(),
        ENVELOPE_CONTENT_TYPE.as_bytes().to_vec(),
    );
    if let Some(request_id) = &envelope.request_id {
        headers.insert(HEADER_REQUEST_ID.to_owned(), request_id.as_bytes().to_vec());
    }
    if let Some(traceparent) = &envelope.traceparent {
        headers.insert(
            HEADER_TRACEPARENT.to_owned(),
            traceparent.as_bytes().to_vec(),
        );
    }
    Record {
        key: Some(key),
        value: Some(envelope.encode()),
        headers,
        timestamp: envelope.published_at,
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use orchestrator_core::EnvelopeKind;
    use uuid::Uuid;

    use super::*;

    #[test]
    fn the_largest_record_of_a_task_is_a_fraction_of_a_kilobyte() {
        // The API's longest request id (128 characters) and a full traceparent.
        let mut envelope = TaskEnvelope::new(
            Uuid::new_v4(),
            EnvelopeKind::Redriven,
            Some("r".repeat(128)),
            Utc::now(),
        );
        envelope.traceparent =
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned());
        let record = record_of(&envelope, envelope.key());
        assert!(record.headers.contains_key(HEADER_TRACEPARENT));
        let bytes = record.approximate_size();
        assert!(bytes < 1_024, "{bytes} bytes");
        assert!(bytes * 1_000 < crate::event_hubs::MAX_PUBLICATION_BYTES);
    }
}
