//! Bulk operations: re-drive or cancel every task a filter selects
//! (`POST /api/tasks/bulk/retry`, `POST /api/tasks/bulk/cancel`). What a request says,
//! parsed with every problem at its JSON pointer; which statuses each action can touch.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::request::kind;
use crate::validation::Place;
use crate::{ServiceName, Status, ValidationErrors, text};

/// The longest `error_contains` and `task_name_prefix` a filter takes.
pub const MAX_FILTER_TEXT_CHARS: usize = 255;

/// What a bulk operation does to each task it selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BulkAction {
    /// Re-drive a `FAILED` or `CANCELLED` task.
    Retry,
    /// Cancel a `PENDING` or `IN_PROGRESS` task.
    Cancel,
}

/// A stored action name that is not one of the two.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown bulk action {0:?}: expected retry or cancel")]
pub struct UnknownBulkAction(pub String);

impl BulkAction {
    pub fn as_str(self) -> &'static str {
        match self {
            BulkAction::Retry => "retry",
            BulkAction::Cancel => "cancel",
        }
    }

    pub fn parse(name: &str) -> Result<Self, UnknownBulkAction> {
        match name {
            "retry" => Ok(BulkAction::Retry),
            "cancel" => Ok(BulkAction::Cancel),
            other => Err(UnknownBulkAction(other.to_owned())),
        }
    }

    /// The statuses a task must have for the action to apply: a filter selects among
    /// these, all of them when it names none.
    pub fn statuses(self) -> [Status; 2] {
        match self {
            BulkAction::Retry => [Status::Failed, Status::Cancelled],
            BulkAction::Cancel => [Status::Pending, Status::InProgress],
        }
    }
}

/// Which tasks of the caller's tenant a bulk operation acts on. Every condition given
/// must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFilter {
    /// One or both of the action's [`BulkAction::statuses`].
    pub statuses: Vec<Status>,
    /// Created at or after this time.
    pub created_after: Option<DateTime<Utc>>,
    /// Created before this time.
    pub created_before: Option<DateTime<Utc>>,
    /// Has a service request to this service that did not complete.
    pub service: Option<ServiceName>,
    /// The task's error message contains this text, ignoring case.
    pub error_contains: Option<String>,
    /// The task's name starts with this text (case matters).
    pub task_name_prefix: Option<String>,
}

/// A bulk operation as a client asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkRequest {
    pub filter: TaskFilter,
    /// Only count the tasks the filter selects; change nothing.
    pub dry_run: bool,
}

/// Where the filter is: `/filter`.
static FILTER: Place<'static> = Place::top("filter");

const FILTER_FIELDS: [&str; 6] = [
    "status",
    "created_after",
    "created_before",
    "service",
    "error_contains",
    "task_name_prefix",
];

impl BulkRequest {
    /// Reads a request body for `action`, against the services this deployment knows.
    pub fn parse(
        body: &Value,
        action: BulkAction,
        known_services: &BTreeSet<ServiceName>,
    ) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let Some(object) = body.as_object() else {
            return Err(ValidationErrors::single(
                "",
                format!("must be an object, not {}", kind(body)),
            ));
        };
        for field in object.keys() {
            if field != "filter" && field != "dry_run" {
                errors.push(
                    Place::top(field),
                    "unknown field; expected filter or dry_run",
                );
            }
        }
        let dry_run = match object.get("dry_run") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(dry_run)) => *dry_run,
            Some(other) => {
                errors.push(
                    "/dry_run",
                    format!("must be a boolean, not {}", kind(other)),
                );
                false
            }
        };
        let filter = match object.get("filter") {
            Some(Value::Object(filter)) => {
                parse_filter(filter, action, known_services, &mut errors)
            }
            None => {
                errors.push(
                    "/filter",
                    "is required: an object of conditions ({} selects every task the action applies to)",
                );
                None
            }
            Some(other) => {
                errors.push("/filter", format!("must be an object, not {}", kind(other)));
                None
            }
        };
        match filter {
            Some(filter) if errors.is_empty() => Ok(BulkRequest { filter, dry_run }),
            _ => Err(errors),
        }
    }
}

fn parse_filter(
    object: &Map<String, Value>,
    action: BulkAction,
    known_services: &BTreeSet<ServiceName>,
    errors: &mut ValidationErrors,
) -> Option<TaskFilter> {
    let before = errors.errors().len();
    for field in object.keys() {
        if !FILTER_FIELDS.contains(&field.as_str()) {
            errors.push(
                FILTER.key(field),
                format!(
                    "unknown field; expected one of {}",
                    FILTER_FIELDS.join(", ")
                ),
            );
        }
    }
    let allowed = action.statuses();
    let statuses = match object.get("status") {
        None | Some(Value::Null) => allowed.to_vec(),
        Some(Value::String(name)) => match Status::parse(name) {
            Ok(status) if allowed.contains(&status) => vec![status],
            _ => {
                errors.push(
                    "/filter/status",
                    format!(
                        "a bulk {} applies to {} or {} tasks",
                        action.as_str(),
                        allowed[0].as_str(),
                        allowed[1].as_str()
                    ),
                );
                Vec::new()
            }
        },
        Some(other) => {
            errors.push(
                "/filter/status",
                format!("must be a string or null, not {}", kind(other)),
            );
            Vec::new()
        }
    };
    let created_after = time(object, "created_after", errors);
    let created_before = time(object, "created_before", errors);
    // A range that is empty (created_before not after created_after) selects nothing;
    // it is not refused, as the document's schema cannot say it.
    let service = match object.get("service") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) => {
            let found = known_services.iter().find(|known| known.as_str() == name);
            if found.is_none() {
                errors.push(
                    "/filter/service",
                    format!(
                        "unknown service; expected one of {}",
                        known_services
                            .iter()
                            .map(ServiceName::as_str)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            }
            found.cloned()
        }
        Some(other) => {
            errors.push(
                "/filter/service",
                format!("must be a string or null, not {}", kind(other)),
            );
            None
        }
    };
    let error_contains = filter_text(object, "error_contains", errors);
    let task_name_prefix = filter_text(object, "task_name_prefix", errors);
    (errors.errors().len() == before).then_some(TaskFilter {
        statuses,
        created_after,
        created_before,
        service,
        error_contains,
        task_name_prefix,
    })
}

