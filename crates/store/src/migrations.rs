//! Embedded migrations, applied at startup by every binary.

use diesel::RunQueryDsl;
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::StoreError;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");

/// Key of the PostgreSQL advisory lock that serialises migration runs across processes
/// (an arbitrary constant: "orch" in ASCII).
const MIGRATION_LOCK_KEY: i64 = 0x6f72_6368;

/// How often a replica waiting for another's migrations tries the lock again.
const LOCK_RETRY: std::time::Duration = std::time::Duration::from_millis(100);

diesel::define_sql_function! {
    fn pg_try_advisory_lock(key: diesel::sql_types::BigInt) -> diesel::sql_types::Bool;
}

/// Applies every pending migration and logs the versions applied, if any: what every
/// binary does at start and what their `migrate` command does.
pub async fn apply(database_url: &str) -> Result<(), StoreError> {
    let applied = run_pending(database_url).await?;
    if applied.is_empty() {
        tracing::info!("The database schema is up to date.");
    } else {
        tracing::info!(?applied, "Applied migrations.");
    }
    Ok(())
}

/// Applies every pending migration and returns the versions applied.
///
/// Many replicas may start at once: each takes a session-level advisory lock first, so
/// one applies the migrations while the others wait and then find nothing to do. They
/// wait by trying again every [`LOCK_RETRY`] rather than in `pg_advisory_lock`: a
/// statement blocked there holds a snapshot, and `CREATE INDEX CONCURRENTLY` waits for
/// every older snapshot of its database to go, so the lock holder would wait for the
/// replicas waiting for it.
/// Runs on a blocking thread because diesel's migration harness is synchronous.
pub async fn run_pending(database_url: &str) -> Result<Vec<String>, StoreError> {
    // Connected like the pool's connections (TLS as the URL says); diesel-async's own
    // `establish` has no TLS.
    let conn = crate::pool::establish(database_url).await?;
    tokio::task::spawn_blocking(move || {
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::from(conn);
        while !diesel::select(pg_try_advisory_lock(MIGRATION_LOCK_KEY))
            .get_result::<bool>(&mut conn)?
        {
            std::thread::sleep(LOCK_RETRY);
        }
        let applied = conn
            .run_pending_migrations(MIGRATIONS)
            .map(|versions| versions.iter().map(ToString::to_string).collect::<Vec<_>>())
            .map_err(|error| StoreError::Migration(error.to_string()));
        // Closing the connection would release the lock too; unlock explicitly so a
        // pooled or long-lived connection never keeps it.
        diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"))
            .execute(&mut conn)?;
        applied
    })
    .await
    .map_err(|error| StoreError::Migration(format!("migration thread failed: {error}")))?
}
