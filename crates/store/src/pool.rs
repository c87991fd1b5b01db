//! The connection pool: built here, once, with explicit size and timeouts; and how every
//! connection is opened, TLS included.
//!
//! diesel-async opens connections with tokio-postgres and no TLS connector, so on its own
//! `sslmode=require` fails and the libpq-only values (`verify-ca`, `verify-full`,
//! `sslrootcert`) do not even parse. [`PgConnector`] reads those settings from the URL
//! the way libpq does, connects with tokio-postgres and a TLS connector (OpenSSL, through
//! native-tls), and hands the connection to diesel-async. The pool and the migrations
//! both connect through it.

use std::borrow::Cow;
use std::path::PathBuf;
use std::str::FromStr as _;
use std::time::{Duration, Instant};

use diesel::ConnectionError;
use diesel_async::AsyncPgConnection;
use diesel_async::pooled_connection::deadpool::{Pool, PoolError};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use orchestrator_stdx::error_chain;
use orchestrator_telemetry::metrics::{count, count_value, encode_one};
use postgres_native_tls::MakeTlsConnector;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::StoreError;

pub type PooledConnection = diesel_async::pooled_connection::deadpool::Object<AsyncPgConnection>;

/// The connection pool, timing every wait for a connection. Cheap to clone: clones share
/// the connections and the timings.
#[derive(Clone)]
pub struct DbPool {
    pool: Pool<AsyncPgConnection>,
    /// Seconds each `get` waited, exported by [`PoolMetrics`].
    acquire_seconds: Histogram,
}

impl std::fmt::Debug for DbPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbPool")
            .field("status", &self.pool.status())
            .finish_non_exhaustive()
    }
}

impl DbPool {
    /// A connection, once one is free (waiting at most the pool's acquire timeout).
    ///
    /// # Errors
    /// When none became free in time, or a new one could not be opened.
    pub async fn get(&self) -> Result<PooledConnection, PoolError> {
        let started = Instant::now();
        let connection = self.pool.get().await;
        self.acquire_seconds
            .observe(started.elapsed().as_secs_f64());
        connection
    }

    /// How many connections exist, are free, and how many callers wait for one.
    pub fn status(&self) -> deadpool::Status {
        self.pool.status()
    }
}

/// The pool's metrics, read at each scrape: `orchestrator_db_pool_connections{state}`
/// (`in_use`, `idle`), `orchestrator_db_pool_max_connections`,
/// `orchestrator_db_pool_waiting` and the histogram
/// `orchestrator_db_pool_acquire_duration_seconds`.
#[derive(Debug)]
pub struct PoolMetrics {
    pool: DbPool,
}

impl PoolMetrics {
    /// Registers the metrics of `pool` in `registry`.
    pub fn register(registry: &mut Registry, pool: &DbPool) {
        registry.register(
            "db_pool_acquire_duration_seconds",
            "Time callers waited for a database connection from the pool",
            pool.acquire_seconds.clone(),
        );
        registry.register_collector(Box::new(PoolMetrics { pool: pool.clone() }));
    }
}

impl Collector for PoolMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let status = self.pool.status();
        let connections = Family::<StateLabel, Gauge>::default();
        for (state, n) in [
            ("in_use", status.size.saturating_sub(status.available)),
            ("idle", status.available),
        ] {
            connections
                .get_or_create(&StateLabel { state })
                .set(count_value(n));
        }
        let e = &mut encoder;
        encode_one(
            e,
            "db_pool_connections",
            "Connections the pool holds, in use or idle",
            &connections,
        )?;
        encode_one(
            e,
            "db_pool_max_connections",
            "Most connections the pool opens (DATABASE_POOL_SIZE)",
            &count(status.max_size),
        )?;
        encode_one(
            e,
            "db_pool_waiting",
            "Callers waiting for a connection",
            &count(status.waiting),
        )
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

