//! What the audit log records: the actions that are audited and how they ended.

/// An audited action. New actions (cancel, bulk operations) are added here; the stored
/// names never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditAction {
    /// A dashboard sign-in, accepted or refused.
    SignIn,
    /// An API token made (by the CLI or `POST /api/tokens`).
    TokenCreate,
    /// An API token revoked (by the CLI or `DELETE /api/tokens/{id}`).
    TokenRevoke,
    /// A failed task re-driven.
    TaskRedrive,
    /// An unfinished task cancelled.
    TaskCancel,
    /// A bulk re-drive started (its filter and count in the event's details).
    TasksBulkRetry,
    /// A bulk cancel started (its filter and count in the event's details).
    TasksBulkCancel,
    /// A running bulk operation stopped.
    BulkCancel,
}

/// An action name that is not one of [`AuditAction::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown action {0:?}; expected sign_in, token.create, token.revoke, task.redrive, task.cancel, tasks.bulk_retry, tasks.bulk_cancel or bulk.cancel"
)]
pub struct UnknownAction(pub String);

impl AuditAction {
    pub const ALL: [AuditAction; 8] = [
        AuditAction::SignIn,
        AuditAction::TokenCreate,
        AuditAction::TokenRevoke,
        AuditAction::TaskRedrive,
        AuditAction::TaskCancel,
        AuditAction::TasksBulkRetry,
        AuditAction::TasksBulkCancel,
        AuditAction::BulkCancel,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::SignIn => "sign_in",
            AuditAction::TokenCreate => "token.create",
            AuditAction::TokenRevoke => "token.revoke",
            AuditAction::TaskRedrive => "task.redrive",
            AuditAction::TaskCancel => "task.cancel",
            AuditAction::TasksBulkRetry => "tasks.bulk_retry",
            AuditAction::TasksBulkCancel => "tasks.bulk_cancel",
            AuditAction::BulkCancel => "bulk.cancel",
        }
    }

    pub fn parse(name: &str) -> Result<AuditAction, UnknownAction> {
        Self::ALL
            .into_iter()
            .find(|action| action.as_str() == name)
            .ok_or_else(|| UnknownAction(name.to_owned()))
    }
}

/// How an audited action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditOutcome {
    Success,
    /// Refused: not found, not allowed, not in a state that allows it.
    Failure,
}

impl AuditOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Success => "success",
            AuditOutcome::Failure => "failure",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_names_round_trip() {
        for action in AuditAction::ALL {
            assert_eq!(AuditAction::parse(action.as_str()), Ok(action));
        }
        assert!(AuditAction::parse("task.delete").is_err());
    }
}
