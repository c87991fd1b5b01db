//! `orchestrator-api token create|list|revoke`: API tokens for operators with database
//! access (`DATABASE_URL`), for any tenant.
//!
//! `create` writes the token, and nothing else, to stdout, so that
//! `TOKEN=$(orchestrator-api token create ...)` works; what it says about the token goes
//! to stderr with the logs.

use std::io::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, SecondsFormat, Utc};
use diesel_async::AsyncConnection as _;
use orchestrator_core::{AuditAction, AuditOutcome, Scope, TenantName};
use orchestrator_store::audit::{self, AuditEvent};
use orchestrator_store::tokens::{self, TokenRow, TokenSpec};
use orchestrator_store::{AsyncPgConnection, DbPool, StoreError};
use uuid::Uuid;

use crate::ApiConfig;

#[derive(Debug, Clone, clap::Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it (only it) on stdout. The secret is shown this once.
    Create {
        /// The tenant whose tasks the token acts on.
        #[arg(long, value_parser = parse_tenant)]
        tenant: TenantName,
        /// Comma-separated: tasks:submit, tasks:read, tasks:operate, admin.
        #[arg(long, value_parser = parse_scopes)]
        scopes: ScopeList,
        /// A label for people: what or who uses the token.
        #[arg(long)]
        name: Option<String>,
        /// How long the token is valid, e.g. 90d or 12h (default: until revoked).
        #[arg(long, value_parser = humantime::parse_duration)]
        expires_in: Option<Duration>,
    },
    /// List tokens (never their secrets).
    List {
        /// Only this tenant's.
        #[arg(long, value_parser = parse_tenant)]
        tenant: Option<TenantName>,
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token: it is refused from now on.
    Revoke {
        /// The token's id, as `list` shows it.
        id: Uuid,
    },
}

/// Scopes as given, each once; at least one.
#[derive(Debug, Clone)]
pub struct ScopeList(Vec<Scope>);

fn parse_scopes(list: &str) -> Result<ScopeList, String> {
    let scopes = Scope::parse_list(list).map_err(|e| e.to_string())?;
    if scopes.is_empty() {
        return Err("name at least one scope".into());
    }
    Ok(ScopeList(scopes))
}

fn parse_tenant(name: &str) -> Result<TenantName, String> {
    TenantName::parse(name).map_err(|e| e.to_string())
}

pub async fn run(config: &ApiConfig, command: &TokenCommand) -> anyhow::Result<()> {
    let pool: DbPool = crate::command_pool(config).await?;
    let mut conn = pool
        .get()
        .await
        .context("connecting to the database (DATABASE_URL)")?;
    let now = Utc::now();
    match command {
        TokenCommand::Create {
            tenant,
            scopes,
            name,
            expires_in,
        } => {
            let expires_at = expires_in
                .map(|valid_for| chrono::TimeDelta::from_std(valid_for).map(|d| now + d))
                .transpose()
                .context("--expires-in is too long")?;
            let spec = TokenSpec {
                tenant,
                scopes: &scopes.0,
                name: name.as_deref(),
                expires_at,
            };
            let (row, issued) = conn
                .transaction::<_, anyhow::Error, _>(async |conn| {
                    let (row, issued) = tokens::issue(conn, &spec).await?;
                    audited(conn, &row, AuditAction::TokenCreate).await?;
                    Ok((row, issued))
                })
                .await?;
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "{}", orchestrator_auth::token::reveal(&issued))?;
            stdout.flush()?;
            eprintln!(
                "Created token {} for tenant {} with scopes {}{}. The token (on stdout) is shown only this once: keep it in a secret store.",
                row.id,
                row.tenant,
                row.scopes,
                row.expires_at
                    .map(|at| format!(", valid until {}", timestamp(at)))
                    .unwrap_or_default(),
            );
        }
        TokenCommand::List { tenant, json } => {
            let rows = tokens::list(&mut conn, tenant.as_ref().map(TenantName::as_str)).await?;
            let mut stdout = std::io::stdout().lock();
            if *json {
                let listed: Vec<_> = rows.iter().map(listed).collect();
                writeln!(stdout, "{}", serde_json::to_string_pretty(&listed)?)?;
            } else {
                write!(stdout, "{}", table(&rows, now))?;
            }
        }
        TokenCommand::Revoke { id } => match conn
            .transaction::<_, anyhow::Error, _>(async |conn| {
                let row = tokens::revoke(conn, *id, now).await?;
                if let Some(row) = &row {
                    audited(conn, row, AuditAction::TokenRevoke).await?;
                }
                Ok(row)
            })
            .await?
        {
            Some(row) => eprintln!(
                "Token {} (tenant {}) is revoked since {}.",
                row.id,
                row.tenant,
                row.revoked_at.map(timestamp).unwrap_or_default()
            ),
            None => anyhow::bail!("no token with id {id}"),
        },
    }
    Ok(())
}

/// Records an action of the command in the audit log of the token's tenant, as the
/// actor `cli` (an operator with database access, from no client address).
async fn audited(
    conn: &mut AsyncPgConnection,
    row: &TokenRow,
    action: AuditAction,
) -> Result<(), StoreError> {
    audit::record(
        conn,
        &AuditEvent {
            tenant: Some(&row.tenant),
            actor: "cli",
            action,
            target: Some(&row.id.to_string()),
            outcome: AuditOutcome::Success,
            request_id: None,
            client_address: None,
            details: None,
        },
    )
    .await
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A token as `list --json` shows it: everything but its hash.
fn listed(row: &TokenRow) -> serde_json::Value {
    serde_json::json!({
        "id": row.id,
        "name": row.name,
        "tenant": row.tenant,
        "scopes": row.scopes.split(' ').collect::<Vec<_>>(),
        "created_at": timestamp(row.created_at),
        "expires_at": row.expires_at.map(timestamp),
        "last_used_at": row.last_used_at.map(timestamp),
        "revoked_at": row.revoked_at.map(timestamp),
    })
}

fn table(rows: &[TokenRow], now: DateTime<Utc>) -> String {
    let mut lines = vec![[
        "ID".to_owned(),
        "NAME".into(),
        "TENANT".into(),
        "SCOPES".into(),
        "CREATED".into(),
        "EXPIRES".into(),
        "LAST USED".into(),
        "STATE".into(),
    ]];
    let or_dash = |at: Option<DateTime<Utc>>| at.map_or_else(|| "-".to_owned(), timestamp);
    for row in rows {
        let state = if row.revoked_at.is_some() {
            "revoked"
        } else if row.is_usable(now) {
            "active"
        } else {
            "expired"
        };
        lines.push([
            row.id.to_string(),
            row.name.clone().unwrap_or_else(|| "-".into()),
            row.tenant.clone(),
            row.scopes.replace(' ', ","),
            timestamp(row.created_at),
            or_dash(row.expires_at),
            or_dash(row.last_used_at),
            state.into(),
        ]);
    }
    let widths: Vec<usize> = (0..8)
        .map(|column| {
            lines
                .iter()
                .map(|line| line[column].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut text = String::new();
    for line in &lines {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    }
    text
}
