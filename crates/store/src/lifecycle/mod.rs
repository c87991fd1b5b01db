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
//!                          │                 ▲      │
//!                          │         redrive │      │ finish, or stop (expire)
//!                          │                 │      ▼
//!                          │                 ├──── FAILED ◀── start (deadline passed)
//!                          │                 │
//!                          └─ stop (cancel) ─┴──▶ CANCELLED ◀── stop (cancel)
//! ```
//!
//! A service request is created `IN_PROGRESS` by *start*, moves to `COMPLETED` or
//! `FAILED` by *record* (early, while its task's other calls run) or *finish*, to
//! `CANCELLED` (or `FAILED`, at the deadline) with its task by *stop*, and from
//! `FAILED` or `CANCELLED` back to `PENDING` by *redrive* (then to `IN_PROGRESS` by the
//! next *start*).
//!
//! | transition | from → to | who | where |
//! |---|---|---|---|
//! | [`accept`] | (new) → `PENDING` | the API, through its group commit; in Kafka mode with the task's outbox row | `accept.rs` |
//! | [`start`] | `PENDING`/`IN_PROGRESS` → `IN_PROGRESS` | the task processor (workers; the API in inline and direct mode) | `start.rs` |
//! | [`record`] | service request `IN_PROGRESS` → `COMPLETED`/`FAILED` | the processor, for an outcome held too long | `record.rs` |
//! | [`finish`] | `IN_PROGRESS` → `COMPLETED`/`FAILED` | the processor, once the task's calls are done | `finish.rs` |
//! | [`redrive`] | `FAILED`/`CANCELLED` → `IN_PROGRESS` | the API's `POST /api/tasks/{id}/retry` | `redrive.rs` |
//! | [`stop`] | `PENDING`/`IN_PROGRESS` → `CANCELLED` (cancel) or `FAILED` (expire, at the deadline) | the API's `POST /api/tasks/{id}/cancel`; the processor when the deadline passes | `stop.rs` |
//!
//! # Rules every transition keeps
//!
//! - A finished task (`COMPLETED`, `FAILED`, `CANCELLED`) changes only by *redrive*,
//!   and only from `FAILED` or `CANCELLED`. *Start* on a finished task does nothing and
//!   says so; *start* on a task whose deadline has passed fails it without a call.
//! - *Stop* commits first and tells the others after: it sends
//!   [`crate::notify::TASKS_STOPPED`] in its transaction, and the process running the
//!   task drops its calls when it hears it. Outcomes that arrive after the stop find
//!   their service requests final and change nothing.
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
//!   them in this order, so concurrent batches cannot deadlock. A lease renewal
//!   ([`crate::leases::renew`]) locks its rows by partition too.
//! - Every status change is logged, in its transaction, by the database's triggers
//!   into the task event log ([`crate::events`]): transitions write no event
//!   themselves and cannot forget one.
//! - A batch either commits whole or not at all; an error of the whole batch (a failed
//!   statement) is returned as such, and group commit retries its requests one by one.

pub mod accept;
mod fence;
pub mod finish;
mod lock;
pub mod record;
pub mod redrive;
pub mod start;
pub mod stop;

pub use accept::{InsertedTask, NewTask};
pub use finish::FinishRequest;
pub use record::{FailedAttempt, FinishedServiceRequest, RecordRequest};
pub use redrive::Redrive;
pub use start::{Planner, StartRequest, StartedTask, TaskToStart};
pub use stop::Stop;

use crate::StoreError;

/// The one answer of a batch of one.
fn only<T>(answers: Vec<Result<T, StoreError>>) -> Result<T, StoreError> {
    answers.into_iter().next().unwrap_or_else(|| {
        Err(StoreError::Corrupt(
            "a batch of one answered nothing".into(),
        ))
    })
}
