//! The broker harness against a real Tansu process, driven by rskafka as the services
//! drive it: create a topic, produce, fetch, survive a stop and a restart.

use std::time::{Duration, SystemTime};

use orchestrator_testkit::broker::TestBroker;
use rskafka::{
    BackoffConfig,
    chrono::DateTime,
    client::{
        Client, ClientBuilder,
        partition::{Compression, PartitionClient, UnknownTopicHandling},
    },
    record::Record,
};

const TOPIC: &str = "tasks";

/// Without a deadline rskafka retries forever, and a broker fault hangs the test. The
/// deadline bounds the sum of backoff sleeps of one retry loop, and loops nest (connect
/// inside produce), so a failing call takes a few times `deadline`; the default
/// `max_backoff` of 500 s is capped too.
async fn connect(broker: &TestBroker, deadline: Duration) -> Client {
    ClientBuilder::new(vec![broker.bootstrap()])
        .backoff_config(BackoffConfig {
            init_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(500),
            deadline: Some(deadline),
            ..Default::default()
        })
        .build()
        .await
        .expect("rskafka client builds against the test broker")
}

async fn fresh_partition(client: &Client) -> PartitionClient {
    client
        .controller_client()
        .expect("controller client")
        .create_topic(TOPIC, 1, 1, 5_000)
        .await
        .expect("create topic");
    client
        .partition_client(TOPIC, 0, UnknownTopicHandling::Retry)
        .await
        .expect("partition client")
}

fn record(value: &str) -> Record {
    Record {
        key: Some(b"key".to_vec()),
        value: Some(value.as_bytes().to_vec()),
        headers: Default::default(),
        timestamp: now(),
    }
}

/// rskafka's `chrono` has no clock feature of its own, so read the time from std.
fn now() -> DateTime<rskafka::chrono::Utc> {
    let millis = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis();
    DateTime::from_timestamp_millis(i64::try_from(millis).expect("millis fit i64"))
        .expect("timestamp in chrono's range")
}

async fn round_trip(partition: &PartitionClient, value: &str) -> i64 {
    let offsets = partition
        .produce(vec![record(value)], Compression::NoCompression)
        .await
        .expect("produce");
    assert_eq!(offsets.len(), 1);
    let (records, high_watermark) = partition
        .fetch_records(offsets[0], 1..1_000_000, 1_000)
        .await
        .expect("fetch");
    assert_eq!(high_watermark, offsets[0] + 1);
    let fetched = records.first().expect("the produced record is fetched");
    assert_eq!(fetched.offset, offsets[0]);
    assert_eq!(fetched.record.value.as_deref(), Some(value.as_bytes()));
    offsets[0]
}

#[tokio::test]
async fn produces_fetches_stops_and_restarts() {
    let mut broker = TestBroker::start().await;
    assert_eq!(broker.bootstrap(), format!("127.0.0.1:{}", broker.port()));
    let port = broker.port();

    let client = connect(&broker, Duration::from_millis(500)).await;
    let partition = fresh_partition(&client).await;
    assert_eq!(round_trip(&partition, "first").await, 0);
    assert_eq!(round_trip(&partition, "second").await, 1);

    broker.stop();
    assert!(
        tokio::net::TcpStream::connect(broker.bootstrap())
            .await
            .is_err(),
        "nothing listens while the broker is stopped"
    );
    let down = partition
        .produce(vec![record("lost")], Compression::NoCompression)
        .await;
    assert!(
        down.is_err(),
        "produce fails (within the deadline) while the broker is down"
    );

    broker.restart().await;
    assert_eq!(broker.port(), port, "restart keeps the port");
    // Memory storage: the topic is gone, so it starts again at offset 0.
    let client = connect(&broker, Duration::from_secs(5)).await;
    let partition = fresh_partition(&client).await;
    assert_eq!(round_trip(&partition, "after restart").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_starts_get_distinct_brokers() {
    let brokers = join_all((0..4).map(|_| tokio::spawn(TestBroker::start())).collect()).await;
    let mut ports: Vec<u16> = brokers.iter().map(TestBroker::port).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), brokers.len(), "every broker has its own port");

    let bootstrap = brokers[0].bootstrap();
    drop(brokers);
    assert!(
        tokio::net::TcpStream::connect(bootstrap).await.is_err(),
        "dropping a broker kills it"
    );
}

/// Awaits spawned starts in order (no `futures` dependency just for its `join_all`).
async fn join_all(handles: Vec<tokio::task::JoinHandle<TestBroker>>) -> Vec<TestBroker> {
    let mut brokers = Vec::with_capacity(handles.len());
    for handle in handles {
        brokers.push(handle.await.expect("broker start task"));
    }
    brokers
}
