//! One service request's downstream call: retries, time limits, Retry-After, the
//! per-service concurrency limit and circuit breaker.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use http::StatusCode;
use http::header::{HeaderMap, RETRY_AFTER};
use orchestrator_core::status::excerpt;
use orchestrator_core::{RawJson, ServiceName, Status};
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use url::Url;
use uuid::Uuid;

use orchestrator_telemetry::trace::{
    ExportedSpan, KeyValue, SpanKind, TRACEPARENT, TRACESTATE, TraceContext,
};

use crate::breaker::{BreakerState, CircuitBreaker};
use crate::metrics::{DispatchMetrics, ServiceSeries};
use crate::policy::ServicePolicy;

/// The span of one attempt under its service request's (`parent`), following
/// OpenTelemetry's HTTP client conventions, while spans are exported; an empty one
/// otherwise (so an attempt costs no span). The service is its parent's attribute, and
/// `http.request.resend_count` is set on resends only, as the conventions ask: an
/// attribute is most of what a span costs to make and export.
fn attempt_span(service: &Service, attempt: u32, parent: Option<&TraceContext>) -> ExportedSpan {
    if parent.is_none() {
        return ExportedSpan::none();
    }
    ExportedSpan::start("POST", SpanKind::Client, parent, || {
        let mut attributes = Vec::with_capacity(service.span_attributes.len() + 2);
        attributes.extend_from_slice(&service.span_attributes);
        if attempt > 1 {
            attributes.push(KeyValue::new(
                "http.request.resend_count",
                i64::from(attempt - 1),
            ));
        }
        attributes
    })
}

/// The attributes every attempt's span at `endpoint` carries, made once per service:
/// their strings are shared by the spans rather than copied into each.
fn span_attributes(endpoint: &Url) -> Vec<KeyValue> {
    let shared = |text: &str| orchestrator_telemetry::trace::Value::from(Arc::<str>::from(text));
    vec![
        KeyValue::new("http.request.method", "POST"),
        KeyValue::new("url.full", shared(endpoint.as_str())),
        KeyValue::new(
            "server.address",
            shared(endpoint.host_str().unwrap_or_default()),
        ),
        KeyValue::new(
            "server.port",
            i64::from(endpoint.port_or_known_default().unwrap_or_default()),
        ),
    ]
}

/// An attempt's place in the task's trace: its span, with what is known of the attempt
/// recorded on it; and the context sent downstream as its `traceparent`.
struct AttemptTrace {
    span: ExportedSpan,
    context: Option<TraceContext>,
}

/// An attempt's outcome on its span (the status code is recorded as it arrives): for a
/// failure its kind (`error.type`: the status code, or what went wrong before one came).
fn record_outcome(span: &mut ExportedSpan, result: &Result<RawJson, CallError>) {
    if !span.is_recording() {
        return;
    }
    if let Err(error) = result {
        let error_type = match error {
            CallError::Status { status, .. } => status.to_string(),
            other => other.kind().to_owned(),
        };
        span.set("error.type", error_type);
        span.set_error();
    }
}

/// Whom a call is made for, told to the service on every attempt.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallOrigin<'a> {
    /// The `X-Request-Id` of the request that accepted the task.
    pub request_id: Option<&'a str>,
    /// The service request's place in the task's trace: each attempt is a span under
    /// it, sent as the attempt's `traceparent`.
    pub trace: Option<&'a TraceContext>,
}

/// Why a call did not produce a usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("no service named {0:?} is configured")]
    UnknownService(String),
    #[error("HTTP {status}: {body}")]
    Status {
        status: u16,
        body: String,
        /// The service's `Retry-After`, on 429 and 503.
        retry_after: Option<Duration>,
    },
    #[error("timed out after {0} ms")]
    Timeout(u64),
    #[error("transport error: {0}")]
    Transport(String),
    #[error("response is not JSON: {0}")]
    InvalidBody(String),
    #[error("response body exceeds {limit} bytes")]
    TooLarge { limit: usize },
    #[error(
        "circuit breaker open: the service failed repeatedly; no call was made before the {deadline_ms} ms deadline"
    )]
    CircuitOpen { deadline_ms: u64 },
    #[error("gave up at the {deadline_ms} ms deadline; last error: {last}")]
    DeadlineExceeded {
        deadline_ms: u64,
        last: Box<CallError>,
    },
}

