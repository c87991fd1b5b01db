//! Status values and the rule that settles a task from its service requests.

use std::fmt;

use crate::ServiceName;

/// The status of a task or of a service request. The database enforces the same five
/// values with a CHECK constraint, spelled exactly as [`Status::as_str`] returns them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Pending,
    InProgress,
    Completed,
    Failed,
    /// Stopped by a client before it finished (`POST /api/tasks/{id}/cancel`).
    Cancelled,
}

/// A string that is not one of the four status values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown status {0:?}: expected PENDING, IN_PROGRESS, COMPLETED, FAILED or CANCELLED")]
pub struct UnknownStatus(pub String);

impl Status {
    pub const ALL: [Status; 5] = [
        Status::Pending,
        Status::InProgress,
        Status::Completed,
        Status::Failed,
        Status::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "PENDING",
            Status::InProgress => "IN_PROGRESS",
            Status::Completed => "COMPLETED",
            Status::Failed => "FAILED",
            Status::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(value: &str) -> Result<Self, UnknownStatus> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == value)
            .ok_or_else(|| UnknownStatus(value.to_owned()))
    }

    /// `COMPLETED`, `FAILED` and `CANCELLED` are final: processing a record again must
    /// not move a task or a service request out of them (only an explicit re-drive may).
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Completed | Status::Failed | Status::Cancelled)
    }

    /// A re-drive reopens a task that ended without completing: `FAILED` or `CANCELLED`.
    /// It runs again what did not complete.
    pub fn can_be_redriven(self) -> bool {
        matches!(self, Status::Failed | Status::Cancelled)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Status {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// What the settling rule needs to know about one service request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRequestOutcome {
    pub item_index: i32,
    pub service_name: ServiceName,
    pub status: Status,
    pub error_message: Option<String>,
}

/// Where a task stands, given its service requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// Some service request has not finished yet.
    Running,
    /// Every service request completed.
    Completed,
    /// Every service request finished and at least one failed for good.
    Failed { error_message: String },
}

/// How many failures [`settle_task`] spells out before summarising the rest.
const MAX_FAILURES_LISTED: usize = 10;
/// How much of each service request's error goes into the task's message.
const MAX_ERROR_EXCERPT_CHARS: usize = 300;

/// Settles a task from its service requests.
///
/// A task finishes only when all its service requests have: it is `COMPLETED` when all
/// completed, `FAILED` when any failed, and then its error message names each failed
/// service (with its item) and why it failed.
pub fn settle_task(service_requests: &[ServiceRequestOutcome]) -> Settlement {
    if service_requests.iter().any(|sr| !sr.status.is_terminal()) {
        return Settlement::Running;
    }
    // A cancelled request among finished ones (a task cancelled ends CANCELLED in the
    // same transaction, so this is only reached by a run racing a re-drive) did not
    // complete: the task did not either.
    let mut failed: Vec<&ServiceRequestOutcome> = service_requests
        .iter()
        .filter(|sr| matches!(sr.status, Status::Failed | Status::Cancelled))
        .collect();
    if failed.is_empty() {
        return Settlement::Completed;
    }
    failed.sort_by(|a, b| (a.item_index, &a.service_name).cmp(&(b.item_index, &b.service_name)));

    let mut message = format!(
        "{} of {} service requests failed: ",
        failed.len(),
        service_requests.len()
    );
    for (n, sr) in failed.iter().take(MAX_FAILURES_LISTED).enumerate() {
        if n > 0 {
            message.push_str("; ");
        }
        let reason = match (sr.status, sr.error_message.as_deref()) {
            (_, Some(reason)) => reason,
            (Status::Cancelled, None) => "cancelled",
            (_, None) => "no error recorded",
        };
        message.push_str(&format!(
            "{} (item {}): {}",
            sr.service_name,
            sr.item_index,
            excerpt(reason, MAX_ERROR_EXCERPT_CHARS)
        ));
    }
    if failed.len() > MAX_FAILURES_LISTED {
        message.push_str(&format!(
            "; and {} more",
            failed.len() - MAX_FAILURES_LISTED
        ));
    }
    Settlement::Failed {
        error_message: message,
    }
}

