//! Kafka connection tests against a real broker (Tansu): TLS through a TLS-terminating
//! proxy, and SASL.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::Parser;
use orchestrator_kafka::{KafkaConfig, KafkaConnection, ensure_topic};
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::record::Record;

mod sasl;
mod support;
mod tls;
mod topics;

/// The binaries flatten `KafkaConfig` into their own parser; so does this one.
#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    kafka: KafkaConfig,
}

/// Settings as the binaries would get them from flags.
fn kafka_config(bootstrap: &str, flags: &[&str]) -> KafkaConfig {
    let mut args = vec!["test", "--kafka-bootstrap-servers", bootstrap];
    args.extend_from_slice(flags);
    Cli::try_parse_from(args).expect("valid flags").kafka
}

fn random_topic(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Creates `topic`, produces one record to it and fetches it back.
async fn round_trip(kafka: &KafkaConnection, topic: &str) {
    let timeout = Duration::from_secs(10);
    ensure_topic(kafka, topic, 1, 1, timeout, true)
        .await
        .expect("create the topic");
    let partition = kafka
        .client()
        .partition_client(topic, 0, UnknownTopicHandling::Retry)
        .await
        .expect("partition client");
    let value = format!("hello over {topic}").into_bytes();
    let record = Record {
        key: Some(b"key".to_vec()),
        value: Some(value.clone()),
        headers: BTreeMap::new(),
        timestamp: chrono::Utc::now(),
    };
    let offsets = tokio::time::timeout(
        timeout,
        partition.produce(vec![record], Compression::NoCompression),
    )
    .await
    .expect("produce in time")
    .expect("produce");
    let (records, _high_watermark) = tokio::time::timeout(
        timeout,
        partition.fetch_records(offsets[0], 1..1_000_000, 1_000),
    )
    .await
    .expect("fetch in time")
    .expect("fetch");
    let fetched = records
        .iter()
        .find(|r| r.offset == offsets[0])
        .expect("the produced record is fetched");
    assert_eq!(fetched.record.value.as_deref(), Some(value.as_slice()));
}
