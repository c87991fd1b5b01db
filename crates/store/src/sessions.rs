//! Dashboard sessions, found by the SHA-256 of their cookie (never the cookie itself).
//!
//! A session made from an API token lives no longer than the token: [`find_active`]
//! joins it, so revoking the token ends every session made from it, on every replica,
//! at the next request.

use chrono::{DateTime, TimeDelta, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::StoreError;
use crate::schema::{api_tokens, dashboard_sessions};

/// A row of `dashboard_sessions`.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = dashboard_sessions, check_for_backend(diesel::pg::Pg))]
pub struct SessionRow {
    pub id_hash: Vec<u8>,
    pub token_id: Option<Uuid>,
    pub tenant: String,
    /// Space-separated.
    pub scopes: String,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// The identity provider's `sub`, for a session signed in with it.
    pub subject: Option<String>,
}

/// A session to store.
#[derive(Debug, Insertable)]
#[diesel(table_name = dashboard_sessions)]
pub struct NewSessionRow<'a> {
    pub id_hash: &'a [u8],
    pub token_id: Option<Uuid>,
    pub tenant: &'a str,
    pub scopes: &'a str,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub subject: Option<&'a str>,
}

pub async fn insert(
    conn: &mut AsyncPgConnection,
    session: &NewSessionRow<'_>,
) -> Result<(), StoreError> {
    diesel::insert_into(dashboard_sessions::table)
        .values(session)
        .execute(conn)
        .await?;
    Ok(())
}

/// The session whose cookie hashes to `id_hash`, if it is neither past its absolute
/// expiry nor idle for `idle` or longer, and the token it was made from (if any) is
/// neither revoked nor expired.
pub async fn find_active(
    conn: &mut AsyncPgConnection,
    id_hash: &[u8],
    now: DateTime<Utc>,
    idle: TimeDelta,
) -> Result<Option<SessionRow>, StoreError> {
    let token_usable = api_tokens::revoked_at
        .is_null()
        .and(
            api_tokens::expires_at
                .is_null()
                .or(api_tokens::expires_at.gt(now)),
        )
        .nullable();
    Ok(dashboard_sessions::table
        .left_join(api_tokens::table)
        .filter(dashboard_sessions::id_hash.eq(id_hash))
        .filter(dashboard_sessions::expires_at.gt(now))
        .filter(dashboard_sessions::last_seen_at.gt(now - idle))
        .filter(
            dashboard_sessions::token_id
                .is_null()
                .nullable()
                .or(token_usable),
        )
        .select(SessionRow::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// How stale `last_seen_at` may get, so that a dashboard polling every second does not
/// write on every request.
pub const LAST_SEEN_PRECISION: TimeDelta = TimeDelta::minutes(1);

/// Records activity at `now`, unless some was recorded less than
/// [`LAST_SEEN_PRECISION`] before.
pub async fn touch(
    conn: &mut AsyncPgConnection,
    id_hash: &[u8],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    diesel::update(
        dashboard_sessions::table
            .find(id_hash)
            .filter(dashboard_sessions::last_seen_at.lt(now - LAST_SEEN_PRECISION)),
    )
    .set(dashboard_sessions::last_seen_at.eq(now))
    .execute(conn)
    .await?;
    Ok(())
}

/// Ends a session (sign-out). Whether there was one.
pub async fn delete(conn: &mut AsyncPgConnection, id_hash: &[u8]) -> Result<bool, StoreError> {
    let deleted = diesel::delete(dashboard_sessions::table.find(id_hash))
        .execute(conn)
        .await?;
    Ok(deleted > 0)
}

/// Removes sessions that can no longer be used: past their absolute expiry, or idle
/// since before `now - idle`. How many.
pub async fn delete_expired(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    idle: TimeDelta,
) -> Result<usize, StoreError> {
    Ok(diesel::delete(
        dashboard_sessions::table.filter(
            dashboard_sessions::expires_at
                .le(now)
                .or(dashboard_sessions::last_seen_at.le(now - idle)),
        ),
    )
    .execute(conn)
    .await?)
}
