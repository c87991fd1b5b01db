//! What every handler shares.

use std::sync::Arc;

use orchestrator_core::RequestLimits;
use orchestrator_store::DbPool;
use orchestrator_telemetry::metrics::Registry;

use crate::inline::InlineRunner;
use crate::intake::TaskWriter;
use crate::queue::TaskQueue;

/// How accepted tasks reach a processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// This process runs them (`USE_KAFKA=false`).
    Inline,
    /// They are published to Kafka for the workers (`USE_KAFKA=true`).
    Kafka,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Inline => "inline",
            Mode::Kafka => "kafka",
        }
    }
}

pub struct AppState {
    pub pool: DbPool,
    /// Stores accepted tasks, many per commit.
    pub task_writer: TaskWriter,
    /// Runs direct requests, and in inline mode every accepted task.
    pub runner: InlineRunner,
    /// Kafka mode: where accepted tasks go.
    pub queue: Option<TaskQueue>,
    pub mode: Mode,
    pub max_body_bytes: usize,
    /// How long one search looks before it answers (`SEARCH_BUDGET_MS`).
    pub search_budget: std::time::Duration,
    /// The deadline of a task submitted without one (`TASK_DEADLINE_SECS`).
    pub default_deadline_secs: Option<u32>,
    /// Completion webhooks: where a `callback_url` may go.
    pub webhooks: crate::webhooks::Webhooks,
    /// This replica's side of bulk operations: their rate, and the loop that works on
    /// them.
    pub bulk: crate::bulk::BulkRunner,
    /// This replica's feed of task events, behind the Server-Sent Events streams.
    pub events: crate::events::EventFeed,
    /// Requests waiting for tasks to become final (`?wait=`).
    pub waits: crate::waiting::TaskWaits,
    /// Checks credentials.
    pub auth: crate::auth::Authenticator,
    /// Whose forwarding headers name the client.
    pub trusted_proxies: crate::client_address::TrustedProxies,
    /// Served by `GET /metrics`.
    pub metrics: Arc<Registry>,
    /// `TRACE_URL_TEMPLATE`: a task's `trace_url`.
    pub trace_url: Option<crate::tracing_http::TraceUrlTemplate>,
}

impl AppState {
    pub fn limits(&self) -> &RequestLimits {
        self.runner.processor().request_limits()
    }
}