/// The first `max_chars` characters of `text`, marked when cut.
pub fn excerpt(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        None => text.to_owned(),
        Some((cut, _)) => format!("{}…", &text[..cut]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(
        item_index: i32,
        service: &str,
        status: Status,
        error: Option<&str>,
    ) -> ServiceRequestOutcome {
        ServiceRequestOutcome {
            item_index,
            service_name: ServiceName::parse(service).expect("valid name"),
            status,
            error_message: error.map(str::to_owned),
        }
    }

    #[test]
    fn status_strings_round_trip() {
        for status in Status::ALL {
            assert_eq!(Status::parse(status.as_str()), Ok(status));
            assert_eq!(
                serde_json::to_value(status).expect("serializes"),
                serde_json::Value::String(status.as_str().to_owned())
            );
        }
        assert!(Status::parse("pending").is_err());
    }

    #[test]
    fn completed_failed_and_cancelled_are_terminal() {
        assert!(!Status::Pending.is_terminal());
        assert!(!Status::InProgress.is_terminal());
        assert!(Status::Completed.is_terminal());
        assert!(Status::Failed.is_terminal());
        assert!(Status::Cancelled.is_terminal());
    }

    #[test]
    fn only_failed_and_cancelled_tasks_can_be_redriven() {
        let redrivable: Vec<Status> = Status::ALL
            .into_iter()
            .filter(|s| s.can_be_redriven())
            .collect();
        assert_eq!(redrivable, [Status::Failed, Status::Cancelled]);
    }

    #[test]
    fn task_runs_while_any_request_is_unfinished() {
        let requests = [
            outcome(0, "revenue", Status::Failed, Some("HTTP 500")),
            outcome(0, "rebates", Status::InProgress, None),
        ];
        assert_eq!(settle_task(&requests), Settlement::Running);
        let requests = [outcome(0, "revenue", Status::Pending, None)];
        assert_eq!(settle_task(&requests), Settlement::Running);
    }

    #[test]
    fn task_completes_when_all_complete() {
        let requests = [
            outcome(0, "revenue", Status::Completed, None),
            outcome(1, "rebates", Status::Completed, None),
        ];
        assert_eq!(settle_task(&requests), Settlement::Completed);
    }

    #[test]
    fn failed_task_names_each_failed_service_and_why() {
        let requests = [
            outcome(1, "specialty", Status::Failed, Some("HTTP 503: busy")),
            outcome(0, "revenue", Status::Completed, None),
            outcome(0, "rebates", Status::Failed, Some("connection refused")),
        ];
        let Settlement::Failed { error_message } = settle_task(&requests) else {
            panic!("expected a failed settlement");
        };
        assert_eq!(
            error_message,
            "2 of 3 service requests failed: rebates (item 0): connection refused; \
             specialty (item 1): HTTP 503: busy"
        );
    }

    #[test]
    fn long_failure_lists_are_summarised() {
        let requests: Vec<_> = (0..15)
            .map(|i| outcome(i, "revenue", Status::Failed, Some(&"x".repeat(1000))))
            .collect();
        let Settlement::Failed { error_message } = settle_task(&requests) else {
            panic!("expected a failed settlement");
        };
        assert!(error_message.ends_with("; and 5 more"), "{error_message}");
        assert!(error_message.len() < 10 * (MAX_ERROR_EXCERPT_CHARS + 40) + 100);
    }

    #[test]
    fn excerpt_cuts_on_character_boundaries() {
        assert_eq!(excerpt("héllo", 2), "hé…");
        assert_eq!(excerpt("hi", 2), "hi");
    }
}
