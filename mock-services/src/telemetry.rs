//! Logging set-up for the binary.

use tracing_subscriber::EnvFilter;

/// Installs a `tracing` subscriber: filter from `RUST_LOG` (default `info`), JSON lines
/// when `LOG_FORMAT=json`, human-readable text otherwise.
pub fn init_tracing() -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|format| format.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let result = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    result.map_err(|err| anyhow::anyhow!("installing the tracing subscriber: {err}"))
}
