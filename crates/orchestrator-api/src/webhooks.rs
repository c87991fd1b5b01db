//! Completion webhooks in the API: the settings, the check of a submitted
//! `callback_url`, and the delivery loop. Every API replica runs the loop; the rows it
//! sends are claimed in PostgreSQL (`orchestrator_store::webhooks`), so each delivery
//! has one sender at a time, and a replica that dies mid-send leaves its claims to
//! expire and be taken over.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{TimeDelta, Utc};
use futures::StreamExt;
use orchestrator_core::TenantName;
use orchestrator_store::DbPool;
use orchestrator_store::webhooks::{self, Attempt, AttemptOutcome, ClaimedDelivery};
use orchestrator_telemetry::trace::{ExportedSpan, KeyValue, SpanKind, TRACEPARENT, TraceContext};
use orchestrator_webhooks::signature::{ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use orchestrator_webhooks::{TargetPolicy, TargetRefusal, WebhookSecret};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Deliveries claimed per round.
const BATCH: i64 = 256;
/// The most of a receiver's answer read before its connection is given up on.
const MAX_RESPONSE_DRAIN_BYTES: usize = 64 * 1024;
/// Deliveries of a round sent at once, at most.
const CONCURRENCY: usize = 64;
/// How much of a receiver's error is kept.
const MAX_ERROR_CHARS: usize = 300;
/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(3_600);

/// `WEBHOOK_*` settings.
#[derive(Clone, clap::Args)]
pub struct WebhookConfig {
    /// The signing secret of webhooks (`whsec_` and 24 to 64 bytes in base64), as
    /// receivers configure it. Never printed. Without it (or the file), a submit with a
    /// `callback_url` is refused.
    #[arg(
        id = "webhook_secret",
        long = "webhook-secret",
        env = "WEBHOOK_SECRET",
        hide_env_values = true
    )]
    pub secret: Option<String>,
    /// The same, read from a file (a mounted secret).
    #[arg(
        id = "webhook_secret_file",
        long = "webhook-secret-file",
        env = "WEBHOOK_SECRET_FILE"
    )]
    pub secret_file: Option<PathBuf>,
    /// A file of per-tenant signing secrets, one `tenant whsec_...` per line (`#`
    /// comments): a tenant listed signs its webhooks with its own secret, the others
    /// with WEBHOOK_SECRET.
    #[arg(
        id = "webhook_tenant_secrets_file",
        long = "webhook-tenant-secrets-file",
        env = "WEBHOOK_TENANT_SECRETS_FILE"
    )]
    pub tenant_secrets_file: Option<PathBuf>,
    /// Comma-separated hosts callbacks may go to: `hooks.example.com`, or
    /// `*.example.com` for its subdomains. Empty: any public host.
    #[arg(
        id = "webhook_allowed_hosts",
        long = "webhook-allowed-hosts",
        env = "WEBHOOK_ALLOWED_HOSTS",
        value_delimiter = ',',
        default_value = ""
    )]
    pub allowed_hosts: Vec<String>,
    /// Also allow `http` and loopback and private addresses, for local runs and tests.
    /// Weakens the SSRF protection: logged at WARN when on.
    #[arg(id = "webhook_allow_insecure", long = "webhook-allow-insecure", env = "WEBHOOK_ALLOW_INSECURE", default_value_t = false,
          action = clap::ArgAction::Set)]
    pub allow_insecure: bool,
    /// How long a delivery is retried before it is given up, in hours.
    #[arg(
        id = "webhook_retry_hours",
        long = "webhook-retry-hours",
        env = "WEBHOOK_RETRY_HOURS",
        default_value_t = 24
    )]
    pub retry_hours: u32,
    /// The wait after the first failed attempt, doubled after each (at most an hour).
    #[arg(
        id = "webhook_retry_initial_backoff_ms",
        long = "webhook-retry-initial-backoff-ms",
        env = "WEBHOOK_RETRY_INITIAL_BACKOFF_MS",
        default_value_t = 5_000
    )]
    pub retry_initial_backoff_ms: u64,
    /// How long one attempt may take.
    #[arg(
        id = "webhook_timeout_ms",
        long = "webhook-timeout-ms",
        env = "WEBHOOK_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub timeout_ms: u64,
    /// How often the delivery loop looks for due deliveries.
    #[arg(
        id = "webhook_poll_interval_ms",
        long = "webhook-poll-interval-ms",
        env = "WEBHOOK_POLL_INTERVAL_MS",
        default_value_t = 1_000
    )]
    pub poll_interval_ms: u64,
}

