//! SASL against Tansu started with `--authentication`.
//!
//! What this Tansu build can check: it requires SASL and answers SCRAM-SHA-256, but it
//! has no PLAIN (`NoSharedMechanism`), never answers a SCRAM-SHA-512 exchange (the
//! client waits until its timeout), and its users can only be created by an
//! authenticated client (`tansu user create` is refused too), so no login can succeed.
//! The test therefore checks that the SCRAM exchange reaches the broker (the broker
//! looks the user up) and that the refusal is reported clearly and within the request
//! timeout, over plaintext and over TLS. That each setting becomes the right
//! `SaslConfig` is unit-tested in `config.rs`.

use std::time::{Duration, Instant};

use orchestrator_kafka::KafkaConnection;

use crate::kafka_config;
use crate::support::{AdvertisingBroker, BROKER_HOST, TestPki, TlsProxy};
use orchestrator_stdx::error_chain;

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_that_requires_authentication_refuses_a_client_without_sasl() {
    let broker = AdvertisingBroker::start(None, &["--authentication"]).await;
    let config = kafka_config(&broker.bootstrap(), &["--kafka-request-timeout-ms", "3000"]);
    KafkaConnection::connect(&config, "no-sasl")
        .await
        .expect_err("the broker requires SASL");
}

#[tokio::test(flavor = "multi_thread")]
async fn scram_credentials_reach_the_broker_over_plaintext_and_tls() {
    let pki = TestPki::generate("orchestrator test CA");
    let ca_file = pki.write_ca_file();
    let ca_path = ca_file.path().to_str().expect("UTF-8 temp path");
    let plain = AdvertisingBroker::start(None, &["--authentication"]).await;
    let (listener, port) = TlsProxy::bind().await;
    let behind_tls = AdvertisingBroker::start(
        Some(&format!("{BROKER_HOST}:{port}")),
        &["--authentication"],
    )
    .await;
    let proxy = TlsProxy::start(listener, &pki, behind_tls.address());

    let timeout = Duration::from_secs(3);
    let timeout_ms = timeout.as_millis().to_string();
    let cases = [
        (plain.bootstrap(), "SASL_PLAINTEXT", None),
        (proxy.address(), "SASL_SSL", Some(ca_path)),
    ];
    for (bootstrap, protocol, ca) in cases {
        let mut flags = vec![
            "--kafka-security-protocol",
            protocol,
            "--kafka-sasl-mechanism",
            "SCRAM-SHA-256",
            "--kafka-sasl-username",
            "orchestrator",
            "--kafka-sasl-password",
            "not-a-user-yet",
            "--kafka-request-timeout-ms",
            &timeout_ms,
        ];
        if let Some(ca) = ca {
            flags.extend(["--kafka-tls-ca-file", ca]);
        }
        let config = kafka_config(&bootstrap, &flags);
        let started = Instant::now();
        let error = KafkaConnection::connect(&config, "sasl-test")
            .await
            .expect_err("no SCRAM user exists on the broker");
        let elapsed = started.elapsed();
        let chain = error_chain(&error);
        assert!(
            chain.contains("Sasl") && chain.contains("unknown user"),
            "{protocol}: the broker should have looked the user up: {chain}"
        );
        assert!(
            !chain.contains("not-a-user-yet"),
            "the password must not be in the error: {chain}"
        );
        assert!(
            elapsed < timeout + Duration::from_secs(3),
            "{protocol}: took {elapsed:?}"
        );
    }
    assert!(
        !proxy.server_names().is_empty(),
        "SASL_SSL went through the TLS proxy"
    );
}
