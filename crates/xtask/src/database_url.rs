//! `DATABASE_URL`, parsed once: the one parser of PostgreSQL URLs for the repository's
//! tools and tests (the stack, the benchmark, the test databases).

use std::fmt;

use percent_encoding::percent_decode_str;
use url::Url;

/// The port PostgreSQL listens on when the URL names none.
pub const DEFAULT_POSTGRES_PORT: u16 = 5432;

/// Why a `DATABASE_URL` was refused.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseUrlError {
    #[error("not a URL: {0}")]
    Syntax(#[from] url::ParseError),
    #[error("the scheme is {0:?}, not postgres or postgresql")]
    Scheme(String),
    #[error("names no host")]
    NoHost,
}

/// A `postgres://[user[:password]@]host[:port][/database][?options]` URL.
///
/// Its `Display` hides the password, so it can be printed and logged.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(Url);

impl DatabaseUrl {
    pub fn parse(text: &str) -> Result<DatabaseUrl, DatabaseUrlError> {
        let url = Url::parse(text)?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(DatabaseUrlError::Scheme(url.scheme().to_owned()));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(DatabaseUrlError::NoHost);
        }
        Ok(DatabaseUrl(url))
    }

    /// The URL as given (with its password): for the programs that connect with it.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The database it names, decoded; `None` for a URL without one.
    pub fn database(&self) -> Option<String> {
        let name = self.0.path().trim_start_matches('/');
        (!name.is_empty()).then(|| percent_decode_str(name).decode_utf8_lossy().into_owned())
    }

    /// The host, as written (`127.0.0.1`, `localhost`, `[::1]`, `db`).
    pub fn host(&self) -> &str {
        self.0.host_str().unwrap_or_default()
    }

    pub fn port(&self) -> u16 {
        self.0.port().unwrap_or(DEFAULT_POSTGRES_PORT)
    }

    /// The server this machine starts by itself when it does not answer
    /// (`scripts/ensure-postgres.sh`): loopback, on the default port.
    pub fn is_local_default_server(&self) -> bool {
        matches!(self.host(), "127.0.0.1" | "localhost" | "[::1]")
            && self.port() == DEFAULT_POSTGRES_PORT
    }

    /// The same user, database and options on another server (a proxy in front of it).
    pub fn with_address(&self, host: &str, port: u16) -> Result<DatabaseUrl, DatabaseUrlError> {
        let mut url = self.0.clone();
        url.set_host(Some(host))?;
        // Only fails for URLs that cannot have a port, which one with a host can.
        let _ = url.set_port(Some(port));
        Ok(DatabaseUrl(url))
    }

    /// The same server, user and options, another database.
    pub fn with_database(&self, database: &str) -> DatabaseUrl {
        let mut url = self.0.clone();
        url.set_path(&format!("/{database}"));
        DatabaseUrl(url)
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.password().is_none() {
            return f.write_str(self.0.as_str());
        }
        let mut shown = self.0.clone();
        // Only fails for URLs that cannot have a password, which this one has.
        let _ = shown.set_password(Some("***"));
        f.write_str(shown.as_str())
    }
}

/// Like `Display`: a URL in a panic message or a `{:?}` must not show the password.
impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

impl std::str::FromStr for DatabaseUrl {
    type Err = DatabaseUrlError;

    fn from_str(text: &str) -> Result<DatabaseUrl, DatabaseUrlError> {
        DatabaseUrl::parse(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> DatabaseUrl {
        DatabaseUrl::parse(text).expect("a valid URL")
    }

    #[test]
    fn splits_a_full_url() {
        let url = url("postgres://app:s3cret@db.internal:6543/orders?sslmode=require");
        assert_eq!(url.host(), "db.internal");
        assert_eq!(url.port(), 6543);
        assert_eq!(url.database().as_deref(), Some("orders"));
        assert!(!url.is_local_default_server());
    }

    #[test]
    fn defaults_the_port_and_allows_no_database() {
        let url = url("postgresql://postgres@localhost");
        assert_eq!(url.port(), 5432);
        assert_eq!(url.database(), None);
        assert!(url.is_local_default_server());
        assert!(self::url("postgres://postgres@[::1]:5432/x").is_local_default_server());
        assert!(!self::url("postgres://postgres@127.0.0.1:5433/x").is_local_default_server());
    }

    #[test]
    fn decodes_the_database_name() {
        assert_eq!(
            url("postgres://h/my%20db").database().as_deref(),
            Some("my db")
        );
    }

    #[test]
    fn another_database_keeps_user_password_and_options() {
        let url = url("postgres://app:pw@127.0.0.1:5432/orders?sslmode=disable");
        assert_eq!(
            url.with_database("postgres").as_str(),
            "postgres://app:pw@127.0.0.1:5432/postgres?sslmode=disable"
        );
    }

    #[test]
    fn another_address_keeps_the_rest() {
        let url = url("postgres://app:pw@db:5432/orders?sslmode=disable");
        assert_eq!(
            url.with_address("127.0.0.1", 40_000)
                .expect("a valid host")
                .as_str(),
            "postgres://app:pw@127.0.0.1:40000/orders?sslmode=disable"
        );
    }

    #[test]
    fn display_and_debug_hide_the_password() {
        let url = url("postgres://app:s3cret@db/orders");
        assert_eq!(url.to_string(), "postgres://app:***@db/orders");
        assert!(!format!("{url:?}").contains("s3cret"));
        assert_eq!(
            self::url("postgres://postgres@127.0.0.1/x").to_string(),
            "postgres://postgres@127.0.0.1/x"
        );
    }

    #[test]
    fn refuses_what_is_not_a_postgres_url() {
        assert!(matches!(
            DatabaseUrl::parse("mysql://h/db"),
            Err(DatabaseUrlError::Scheme(_))
        ));
        assert!(matches!(
            DatabaseUrl::parse("orchestrator"),
            Err(DatabaseUrlError::Syntax(_))
        ));
        assert!(matches!(
            DatabaseUrl::parse("postgres:///db"),
            Err(DatabaseUrlError::NoHost)
        ));
    }
}