impl CallError {
    /// Whether another attempt may succeed: transport faults, timeouts, throttling
    /// and the server errors that mean "not now". Other answers will not change.
    pub fn is_retryable(&self) -> bool {
        match self {
            CallError::Timeout(_) | CallError::Transport(_) => true,
            CallError::Status { status, .. } => {
                matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
            }
            CallError::UnknownService(_)
            | CallError::InvalidBody(_)
            | CallError::TooLarge { .. }
            | CallError::CircuitOpen { .. }
            | CallError::DeadlineExceeded { .. } => false,
        }
    }

    /// Whether the failure says the service is in trouble, which is what the circuit
    /// breaker counts. A 4xx other than 408/429, or a bad body, is the request's
    /// problem, not the service's health.
    fn is_service_failure(&self) -> bool {
        match self {
            CallError::Timeout(_) | CallError::Transport(_) => true,
            CallError::Status { status, .. } => *status == 408 || *status == 429 || *status >= 500,
            _ => false,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            CallError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The metric label of a failed attempt: the kind, with the status code for
    /// HTTP errors (`http_503`).
    pub fn outcome(&self) -> String {
        match self {
            CallError::Status { status, .. } => format!("http_{status}"),
            other => other.kind().to_owned(),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            CallError::UnknownService(_) => "unknown_service",
            CallError::Status { .. } => "http_status",
            CallError::Timeout(_) => "timeout",
            CallError::Transport(_) => "transport",
            CallError::InvalidBody(_) => "invalid_body",
            CallError::TooLarge { .. } => "too_large",
            CallError::CircuitOpen { .. } => "circuit_open",
            CallError::DeadlineExceeded { .. } => "deadline",
        }
    }
}

/// What one service request's call came to, over all its attempts.
#[derive(Debug, Clone)]
pub struct CallOutcome {
    /// The answer's body, checked to be JSON and kept as its text.
    pub result: Result<RawJson, CallError>,
    pub attempts: u32,
    /// Each attempt that failed, in order: the last one too when the call failed for
    /// good. A call that succeeded at its first attempt has none.
    pub failed_attempts: Vec<FailedAttempt>,
    pub started_at: DateTime<Utc>,
    pub completed_at: DateTime<Utc>,
}

/// One HTTP attempt that failed.
#[derive(Debug, Clone)]
pub struct FailedAttempt {
    /// 1 for the call's first attempt.
    pub number: u32,
    pub started_at: DateTime<Utc>,
    pub duration: Duration,
    pub error: CallError,
}

impl FailedAttempt {
    /// The service's HTTP status, when it answered.
    pub fn status_code(&self) -> Option<u16> {
        match &self.error {
            CallError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// What the retry loop came to: the result, the attempts made and those that failed.
type PolicyOutcome = (Result<RawJson, CallError>, u32, Vec<FailedAttempt>);

/// A service's endpoint, policy and the state that protects it. Clones share the
/// concurrency limit and the breaker.
#[derive(Debug, Clone)]
struct Service {
    /// The endpoint, parsed once for every request.
    uri: http::Uri,
    /// What every attempt's span says of the service ([`span_attributes`]).
    span_attributes: Vec<KeyValue>,
    policy: ServicePolicy,
    in_flight: Arc<Semaphore>,
    breaker: CircuitBreaker,
    /// The dispatcher's metric series of this service.
    series: ServiceSeries,
}

/// Calls downstream services. Cheap to clone: the HTTP client (and its connection
/// pool), the concurrency limits and the breakers are shared by the clones.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    http: HttpClient,
    services: Arc<BTreeMap<ServiceName, Service>>,
    metrics: DispatchMetrics,
}

/// The HTTP client of the downstream calls: hyper's pooled client, over TLS (native-tls,
/// the system's roots) for `https` endpoints. Not reqwest's, which wraps the same client
/// in a redirect layer that parses every request's URL twice (`Url::parse` of the URI's
/// text: 8.5% of a worker's instructions per task) and in boxed tower layers whose
/// futures are copied on every poll. Calls connect directly (`HTTP(S)_PROXY` is not
/// read: [`Dispatcher::new`]) and a redirect is not followed: it is the service's answer.
type HttpClient = hyper_util::client::legacy::Client<
    hyper_tls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    http_body_util::Full<bytes::Bytes>,
>;

/// Why the dispatcher could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("setting up TLS failed")]
    Tls(#[from] native_tls::Error),
    #[error("{service}: {endpoint:?} is not a URI an HTTP client can call")]
    Endpoint {
        service: String,
        endpoint: String,
        #[source]
        error: http::uri::InvalidUri,
    },
}

/// Proxy variables that other HTTP clients read and these calls do not: their presence
/// is reported once, at start, rather than ignored without a word.
const PROXY_VARIABLES: [&str; 6] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// The first of [`PROXY_VARIABLES`] that `lookup` finds set to something.
fn proxy_variable_set(lookup: impl Fn(&str) -> Option<std::ffi::OsString>) -> Option<&'static str> {
    PROXY_VARIABLES
        .into_iter()
        .find(|name| lookup(name).is_some_and(|value| !value.is_empty()))
}

/// How much of an error body goes into the recorded error.
const ERROR_BODY_EXCERPT_CHARS: usize = 200;

impl Dispatcher {
    /// A dispatcher for these services, each with its endpoint and policy. Calls connect
    /// to the endpoints directly, whatever `HTTP_PROXY` and the like say (a warning says
    /// so when one is set).
    pub fn new(
        services: impl IntoIterator<Item = (ServiceName, Url, ServicePolicy)>,
        connect_timeout: Duration,
    ) -> Result<Self, ClientError> {
        let metrics = DispatchMetrics::default();
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        // Small JSON requests: send them at once rather than wait to coalesce.
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(connect_timeout));
        // The TLS layer above it takes `https` endpoints.
        connector.enforce_http(false);
        let tls = native_tls::TlsConnector::new()?;
        let http =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_max_idle_per_host(256)
                .pool_idle_timeout(Duration::from_secs(60))
                .pool_timer(hyper_util::rt::TokioTimer::new())
                .build(hyper_tls::HttpsConnector::from((connector, tls.into())));
        let mut built = BTreeMap::new();
        for (name, endpoint, policy) in services {
            let uri = endpoint
                .as_str()
                .parse()
                .map_err(|error| ClientError::Endpoint {
                    service: name.to_string(),
                    endpoint: endpoint.to_string(),
                    error,
                })?;
            let service = Service {
                uri,
                span_attributes: span_attributes(&endpoint),
                in_flight: Arc::new(Semaphore::new(policy.max_in_flight.max(1))),
                breaker: CircuitBreaker::new(
                    name.as_str(),
                    policy.breaker_threshold,
                    policy.breaker_cooldown,
                ),
                series: metrics.series(name.as_str()),
                policy,
            };
            built.insert(name, service);
        }
        if let Some(variable) = proxy_variable_set(|name| std::env::var_os(name)) {
            tracing::warn!(
                variable,
                "A proxy is set in the environment; calls to the services connect to them directly and do not use it."
            );
        }
        Ok(Self {
            http,
            services: Arc::new(built),
            metrics,
        })
    }

    /// Reports attempts, outcomes and breaker states to these metrics (by default
    /// they go to metrics registered nowhere).
    #[must_use]
    pub fn with_metrics(mut self, metrics: DispatchMetrics) -> Self {
        let services = self
            .services
            .iter()
            .map(|(name, service)| {
                let series = metrics.series(name.as_str());
                (
                    name.clone(),
                    Service {
                        series,
                        ..service.clone()
                    },
                )
            })
            .collect();
        self.services = Arc::new(services);
        self.metrics = metrics;
        self.publish_breaker_states();
        self
    }

    pub fn metrics(&self) -> &DispatchMetrics {
        &self.metrics
    }

    /// Sets the breaker gauges to the breakers' current states. Called before each
    /// scrape too, since an open breaker turns half-open by the clock alone.
    pub fn publish_breaker_states(&self) {
        for service in self.services.values() {
            DispatchMetrics::breaker_state(&service.series, service.breaker.state());
        }
    }

    /// Counts a service request of `service` that ended `status`.
    pub fn service_request_finished(&self, service: &str, status: Status) {
        let series = self.services.get(service).map(|service| &service.series);
        self.metrics
            .service_request_finished(service, series, status);
    }

    /// The names of the services this dispatcher can call.
    pub fn service_names(&self) -> std::collections::BTreeSet<ServiceName> {
        self.services.keys().cloned().collect()
    }

    /// Each service's breaker state, for health reports and metrics.
    pub fn breaker_states(&self) -> Vec<(ServiceName, BreakerState)> {
        self.services
            .iter()
            .map(|(name, service)| (name.clone(), service.breaker.state()))
            .collect()
    }

    /// Calls `POST {endpoint}` for one service request until it succeeds, fails for
    /// good, runs out of attempts or reaches its deadline. The `Idempotency-Key` is the
    /// service request's id, identical on every attempt and every re-run.
    pub async fn call(
        &self,
        service: &str,
        idempotency_key: Uuid,
        payload: &Value,
        origin: CallOrigin<'_>,
    ) -> CallOutcome {
        let started_at = Utc::now();
        // Found by the name as given (`ServiceName` borrows as `str`): a name that is
        // not valid is not configured either.
        let Some(target) = self.services.get(service) else {
            return CallOutcome {
                result: Err(CallError::UnknownService(service.to_owned())),
                attempts: 0,
                failed_attempts: Vec::new(),
                started_at,
                completed_at: Utc::now(),
            };
        };
        let (result, attempts, failed_attempts) = self
            .call_with_policy(service, target, idempotency_key, payload, origin)
            .await;
        CallOutcome {
            result,
            attempts,
            failed_attempts,
            started_at,
            completed_at: Utc::now(),
        }
    }

    async fn call_with_policy(
        &self,
        name: &str,
        service: &Service,
        idempotency_key: Uuid,
        payload: &Value,
        origin: CallOrigin<'_>,
    ) -> PolicyOutcome {
        let policy = &service.policy;
        let deadline = Instant::now() + policy.deadline;
        let deadline_ms = u64::try_from(policy.deadline.as_millis()).unwrap_or(u64::MAX);
        let give_up = |last: Option<CallError>| match last {
            Some(last) => CallError::DeadlineExceeded {
                deadline_ms,
                last: Box::new(last),
            },
            None => CallError::CircuitOpen { deadline_ms },
        };
        let mut attempts = 0;
        let mut last: Option<CallError> = None;
        let mut failed: Vec<FailedAttempt> = Vec::new();
        loop {
            // An open breaker makes us wait (or give up at the deadline) without
            // spending an attempt: no call was made.
            let Some(permit) = service.breaker.acquire_before(deadline).await else {
                return (Err(give_up(last)), attempts, failed);
            };
            let slot = match tokio::time::timeout_at(
                deadline,
                Arc::clone(&service.in_flight).acquire_owned(),
            )
            .await
            {
                Ok(Ok(slot)) => slot,
                _ => return (Err(give_up(last)), attempts, failed),
            };
            attempts += 1;
            let attempt_started = Instant::now();
            let attempt_started_at = Utc::now();
            let remaining = deadline.saturating_duration_since(attempt_started);
            let in_flight = DispatchMetrics::in_flight(&service.series);
            let span = attempt_span(service, attempts, origin.trace);
            let mut trace = AttemptTrace {
                context: origin
                    .trace
                    .map(|parent| span.context_or_child_of(Some(parent))),
                span,
            };
            let result = self
                .attempt(
                    service,
                    idempotency_key,
                    payload,
                    origin.request_id,
                    &mut trace,
                    policy.attempt_timeout.min(remaining),
                )
                .await;
            record_outcome(&mut trace.span, &result);
            drop(trace);
            drop(in_flight);
            drop(slot);
            permit.record(
                result
                    .as_ref()
                    .err()
                    .is_none_or(|e| !e.is_service_failure()),
            );
            DispatchMetrics::breaker_state(&service.series, service.breaker.state());
            self.metrics.attempt(
                name,
                &service.series,
                result.as_ref().err().map(CallError::outcome),
                attempt_started.elapsed().as_secs_f64(),
                attempts > 1,
            );
            let error = match result {
                Ok(value) => return (Ok(value), attempts, failed),
                Err(error) => error,
            };
            failed.push(FailedAttempt {
                number: attempts,
                started_at: attempt_started_at,
                duration: attempt_started.elapsed(),
                error: error.clone(),
            });
            if !error.is_retryable() || attempts >= policy.max_attempts {
                return (Err(error), attempts, failed);
            }
            let delay = error
                .retry_after()
                .unwrap_or_else(|| policy.backoff(attempts));
            if Instant::now() + delay >= deadline {
                // Waiting as asked would pass the deadline: stop now rather than later.
                return (Err(give_up(Some(error))), attempts, failed);
            }
            tracing::debug!(service = name, attempt = attempts, error = %error, delay_ms = delay.as_millis(), "Retrying service request.");
            tokio::time::sleep(delay).await;
            last = Some(error);
        }
    }

    async fn attempt(
        &self,
        service: &Service,
        idempotency_key: Uuid,
        payload: &Value,
        request_id: Option<&str>,
        trace: &mut AttemptTrace,
        timeout: Duration,
    ) -> Result<RawJson, CallError> {
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let limit = service.policy.max_response_bytes;
        let exchange = async {
            // A `Value` always serialises; a failure would be a bug, reported as such.
            let body = serde_json::to_vec(payload).map_err(|e| transport_error(&e))?;
            let mut request = http::Request::post(service.uri.clone())
                .header(http::header::CONTENT_TYPE, "application/json")
                .header("Idempotency-Key", idempotency_key.to_string());
            if let Some(request_id) = request_id {
                request = request.header("X-Request-Id", request_id);
            }
            if let Some(trace) = &trace.context {
                request = request.header(TRACEPARENT, trace.traceparent());
                if let Some(state) = trace.tracestate() {
                    request = request.header(TRACESTATE, state);
                }
            }
            if let Some(credential) = &service.policy.credential {
                let (name, value) = credential.header();
                request = request.header(name, value);
            }
            let request = request
                .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                .map_err(|e| transport_error(&e))?;
            let mut response = self
                .http
                .request(request)
                .await
                .map_err(|e| transport_error(&e))?;
            let status = response.status();
            trace
                .span
                .set("http.response.status_code", i64::from(status.as_u16()));
            let retry_after = if matches!(status.as_u16(), 429 | 503) {
                retry_after(response.headers(), SystemTime::now())
            } else {
                None
            };
            let body = read_limited(&mut response, limit).await?;
            if !status.is_success() {
                let text = String::from_utf8_lossy(&body);
                return Err(CallError::Status {
                    status: status.as_u16(),
                    body: excerpt(text.trim(), ERROR_BODY_EXCERPT_CHARS),
                    retry_after,
                });
            }
            if status == StatusCode::NO_CONTENT || body.is_empty() {
                return Err(CallError::InvalidBody("empty body".into()));
            }
            RawJson::parse(&body).map_err(|e| CallError::InvalidBody(e.to_string()))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or(Err(CallError::Timeout(timeout_ms)))
    }
}

/// `Retry-After` as a delay from `now`: delta-seconds or an HTTP date (RFC 9110).
fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Reads the body chunk by chunk, refusing it as soon as it passes `limit`, so an
/// oversized answer never sits whole in memory.
async fn read_limited(
    response: &mut http::Response<hyper::body::Incoming>,
    limit: usize,
) -> Result<Vec<u8>, CallError> {
    use http_body_util::BodyExt as _;
    use hyper::body::Body as _;
    // hyper reads `Content-Length` into the body's size hint.
    if response
        .body()
        .size_hint()
        .exact()
        .is_some_and(|len| len > limit as u64)
    {
        return Err(CallError::TooLarge { limit });
    }
    let mut body = Vec::new();
    while let Some(frame) = response.body_mut().frame().await {
        let frame = frame.map_err(|e| transport_error(&e))?;
        // Trailers, the only frames without data, carry nothing we read.
        if let Ok(chunk) = frame.into_data() {
            if body.len() + chunk.len() > limit {
                return Err(CallError::TooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
    }
    Ok(body)
}

fn transport_error(error: &(dyn std::error::Error + 'static)) -> CallError {
    // hyper's Display stops at the outermost layer ("client error (Connect)"); the
    // cause chain says what actually happened (refused, reset, DNS, ...).
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    CallError::Transport(message)
}

#[cfg(test)]
mod tests {
    use http::header::HeaderValue;

    use super::*;

    fn status(status: u16) -> CallError {
        CallError::Status {
            status,
            body: String::new(),
            retry_after: None,
        }
    }

    #[test]
    fn only_transient_failures_are_retried() {
        for code in [408, 429, 500, 502, 503, 504] {
            assert!(status(code).is_retryable(), "{code}");
        }
        for code in [400, 401, 404, 409, 422, 501] {
            assert!(!status(code).is_retryable(), "{code}");
        }
        assert!(CallError::Timeout(1).is_retryable());
        assert!(CallError::Transport("reset".into()).is_retryable());
        assert!(!CallError::InvalidBody("x".into()).is_retryable());
        assert!(!CallError::TooLarge { limit: 1 }.is_retryable());
    }

    #[test]
    fn only_signs_of_trouble_count_against_the_breaker() {
        assert!(status(503).is_service_failure());
        assert!(status(429).is_service_failure());
        assert!(CallError::Timeout(1).is_service_failure());
        assert!(!status(400).is_service_failure());
        assert!(!CallError::InvalidBody("x".into()).is_service_failure());
    }

    #[test]
    fn a_proxy_in_the_environment_is_noticed_in_either_case() {
        let only = |set: &'static str, value: &'static str| {
            move |name: &str| (name == set).then(|| std::ffi::OsString::from(value))
        };
        assert_eq!(proxy_variable_set(|_| None), None);
        assert_eq!(
            proxy_variable_set(only("https_proxy", "http://proxy:3128")),
            Some("https_proxy")
        );
        assert_eq!(
            proxy_variable_set(only("ALL_PROXY", "socks5://proxy:1080")),
            Some("ALL_PROXY")
        );
        // Set but empty is how a variable is commonly switched off.
        assert_eq!(proxy_variable_set(only("HTTP_PROXY", "")), None);
        assert_eq!(proxy_variable_set(only("NO_PROXY", "localhost")), None);
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(7)));
        // 2015-10-21T07:28:10Z, ten seconds after `now`.
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:10 GMT"),
        );
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(10)));
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:00:00 GMT"),
        );
        assert_eq!(
            retry_after(&headers, now),
            Some(Duration::ZERO),
            "a past date"
        );
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers, now), None);
    }
}
