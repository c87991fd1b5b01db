//! The dispatcher against the real mock services over HTTP: one test per way a
//! downstream service can fail, and per protection.

use std::time::{Duration, Instant};

use orchestrator_calls::{BreakerState, CallError, CallOrigin, Dispatcher, ServicePolicy};
use orchestrator_core::ServiceName;
use orchestrator_mock_services::{Behaviour, Latency, MockConfig, MockServer, RequiredHeader};
use serde_json::json;
use url::Url;
use uuid::Uuid;

const SERVICE: &str = "revenue";

fn policy() -> ServicePolicy {
    ServicePolicy {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        attempt_timeout: Duration::from_secs(2),
        deadline: Duration::from_secs(10),
        max_response_bytes: 1024 * 1024,
        max_in_flight: 64,
        breaker_threshold: 0,
        breaker_cooldown: Duration::from_secs(5),
        credential: None,
    }
}

async fn setup(behaviour: Behaviour, policy: ServicePolicy) -> (MockServer, Dispatcher) {
    let mock = MockServer::start(MockConfig::for_tests())
        .await
        .expect("mock starts");
    mock.set_behaviour(SERVICE, behaviour);
    let name = ServiceName::parse(SERVICE).expect("valid");
    let endpoint = Url::parse(&format!("{}/{SERVICE}", mock.base_url())).expect("url");
    let dispatcher =
        Dispatcher::new([(name, endpoint, policy)], Duration::from_secs(2)).expect("client");
    (mock, dispatcher)
}

async fn call(dispatcher: &Dispatcher, key: Uuid) -> orchestrator_calls::CallOutcome {
    let payload = json!({"scenario_id": Uuid::new_v4(), "business_type_id": Uuid::new_v4()});
    dispatcher
        .call(
            SERVICE,
            key,
            &payload,
            CallOrigin {
                request_id: Some("req-test"),
                trace: None,
            },
        )
        .await
}

fn failing(status: u16) -> Behaviour {
    Behaviour {
        failure_rate: 1.0,
        failure_status: status,
        ..Behaviour::default()
    }
}

#[tokio::test]
async fn a_transient_503_is_retried_and_every_attempt_counted() {
    let behaviour = Behaviour {
        fail_first: Some(2),
        failure_status: 503,
        ..Behaviour::default()
    };
    let (mock, dispatcher) = setup(behaviour, policy()).await;
    let key = Uuid::new_v4();
    let outcome = call(&dispatcher, key).await;
    assert!(outcome.result.is_ok(), "{:?}", outcome.result);
    assert_eq!(outcome.attempts, 3);
    assert_eq!(mock.stats().key_count(&key.to_string()), 3);
    assert!(outcome.completed_at >= outcome.started_at);
}

/// A service that is itself protected gets the credential read from its file; without
/// it, its 401 is recorded and not retried.
#[tokio::test]
async fn a_protected_service_gets_the_credential_from_its_file() {
    use std::io::Write as _;
    let mut secret = tempfile::NamedTempFile::new().expect("temp file");
    secret.write_all(b"t0ken\n").expect("write");
    let mut with_credential = policy();
    with_credential
        .set("bearer_token_file", &secret.path().display().to_string())
        .expect("the file is read");
    let protected = Behaviour {
        required_header: Some(RequiredHeader {
            name: "Authorization".into(),
            value: "Bearer t0ken".into(),
        }),
        ..Behaviour::default()
    };
    let (_mock, dispatcher) = setup(protected.clone(), with_credential).await;
    let outcome = call(&dispatcher, Uuid::new_v4()).await;
    assert!(outcome.result.is_ok(), "{:?}", outcome.result);

    let (mock, without) = setup(protected, policy()).await;
    let key = Uuid::new_v4();
    let outcome = call(&without, key).await;
    assert!(
        matches!(outcome.result, Err(CallError::Status { status: 401, .. })),
        "{:?}",
        outcome.result
    );
    assert_eq!(
        mock.stats().key_count(&key.to_string()),
        1,
        "a 401 is not retried"
    );
}

#[tokio::test]
async fn retry_after_on_429_is_honoured() {
    let behaviour = Behaviour {
        fail_first: Some(1),
        failure_status: 429,
        retry_after_secs: Some(1),
        ..Behaviour::default()
    };
    let (mock, dispatcher) = setup(behaviour, policy()).await;
    let key = Uuid::new_v4();
    let started = Instant::now();
    let outcome = call(&dispatcher, key).await;
    let elapsed = started.elapsed();
    assert!(outcome.result.is_ok(), "{:?}", outcome.result);
    assert_eq!(outcome.attempts, 2);
    // The backoff alone would be at most 5 ms: the wait is the service's second.
    assert!(elapsed >= Duration::from_secs(1), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(2_500), "{elapsed:?}");
    assert_eq!(mock.stats().key_count(&key.to_string()), 2);
}