/// How to reach PostgreSQL and how many connections to keep.
#[derive(Clone)]
pub struct PoolConfig {
    pub database_url: String,
    pub max_size: usize,
    /// How long a caller waits for a free connection before giving up.
    pub acquire_timeout: Duration,
    /// How long opening a new connection may take.
    pub connect_timeout: Duration,
}

impl std::fmt::Debug for PoolConfig {
    // The URL may carry a password; never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolConfig")
            .field("database_url", &redact_url(&self.database_url))
            .field("max_size", &self.max_size)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

/// The URL with any password replaced, fit for logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            if userinfo.contains(':') {
                format!("{scheme}://{user}:***@{host}")
            } else {
                url.to_owned()
            }
        }
        None => url.to_owned(),
    }
}

/// Builds the pool. No connection is opened until the first one is needed, but the URL's
/// TLS settings are checked (and a CA file read) now, so a mistake stops the start.
pub fn build_pool(config: &PoolConfig) -> Result<DbPool, StoreError> {
    let connector = PgConnector::from_url(&config.database_url)?;
    let mut manager_config = ManagerConfig::default();
    // No `SELECT 1` each time a connection is handed out (the default "verified"
    // recycling): under load that was a quarter of all statements, one extra round trip
    // per batch. A connection whose socket closed is still never handed out (diesel-async
    // checks `is_closed` and an open transaction), and `/ready` pings the database
    // itself; a connection that dies between two uses fails that one use, which the
    // callers already treat like any other database error.
    manager_config.recycling_method = RecyclingMethod::Fast;
    manager_config.custom_setup = Box::new(move |_url| {
        let connector = connector.clone();
        Box::pin(async move { connector.connect().await })
    });
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(
        &config.database_url,
        manager_config,
    );
    let pool = Pool::builder(manager)
        .max_size(config.max_size)
        .wait_timeout(Some(config.acquire_timeout))
        .create_timeout(Some(config.connect_timeout))
        .recycle_timeout(Some(config.connect_timeout))
        .runtime(deadpool::Runtime::Tokio1)
        .build()?;
    Ok(DbPool {
        pool,
        acquire_seconds: orchestrator_telemetry::metrics::latency_histogram(),
    })
}

/// Opens one connection to `database_url` with its TLS settings, outside the pool (the
/// migrations use this).
///
/// # Errors
/// If the URL or its TLS settings are invalid, or the connection fails.
pub async fn establish(database_url: &str) -> Result<AsyncPgConnection, StoreError> {
    Ok(PgConnector::from_url(database_url)?.connect().await?)
}

/// libpq's `sslmode`: whether to use TLS and what to check of the server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS if the server offers it, else plaintext; the certificate is not checked.
    /// libpq's default, and so ours.
    Prefer,
    /// TLS or fail; the certificate is not checked, unless `sslrootcert` is given, which
    /// makes it `VerifyCa` (as in libpq).
    Require,
    /// TLS, and the certificate must be signed by a trusted CA.
    VerifyCa,
    /// As `VerifyCa`, and the certificate must name the host connected to.
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Option<SslMode> {
        Some(match value {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }
}

/// Where the trusted CA certificates come from (`sslrootcert`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    /// A PEM file of CA certificates: only these are trusted.
    File(PathBuf),
    /// `sslrootcert=system`: the system's trusted CAs (as libpq 16 does).
    System,
}

/// The TLS settings of a DATABASE_URL, as libpq reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub mode: SslMode,
    /// `None`: the system's trusted CAs, when the mode checks certificates at all.
    pub root_cert: Option<RootCert>,
}

/// Opens connections as a DATABASE_URL says, TLS included. Cheap to clone: the TLS
/// connector (with the CA file already read) is shared.
#[derive(Clone)]
pub struct PgConnector {
    config: tokio_postgres::Config,
    tls: Option<MakeTlsConnector>,
    settings: TlsSettings,
}

