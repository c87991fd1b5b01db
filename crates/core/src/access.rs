//! Who may do what: the scopes a credential grants and the tenant it acts for.

use std::fmt;

/// What a credential allows. Each route requires exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Submit tasks (`POST /api/orchestrate`, `/direct`).
    TasksSubmit,
    /// Read tasks: list, get, search, counts, throughput.
    TasksRead,
    /// Act on tasks: re-drive (and cancel, bulk operations).
    TasksOperate,
    /// Manage tokens and read the audit log.
    Admin,
}

/// A scope name that is not one of [`Scope::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope {0:?}; expected tasks:submit, tasks:read, tasks:operate or admin")]
pub struct UnknownScope(pub String);

impl Scope {
    pub const ALL: [Scope; 4] = [
        Scope::TasksSubmit,
        Scope::TasksRead,
        Scope::TasksOperate,
        Scope::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::TasksSubmit => "tasks:submit",
            Scope::TasksRead => "tasks:read",
            Scope::TasksOperate => "tasks:operate",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(name: &str) -> Result<Scope, UnknownScope> {
        Self::ALL
            .into_iter()
            .find(|scope| scope.as_str() == name)
            .ok_or_else(|| UnknownScope(name.to_owned()))
    }

    /// A comma-separated list (`tasks:submit,tasks:read`), each scope once, sorted.
    pub fn parse_list(list: &str) -> Result<Vec<Scope>, UnknownScope> {
        let mut scopes = list
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(Scope::parse)
            .collect::<Result<Vec<_>, _>>()?;
        scopes.sort();
        scopes.dedup();
        Ok(scopes)
    }

    /// Scopes as stored and as OAuth writes them: space-separated.
    pub fn join(scopes: &[Scope]) -> String {
        scopes
            .iter()
            .map(|scope| scope.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The scopes of a space-separated list, sorted, each once. Names that are not
    /// scopes are left out: a credential never gains a scope from a name it does not
    /// understand.
    pub fn parse_known(list: &str) -> Vec<Scope> {
        let mut scopes: Vec<Scope> = list
            .split_ascii_whitespace()
            .filter_map(|name| Scope::parse(name).ok())
            .collect();
        scopes.sort();
        scopes.dedup();
        scopes
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name of a tenant: the unit whose tasks are seen and acted on together.
///
/// It appears in logs, token listings and claims, so it is restricted to lower-case
/// ASCII letters, digits, `_` and `-`, starting with a letter or digit, at most 63
/// characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TenantName(String);

/// Why a string is not a tenant name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid tenant {name:?}: {reason}")]
pub struct InvalidTenant {
    pub name: String,
    pub reason: &'static str,
}

impl TenantName {
    pub const MAX_LEN: usize = 63;
    /// The tenant of everything stored before tenants existed, and of `make run`'s token.
    pub const DEFAULT: &str = "default";

    pub fn parse(name: &str) -> Result<TenantName, InvalidTenant> {
        let invalid = |reason| InvalidTenant {
            name: name.to_owned(),
            reason,
        };
        let first_ok = name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !first_ok {
            return Err(invalid("must start with a lower-case letter or a digit"));
        }
        if name.len() > Self::MAX_LEN {
            return Err(invalid("must be at most 63 characters"));
        }
        if !name.bytes().all(crate::service::is_name_byte) {
            return Err(invalid(
                "may contain only lower-case letters, digits, '_' and '-'",
            ));
        }
        Ok(TenantName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// [`TenantName::DEFAULT`].
impl Default for TenantName {
    fn default() -> Self {
        TenantName(Self::DEFAULT.to_owned())
    }
}

impl fmt::Display for TenantName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_round_trip_and_lists_are_sorted_sets() {
        for scope in Scope::ALL {
            assert_eq!(Scope::parse(scope.as_str()), Ok(scope));
        }
        assert_eq!(
            Scope::parse_list("admin, tasks:read,admin"),
            Ok(vec![Scope::TasksRead, Scope::Admin])
        );
        assert!(Scope::parse_list("tasks:write").is_err());
        assert_eq!(Scope::parse_list(""), Ok(vec![]));
        let all = Scope::join(&Scope::ALL);
        assert_eq!(all, "tasks:submit tasks:read tasks:operate admin");
        assert_eq!(Scope::parse_known(&all), Scope::ALL.to_vec());
        assert_eq!(
            Scope::parse_known(" admin  tasks:write tasks:read admin"),
            vec![Scope::TasksRead, Scope::Admin]
        );
    }

    #[test]
    fn tenant_names() {
        assert_eq!(
            TenantName::parse(TenantName::DEFAULT),
            Ok(TenantName::default())
        );
        assert!(TenantName::parse("acme-eu_2").is_ok());
        for bad in ["", "-a", "Acme", "a b", "a\0", &"a".repeat(64)] {
            assert!(TenantName::parse(bad).is_err(), "{bad:?}");
        }
    }
}
