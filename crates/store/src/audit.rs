//! The audit log (`audit_events`): written by the actions it records, in their
//! transaction; read newest first, one tenant at a time.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use orchestrator_core::{AuditAction, AuditOutcome, TenantName};

use crate::cursor::keyset;
use crate::schema::audit_events;
use crate::{StoreError, TaskCursor};

/// One event to record.
#[derive(Debug, Clone)]
pub struct AuditEvent<'a> {
    /// `None` when the action cannot be tied to a tenant (a sign-in with an unknown
    /// token).
    pub tenant: Option<&'a str>,
    /// `token:<id>`, `cli`, `anonymous`, `unknown`.
    pub actor: &'a str,
    pub action: AuditAction,
    /// What the action was on: a task id, a token id.
    pub target: Option<&'a str>,
    pub outcome: AuditOutcome,
    pub request_id: Option<&'a str>,
    pub client_address: Option<&'a str>,
    /// What the action was about beyond its target (a bulk operation's filter and
    /// count).
    pub details: Option<&'a serde_json::Value>,
}

/// Appends the event; call it inside the transaction of the action it records.
pub async fn record(
    conn: &mut AsyncPgConnection,
    event: &AuditEvent<'_>,
) -> Result<(), StoreError> {
    diesel::insert_into(audit_events::table)
        .values((
            audit_events::tenant.eq(event.tenant),
            audit_events::actor.eq(event.actor),
            audit_events::action.eq(event.action.as_str()),
            audit_events::target.eq(event.target),
            audit_events::outcome.eq(event.outcome.as_str()),
            audit_events::request_id.eq(event.request_id),
            audit_events::client_address.eq(event.client_address),
            audit_events::details.eq(event.details),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// A row of `audit_events`.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = audit_events, check_for_backend(diesel::pg::Pg))]
pub struct AuditRow {
    pub id: i64,
    pub occurred_at: DateTime<Utc>,
    pub tenant: Option<String>,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub outcome: String,
    pub request_id: Option<String>,
    pub client_address: Option<String>,
    pub details: Option<serde_json::Value>,
}

impl AuditRow {
    /// Where the next page starts when this is the last row of one.
    pub fn cursor(&self) -> TaskCursor {
        TaskCursor {
            created_at: self.occurred_at,
            id: self.id,
        }
    }
}

/// Which events to read.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter<'a> {
    pub action: Option<AuditAction>,
    pub actor: Option<&'a str>,
    /// Events at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Events before this time.
    pub until: Option<DateTime<Utc>>,
}

/// One page of a tenant's events, newest first, after `cursor`
/// (`audit_events_tenant_newest_first_idx`). Fetches `limit + 1` rows so the caller can
/// tell whether another page follows.
pub async fn page(
    conn: &mut AsyncPgConnection,
    tenant: &TenantName,
    filter: &AuditFilter<'_>,
    cursor: Option<TaskCursor>,
    limit: i64,
) -> Result<Vec<AuditRow>, StoreError> {
    let mut query = audit_events::table
        .select(AuditRow::as_select())
        .filter(audit_events::tenant.eq(tenant.as_str()))
        .into_boxed();
    if let Some(action) = filter.action {
        query = query.filter(audit_events::action.eq(action.as_str()));
    }
    if let Some(actor) = filter.actor {
        query = query.filter(audit_events::actor.eq(actor.to_owned()));
    }
    if let Some(since) = filter.since {
        query = query.filter(audit_events::occurred_at.ge(since));
    }
    if let Some(until) = filter.until {
        query = query.filter(audit_events::occurred_at.lt(until));
    }
    if let Some(cursor) = cursor {
        query = query.filter(keyset(
            "audit_events.occurred_at, audit_events.id",
            "<",
            cursor,
        ));
    }
    Ok(query
        .order((audit_events::occurred_at.desc(), audit_events::id.desc()))
        .limit(limit + 1)
        .load(conn)
        .await?)
}