impl std::fmt::Debug for PgConnector {
    // `tokio_postgres::Config` prints the password; never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConnector")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl PgConnector {
    /// Parses the URL, takes out the TLS settings tokio-postgres does not know
    /// (`sslmode=verify-ca|verify-full`, `sslrootcert`), and builds the TLS connector.
    ///
    /// # Errors
    /// If the URL does not parse, a TLS setting is invalid, or the CA file cannot be read;
    /// the message names the setting.
    pub fn from_url(database_url: &str) -> Result<PgConnector, StoreError> {
        let invalid = |reason: String| {
            StoreError::Connect(ConnectionError::InvalidConnectionUrl(format!(
                "DATABASE_URL: {reason}"
            )))
        };
        let (rest, settings) = split_tls_settings(database_url).map_err(invalid)?;
        let mut config = tokio_postgres::Config::from_str(&rest)
            .map_err(|error| invalid(error_chain(&error)))?;
        let settings = settings.unwrap_or_else(|| TlsSettings {
            // A key=value connection string: tokio-postgres has read its sslmode.
            mode: match config.get_ssl_mode() {
                tokio_postgres::config::SslMode::Disable => SslMode::Disable,
                tokio_postgres::config::SslMode::Require => SslMode::Require,
                _ => SslMode::Prefer,
            },
            root_cert: None,
        });
        config.ssl_mode(match settings.mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        });
        let tls = match settings.mode {
            SslMode::Disable => None,
            _ => Some(tls_connector(&settings).map_err(invalid)?),
        };
        Ok(PgConnector {
            config,
            tls,
            settings,
        })
    }

    pub fn tls_settings(&self) -> &TlsSettings {
        &self.settings
    }

    /// Opens a connection; its I/O runs on a spawned task, as with diesel-async's own.
    pub async fn connect(&self) -> Result<AsyncPgConnection, ConnectionError> {
        let failed =
            |error: tokio_postgres::Error| ConnectionError::BadConnection(error_chain(&error));
        match &self.tls {
            None => {
                let (client, connection) = self
                    .config
                    .connect(tokio_postgres::NoTls)
                    .await
                    .map_err(failed)?;
                AsyncPgConnection::try_from_client_and_connection(client, connection).await
            }
            Some(tls) => {
                let (client, connection) =
                    self.config.connect(tls.clone()).await.map_err(failed)?;
                AsyncPgConnection::try_from_client_and_connection(client, connection).await
            }
        }
    }
}

/// The `application_name` of listening connections.
pub const LISTENER_APPLICATION_NAME: &str = "orchestrator-listener";

/// What a listening connection receives: notifications, or the error that ended it.
pub(crate) type Notifications = tokio::sync::mpsc::UnboundedReceiver<
    Result<tokio_postgres::Notification, tokio_postgres::Error>,
>;

impl PgConnector {
    /// Opens a connection of its own for `LISTEN` (see [`crate::notify`]): its client,
    /// and the notifications it receives until it ends (the channel then closes).
    pub(crate) async fn connect_for_notifications(
        &self,
    ) -> Result<(tokio_postgres::Client, Notifications), tokio_postgres::Error> {
        // Named, so that an operator looking at pg_stat_activity knows what it is.
        let mut config = self.config.clone();
        config.application_name(LISTENER_APPLICATION_NAME);
        match &self.tls {
            None => {
                let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
                Ok((client, forward_notifications(connection)))
            }
            Some(tls) => {
                let (client, connection) = config.connect(tls.clone()).await?;
                Ok((client, forward_notifications(connection)))
            }
        }
    }
}

/// Drives a connection on a task of its own, forwarding its notifications.
fn forward_notifications<S, T>(mut connection: tokio_postgres::Connection<S, T>) -> Notifications
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(tokio_postgres::AsyncMessage::Notification(notification))) => {
                    if sender.send(Ok(notification)).is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => {
                    let _ = sender.send(Err(error));
                    return;
                }
                None => return,
            }
        }
    });
    receiver
}

