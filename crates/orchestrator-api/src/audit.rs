//! Recording audited actions from a request: who (the caller), from where (the client
//! address, as `TRUSTED_PROXIES` allows), under which request id. The store writes the
//! row ([`orchestrator_store::audit`]); a success is recorded in the transaction of its
//! action, a refusal on its own.

use actix_web::HttpRequest;
use orchestrator_core::{AuditAction, AuditOutcome};
use orchestrator_store::audit::{self, AuditEvent};
use orchestrator_store::{AsyncPgConnection, DbPool, StoreError};

use crate::auth::Caller;
use crate::client_address::TrustedProxies;

/// The who, where and which request of the audit rows one request writes.
#[derive(Debug, Clone)]
pub struct Audit {
    /// `None`: the action cannot be tied to a tenant (a sign-in with an unknown token).
    tenant: Option<String>,
    actor: String,
    request_id: String,
    client: Option<String>,
}

impl Audit {
    /// Rows of `caller`'s actions.
    pub fn of(
        caller: &Caller,
        req: &HttpRequest,
        proxies: &TrustedProxies,
        request_id: &str,
    ) -> Audit {
        Audit::as_actor(
            Some(caller.tenant.as_str()),
            caller.actor(),
            req,
            proxies,
            request_id,
        )
    }

    /// Rows of an actor the request did not authenticate (a refused sign-in).
    pub fn as_actor(
        tenant: Option<&str>,
        actor: String,
        req: &HttpRequest,
        proxies: &TrustedProxies,
        request_id: &str,
    ) -> Audit {
        Audit {
            tenant: tenant.map(str::to_owned),
            actor,
            request_id: request_id.to_owned(),
            client: crate::client_address::of(req, proxies).map(|address| address.to_string()),
        }
    }

    /// Writes the event on `conn`: inside the transaction of the action, for a success.
    pub async fn record(
        &self,
        conn: &mut AsyncPgConnection,
        action: AuditAction,
        target: Option<&str>,
        outcome: AuditOutcome,
    ) -> Result<(), StoreError> {
        self.record_with(conn, action, target, outcome, None).await
    }

    /// [`Audit::record`] with details beyond the target (a bulk operation's filter and
    /// count).
    pub async fn record_with(
        &self,
        conn: &mut AsyncPgConnection,
        action: AuditAction,
        target: Option<&str>,
        outcome: AuditOutcome,
        details: Option<&serde_json::Value>,
    ) -> Result<(), StoreError> {
        audit::record(
            conn,
            &AuditEvent {
                tenant: self.tenant.as_deref(),
                actor: &self.actor,
                action,
                target,
                outcome,
                request_id: Some(&self.request_id),
                client_address: self.client.as_deref(),
                details,
            },
        )
        .await
    }

    /// Writes a refusal. The request is refused whatever happens here, so a failure to
    /// write is logged rather than answered.
    pub async fn record_refusal(&self, pool: &DbPool, action: AuditAction, target: Option<&str>) {
        let result: Result<(), StoreError> = async {
            let mut conn = pool.get().await.map_err(StoreError::from)?;
            self.record(&mut conn, action, target, AuditOutcome::Failure)
                .await
        }
        .await;
        if let Err(error) = result {
            tracing::warn!(
                action = action.as_str(),
                error = %orchestrator_stdx::error_chain(&error),
                "Could not write a refusal to the audit log."
            );
        }
    }
}