impl std::fmt::Debug for WebhookConfig {
    // The secret is never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("secret", &self.secret.as_ref().map(|_| "(redacted)"))
            .field("secret_file", &self.secret_file)
            .field("tenant_secrets_file", &self.tenant_secrets_file)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("allow_insecure", &self.allow_insecure)
            .field("retry_hours", &self.retry_hours)
            .finish_non_exhaustive()
    }
}

/// What the API needs of webhooks: the policy submits are checked against, and whether
/// webhooks can be signed at all.
#[derive(Debug, Clone)]
pub struct Webhooks {
    pub policy: TargetPolicy,
    secrets: Secrets,
    config: WebhookConfig,
}

/// The signing secrets: a tenant's own, or the default.
#[derive(Debug, Clone, Default)]
struct Secrets {
    default: Option<WebhookSecret>,
    per_tenant: HashMap<String, WebhookSecret>,
}

impl Secrets {
    fn of(&self, tenant: &str) -> Option<&WebhookSecret> {
        self.per_tenant.get(tenant).or(self.default.as_ref())
    }

    fn is_empty(&self) -> bool {
        self.default.is_none() && self.per_tenant.is_empty()
    }

    /// Reads `tenant whsec_...` lines; a bad line is named by its number, never shown.
    fn parse_tenant_file(text: &str) -> anyhow::Result<HashMap<String, WebhookSecret>> {
        let mut secrets = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = || format!("WEBHOOK_TENANT_SECRETS_FILE, line {}", n + 1);
            let (tenant, secret) = line
                .split_once(char::is_whitespace)
                .with_context(|| format!("{}: expected `tenant whsec_...`", at()))?;
            let tenant = TenantName::parse(tenant).with_context(at)?;
            let secret = WebhookSecret::parse(secret.trim()).with_context(at)?;
            anyhow::ensure!(
                secrets.insert(tenant.as_str().to_owned(), secret).is_none(),
                "{}: tenant {} is listed twice",
                at(),
                tenant.as_str()
            );
        }
        Ok(secrets)
    }
}

/// Why a `callback_url` is refused, in the client's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackRefusal {
    #[error("webhooks are not configured for this tenant (WEBHOOK_SECRET)")]
    NotConfigured,
    #[error("{0}")]
    Target(#[from] TargetRefusal),
}

impl Webhooks {
    pub fn from_config(config: &WebhookConfig) -> anyhow::Result<Webhooks> {
        let text = match (&config.secret, &config.secret_file) {
            (Some(_), Some(_)) => {
                anyhow::bail!("WEBHOOK_SECRET and WEBHOOK_SECRET_FILE are both set: set one")
            }
            (Some(secret), None) => Some(secret.clone()),
            (None, Some(path)) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("WEBHOOK_SECRET_FILE: reading {}", path.display()))?,
            ),
            (None, None) => None,
        };
        let default = text
            .map(|text| WebhookSecret::parse(&text).context("WEBHOOK_SECRET"))
            .transpose()?;
        let per_tenant = match &config.tenant_secrets_file {
            None => HashMap::new(),
            Some(path) => {
                Secrets::parse_tenant_file(&std::fs::read_to_string(path).with_context(|| {
                    format!("WEBHOOK_TENANT_SECRETS_FILE: reading {}", path.display())
                })?)?
            }
        };
        let allowed_hosts: Vec<String> = config
            .allowed_hosts
            .iter()
            .map(|host| host.trim().to_owned())
            .filter(|host| !host.is_empty())
            .collect();
        if config.allow_insecure {
            tracing::warn!(
                "WEBHOOK_ALLOW_INSECURE is on: callbacks may use http and reach loopback and private addresses. For local runs and tests only."
            );
        }
        anyhow::ensure!(
            config.retry_hours >= 1,
            "WEBHOOK_RETRY_HOURS: must be at least 1"
        );
        Ok(Webhooks {
            policy: TargetPolicy {
                allow_insecure: config.allow_insecure,
                allowed_hosts,
            },
            secrets: Secrets {
                default,
                per_tenant,
            },
            config: config.clone(),
        })
    }

    /// Checks a callback URL `tenant` submitted, its host's addresses included.
    pub async fn check(&self, tenant: &str, url: &str) -> Result<(), CallbackRefusal> {
        if self.secrets.of(tenant).is_none() {
            return Err(CallbackRefusal::NotConfigured);
        }
        self.policy.check(url).await?;
        Ok(())
    }

    /// Starts the delivery loop (when webhooks are configured), until `stop`.
    pub fn start_delivery(&self, pool: DbPool, stop: CancellationToken) -> anyhow::Result<()> {
        if self.secrets.is_empty() {
            return Ok(());
        }
        let secrets = self.secrets.clone();
        let client = self
            .policy
            .client(Duration::from_millis(self.config.timeout_ms.max(1)))
            .context("building the webhook HTTP client")?;
        let sender = Arc::new(Sender {
            pool,
            client,
            secrets,
            policy: self.policy.clone(),
            retry_for: TimeDelta::hours(i64::from(self.config.retry_hours)),
            initial_backoff: Duration::from_millis(self.config.retry_initial_backoff_ms.max(1)),
            claim: Duration::from_millis(self.config.timeout_ms.max(1)) * 3,
        });
        let interval = Duration::from_millis(self.config.poll_interval_ms.max(10));
        tokio::spawn(async move {
            loop {
                let busy = sender.round().await;
                if !busy {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(interval) => {}
                    }
                } else if stop.is_cancelled() {
                    return;
                }
            }
        });
        Ok(())
    }
}

