//! `KAFKA_CREATE_TOPICS=false`: topics made elsewhere (Azure Event Hubs) are only
//! checked, never created.

use std::time::Duration;

use orchestrator_kafka::{
    BatchSettings, KafkaConnection, KafkaError, ProduceMetrics, TaskPublisher, ensure_topic,
    partition_count,
};
use orchestrator_telemetry::metrics::Registry;
use orchestrator_testkit::broker::TestBroker;

use crate::{kafka_config, random_topic};

const TIMEOUT: Duration = Duration::from_secs(10);
const BATCH: BatchSettings = BatchSettings {
    linger: Duration::from_millis(1),
    max_batch_bytes: 64 * 1024,
};

#[tokio::test(flavor = "multi_thread")]
async fn without_creation_a_missing_topic_is_an_error_naming_it_and_an_existing_one_is_used() {
    let broker = TestBroker::start().await;
    let topic = random_topic("made-elsewhere");
    let config = kafka_config(
        &broker.bootstrap(),
        &["--kafka-topic", &topic, "--kafka-create-topics", "false"],
    );
    assert!(!config.create_topics);
    let kafka = KafkaConnection::connect(&config, "no-create")
        .await
        .expect("connect");

    // Missing: the publisher does not start, and the topic is still not there.
    let mut registry = Registry::default();
    let metrics = ProduceMetrics::register(&mut registry);
    let error = TaskPublisher::new(kafka.clone(), &config, BATCH, metrics)
        .await
        .expect_err("the topic is missing");
    assert!(
        matches!(&error, KafkaError::TopicMissing(missing) if *missing == topic),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("KAFKA_CREATE_TOPICS=false"), "{message}");
    assert!(message.contains(&format!("--name {topic}")), "{message}");
    assert_eq!(partition_count(&kafka, &topic).await.expect("listed"), None);

    // Made elsewhere (here by a creating call, as an operator would in Azure): used.
    ensure_topic(&kafka, &topic, 3, 1, TIMEOUT, true)
        .await
        .expect("created");
    let partitions = ensure_topic(&kafka, &topic, 12, 1, TIMEOUT, false)
        .await
        .expect("found");
    assert_eq!(partitions, 3, "its own count, not KAFKA_PARTITIONS");
    let mut registry = Registry::default();
    let metrics = ProduceMetrics::register(&mut registry);
    let publisher = TaskPublisher::new(kafka, &config, BATCH, metrics)
        .await
        .expect("the publisher starts on the existing topic");
    assert_eq!(publisher.partitions(), 3);
}
