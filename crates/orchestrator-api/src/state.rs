//! What every handler shares.

use orchestrator_core::RequestLimits;
use orchestrator_store::DbPool;

use crate::inline::InlineRunner;

/// How accepted tasks reach a processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// This process runs them (`USE_KAFKA=false`).
    Inline,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Inline => "inline",
        }
    }
}

pub struct AppState {
    pub pool: DbPool,
    pub runner: InlineRunner,
    pub mode: Mode,
    pub max_body_bytes: usize,
}

impl AppState {
    pub fn limits(&self) -> &RequestLimits {
        self.runner.processor().request_limits()
    }
}
