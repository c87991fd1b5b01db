//! Azure Event Hubs' connection string, as the binary reads it from its environment.
//! Nothing here reaches Azure: the binary stops at its settings.

use std::process::{Command, Stdio};

use orchestrator_testkit::broker::TestBroker;
use orchestrator_testkit::database::TestDatabase;

const KEY: &str = "bm90LWEtcmVhbC1rZXktanVzdC1hLXRlc3Q=";

/// A namespace on loopback: were a check missing, the binary would connect there, never
/// outside this machine.
fn connection_string() -> String {
    format!("Endpoint=sb://127.0.0.1/;SharedAccessKeyName=orchestrator;SharedAccessKey={KEY}")
}

/// The worker's stderr and whether it succeeded, run with `env` and `args` only.
fn worker(env: &[(&str, &str)], args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_orchestrator-worker"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .args(args)
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .output()
        .expect("the worker binary runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A broker setting given in the environment alongside the connection string is a
/// start-up error naming both, and the string is never printed, there or in `--help`.
#[test]
fn an_explicit_broker_setting_beside_a_connection_string_stops_the_start() {
    let string = connection_string();
    let (ok, _, stderr) = worker(
        &[
            ("KAFKA_CONNECTION_STRING", &string),
            ("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"),
        ],
        &[],
    );
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains(
            "error: KAFKA_CONNECTION_STRING: is set together with KAFKA_BOOTSTRAP_SERVERS"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains(KEY), "{stderr}");

    let (ok, stdout, _) = worker(&[("KAFKA_CONNECTION_STRING", &string)], &["--help"]);
    assert!(ok);
    assert!(stdout.contains("KAFKA_CONNECTION_STRING"), "{stdout}");
    assert!(!stdout.contains(KEY), "{stdout}");

    // An event hub's policy for another event hub than the topic.
    let hub = format!("{string};EntityPath=another-hub");
    let (ok, _, stderr) = worker(
        &[
            ("KAFKA_CONNECTION_STRING", &hub),
            ("KAFKA_TOPIC", "orchestrator-events"),
        ],
        &[],
    );
    assert!(!ok, "{stderr}");
    assert!(stderr.contains("EntityPath=another-hub"), "{stderr}");
    assert!(!stderr.contains(KEY), "{stderr}");
}

/// With `KAFKA_CREATE_TOPICS=false` a worker creates no topic: against a broker without
/// the task topic it stops at start, naming the topic and how to make it.
#[tokio::test(flavor = "multi_thread")]
async fn without_topic_creation_a_missing_topic_stops_the_worker() {
    let db = TestDatabase::create().await;
    let broker = TestBroker::start().await;
    let (ok, _, stderr) = tokio::task::spawn_blocking(move || {
        worker(
            &[
                ("DATABASE_URL", db.url()),
                ("KAFKA_BOOTSTRAP_SERVERS", &broker.bootstrap()),
                ("KAFKA_TOPIC", "made-in-azure"),
                ("KAFKA_CREATE_TOPICS", "false"),
                ("WORKER_HTTP_PORT", "0"),
            ],
            &[],
        )
    })
    .await
    .expect("ran");
    assert!(!ok, "{stderr}");
    assert!(stderr.contains("the task topic (KAFKA_TOPIC)"), "{stderr}");
    assert!(
        stderr.contains("topic made-in-azure does not exist and KAFKA_CREATE_TOPICS=false"),
        "{stderr}"
    );
}
