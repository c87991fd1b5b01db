//! PostgreSQL for the stack: a server that answers is used as it is; the local default
//! one is started (and installed, by `scripts/ensure-postgres.sh`) when it does not; the
//! database of `DATABASE_URL` is created when it is missing (the binaries migrate it,
//! but it must exist).

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use super::StackError;
use crate::database_url::DatabaseUrl;

/// Where Debian keeps its clusters' settings, one folder per major version.
const CLUSTERS: &str = "/etc/postgresql";

/// Creates the database named in `:db` unless it exists, in one round trip.
const CREATE_DATABASE: &str = "SELECT format('CREATE DATABASE %I', :'db') \
     WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \\gexec\n";

const DROP_DATABASE: &str = "DROP DATABASE IF EXISTS :\"db\" WITH (FORCE);\n";

/// A cluster that `run` started, and so `stop` stops: `VERSION CLUSTER`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    pub version: String,
    pub name: String,
}

impl Cluster {
    pub fn parse(text: &str) -> Option<Cluster> {
        let mut words = text.split_whitespace();
        Some(Cluster {
            version: words.next()?.to_owned(),
            name: words.next()?.to_owned(),
        })
    }

    pub fn stop(&self) -> bool {
        Command::new("pg_ctlcluster")
            .args([
                "--skip-systemctl-redirect",
                &self.version,
                &self.name,
                "stop",
            ])
            .status()
            .is_ok_and(|status| status.success())
    }
}

impl std::fmt::Display for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.version, self.name)
    }
}

/// Whether the server of `url` accepts connections (`pg_isready`; a machine without it
/// has no PostgreSQL either).
pub fn answers(url: &DatabaseUrl) -> bool {
    Command::new("pg_isready")
        .args(["-q", "-d", url.as_str()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Starts the local cluster with `scripts/ensure-postgres.sh` (which installs it first
/// if needed) and returns it.
pub fn start_local(repo_root: &Path) -> Result<Cluster, StackError> {
    script(repo_root, &[])?;
    newest_cluster().ok_or_else(|| StackError::Postgres(format!("no cluster in {CLUSTERS}")))
}

/// The cluster of the newest version, which is the one `ensure-postgres.sh` starts.
fn newest_cluster() -> Option<Cluster> {
    let version_key = |version: &str| -> Vec<u32> {
        version
            .split('.')
            .map(|part| part.parse().unwrap_or(0))
            .collect()
    };
    std::fs::read_dir(CLUSTERS)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().into_string().ok())
        .max_by_key(|version| version_key(version))
        .map(|version| Cluster {
            version,
            name: "main".to_owned(),
        })
}

/// Installs psql (Debian's `postgresql-client`) where it is missing.
pub fn ensure_psql(repo_root: &Path) -> Result<(), StackError> {
    let found = Command::new("psql")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if found {
        Ok(())
    } else {
        script(repo_root, &["--client"])
    }
}

fn script(repo_root: &Path, args: &[&str]) -> Result<(), StackError> {
    let path = repo_root.join("scripts/ensure-postgres.sh");
    let status = Command::new("bash")
        .arg(&path)
        .args(args)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| StackError::io(&path, e))?;
    if status.success() {
        Ok(())
    } else {
        Err(StackError::Postgres(format!(
            "{} {}: {status}",
            path.display(),
            args.join(" ")
        )))
    }
}

/// Creates the database of `url` if it is missing, connecting to the server's `postgres`
/// database, or `template1` where that was dropped.
pub fn create_database(url: &DatabaseUrl) -> Result<(), StackError> {
    let Some(name) = url.database() else {
        return Ok(());
    };
    for maintenance in ["postgres", "template1"] {
        if psql_stdin(&url.with_database(maintenance), &name, CREATE_DATABASE) {
            return Ok(());
        }
    }
    Err(StackError::Postgres(format!(
        "could not create database {name} on {}:{}",
        url.host(),
        url.port()
    )))
}

/// Drops URL's database if it exists, closing its connections; whether that worked.
pub fn drop_database(url: &DatabaseUrl) -> bool {
    let Some(name) = url.database() else {
        return false;
    };
    ["postgres", "template1"]
        .into_iter()
        .any(|maintenance| psql_stdin(&url.with_database(maintenance), &name, DROP_DATABASE))
}

/// Runs `sql` through psql with `:db` set to `database`; whether it worked.
fn psql_stdin(url: &DatabaseUrl, database: &str, sql: &str) -> bool {
    let child = Command::new("psql")
        .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-v"])
        .arg(format!("db={database}"))
        .arg(url.as_str())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        return false;
    };
    let written = child
        .stdin
        .take()
        .is_some_and(|mut stdin| stdin.write_all(sql.as_bytes()).is_ok());
    child.wait().is_ok_and(|status| status.success()) && written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_marker_round_trips() {
        let cluster = Cluster {
            version: "17".into(),
            name: "main".into(),
        };
        assert_eq!(Cluster::parse(&cluster.to_string()), Some(cluster));
        assert_eq!(Cluster::parse("17"), None);
    }
}
