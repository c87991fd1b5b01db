//! Repository tasks, run as `cargo xtask ...` (the alias is in `.cargo/config.toml`), in
//! Rust rather than shell, as rust-analyzer's xtask does.
//!
//! - [`stack`]: the local stack of `make run` / `make stop` / `make status` / `make db`,
//!   as a library ([`stack::LocalStack`]) that the benchmark and the tests start in-process.
//! - [`contract`]: `make contract`, the API held to its OpenAPI document by a fuzzer and
//!   a generated client.
//! - [`ports`]: `make run`'s default ports, the one list of them, and free blocks of ports
//!   away from them.
//! - [`database_url`]: the one parser of `DATABASE_URL`.
//! - [`process`]: a process named by its pid and start time.

pub mod contract;
pub mod database_url;
pub mod ports;
pub mod process;
pub mod stack;

use std::path::{Path, PathBuf};

pub use database_url::DatabaseUrl;
pub use ports::Ports;
pub use stack::{LocalStack, StackSettings};

/// The repository this crate was built from (it lives two levels below the root).
pub fn repo_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .ancestors()
        .nth(2)
        .unwrap_or(manifest_dir)
        .to_path_buf()
}
