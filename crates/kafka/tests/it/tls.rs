//! KAFKA_SECURITY_PROTOCOL=SSL against a broker behind a TLS-terminating proxy.

use std::time::{Duration, Instant};

use orchestrator_kafka::KafkaConnection;
use orchestrator_stdx::error_chain;

use crate::support::{AdvertisingBroker, BROKER_HOST, TestPki, TlsProxy};
use crate::{kafka_config, random_topic, round_trip};

/// A broker reachable only over TLS: it advertises the proxy, so every connection
/// rskafka opens (bootstrap and partition leader) goes through the proxy.
async fn tls_broker(pki: &TestPki) -> (AdvertisingBroker, TlsProxy) {
    let (listener, port) = TlsProxy::bind().await;
    let broker = AdvertisingBroker::start(Some(&format!("{BROKER_HOST}:{port}")), &[]).await;
    let proxy = TlsProxy::start(listener, pki, broker.address());
    (broker, proxy)
}

#[tokio::test(flavor = "multi_thread")]
async fn produces_and_fetches_over_tls_with_and_without_the_relay() {
    let pki = TestPki::generate("orchestrator test CA");
    let ca_file = pki.write_ca_file();
    let ca_path = ca_file.path().to_str().expect("UTF-8 temp path");
    let (_broker, proxy) = tls_broker(&pki).await;

    for relay in ["true", "false"] {
        let config = kafka_config(
            &proxy.address(),
            &[
                "--kafka-security-protocol",
                "SSL",
                "--kafka-tls-ca-file",
                ca_path,
                "--kafka-nodelay-relay",
                relay,
            ],
        );
        let kafka = KafkaConnection::connect(&config, "tls-test")
            .await
            .unwrap_or_else(|error| panic!("connect over TLS (relay {relay}): {error:?}"));
        round_trip(&kafka, &random_topic("tls")).await;
    }

    let names = proxy.server_names();
    // Bootstrap and leader connections, for each of the two clients.
    assert!(names.len() >= 2, "TLS handshakes seen: {names:?}");
    assert!(
        names
            .iter()
            .all(|name| name.as_deref() == Some(BROKER_HOST)),
        "SNI must be the broker's host name: {names:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_certificate_from_another_ca_fails_clearly_within_the_timeout() {
    let pki = TestPki::generate("orchestrator test CA");
    let (_broker, proxy) = tls_broker(&pki).await;
    let other_ca = TestPki::generate("some other CA").write_ca_file();

    let timeout = Duration::from_secs(5);
    let config = kafka_config(
        &proxy.address(),
        &[
            "--kafka-security-protocol",
            "SSL",
            "--kafka-tls-ca-file",
            other_ca.path().to_str().expect("UTF-8 temp path"),
            "--kafka-request-timeout-ms",
            &timeout.as_millis().to_string(),
        ],
    );
    let started = Instant::now();
    let error = KafkaConnection::connect(&config, "tls-test")
        .await
        .expect_err("a certificate from an unknown CA must be refused");
    let elapsed = started.elapsed();

    let chain = error_chain(&error);
    assert!(
        elapsed < timeout + Duration::from_secs(3),
        "took {elapsed:?}: {chain}"
    );
    assert!(
        chain.contains("certificate") && chain.contains("UnknownIssuer"),
        "the error should say the certificate is not trusted: {chain}"
    );
    assert!(proxy.server_names().is_empty(), "no handshake may complete");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_ca_file_is_named_before_connecting() {
    let config = kafka_config(
        "localhost:9",
        &[
            "--kafka-security-protocol",
            "SSL",
            "--kafka-tls-ca-file",
            "/nonexistent/kafka-ca.pem",
        ],
    );
    let error = KafkaConnection::connect(&config, "tls-test")
        .await
        .expect_err("missing CA file");
    let message = error.to_string();
    assert!(
        message.starts_with("KAFKA_TLS_CA_FILE: cannot read /nonexistent/kafka-ca.pem"),
        "{message}"
    );
}
