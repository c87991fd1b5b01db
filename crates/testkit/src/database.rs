//! A PostgreSQL database per test.
//!
//! The migrations run once into a template database whose name carries a hash of the
//! migration files; each test then clones it with `CREATE DATABASE ... TEMPLATE`, which
//! takes milliseconds, and drops its clone when the [`TestDatabase`] is dropped. Tests
//! run in parallel processes (nextest), so template creation is serialised with an
//! advisory lock, and leftovers of crashed runs are swept when they are old.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use diesel::sql_types::{BigInt, Text};
use diesel::{QueryableByName, sql_query};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use orchestrator_core::{Scope, TenantName};
use orchestrator_store::tokens::TokenSpec;
use orchestrator_store::{DbPool, PoolConfig, build_pool};
use xtask::DatabaseUrl;

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const TEMPLATE_LOCK_KEY: i64 = 0x6f72_6374_6d70;
const TEST_DB_PREFIX: &str = "orch_test_";
/// Test databases older than this are leftovers of crashed runs.
const LEFTOVER_AGE: Duration = Duration::from_secs(2 * 3600);

/// A fresh, migrated database that is dropped when this value is dropped.
pub struct TestDatabase {
    name: String,
    url: String,
    admin_url: String,
}

#[derive(QueryableByName)]
struct DatabaseName {
    #[diesel(sql_type = Text)]
    datname: String,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    count: i64,
}

impl TestDatabase {
    /// The server tests use: `TEST_DATABASE_URL` (any database on it), by default the
    /// local PostgreSQL with trust authentication.
    pub fn admin_url() -> String {
        std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned())
    }

    /// Creates a database for one test, cloned from the migrated template.
    pub async fn create() -> TestDatabase {
        let admin_url = Self::admin_url();
        let template = ensure_template(&admin_url).await;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs();
        let name = format!(
            "{TEST_DB_PREFIX}{now}_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let mut admin = connect(&admin_url).await;
        sql_query(format!("CREATE DATABASE {name} TEMPLATE {template}"))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("creating test database {name}: {e}"));
        let url = database_url(&admin_url, &name);
        TestDatabase {
            name,
            url,
            admin_url,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pool_config(&self) -> PoolConfig {
        PoolConfig {
            database_url: self.url.clone(),
            max_size: 8,
            acquire_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
        }
    }

    pub fn pool(&self) -> DbPool {
        build_pool(&self.pool_config()).expect("building the test pool")
    }

    pub async fn connection(&self) -> AsyncPgConnection {
        connect(&self.url).await
    }

    /// A new API token for `tenant` with `scopes`, stored in this database; its text.
    pub async fn token(&self, tenant: &str, scopes: &[Scope]) -> String {
        self.token_with(tenant, scopes, None).await
    }

    /// A new API token that expires at `expires_at`.
    pub async fn token_with(
        &self,
        tenant: &str,
        scopes: &[Scope],
        expires_at: Option<chrono::DateTime<chrono::Utc>>,
    ) -> String {
        let tenant = TenantName::parse(tenant).expect("a valid tenant name");
        let mut conn = self.connection().await;
        let (_, issued) = orchestrator_store::tokens::issue(
            &mut conn,
            &TokenSpec {
                tenant: &tenant,
                scopes,
                name: Some("test"),
                expires_at,
            },
        )
        .await
        .expect("issuing a test token");
        orchestrator_auth::token::reveal(&issued).to_owned()
    }

    /// Counts the rows of a table (for "nothing was stored" assertions).
    pub async fn count_rows(&self, table: &str) -> i64 {
        let mut conn = self.connection().await;
        sql_query(format!("SELECT count(*) AS count FROM {table}"))
            .get_result::<Count>(&mut conn)
            .await
            .expect("counting rows")
            .count
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop runs outside any async context we could await in, so the DROP DATABASE
        // gets a thread and a small runtime of its own.
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("building a runtime to drop the test database");
            runtime.block_on(async move {
                let mut admin = connect(&admin_url).await;
                sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut admin)
                    .await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(_))) {
            eprintln!("warning: could not drop test database {}", self.name);
        }
    }
}

async fn connect(url: &str) -> AsyncPgConnection {
    AsyncPgConnection::establish(url)
        .await
        .unwrap_or_else(|e| panic!("connecting to PostgreSQL for tests ({url}): {e}"))
}

/// The same server URL, pointing at another database.
fn database_url(admin_url: &str, database: &str) -> String {
    DatabaseUrl::parse(admin_url)
        .unwrap_or_else(|e| panic!("TEST_DATABASE_URL: {e}"))
        .with_database(database)
        .as_str()
        .to_owned()
}

fn migrations_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../migrations")
}

/// FNV-1a over the migration files, so a changed migration gets a new template.
fn migrations_hash() -> String {
    let mut files: Vec<PathBuf> = std::fs::read_dir(migrations_dir())
        .expect("reading the migrations directory")
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .flat_map(|dir| [dir.join("up.sql"), dir.join("down.sql")])
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for file in files {
        let bytes = std::fs::read(&file).expect("reading a migration");
        for byte in file.to_string_lossy().bytes().chain(bytes) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

/// Makes sure the migrated template exists and returns its name.
async fn ensure_template(admin_url: &str) -> String {
    let template = format!("orch_template_{}", migrations_hash());
    let mut admin = connect(admin_url).await;
    sql_query(format!("SELECT pg_advisory_lock({TEMPLATE_LOCK_KEY})"))
        .execute(&mut admin)
        .await
        .expect("taking the template lock");

    let existing: Vec<DatabaseName> =
        sql_query("SELECT datname FROM pg_database WHERE datname LIKE 'orch\\_%'")
            .load(&mut admin)
            .await
            .expect("listing databases");
    if !existing.iter().any(|db| db.datname == template) {
        let building = format!("{template}_building");
        for statement in [
            format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"),
            format!("CREATE DATABASE {building}"),
        ] {
            sql_query(statement)
                .execute(&mut admin)
                .await
                .expect("preparing the template database");
        }
        orchestrator_store::migrations::run_pending(&database_url(admin_url, &building))
            .await
            .expect("migrating the template database");
        sql_query(format!("ALTER DATABASE {building} RENAME TO {template}"))
            .execute(&mut admin)
            .await
            .expect("publishing the template database");
    }

    sweep_leftovers(&mut admin, &existing).await;
    sql_query(format!("SELECT pg_advisory_unlock({TEMPLATE_LOCK_KEY})"))
        .execute(&mut admin)
        .await
        .expect("releasing the template lock");
    template
}

async fn sweep_leftovers(admin: &mut AsyncPgConnection, existing: &[DatabaseName]) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    for db in existing {
        let Some(rest) = db.datname.strip_prefix(TEST_DB_PREFIX) else {
            continue;
        };
        let created: Option<u64> = rest.split('_').next().and_then(|s| s.parse().ok());
        if created.is_some_and(|created| now.saturating_sub(created) > LEFTOVER_AGE.as_secs()) {
            let _ = sql_query(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                db.datname
            ))
            .execute(admin)
            .await;
        }
    }
}
