//! Small helpers that several of the orchestrator's crates need, kept in one place
//! rather than copied (in the manner of rust-analyzer's `stdx`): error chains, the
//! start-up failure report, waiting for a stop signal. Depends on `anyhow` and tokio
//! only; nothing here knows of the orchestrator's domain.

use std::error::Error;
use std::io;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

/// The error and its causes, "outer: inner: innermost", for one log field or a
/// message that keeps only a string. A cause whose text the chain already holds is
/// left out: some errors (OpenSSL's) repeat their cause in their own message.
pub fn error_chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// What a binary prints when it cannot start: the error, each cause on a line of its
/// own, and a hint when the cause is a common one. Never a backtrace, even with
/// `RUST_BACKTRACE` set (as it is on many machines): returning `anyhow::Error` from
/// `main` would print one after the one useful line.
pub fn startup_report(error: &anyhow::Error, port_in_use_hint: &str) -> String {
    let mut report = format!("error: {error}\n");
    for cause in error.chain().skip(1) {
        report.push_str(&format!("  caused by: {cause}\n"));
    }
    let io_kind = error
        .chain()
        .find_map(|cause| cause.downcast_ref::<io::Error>())
        .map(io::Error::kind);
    match io_kind {
        Some(io::ErrorKind::AddrInUse) => {
            report.push_str(&format!("hint: {port_in_use_hint}\n"));
        }
        Some(io::ErrorKind::PermissionDenied) => {
            report.push_str("hint: ports below 1024 need privileges; choose a port above it.\n");
        }
        _ => {}
    }
    report
}

/// Prints [`startup_report`] to standard error and returns the exit code to end with.
pub fn exit_on_startup_error(error: &anyhow::Error, port_in_use_hint: &str) -> ExitCode {
    eprint!("{}", startup_report(error, port_in_use_hint));
    ExitCode::FAILURE
}

/// Resolves when the process is asked to stop: SIGTERM or SIGINT (Ctrl-C). Answers
/// which, for the log. If the handler cannot be installed, only SIGINT stops it.
pub async fn termination_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => tokio::select! {
                _ = tokio::signal::ctrl_c() => "SIGINT",
                _ = terminate.recv() => "SIGTERM",
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "ctrl-c"
    }
}

/// Resolves on SIGTERM, SIGINT, or once `token` is cancelled (how tests, and an
/// embedding program, stop a server without a signal).
pub async fn stop_requested(token: &CancellationToken) {
    tokio::select! {
        _ = termination_signal() => {}
        () = token.cancelled() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_is_joined_outermost_first() {
        let error = anyhow::Error::new(io::Error::other("innermost"))
            .context("inner")
            .context("outer");
        assert_eq!(error_chain(error.as_ref()), "outer: inner: innermost");
    }

    #[test]
    fn a_cause_repeated_in_its_parent_is_left_out() {
        let error = anyhow::Error::new(io::Error::other("bad certificate"))
            .context("handshake failed: bad certificate");
        assert_eq!(
            error_chain(error.as_ref()),
            "handshake failed: bad certificate"
        );
    }

    #[test]
    fn a_taken_port_gets_the_hint_and_each_cause_a_line() {
        let error = anyhow::Error::new(io::Error::from(io::ErrorKind::AddrInUse))
            .context("binding 127.0.0.1:8000 (API_HOST, API_PORT)");
        let report = startup_report(&error, "make run's API holds port 8000");
        let lines: Vec<&str> = report.lines().collect();
        assert_eq!(
            lines[0],
            "error: binding 127.0.0.1:8000 (API_HOST, API_PORT)"
        );
        assert!(lines[1].starts_with("  caused by: "), "{report}");
        assert_eq!(lines[2], "hint: make run's API holds port 8000");
        assert_eq!(lines.len(), 3, "{report}");
    }

    #[test]
    fn other_errors_get_no_hint() {
        let error = anyhow::anyhow!("DATABASE_URL: not a URL");
        assert_eq!(
            startup_report(&error, "unused"),
            "error: DATABASE_URL: not a URL\n"
        );
    }
}