/// An RFC 3339 date-time, as JSON Schema's `date-time` format takes it.
fn time(
    object: &Map<String, Value>,
    field: &str,
    errors: &mut ValidationErrors,
) -> Option<DateTime<Utc>> {
    let pointer = FILTER.key(field);
    match object.get(field) {
        None | Some(Value::Null) => None,
        Some(Value::String(value)) => match DateTime::parse_from_rfc3339(value) {
            Ok(at) => Some(at.with_timezone(&Utc)),
            Err(_) => {
                errors.push(
                    pointer,
                    "must be an RFC 3339 date-time, e.g. 2026-12-01T10:00:00Z",
                );
                None
            }
        },
        Some(other) => {
            errors.push(
                pointer,
                format!("must be a string or null, not {}", kind(other)),
            );
            None
        }
    }
}

/// 1 to [`MAX_FILTER_TEXT_CHARS`] characters, without NUL.
fn filter_text(
    object: &Map<String, Value>,
    field: &str,
    errors: &mut ValidationErrors,
) -> Option<String> {
    let pointer = FILTER.key(field);
    match object.get(field) {
        None | Some(Value::Null) => None,
        Some(Value::String(value)) => {
            let chars = value.chars().count();
            if chars == 0 || chars > MAX_FILTER_TEXT_CHARS {
                errors.push(
                    pointer,
                    format!("must be 1 to {MAX_FILTER_TEXT_CHARS} characters"),
                );
                None
            } else if text::has_nul(value) {
                errors.push(pointer, text::NUL_DETAIL);
                None
            } else {
                Some(value.clone())
            }
        }
        Some(other) => {
            errors.push(
                pointer,
                format!("must be a string or null, not {}", kind(other)),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn services() -> BTreeSet<ServiceName> {
        ["revenue", "rebates"]
            .into_iter()
            .map(|name| ServiceName::parse(name).expect("valid"))
            .collect()
    }

    #[test]
    fn a_whole_filter_is_read() {
        let request = BulkRequest::parse(
            &json!({"filter": {
                "status": "FAILED", "created_after": "2026-12-01T10:00:00Z",
                "created_before": "2026-12-02T10:00:00+01:00", "service": "revenue",
                "error_contains": "HTTP 503", "task_name_prefix": "Nightly"
            }, "dry_run": true}),
            BulkAction::Retry,
            &services(),
        )
        .expect("valid");
        assert!(request.dry_run);
        assert_eq!(request.filter.statuses, [Status::Failed]);
        assert_eq!(
            request.filter.created_before.map(|at| at.to_rfc3339()),
            Some("2026-12-02T09:00:00+00:00".to_owned())
        );
        assert_eq!(
            request.filter.service.as_ref().map(ServiceName::as_str),
            Some("revenue")
        );
        assert_eq!(request.filter.task_name_prefix.as_deref(), Some("Nightly"));
    }

    #[test]
    fn an_empty_filter_selects_every_status_the_action_applies_to() {
        let cancel = BulkRequest::parse(&json!({"filter": {}}), BulkAction::Cancel, &services())
            .expect("valid");
        assert!(!cancel.dry_run);
        assert_eq!(
            cancel.filter.statuses,
            [Status::Pending, Status::InProgress]
        );
        assert_eq!(cancel.filter.service, None);
    }

    #[test]
    fn every_problem_is_reported_at_its_pointer() {
        let errors = BulkRequest::parse(
            &json!({"filter": {
                "status": "COMPLETED", "created_after": "yesterday", "service": "billing",
                "error_contains": "", "task_name_prefix": "a\u{0}b", "owner": "me"
            }, "dry_run": "yes", "force": true}),
            BulkAction::Retry,
            &services(),
        )
        .expect_err("invalid");
        let pointers: Vec<&str> = errors.errors().iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(
            pointers,
            [
                "/force",
                "/dry_run",
                "/filter/owner",
                "/filter/status",
                "/filter/created_after",
                "/filter/service",
                "/filter/error_contains",
                "/filter/task_name_prefix",
            ]
        );
        let errors =
            BulkRequest::parse(&json!({}), BulkAction::Cancel, &services()).expect_err("no filter");
        assert_eq!(errors.errors()[0].pointer, "/filter");
        assert!(BulkRequest::parse(&json!([]), BulkAction::Cancel, &services()).is_err());
    }

    #[test]
    fn action_names_round_trip() {
        for action in [BulkAction::Retry, BulkAction::Cancel] {
            assert_eq!(BulkAction::parse(action.as_str()), Ok(action));
        }
        assert!(BulkAction::parse("delete").is_err());
    }
}