struct Sender {
    pool: DbPool,
    client: reqwest::Client,
    secrets: Secrets,
    policy: TargetPolicy,
    retry_for: TimeDelta,
    initial_backoff: Duration,
    /// How long a claimed row is ours: well past one attempt's timeout.
    claim: Duration,
}

impl Sender {
    /// Sends what is due; true when it found a full batch (more may be waiting).
    async fn round(&self) -> bool {
        let claimed = async {
            let mut conn = self.pool.get().await?;
            webhooks::claim_due(&mut conn, BATCH, self.claim).await
        }
        .await;
        let deliveries = match claimed {
            Ok(deliveries) => deliveries,
            Err(error) => {
                tracing::warn!(error = %orchestrator_stdx::error_chain(&error), "Could not read due webhooks; trying again.");
                return false;
            }
        };
        let full = deliveries.len() == usize::try_from(BATCH).unwrap_or(usize::MAX);
        let attempts: Vec<(Uuid, Attempt, AttemptOutcome)> = futures::stream::iter(deliveries)
            .map(|delivery| self.deliver(delivery))
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let recorded = async {
            let mut conn = self.pool.get().await?;
            webhooks::record_attempts(&mut conn, &attempts).await
        }
        .await;
        if let Err(error) = recorded {
            // The claims run out and the deliveries are sent again, with the same ids.
            tracing::warn!(deliveries = attempts.len(), error = %orchestrator_stdx::error_chain(&error), "Could not record webhook attempts.");
        }
        full
    }

    /// One attempt at a delivery, and what follows from it (recorded by the round).
    async fn deliver(&self, mut delivery: ClaimedDelivery) -> (Uuid, Attempt, AttemptOutcome) {
        let attempted_at = Utc::now();
        let started = Instant::now();
        let task = delivery
            .traceparent
            .as_deref()
            .and_then(TraceContext::parse);
        let mut span = delivery_span(&delivery, task.as_ref());
        let trace = task.map(|task| span.context_or_child_of(Some(&task)));
        let body = std::mem::take(&mut delivery.body);
        let (status_code, failure) = self.send(&delivery, body, trace.as_ref()).await;
        record_delivery(&mut span, status_code, failure.as_ref());
        span.end();
        let error = failure.map(|failure| failure.message);
        let attempt = Attempt {
            attempted_at,
            duration_ms: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
            status_code,
            error: error.clone(),
        };
        let outcome = if error.is_none() {
            AttemptOutcome::Delivered
        } else {
            // Attempt n failed: wait initial × 2^(n-1), at most an hour.
            let failures = u32::try_from(delivery.attempts).unwrap_or(u32::MAX);
            let backoff = self
                .initial_backoff
                .saturating_mul(2u32.saturating_pow(failures.min(20)))
                .min(MAX_BACKOFF);
            let next = Utc::now() + TimeDelta::from_std(backoff).unwrap_or(TimeDelta::hours(1));
            if next > delivery.created_at + self.retry_for {
                AttemptOutcome::GaveUp
            } else {
                AttemptOutcome::RetryAt(next)
            }
        };
        match &outcome {
            // One a task: not worth a line at INFO.
            AttemptOutcome::Delivered => {
                tracing::debug!(task_id = %delivery.task_id, delivery = %delivery.id, "Webhook delivered.");
            }
            AttemptOutcome::RetryAt(at) => tracing::info!(
                task_id = %delivery.task_id, delivery = %delivery.id, status_code, error = error.as_deref().unwrap_or_default(),
                next_attempt_at = %at, "Webhook attempt failed; retrying."
            ),
            AttemptOutcome::GaveUp => tracing::warn!(
                task_id = %delivery.task_id, delivery = %delivery.id, status_code, error = error.as_deref().unwrap_or_default(),
                "Webhook given up: retried for WEBHOOK_RETRY_HOURS."
            ),
        }
        (delivery.id, attempt, outcome)
    }

