//! API tokens: stored by id with the SHA-256 of their secret part, never the secret.

use chrono::{DateTime, TimeDelta, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use orchestrator_auth::{IssuedToken, NoRandomness};
use orchestrator_core::{Scope, TenantName};
use uuid::Uuid;

use crate::StoreError;
use crate::schema::api_tokens;

/// A row of `api_tokens`.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = api_tokens, check_for_backend(diesel::pg::Pg))]
pub struct TokenRow {
    pub id: Uuid,
    pub tenant: String,
    pub name: Option<String>,
    /// Space-separated.
    pub scopes: String,
    pub secret_hash: Vec<u8>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

impl TokenRow {
    /// Neither revoked nor expired at `now`.
    pub fn is_usable(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|expires| now < expires)
    }

    pub fn scope_list(&self) -> Vec<Scope> {
        Scope::parse_known(&self.scopes)
    }
}

/// What a new token is for.
#[derive(Debug, Clone)]
pub struct TokenSpec<'a> {
    pub tenant: &'a TenantName,
    pub scopes: &'a [Scope],
    pub name: Option<&'a str>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Why a token could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error(transparent)]
    Randomness(#[from] NoRandomness),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Makes a token and stores its hash: the stored row, and the token whose text is
/// handed out once. Used by the `token` command, the admin API and the test harnesses.
pub async fn issue(
    conn: &mut AsyncPgConnection,
    spec: &TokenSpec<'_>,
) -> Result<(TokenRow, IssuedToken), IssueError> {
    let issued = IssuedToken::generate()?;
    let scopes = Scope::join(spec.scopes);
    let row = insert(
        conn,
        &NewToken {
            id: issued.id,
            tenant: spec.tenant.as_str(),
            name: spec.name,
            scopes: &scopes,
            secret_hash: &issued.secret_hash,
            expires_at: spec.expires_at,
        },
    )
    .await?;
    Ok((row, issued))
}

/// A token to store.
#[derive(Debug, Insertable)]
#[diesel(table_name = api_tokens)]
pub struct NewToken<'a> {
    pub id: Uuid,
    pub tenant: &'a str,
    pub name: Option<&'a str>,
    /// Space-separated.
    pub scopes: &'a str,
    pub secret_hash: &'a [u8],
    pub expires_at: Option<DateTime<Utc>>,
}

pub async fn insert(
    conn: &mut AsyncPgConnection,
    token: &NewToken<'_>,
) -> Result<TokenRow, StoreError> {
    Ok(diesel::insert_into(api_tokens::table)
        .values(token)
        .returning(TokenRow::as_returning())
        .get_result(conn)
        .await?)
}

pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> Result<Option<TokenRow>, StoreError> {
    Ok(api_tokens::table
        .find(id)
        .select(TokenRow::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// Every token, or a tenant's, oldest first.
pub async fn list(
    conn: &mut AsyncPgConnection,
    tenant: Option<&str>,
) -> Result<Vec<TokenRow>, StoreError> {
    let mut query = api_tokens::table
        .select(TokenRow::as_select())
        .order((api_tokens::created_at, api_tokens::id))
        .into_boxed();
    if let Some(tenant) = tenant {
        query = query.filter(api_tokens::tenant.eq(tenant));
    }
    Ok(query.load(conn).await?)
}

/// Revokes the token (a second revocation keeps the first time); `None` when there is
/// no such token.
pub async fn revoke(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<Option<TokenRow>, StoreError> {
    diesel::update(
        api_tokens::table
            .find(id)
            .filter(api_tokens::revoked_at.is_null()),
    )
    .set(api_tokens::revoked_at.eq(now))
    .execute(conn)
    .await?;
    find(conn, id).await
}

/// How stale `last_used_at` may get: writing it on every request would add a write to
/// each read.
pub const LAST_USED_PRECISION: TimeDelta = TimeDelta::minutes(1);

/// Records a use at `now`, unless one was recorded less than [`LAST_USED_PRECISION`]
/// before.
pub async fn touch(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    diesel::update(
        api_tokens::table.find(id).filter(
            api_tokens::last_used_at
                .is_null()
                .or(api_tokens::last_used_at.lt(now - LAST_USED_PRECISION)),
        ),
    )
    .set(api_tokens::last_used_at.eq(now))
    .execute(conn)
    .await?;
    Ok(())
}
