//! Logging and metrics setup shared by the orchestrator's binaries, so both log and
//! report alike. Metrics: see [`metrics`]; the trace a task belongs to: [`trace`].
//!
//! Human-readable lines by default, one JSON object per line with `LOG_FORMAT=json`;
//! `RUST_LOG` filters (default `info,rskafka=warn`; the one directive added to it
//! quiets actix-web's logging of malformed requests).

pub mod metrics;
pub mod process;
pub mod trace;

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

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

/// actix-web answers a request it cannot parse (a NUL or a newline in a header, a broken
/// chunk) with 400 by itself, and then logs the client's mistake at ERROR from its
/// HTTP/1 dispatcher ("stream error: request parse error"), as it does a connection the
/// client dropped. An ERROR must mean a fault of ours, so those are silenced unless
/// `RUST_LOG` names `actix_http` itself.
const QUIET_DISPATCHER: &str = "actix_http::h1::dispatcher=off";

/// The `RUST_LOG` directives in force, `rust_log` being the variable's value.
fn directives(rust_log: Option<&str>) -> String {
    let directives = rust_log
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .unwrap_or(DEFAULT_FILTER);
    if directives.contains("actix_http") {
        directives.to_owned()
    } else {
        format!("{directives},{QUIET_DISPATCHER}")
    }
}

/// Installs the global subscriber, writing to stdout. Call once, at startup; a second
/// call is a no-op.
pub fn init(format: LogFormat) {
    install(format, std::io::stdout, std::io::stdout().is_terminal());
}

/// As [`init`], writing to stderr: for commands whose stdout is their result.
pub fn init_stderr(format: LogFormat) {
    install(format, std::io::stderr, std::io::stderr().is_terminal());
}

fn install<W>(format: LogFormat, writer: W, terminal: bool)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let rust_log = std::env::var(EnvFilter::DEFAULT_ENV).ok();
    let filter = EnvFilter::try_new(directives(rust_log.as_deref()))
        .unwrap_or_else(|_| EnvFilter::new(directives(None)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_span_events(FmtSpan::NONE)
        // Colours only for a person at a terminal, not in log files and collectors.
        .with_ansi(terminal)
        .with_target(true);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
    // Tests start several apps in one process; only the first installs a subscriber.
    drop(result);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dispatchers_client_errors_are_quiet_unless_asked_for() {
        assert_eq!(
            directives(None),
            "info,rskafka=warn,actix_http::h1::dispatcher=off"
        );
        assert_eq!(
            directives(Some("debug")),
            "debug,actix_http::h1::dispatcher=off"
        );
        assert_eq!(
            directives(Some("info,actix_http=debug")),
            "info,actix_http=debug"
        );
    }
}
