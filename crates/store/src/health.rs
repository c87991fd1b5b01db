//! Is PostgreSQL reachable? For readiness probes.

use std::time::Duration;

use diesel_async::RunQueryDsl;

use crate::{DbPool, StoreError};

/// Takes a connection from the pool and runs `SELECT 1` on it, within `timeout`.
pub async fn ping(pool: &DbPool, timeout: Duration) -> Result<(), StoreError> {
    let check = async {
        let mut conn = pool.get().await?;
        diesel::sql_query("SELECT 1").execute(&mut conn).await?;
        Ok(())
    };
    tokio::time::timeout(timeout, check)
        .await
        .map_err(|_| StoreError::Timeout)?
}
