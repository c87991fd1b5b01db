//! PostgreSQL persistence for the orchestrator.
//!
//! - [`pool`]: the one connection pool, built from [`PoolConfig`].
//! - [`migrations`]: the embedded migrations, applied under an advisory lock.
//! - [`leases`]: partition ownership and offsets of the worker replicas, with fencing.
//! - [`lifecycle`]: every write that moves a task or a service request from one status
//!   to another, one file per transition, with the state machine they follow.
//! - [`tasks`] and [`service_requests`]: reads, each taking `&mut AsyncPgConnection`
//!   so callers can compose them inside a transaction.
//! - [`notify`]: PostgreSQL `NOTIFY` of changed tasks, sent in the transaction that
//!   changes them, and the one listening connection per process that hears them.
//! - [`events`]: the task event log (written by triggers at every status change), read
//!   in order up to the settled horizon, for the API's Server-Sent Events streams.
//! - [`outbox`]: Kafka mode's record of tasks stored but not yet known to be published,
//!   a table of its own so that marking a task published does not rewrite its row.
//! - [`dashboard`]: counts per status, throughput and search for the dashboard, each
//!   reading a bounded amount of data however many tasks there are; [`seed`] fills a
//!   database with many tasks to measure that.
//! - [`tokens`] and [`sessions`]: API tokens and the dashboard's sessions, stored as
//!   hashes of their secrets; [`oidc`]: sign-ins with an identity provider in progress;
//!   [`audit`]: the audit log.
//! - [`bulk`]: bulk re-drives and cancels: the row that holds each one's filter,
//!   progress and claim, and the steps that advance it one task at a time.
//! - [`webhooks`]: the outbox of completion webhooks, filled by the lifecycle in the
//!   transaction that makes a task final, drained by the API's delivery loops.
//! - [`archive`]: finished tasks as JSON documents (task, service requests, attempts,
//!   re-drives) for archive files, and their restore.
//! - [`stats`]: table sizes, tasks per status and the oldest unfinished tasks, for the
//!   API's metrics.
//! - [`retention`]: removal of finished tasks past their retention period, in batches,
//!   and the lease that lets one process at a time run such a job.
//! - `prepared`: hand-written SQL that each connection prepares once (diesel's
//!   `sql_query` never caches), for the statements run at every batch.
//!
//! Row types live here and carry [`orchestrator_core`] values (status, service names);
//! nothing here knows about HTTP or Kafka.

pub mod archive;
pub mod audit;
pub mod bulk;
pub mod cursor;
pub mod dashboard;
pub mod error;
pub mod events;
pub mod group_commit;
pub mod health;
mod json_text;
pub mod leases;
pub mod lifecycle;
pub mod migrations;
pub mod models;
pub mod notify;
pub mod oidc;
pub mod outbox;
pub mod pool;
mod prepared;
pub mod retention;
pub mod schema;
pub mod seed;
pub mod service_requests;
pub mod sessions;
pub mod stats;
pub mod tasks;
pub mod tokens;
pub mod webhooks;

pub use cursor::{InvalidCursor, TaskCursor};
pub use diesel_async::AsyncPgConnection;
pub use error::StoreError;
pub use leases::Fence;
pub use models::{AttemptRow, RedriveRow, ServiceRequestRow, TaskRow, TaskState};
pub use pool::{DbPool, PoolConfig, build_pool};