#[tokio::test]
async fn a_retry_after_beyond_the_deadline_ends_the_request_at_once() {
    let behaviour = Behaviour {
        failure_rate: 1.0,
        failure_status: 503,
        retry_after_secs: Some(30),
        ..Behaviour::default()
    };
    let policy = ServicePolicy {
        deadline: Duration::from_secs(2),
        ..policy()
    };
    let (_mock, dispatcher) = setup(behaviour, policy).await;
    let started = Instant::now();
    let outcome = call(&dispatcher, Uuid::new_v4()).await;
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(outcome.attempts, 1);
    let error = outcome.result.expect_err("gave up");
    assert!(
        matches!(error, CallError::DeadlineExceeded { .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains("HTTP 503"),
        "last error kept: {error}"
    );
}

#[tokio::test]
async fn a_400_is_not_retried() {
    let (mock, dispatcher) = setup(failing(400), policy()).await;
    let key = Uuid::new_v4();
    let outcome = call(&dispatcher, key).await;
    assert_eq!(outcome.attempts, 1);
    assert!(matches!(
        outcome.result,
        Err(CallError::Status { status: 400, .. })
    ));
    assert_eq!(mock.stats().key_count(&key.to_string()), 1);
}

#[tokio::test]
async fn a_timeout_is_retried() {
    let behaviour = Behaviour {
        latency: Latency::Fixed { ms: 500 },
        ..Behaviour::default()
    };
    let policy = ServicePolicy {
        attempt_timeout: Duration::from_millis(100),
        ..policy()
    };
    let (mock, dispatcher) = setup(behaviour, policy).await;
    let key = Uuid::new_v4();
    let outcome = call(&dispatcher, key).await;
    assert_eq!(outcome.attempts, 3);
    assert_eq!(outcome.result, Err(CallError::Timeout(100)));
    assert_eq!(mock.stats().key_count(&key.to_string()), 3);
}

#[tokio::test]
async fn a_hanging_service_is_bounded_by_the_attempt_timeout() {
    let behaviour = Behaviour {
        hang: true,
        ..Behaviour::default()
    };
    let policy = ServicePolicy {
        max_attempts: 2,
        attempt_timeout: Duration::from_millis(200),
        ..policy()
    };
    let (_mock, dispatcher) = setup(behaviour, policy).await;
    let started = Instant::now();
    let outcome = call(&dispatcher, Uuid::new_v4()).await;
    let elapsed = started.elapsed();
    assert_eq!(outcome.attempts, 2);
    assert_eq!(outcome.result, Err(CallError::Timeout(200)));
    assert!(elapsed >= Duration::from_millis(400), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(1_500), "{elapsed:?}");
}

#[tokio::test]
async fn a_connection_reset_is_retried_as_a_transport_error() {
    let behaviour = Behaviour {
        reset_connection: true,
        ..Behaviour::default()
    };
    let (mock, dispatcher) = setup(behaviour, policy()).await;
    let key = Uuid::new_v4();
    let outcome = call(&dispatcher, key).await;
    assert_eq!(outcome.attempts, 3);
    assert!(
        matches!(outcome.result, Err(CallError::Transport(_))),
        "{:?}",
        outcome.result
    );
    assert_eq!(mock.stats().key_count(&key.to_string()), 3);
}

#[tokio::test]
async fn a_malformed_body_is_recorded_and_not_retried() {
    let behaviour = Behaviour {
        malformed_body: true,
        ..Behaviour::default()
    };
    let (mock, dispatcher) = setup(behaviour, policy()).await;
    let key = Uuid::new_v4();
    let outcome = call(&dispatcher, key).await;
    assert_eq!(outcome.attempts, 1);
    assert!(matches!(outcome.result, Err(CallError::InvalidBody(_))));
    assert_eq!(mock.stats().key_count(&key.to_string()), 1);
}

#[tokio::test]
async fn a_huge_body_is_refused_without_retry() {
    let behaviour = Behaviour {
        huge_body_bytes: Some(3 * 1024 * 1024),
        ..Behaviour::default()
    };
    let policy = ServicePolicy {
        max_response_bytes: 1024 * 1024,
        ..policy()
    };
    let (_mock, dispatcher) = setup(behaviour, policy).await;
    let outcome = call(&dispatcher, Uuid::new_v4()).await;
    assert_eq!(outcome.attempts, 1);
    assert_eq!(
        outcome.result,
        Err(CallError::TooLarge { limit: 1024 * 1024 })
    );
}

#[tokio::test]
async fn the_breaker_opens_fails_fast_and_closes_after_a_good_probe() {
    let policy = ServicePolicy {
        max_attempts: 1,
        breaker_threshold: 3,
        breaker_cooldown: Duration::from_millis(600),
        ..policy()
    };
    let (mock, dispatcher) = setup(failing(500), policy.clone()).await;
    for _ in 0..3 {
        let outcome = call(&dispatcher, Uuid::new_v4()).await;
        assert_eq!(outcome.attempts, 1);
    }
    assert_eq!(mock.stats().total, 3);
    assert_eq!(dispatcher.breaker_states()[0].1, BreakerState::Open);

    // Open: a request whose deadline ends within the cool-down makes no call at all.
    let short = Dispatcher::clone(&dispatcher);
    let payload = json!({"scenario_id": Uuid::new_v4(), "business_type_id": Uuid::new_v4()});
    let started = Instant::now();
    let outcome = tokio::time::timeout(
        Duration::from_millis(300),
        short.call(SERVICE, Uuid::new_v4(), &payload, CallOrigin::default()),
    )
    .await;
    assert!(
        outcome.is_err(),
        "a waiting request waits rather than failing an attempt"
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(mock.stats().total, 3, "no call while open");

    // The service recovers; a request that waits through the cool-down is the probe,
    // succeeds, and closes the breaker without having spent an attempt on waiting.
    mock.reset_behaviours();
    let outcome = call(&dispatcher, Uuid::new_v4()).await;
    assert!(outcome.result.is_ok(), "{:?}", outcome.result);
    assert_eq!(outcome.attempts, 1);
    assert_eq!(dispatcher.breaker_states()[0].1, BreakerState::Closed);
    assert_eq!(mock.stats().total, 4);
}

#[tokio::test]
async fn a_deadline_shorter_than_the_cool_down_ends_in_circuit_open() {
    let policy = ServicePolicy {
        max_attempts: 1,
        breaker_threshold: 1,
        breaker_cooldown: Duration::from_secs(30),
        deadline: Duration::from_millis(200),
        ..policy()
    };
    let (mock, dispatcher) = setup(failing(503), policy).await;
    call(&dispatcher, Uuid::new_v4()).await;
    let started = Instant::now();
    let outcome = call(&dispatcher, Uuid::new_v4()).await;
    assert_eq!(outcome.attempts, 0);
    assert!(matches!(outcome.result, Err(CallError::CircuitOpen { .. })));
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(mock.stats().total, 1);
}

#[tokio::test]
async fn the_concurrency_limit_is_never_exceeded() {
    let behaviour = Behaviour {
        latency: Latency::Fixed { ms: 50 },
        ..Behaviour::default()
    };
    let policy = ServicePolicy {
        max_in_flight: 4,
        ..policy()
    };
    let (mock, dispatcher) = setup(behaviour, policy).await;
    let calls = (0..40).map(|_| call(&dispatcher, Uuid::new_v4()));
    let outcomes = futures::future::join_all(calls).await;
    assert!(outcomes.iter().all(|o| o.result.is_ok()));
    let stats = mock.stats();
    assert_eq!(stats.total, 40);
    assert_eq!(
        stats.peak_in_flight, 4,
        "the limit is reached and never passed"
    );
}

#[tokio::test]
async fn the_overall_deadline_bounds_a_request_that_keeps_failing() {
    let policy = ServicePolicy {
        max_attempts: 1_000,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(40),
        deadline: Duration::from_millis(400),
        ..policy()
    };
    let (_mock, dispatcher) = setup(failing(502), policy).await;
    let started = Instant::now();
    let outcome = call(&dispatcher, Uuid::new_v4()).await;
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_millis(900), "{elapsed:?}");
    assert!(outcome.attempts > 2 && outcome.attempts < 1_000);
    assert!(matches!(
        outcome.result,
        Err(CallError::DeadlineExceeded { .. })
    ));
}

#[tokio::test]
async fn the_request_id_and_idempotency_key_reach_the_service() {
    let (mock, dispatcher) = setup(Behaviour::default(), policy()).await;
    let key = Uuid::new_v4();
    let outcome = call(&dispatcher, key).await;
    assert!(outcome.result.is_ok());
    let stats = mock.stats();
    assert_eq!(stats.key_count(&key.to_string()), 1);
    assert_eq!(stats.request_id_count("req-test"), 1);
}

/// Each attempt is a span of the task's trace: the service sees the trace id in every
/// attempt's `traceparent`, each attempt under a span id of its own.
#[tokio::test]
async fn every_attempt_sends_a_traceparent_of_the_tasks_trace() {
    use orchestrator_telemetry::trace::TraceContext;
    let behaviour = Behaviour {
        fail_first: Some(2),
        failure_status: 503,
        ..Behaviour::default()
    };
    let (mock, dispatcher) = setup(behaviour, policy()).await;
    let service_request = TraceContext::new_root(true);
    let payload = json!({"scenario_id": Uuid::new_v4(), "business_type_id": Uuid::new_v4()});
    let outcome = dispatcher
        .call(
            SERVICE,
            Uuid::new_v4(),
            &payload,
            CallOrigin {
                request_id: None,
                trace: Some(&service_request),
            },
        )
        .await;
    assert!(outcome.result.is_ok(), "{:?}", outcome.result);
    assert_eq!(outcome.attempts, 3);
    let stats = mock.stats();
    assert_eq!(stats.trace_id_count(&service_request.trace_id()), 3);
    assert_eq!(stats.by_trace_id.len(), 1);
}

/// A loopback server that reads each request whole and answers every one with
/// `response`, then keeps the connection open until the client closes it. It counts
/// the requests it read. For answers the mock services do not give.
async fn canned(
    response: &'static str,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = requests.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let counted = counted.clone();
            tokio::spawn(async move {
                let mut read = Vec::new();
                let mut buffer = [0u8; 4096];
                loop {
                    let Ok(n) = stream.read(&mut buffer).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    read.extend_from_slice(&buffer[..n]);
                    let text = String::from_utf8_lossy(&read);
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text[..end]
                            .lines()
                            .find_map(|line| {
                                let (name, value) = line.split_once(':')?;
                                name.eq_ignore_ascii_case("content-length")
                                    .then(|| value.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        if read.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                counted.fetch_add(1, Ordering::SeqCst);
                if stream.write_all(response.as_bytes()).await.is_err() {
                    return;
                }
                // Hold the connection: a body shorter than declared never ends.
                while matches!(stream.read(&mut buffer).await, Ok(n) if n > 0) {}
            });
        }
    });
    (address, requests)
}

fn dispatcher_for(endpoint: &str, policy: ServicePolicy) -> Dispatcher {
    let name = ServiceName::parse(SERVICE).expect("valid");
    let endpoint = Url::parse(endpoint).expect("url");
    Dispatcher::new([(name, endpoint, policy)], Duration::from_secs(2)).expect("client")
}

/// A redirect is the service's answer, recorded as a failed one: it is not followed,
/// even to an address that would have answered well (the mock here).
#[tokio::test]
async fn a_redirect_is_recorded_as_the_answer_and_not_followed() {
    let mock = MockServer::start(MockConfig::for_tests())
        .await
        .expect("mock starts");
    let location = format!("{}/{SERVICE}", mock.base_url());
    let response: &'static str = Box::leak(
        format!("HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 5\r\n\r\nmoved")
            .into_boxed_str(),
    );
    let (address, requests) = canned(response).await;
    let dispatcher = dispatcher_for(&format!("http://{address}/{SERVICE}"), policy());
    let key = Uuid::new_v4();
    let outcome = call(&dispatcher, key).await;
    assert_eq!(outcome.attempts, 1, "a 3xx is not retried");
    assert!(
        matches!(
            &outcome.result,
            Err(CallError::Status { status: 302, body, .. }) if body == "moved"
        ),
        "{:?}",
        outcome.result
    );
    assert_eq!(requests.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(
        mock.stats().key_count(&key.to_string()),
        0,
        "the redirect's target was never called"
    );
}

/// A body declared larger than the limit is refused on its `Content-Length`, before
/// any of it is read: this server never sends the body, so waiting for it would end
/// in the attempt's timeout instead.
#[tokio::test]
async fn a_body_declared_too_large_is_refused_before_it_is_read() {
    let (address, requests) = canned(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 3000000\r\n\r\n",
    )
    .await;
    let policy = ServicePolicy {
        max_response_bytes: 1024 * 1024,
        attempt_timeout: Duration::from_secs(5),
        ..policy()
    };
    let dispatcher = dispatcher_for(&format!("http://{address}/{SERVICE}"), policy);
    let outcome = call(&dispatcher, Uuid::new_v4()).await;
    assert_eq!(
        outcome.result,
        Err(CallError::TooLarge { limit: 1024 * 1024 })
    );
    assert_eq!(outcome.attempts, 1);
    assert_eq!(requests.load(std::sync::atomic::Ordering::SeqCst), 1);
}
