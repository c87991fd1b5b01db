//! The task lifecycle: every write that moves a task or one of its service requests
//! from one status to another. One file per transition, each holding its set-based form
//! (many tasks in one transaction, what group commit runs) and its one-task form (a
//! batch of one of it), so each rule is written once.
//!
//! # Statuses
//!
//! ```text
//!                accept           start                    finish
//!     (new) ──────────▶ PENDING ─────────▶ IN_PROGRESS ─────────────▶ COMPLETED
//!                                            ▲      │
//!                                    redrive │      │ finish
//!                                            │      ▼
//!                                            └──── FAILED
//! ```
//!
//! A service request is created `IN_PROGRESS` by *start*, moves to `COMPLETED` or
//! `FAILED` by *record* (early, while its task's other calls run) or *finish*, and
//! from `FAILED` back to `PENDING` by *redrive* (then to `IN_PROGRESS` by the next
//! *start*).
//!
//! | transition | from → to | who | where |
//! |---|---|---|---|
//! | [`accept`] | (new) → `PENDING` | the API, through its group commit; in Kafka mode with the task's outbox row | `accept.rs` |
//! | [`start`] | `PENDING`/`IN_PROGRESS` → `IN_PROGRESS` | the task processor (workers; the API in inline and direct mode) | `start.rs` |
//! | [`record`] | service request `IN_PROGRESS` → `COMPLETED`/`FAILED` | the processor, for an outcome held too long | `record.rs` |
//! | [`finish`] | `IN_PROGRESS` → `COMPLETED`/`FAILED` | the processor, once the task's calls are done | `finish.rs` |
//! | [`redrive`] | `FAILED` → `IN_PROGRESS` | the API's `POST /api/tasks/{id}/retry` | `redrive.rs` |
//!
//! # Rules every transition keeps
//!
//! - A finished task (`COMPLETED`, `FAILED`) changes only by *redrive*, and only from
//!   `FAILED`. *Start* on a finished task does nothing and says so.
//! - An outcome lands only on a service request that is `IN_PROGRESS`: the first run to
//!   record it wins, a duplicate (a record consumed twice, a second worker) changes
//!   nothing. The attempts of a run add to those of earlier runs.
//! - A task settles from all its service requests at once, by
//!   [`orchestrator_core::settle_task`], inside the transaction that wrote the last
//!   outcomes.
//! - **The fence.** A worker's writes carry the lease of the partition they came from
//!   ([`crate::Fence`]); [`fence::fenced_out`] is the one check, in the same transaction
//!   as the writes, with the lease row locked `FOR SHARE` until they commit. A write
//!   whose lease has moved on is refused ([`crate::StoreError::Fenced`]) and changes
//!   nothing; the other writes of its batch go ahead.
//! - **Lock order.** Lease rows (`FOR SHARE`, by partition), then task rows (`FOR
//!   UPDATE`, by task id, [`lock::tasks`]), then service requests. Every transition takes
//!   them in this order, so concurrent batches cannot deadlock.
//! - A batch either commits whole or not at all; an error of the whole batch (a failed
//!   statement) is returned as such, and group commit retries its requests one by one.

pub mod accept;
mod fence;
pub mod finish;
mod lock;
pub mod record;
pub mod redrive;
pub mod start;

pub use accept::{InsertedTask, NewTask};
pub use finish::FinishRequest;
pub use record::{FailedAttempt, FinishedServiceRequest, RecordRequest};
pub use redrive::Redrive;
pub use start::{Planner, StartRequest, StartedTask};

use crate::StoreError;

/// The one answer of a batch of one.
fn only<T>(answers: Vec<Result<T, StoreError>>) -> Result<T, StoreError> {
    answers.into_iter().next().unwrap_or_else(|| {
        Err(StoreError::Corrupt(
            "a batch of one answered nothing".into(),
        ))
    })
}
