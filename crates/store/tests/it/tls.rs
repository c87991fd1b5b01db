//! TLS to PostgreSQL, as `sslmode` and `sslrootcert` in DATABASE_URL say, against the
//! local server (TLS on, with Debian's self-signed "snakeoil" certificate for
//! `localhost`).

use diesel::QueryableByName;
use diesel::sql_types::{Bool, Text};
use diesel_async::RunQueryDsl;
use orchestrator_store::pool::PgConnector;
use orchestrator_store::{AsyncPgConnection, PoolConfig, build_pool, migrations};
use orchestrator_testkit::database::TestDatabase;

#[derive(QueryableByName)]
struct Ssl {
    #[diesel(sql_type = Bool)]
    ssl: bool,
}

#[derive(QueryableByName)]
struct Setting {
    #[diesel(sql_type = Text)]
    value: String,
}

/// Whether this connection is encrypted, as the server sees it.
async fn uses_tls(conn: &mut AsyncPgConnection) -> bool {
    diesel::sql_query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .get_result::<Ssl>(conn)
        .await
        .expect("query pg_stat_ssl")
        .ssl
}

/// The test database's URL with more query parameters.
fn with_params(db: &TestDatabase, params: &str) -> String {
    let separator = if db.url().contains('?') { '&' } else { '?' };
    format!("{}{separator}{params}", db.url())
}

async fn pool_uses_tls(db: &TestDatabase, database_url: String) -> bool {
    let pool = build_pool(&PoolConfig {
        database_url,
        ..db.pool_config()
    })
    .expect("build the pool");
    let mut conn = pool.get().await.expect("a pooled connection");
    uses_tls(&mut conn).await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pool_honours_sslmode() {
    let db = TestDatabase::create().await;
    assert!(pool_uses_tls(&db, with_params(&db, "sslmode=require")).await);
    assert!(!pool_uses_tls(&db, with_params(&db, "sslmode=disable")).await);
    // libpq's default, prefer, takes TLS when the server offers it.
    assert!(pool_uses_tls(&db, db.url().to_owned()).await);
}

/// The certificate file the server uses, if this process can read it: it is self-signed,
/// so it is its own CA.
async fn server_certificate(db: &TestDatabase) -> Option<String> {
    let mut conn = db.connection().await;
    let path =
        diesel::sql_query("SELECT setting AS value FROM pg_settings WHERE name = 'ssl_cert_file'")
            .get_result::<Setting>(&mut conn)
            .await
            .expect("read ssl_cert_file")
            .value;
    std::fs::metadata(&path).is_ok().then_some(path)
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_modes_check_the_certificate_and_the_host_name() {
    let db = TestDatabase::create().await;
    let Some(ca) = server_certificate(&db).await else {
        eprintln!("skipped: the server's certificate is not readable here");
        return;
    };
    let ca = ca.replace('/', "%2F");

    // verify-ca checks the chain only: connecting to 127.0.0.1 with a certificate for
    // localhost is fine.
    let url = with_params(&db, &format!("sslmode=verify-ca&sslrootcert={ca}"));
    assert!(pool_uses_tls(&db, url).await);
    // require with a CA file is verify-ca, as in libpq.
    let url = with_params(&db, &format!("sslmode=require&sslrootcert={ca}"));
    assert!(pool_uses_tls(&db, url).await);

    // verify-full also checks the name.
    let url = with_params(&db, &format!("sslmode=verify-full&sslrootcert={ca}"));
    let error = PgConnector::from_url(&url)
        .expect("valid settings")
        .connect()
        .await
        .map(|_| ())
        .expect_err("the certificate is for localhost, not 127.0.0.1");
    let message = error.to_string();
    assert!(message.contains("certificate verify failed"), "{message}");

    if db.url().contains("@127.0.0.1:") {
        let url = with_params(&db, &format!("sslmode=verify-full&sslrootcert={ca}")).replacen(
            "@127.0.0.1:",
            "@localhost:",
            1,
        );
        assert!(pool_uses_tls(&db, url.clone()).await);
        // The migrations connect the same way.
        assert_eq!(
            migrations::run_pending(&url)
                .await
                .expect("migrations over TLS"),
            Vec::<String>::new()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_certificate_from_another_ca_is_refused() {
    let db = TestDatabase::create().await;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let other_ca = params
        .self_signed(&rcgen::KeyPair::generate().expect("CA key"))
        .expect("a CA certificate");
    let path = std::env::temp_dir().join(format!(
        "orchestrator-store-other-ca-{}.pem",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(&path, other_ca.pem()).expect("write the CA file");

    let url = with_params(
        &db,
        &format!("sslmode=verify-ca&sslrootcert={}", path.display()),
    );
    let result = PgConnector::from_url(&url)
        .expect("valid settings")
        .connect()
        .await
        .map(|_| ());
    let _ = std::fs::remove_file(&path);
    let message = result.expect_err("an unknown CA").to_string();
    assert!(message.contains("certificate verify failed"), "{message}");
}