/// The OpenSSL connector for `settings` (which use TLS).
fn tls_connector(settings: &TlsSettings) -> Result<MakeTlsConnector, String> {
    let mut builder = native_tls::TlsConnector::builder();
    if let Some(RootCert::File(path)) = &settings.root_cert {
        let pem = std::fs::read(path)
            .map_err(|error| format!("sslrootcert: cannot read {}: {error}", path.display()))?;
        let certificates = native_tls::Certificate::stack_from_pem(&pem).map_err(|error| {
            format!(
                "sslrootcert: {} is not a PEM file of certificates: {error}",
                path.display()
            )
        })?;
        if certificates.is_empty() {
            return Err(format!(
                "sslrootcert: {} holds no PEM certificate",
                path.display()
            ));
        }
        // Only the given CAs, as with libpq: a public CA must not vouch for the server.
        builder.disable_built_in_roots(true);
        for certificate in certificates {
            builder.add_root_certificate(certificate);
        }
    }
    let mode = match (settings.mode, &settings.root_cert) {
        (SslMode::Require, Some(_)) => SslMode::VerifyCa,
        (mode, _) => mode,
    };
    match mode {
        // Encrypted but not authenticated, as libpq does in these modes.
        SslMode::Disable | SslMode::Prefer | SslMode::Require => {
            builder.danger_accept_invalid_certs(true);
        }
        SslMode::VerifyCa => {
            builder.danger_accept_invalid_hostnames(true);
        }
        SslMode::VerifyFull => {}
    }
    let connector = builder
        .build()
        .map_err(|error| format!("cannot set up TLS: {}", error_chain(&error)))?;
    Ok(MakeTlsConnector::new(connector))
}

/// Takes `sslmode` and `sslrootcert` out of a `postgres://` URL's query, leaving the
/// rest byte for byte. A key=value connection string is returned whole, with `None`:
/// tokio-postgres parses its `sslmode` (disable, prefer or require) itself.
fn split_tls_settings(url: &str) -> Result<(String, Option<TlsSettings>), String> {
    let is_url = ["postgres://", "postgresql://"]
        .iter()
        .any(|scheme| url.starts_with(scheme));
    if !is_url {
        return Ok((url.to_owned(), None));
    }
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), Some(TlsSettings::from_parts(None, None)?)));
    };
    let mut mode = None;
    let mut root_cert = None;
    let mut kept = Vec::new();
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match decode(key)?.as_ref() {
            "sslmode" => {
                let value = decode(value)?;
                mode = Some(SslMode::parse(&value).ok_or_else(|| {
                    format!(
                        "sslmode={value} is not one of disable, prefer, require, verify-ca, \
                         verify-full"
                    )
                })?);
            }
            "sslrootcert" => {
                root_cert = Some(match decode(value)?.as_ref() {
                    "" => return Err("sslrootcert is empty".to_owned()),
                    "system" => RootCert::System,
                    path => RootCert::File(PathBuf::from(path)),
                });
            }
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((rest, Some(TlsSettings::from_parts(mode, root_cert)?)))
}

impl TlsSettings {
    fn from_parts(mode: Option<SslMode>, root_cert: Option<RootCert>) -> Result<Self, String> {
        let mode = match (mode, &root_cert) {
            // As libpq 16: the system's CAs vouch for anyone's name, so only verify-full
            // makes sense with them, and it is then the default.
            (None, Some(RootCert::System)) => SslMode::VerifyFull,
            (Some(mode), Some(RootCert::System)) if mode != SslMode::VerifyFull => {
                return Err("sslrootcert=system needs sslmode=verify-full".to_owned());
            }
            (mode, _) => mode.unwrap_or(SslMode::Prefer),
        };
        Ok(TlsSettings { mode, root_cert })
    }
}

