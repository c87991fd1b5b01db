//! API tokens presented as `Authorization: Bearer`: checked against their stored hash,
//! with the stored row cached for a few seconds.
//!
//! Without the cache every request would read `api_tokens`; with it, a replica reads a
//! token's row at most once per [`CACHE_FOR`]. The price is that a revocation reaches
//! every replica within that time rather than at once (the README says so); a
//! dashboard session made from the token ends at once, since sessions join the row.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use orchestrator_auth::PresentedToken;
use orchestrator_core::{Scope, TenantName};
use orchestrator_store::DbPool;
use orchestrator_store::tokens::{self, LAST_USED_PRECISION, TokenRow};
use uuid::Uuid;

use super::{Caller, Credential};
use crate::error::ApiError;

/// How long a token's row is used before it is read again.
pub const CACHE_FOR: Duration = Duration::from_secs(5);
/// Tokens cached at most; past it the cache starts over (rows are small, and a
/// deployment has far fewer tokens in use).
const CACHE_CAPACITY: usize = 10_000;

pub struct TokenCache {
    pool: DbPool,
    entries: Mutex<HashMap<Uuid, Cached>>,
}

#[derive(Clone)]
struct Cached {
    row: TokenRow,
    scopes: Vec<Scope>,
    tenant: Option<TenantName>,
    read_at: Instant,
    /// When this replica last recorded a use of the token.
    touched_at: Option<Instant>,
}

impl TokenCache {
    pub fn new(pool: DbPool) -> TokenCache {
        TokenCache {
            pool,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The caller a presented token stands for. Malformed, unknown, revoked and expired
    /// tokens are all [`ApiError::InvalidToken`], alike.
    pub async fn verify(&self, text: &str) -> Result<Caller, ApiError> {
        let presented = PresentedToken::parse(text).map_err(|_| ApiError::InvalidToken)?;
        let cached = match self.cached(presented.id) {
            Some(cached) => cached,
            None => self.read(presented.id).await?,
        };
        let now = Utc::now();
        if !presented.matches(&cached.row.secret_hash) || !cached.row.is_usable(now) {
            return Err(ApiError::InvalidToken);
        }
        // A row whose tenant is not a valid name cannot act for anyone.
        let tenant = cached.tenant.clone().ok_or(ApiError::InvalidToken)?;
        self.touch(presented.id, now);
        Ok(Caller {
            credential: Credential::Token(presented.id),
            tenant,
            scopes: cached.scopes,
        })
    }

    fn cached(&self, id: Uuid) -> Option<Cached> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(&id)
            .filter(|cached| cached.read_at.elapsed() < CACHE_FOR)
            .cloned()
    }

    async fn read(&self, id: Uuid) -> Result<Cached, ApiError> {
        let mut conn = self
            .pool
            .get()
            .await
            .map_err(orchestrator_store::StoreError::from)?;
        let row = tokens::find(&mut conn, id)
            .await?
            .ok_or(ApiError::InvalidToken)?;
        let cached = Cached {
            scopes: row.scope_list(),
            tenant: TenantName::parse(&row.tenant).ok(),
            row,
            read_at: Instant::now(),
            touched_at: None,
        };
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= CACHE_CAPACITY {
            entries.clear();
        }
        let touched_at = entries.get(&id).and_then(|previous| previous.touched_at);
        let cached = Cached {
            touched_at,
            ..cached
        };
        entries.insert(id, cached.clone());
        Ok(cached)
    }

    /// Records the use in `last_used_at`, in the background, at most once per
    /// [`LAST_USED_PRECISION`] from this replica (the update itself skips rows written
    /// less than that before, so replicas together write about once a minute).
    fn touch(&self, id: Uuid, now: DateTime<Utc>) {
        let precision = LAST_USED_PRECISION
            .to_std()
            .unwrap_or(Duration::from_secs(60));
        {
            let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            let Some(entry) = entries.get_mut(&id) else {
                return;
            };
            if entry
                .touched_at
                .is_some_and(|touched| touched.elapsed() < precision)
            {
                return;
            }
            entry.touched_at = Some(Instant::now());
        }
        let pool = self.pool.clone();
        tokio::spawn(async move {
            let result = async {
                let mut conn = pool
                    .get()
                    .await
                    .map_err(orchestrator_store::StoreError::from)?;
                tokens::touch(&mut conn, id, now).await
            }
            .await;
            if let Err(error) = result {
                tracing::warn!(token = %id, error = %error, "Could not record a token's last use.");
            }
        });
    }
}
