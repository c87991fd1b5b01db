//! Logging and metrics setup shared by the orchestrator's binaries, so both log and
//! report alike. Metrics: see [`metrics`]; the trace a task belongs to: [`trace`].
//!
//! Human-readable lines by default, one JSON object per line with `LOG_FORMAT=json`;
//! `RUST_LOG` filters (default `info,rskafka=warn`; the directives added to it quiet
//! two libraries' ERROR lines about what is not a fault: see [`QUIET`]).

mod export;
pub mod metrics;
pub mod process;
pub mod trace;

use std::io::IsTerminal;

pub use export::{ExportError, ExportMetrics};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// The filter when `RUST_LOG` is not set.
const DEFAULT_FILTER: &str = "info,rskafka=warn";

/// Directives added to `RUST_LOG` unless it names their target itself, each silencing
/// a library that logs at ERROR what is not a fault of ours. An ERROR must mean one.
///
/// - actix-web answers a request it cannot parse (a NUL or a newline in a header, a
///   broken chunk) with 400 by itself, and then logs the client's mistake at ERROR from
///   its HTTP/1 dispatcher ("stream error: request parse error"), as it does a
///   connection the client dropped.
/// - rskafka's controller client logs every error answer at ERROR ("request encountered
///   fatal error") before returning it. Replicas that start together race to create
///   the topics, and every loser logged `TopicAlreadyExists` at ERROR on every rollout,
///   which `topics::ensure_topic` expects and ignores; every other error it returns to
///   its caller, which reports it.
const QUIET: [(&str, &str); 2] = [
    ("actix_http", "actix_http::h1::dispatcher=off"),
    (
        "rskafka::client::controller",
        "rskafka::client::controller=off",
    ),
];

/// The `RUST_LOG` directives in force, `rust_log` being the variable's value.
fn directives(rust_log: Option<&str>) -> String {
    let mut directives = rust_log
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .unwrap_or(DEFAULT_FILTER)
        .to_owned();
    for (named, quiet) in QUIET {
        if !directives.contains(named) {
            directives.push(',');
            directives.push_str(quiet);
        }
    }
    directives
}

/// What [`init`] installed: keep it for the life of the process, and
/// [`Telemetry::shutdown`] it at the end so that queued spans are exported.
#[derive(Debug)]
#[must_use = "dropping it stops the log lines' writer: keep it until the end, then shut it down to export the last spans"]
pub struct Telemetry {
    export: Option<export::Export>,
    /// Writes the queued log lines out, and stops writing any, when dropped.
    _log_writer: Option<tracing_appender::non_blocking::WorkerGuard>,
}

impl Telemetry {
    /// Exports the spans still queued, waiting at most `timeout`, and writes the last
    /// log lines out.
    pub fn shutdown(self, timeout: std::time::Duration) {
        if let Some(export) = self.export {
            export.shutdown(timeout);
        }
    }
}

/// Log lines queued for the writer thread before a logging task waits for room: about
/// 50 MB of lines. Nothing is dropped: a stdout that stops taking lines (a stalled
/// log collector) slows the process once this is full, as a direct write would at once.
const QUEUED_LOG_LINES: usize = 100_000;
/// What the writer thread gathers before one write to stdout.
const LOG_WRITE_BUFFER: usize = 64 * 1024;

/// Installs the global subscriber, writing to stdout, and exports spans over OTLP when
/// OpenTelemetry's environment variables ask for it ([`export`]), `service` naming the
/// process unless `OTEL_SERVICE_NAME` does. Call once, at startup, inside the Tokio
/// runtime; a second call installs nothing.
///
/// Lines are formatted where they are logged and written by a thread of their own, many
/// to a write: a task does not wait on stdout (a pipe to a container runtime, which may
/// be slow to drain) until [`QUEUED_LOG_LINES`] are queued, and a line per task costs no system call of its own. The lines
/// still queued are written when the returned [`Telemetry`] is dropped or shut down; a
/// process killed outright loses the last few milliseconds of them.
pub fn init(format: LogFormat, service: &'static str) -> Result<Telemetry, ExportError> {
    let terminal = std::io::stdout().is_terminal();
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(QUEUED_LOG_LINES)
        .thread_name("log-writer")
        .finish(std::io::BufWriter::with_capacity(
            LOG_WRITE_BUFFER,
            std::io::stdout(),
        ));
    install(format, writer, terminal, service, Some(guard))
}

/// As [`init`], writing to stderr: for commands whose stdout is their result. They
/// export no spans.
pub fn init_stderr(format: LogFormat) {
    let logs = log_layer(format, std::io::stderr, std::io::stderr().is_terminal());
    // Tests start several apps in one process; only the first installs a subscriber.
    drop(tracing_subscriber::registry().with(logs).try_init());
}

fn install<W>(
    format: LogFormat,
    writer: W,
    terminal: bool,
    service: &'static str,
    log_writer: Option<tracing_appender::non_blocking::WorkerGuard>,
) -> Result<Telemetry, ExportError>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let logs = log_layer(format, writer, terminal);
    let export = if export::requested(|name| std::env::var(name).ok()) {
        Some(export::Export::start(service)?)
    } else {
        None
    };
    // Tests start several apps in one process; only the first installs a subscriber.
    drop(tracing_subscriber::registry().with(logs).try_init());
    Ok(Telemetry {
        export,
        _log_writer: log_writer,
    })
}

/// The log lines' layer, filtered by `RUST_LOG`.
fn log_layer<S, W>(
    format: LogFormat,
    writer: W,
    terminal: bool,
) -> Box<dyn tracing_subscriber::Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let rust_log = std::env::var(EnvFilter::DEFAULT_ENV).ok();
    let filter = EnvFilter::try_new(directives(rust_log.as_deref()))
        .unwrap_or_else(|_| EnvFilter::new(directives(None)));
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_span_events(FmtSpan::NONE)
        // Colours only for a person at a terminal, not in log files and collectors.
        .with_ansi(terminal)
        .with_target(true);
    match format {
        LogFormat::Text => layer.with_filter(filter).boxed(),
        LogFormat::Json => layer
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_filter(filter)
            .boxed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libraries_errors_that_are_no_fault_are_quiet_unless_asked_for() {
        assert_eq!(
            directives(None),
            "info,rskafka=warn,actix_http::h1::dispatcher=off,rskafka::client::controller=off"
        );
        assert_eq!(
            directives(Some("debug")),
            "debug,actix_http::h1::dispatcher=off,rskafka::client::controller=off"
        );
        assert_eq!(
            directives(Some(
                "info,actix_http=debug,rskafka::client::controller=debug"
            )),
            "info,actix_http=debug,rskafka::client::controller=debug"
        );
    }
}