    /// One attempt: the receiver's status code (when it answered) and why it failed
    /// (none when it answered 2xx).
    async fn send(
        &self,
        delivery: &ClaimedDelivery,
        body: String,
        trace: Option<&TraceContext>,
    ) -> (Option<i32>, Option<Failure>) {
        // Checked again: the policy may have changed since the submit, and an address
        // given as the host does not go through the resolver.
        let url = match self.policy.check_url(&delivery.url) {
            Ok(url) => url,
            Err(refusal) => {
                return (
                    None,
                    Some(Failure::new("refused", format!("refused: {refusal}"))),
                );
            }
        };
        // The stored JSON as PostgreSQL writes it: signed and sent as it is.
        let body = body.into_bytes();
        let id = format!("msg_{}", delivery.id.simple());
        let timestamp = Utc::now().timestamp();
        let Some(secret) = self.secrets.of(&delivery.tenant) else {
            // The settings changed since the submit: retried until they are back.
            return (
                None,
                Some(Failure::new(
                    "no_secret",
                    format!("no signing secret for tenant {}", delivery.tenant),
                )),
            );
        };
        let signature = secret.sign(&id, timestamp, &body);
        let mut request = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(ID_HEADER, &id)
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, signature);
        if let Some(trace) = trace {
            request = request.header(TRACEPARENT, trace.traceparent());
        }
        let response = request.body(body).send().await;
        match response {
            Ok(mut response) => {
                let status = response.status();
                let code = Some(i32::from(status.as_u16()));
                // Read what the receiver said (a little of it), so that its connection
                // goes back to the pool for the next delivery instead of being closed.
                let mut read = 0usize;
                while read < MAX_RESPONSE_DRAIN_BYTES {
                    match response.chunk().await {
                        Ok(Some(chunk)) => read += chunk.len(),
                        Ok(None) | Err(_) => break,
                    }
                }
                if status.is_success() {
                    (code, None)
                } else {
                    let message = format!("HTTP {}", status.as_u16());
                    (code, Some(Failure::new("status", message)))
                }
            }
            Err(error) => {
                let text = orchestrator_stdx::error_chain(&error);
                let message = orchestrator_core::status::excerpt(&text, MAX_ERROR_CHARS);
                (None, Some(Failure::new("transport", message)))
            }
        }
    }
}

/// The span of one delivery attempt, a client span in the task's trace (under `task`),
/// while spans are exported; an empty one otherwise. The receiver's address without its
/// path and query (which may carry a token of the receiver's): scheme, host and port.
fn delivery_span(delivery: &ClaimedDelivery, task: Option<&TraceContext>) -> ExportedSpan {
    ExportedSpan::start("POST", SpanKind::Client, task, || {
        let url = reqwest::Url::parse(&delivery.url).ok();
        let mut attributes = vec![
            KeyValue::new("http.request.method", "POST"),
            KeyValue::new(
                "server.address",
                url.as_ref()
                    .and_then(|url| url.host_str())
                    .unwrap_or_default()
                    .to_owned(),
            ),
            KeyValue::new(
                "server.port",
                i64::from(
                    url.as_ref()
                        .and_then(reqwest::Url::port_or_known_default)
                        .unwrap_or_default(),
                ),
            ),
            KeyValue::new("orchestrator.webhook.delivery", delivery.id.to_string()),
            KeyValue::new("task_id", delivery.task_id.to_string()),
        ];
        // On resends only, as OpenTelemetry's HTTP conventions ask.
        if delivery.attempts > 0 {
            attributes.push(KeyValue::new(
                "http.request.resend_count",
                i64::from(delivery.attempts),
            ));
        }
        attributes
    })
}