fn decode(text: &str) -> Result<Cow<'_, str>, String> {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .map_err(|error| format!("{text:?} is not percent-encoded UTF-8: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str) -> TlsSettings {
        PgConnector::from_url(url)
            .unwrap_or_else(|error| panic!("{url}: {error}"))
            .tls_settings()
            .clone()
    }

    fn refused(url: &str) -> String {
        match PgConnector::from_url(url) {
            Err(StoreError::Connect(ConnectionError::InvalidConnectionUrl(message))) => message,
            other => panic!("{url} should be refused, got {other:?}"),
        }
    }

    #[test]
    fn libpq_tls_settings_are_taken_out_of_the_url() {
        let (rest, settings) = split_tls_settings(
            "postgres://app:p%40ss@db:5432/orch?application_name=api&sslmode=verify-full\
             &sslrootcert=%2Fetc%2Fpostgres%20ca%2Froot.crt&connect_timeout=5",
        )
        .expect("valid URL");
        assert_eq!(
            rest,
            "postgres://app:p%40ss@db:5432/orch?application_name=api&connect_timeout=5"
        );
        assert_eq!(
            settings,
            Some(TlsSettings {
                mode: SslMode::VerifyFull,
                root_cert: Some(RootCert::File("/etc/postgres ca/root.crt".into())),
            })
        );
        let (rest, _) = split_tls_settings("postgresql://db/orch?sslmode=disable").expect("valid");
        assert_eq!(rest, "postgresql://db/orch");
    }

    #[test]
    fn sslmode_defaults_to_prefer_as_in_libpq() {
        for url in [
            "postgres://db/orch",
            "postgres://db/orch?application_name=x",
        ] {
            assert_eq!(settings(url).mode, SslMode::Prefer, "{url}");
        }
        for (value, mode) in [
            ("disable", SslMode::Disable),
            ("prefer", SslMode::Prefer),
            ("require", SslMode::Require),
            ("verify-ca", SslMode::VerifyCa),
            ("verify-full", SslMode::VerifyFull),
        ] {
            assert_eq!(
                settings(&format!("postgres://db/orch?sslmode={value}")).mode,
                mode
            );
        }
    }

    #[test]
    fn key_value_strings_keep_tokio_postgres_sslmodes() {
        let settings = settings("host=127.0.0.1 user=postgres sslmode=require");
        assert_eq!(settings.mode, SslMode::Require);
        assert_eq!(settings.root_cert, None);
    }

    #[test]
    fn sslrootcert_system_means_verify_full() {
        let settings = settings("postgres://db/orch?sslrootcert=system");
        assert_eq!(settings.mode, SslMode::VerifyFull);
        assert_eq!(settings.root_cert, Some(RootCert::System));
        let message = refused("postgres://db/orch?sslrootcert=system&sslmode=require");
        assert_eq!(
            message,
            "DATABASE_URL: sslrootcert=system needs sslmode=verify-full"
        );
    }

    #[test]
    fn invalid_tls_settings_are_named() {
        let message = refused("postgres://db/orch?sslmode=verify");
        assert!(
            message.starts_with("DATABASE_URL: sslmode=verify is not one of"),
            "{message}"
        );
        let message = refused("postgres://db/orch?sslmode=require&sslrootcert=/nonexistent/ca.pem");
        assert!(
            message.starts_with("DATABASE_URL: sslrootcert: cannot read /nonexistent/ca.pem"),
            "{message}"
        );
        let message = refused("postgres://db/orch?sslrootcert=");
        assert_eq!(message, "DATABASE_URL: sslrootcert is empty");
        // Client certificates are not supported: refused rather than ignored.
        let message = refused("postgres://db/orch?sslmode=require&sslcert=/etc/client.crt");
        assert!(message.contains("sslcert"), "{message}");
    }

    #[test]
    fn the_connector_never_prints_the_password() {
        let connector = PgConnector::from_url("postgres://app:s3cret@db/orch?sslmode=require")
            .expect("valid URL");
        let debug = format!("{connector:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/orchestrator"),
            "postgres://app:***@db:5432/orchestrator"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1/x"),
            "postgres://postgres@127.0.0.1/x"
        );
    }
}
