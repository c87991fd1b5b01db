//! Sign-ins with an OpenID Connect provider in progress: what the callback needs (the
//! PKCE verifier, the nonce), found by the SHA-256 of the request's `state`, and taken
//! once, by whichever API replica the browser comes back to.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::StoreError;
use crate::schema::oidc_sign_ins;

/// A sign-in in progress.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = oidc_sign_ins, check_for_backend(diesel::pg::Pg))]
pub struct PendingSignIn {
    pub state_hash: Vec<u8>,
    pub pkce_verifier: String,
    pub nonce: String,
    pub expires_at: DateTime<Utc>,
}

/// Stores a sign-in that was sent to the provider, and drops those that expired.
pub async fn insert(
    conn: &mut AsyncPgConnection,
    pending: &PendingSignIn,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    diesel::delete(oidc_sign_ins::table.filter(oidc_sign_ins::expires_at.le(now)))
        .execute(conn)
        .await?;
    diesel::insert_into(oidc_sign_ins::table)
        .values(pending)
        .execute(conn)
        .await?;
    Ok(())
}

/// Takes the sign-in whose state hashes to `state_hash`, unless it expired: a second
/// callback with the same state finds nothing.
pub async fn take(
    conn: &mut AsyncPgConnection,
    state_hash: &[u8],
    now: DateTime<Utc>,
) -> Result<Option<PendingSignIn>, StoreError> {
    Ok(diesel::delete(
        oidc_sign_ins::table
            .find(state_hash)
            .filter(oidc_sign_ins::expires_at.gt(now)),
    )
    .returning(PendingSignIn::as_returning())
    .get_result(conn)
    .await
    .optional()?)
}
