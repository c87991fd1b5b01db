//! Runs tasks: starts a task, calls its service requests concurrently through
//! [`orchestrator_calls`], records the outcomes and settles the task, each write through
//! the lifecycle transitions of `orchestrator_store::lifecycle` with group commit.
//! Shared by the worker and the API's inline and direct modes, so every path behaves
//! the same.
//!
//! - [`processor`]: a whole task, from `PENDING` to `COMPLETED` or `FAILED`.
//! - [`writer`]: the processor's database writes, batched with other tasks' (group
//!   commit).
//! - [`stops`]: dropping the calls of a task cancelled or failed at its deadline by
//!   another process, told by PostgreSQL notifications.

pub mod processor;
pub mod stops;
pub mod writer;

pub use processor::{OUTCOME_HOLD, ProcessError, TaskProcessor};