/// Why a delivery attempt failed: what kind of failure (the span's `error.type` when no
/// status code came) and the error recorded with the attempt.
struct Failure {
    kind: &'static str,
    message: String,
}

impl Failure {
    fn new(kind: &'static str, message: String) -> Failure {
        Failure { kind, message }
    }
}

/// An attempt's answer on its span: the status code, and for a failure what kind
/// (`error.type`: the status code, or `refused`, `no_secret`, `transport` before one
/// came).
fn record_delivery(span: &mut ExportedSpan, status_code: Option<i32>, failure: Option<&Failure>) {
    if !span.is_recording() {
        return;
    }
    if let Some(code) = status_code {
        span.set("http.response.status_code", i64::from(code));
    }
    if let Some(failure) = failure {
        let kind = status_code.map_or_else(|| failure.kind.to_owned(), |code| code.to_string());
        span.set("error.type", kind);
        span.set_error();
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;
    use crate::ApiConfig;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn config(args: &[&str]) -> ApiConfig {
        ApiConfig::try_parse_from(std::iter::once("orchestrator-api").chain(args.iter().copied()))
            .expect("parses")
    }

    #[test]
    fn the_secret_is_never_printed() {
        let parsed = config(&["--webhook-secret", SECRET]);
        assert!(!format!("{:?}", parsed.webhooks).contains("MfKQ"));
        let webhooks = Webhooks::from_config(&parsed.webhooks).expect("valid");
        assert!(!format!("{webhooks:?}").contains("MfKQ"));
        // `--help` never shows the value WEBHOOK_SECRET holds.
        let command = ApiConfig::command();
        let argument = command
            .get_arguments()
            .find(|a| a.get_id() == "webhook_secret")
            .expect("the argument");
        assert!(argument.is_hide_env_values_set());
    }

    #[test]
    fn settings_that_do_not_fit_are_refused_naming_them() {
        let both = config(&[
            "--webhook-secret",
            SECRET,
            "--webhook-secret-file",
            "/dev/null",
        ]);
        let error = Webhooks::from_config(&both.webhooks).expect_err("refused");
        assert!(error.to_string().contains("WEBHOOK_SECRET_FILE"), "{error}");
        let bad = config(&["--webhook-secret", "whsec_short"]);
        let error = Webhooks::from_config(&bad.webhooks).expect_err("refused");
        assert!(format!("{error:#}").contains("WEBHOOK_SECRET"), "{error:#}");
        assert!(!format!("{error:#}").contains("short"), "{error:#}");
    }

    #[tokio::test]
    async fn without_a_secret_no_callback_is_taken() {
        let webhooks = Webhooks::from_config(&config(&[]).webhooks).expect("valid");
        assert_eq!(
            webhooks
                .check("default", "https://hooks.example.com/x")
                .await,
            Err(CallbackRefusal::NotConfigured)
        );
    }

    #[test]
    fn tenant_secrets_are_read_line_by_line_and_bad_lines_named_not_shown() {
        let secrets = Secrets::parse_tenant_file(&format!(
            "# acme's own\nacme {SECRET}\n\n  globex   {SECRET}  \n"
        ))
        .expect("valid");
        assert_eq!(secrets.len(), 2);
        for (text, expected) in [
            ("acme".to_owned(), "line 1"),
            (format!("Not-A-Tenant {SECRET}"), "line 1"),
            (format!("acme {SECRET}\nglobex whsec_bad"), "line 2"),
            (format!("acme {SECRET}\nacme {SECRET}"), "listed twice"),
        ] {
            let error = Secrets::parse_tenant_file(&text).expect_err("refused");
            let shown = format!("{error:#}");
            assert!(shown.contains(expected), "{shown}");
            assert!(!shown.contains("MfKQ"), "{shown}");
        }
        let with_default = Secrets {
            default: Some(WebhookSecret::parse(SECRET).expect("valid")),
            per_tenant: secrets,
        };
        assert!(with_default.of("acme").is_some());
        assert!(with_default.of("anyone").is_some());
        assert!(Secrets::default().of("acme").is_none());
    }
}
