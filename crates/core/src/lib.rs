//! Domain of the orchestrator, free of I/O.
//!
//! Everything here is plain data and pure functions so that the API, the worker and
//! the store agree on one definition of a valid request and of how a task settles:
//!
//! - [`request`]: parsing a client's orchestration request into validated domain values
//!   ("parse, don't validate"), with every problem reported against a JSON pointer.
//! - [`plan`]: splitting a request into the service requests to run.
//! - [`status`]: the status values and the rule that settles a task from its service requests.
//! - [`envelope`]: the Kafka record that carries a task, and its partition.
//! - [`access`]: the scopes a credential grants and the tenant it acts for.
//! - [`audit`]: the actions the audit log records and how they end.
//! - [`bulk`]: bulk re-drives and cancels: the filter of tasks they act on.
//! - [`retention`]: how long finished tasks are kept, per tenant.
//! - [`assignment`]: which worker replica owns which partition.
//! - [`text`]: what text the database can store and what counts as blank, also as
//!   the JSON Schema patterns of the OpenAPI document.
//!
//! This crate must not depend on tokio, diesel, actix, reqwest or rskafka; CI checks it.

pub mod access;
pub mod assignment;
pub mod audit;
pub mod bulk;
pub mod envelope;
pub mod json;
pub mod plan;
pub mod request;
pub mod retention;
pub mod service;
pub mod status;
pub mod text;
pub mod validation;

pub use access::{InvalidTenant, Scope, TenantName, UnknownScope};
pub use assignment::assigned_partitions;
pub use audit::{AuditAction, AuditOutcome, UnknownAction};
pub use bulk::{BulkAction, BulkRequest, TaskFilter};
pub use envelope::{
    EnvelopeError, EnvelopeKind, TaskEnvelope, partition_for_key, partition_of_task,
};
pub use json::RawJson;
pub use plan::{PlannedServiceRequest, plan_items, plan_service_requests, service_request_id};
pub use request::{OrchestrationRequest, RequestLimits, ServiceCall, TaskName};
pub use retention::{InvalidRetention, RetentionPeriod, TenantRetention};
pub use service::ServiceName;
pub use status::{ServiceRequestOutcome, Settlement, Status, settle_task};
pub use validation::{FieldError, ValidationErrors};
