//! Names of downstream services.

use std::fmt;

/// The name of a downstream service, e.g. `revenue`.
///
/// It appears in URLs (`POST {base}/{name}`), environment variable names and JSON keys,
/// so it is restricted to lower-case ASCII letters, digits, `_` and `-`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct ServiceName(String);

/// Why a string is not a valid service name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid service name {name:?}: {reason}")]
pub struct InvalidServiceName {
    pub name: String,
    pub reason: &'static str,
}

/// The bytes of a name that appears in URLs, variable names, keys and logs: lower-case
/// ASCII letters, digits, `_` and `-`. Service and tenant names are made of these.
pub(crate) fn is_name_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
}

impl ServiceName {
    pub const MAX_LEN: usize = 64;

    pub fn parse(name: &str) -> Result<Self, InvalidServiceName> {
        let invalid = |reason| InvalidServiceName {
            name: name.to_owned(),
            reason,
        };
        if name.is_empty() {
            return Err(invalid("must not be empty"));
        }
        if name.len() > Self::MAX_LEN {
            return Err(invalid("must be at most 64 characters"));
        }
        if !name.bytes().all(is_name_byte) {
            return Err(invalid(
                "may contain only lower-case letters, digits, '_' and '-'",
            ));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Sets of names are looked up by the text of a name, without making one: a name
/// orders and compares as its text does.
impl std::borrow::Borrow<str> for ServiceName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for ServiceName {
    type Err = InvalidServiceName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_simple_names() {
        for name in ["revenue", "rebates", "specialty", "tax-v2", "a_b"] {
            assert_eq!(
                ServiceName::parse(name).map(|n| n.to_string()),
                Ok(name.to_owned())
            );
        }
    }

    #[test]
    fn rejects_names_unfit_for_urls() {
        for name in ["", "Revenue", "a/b", "a b", "é", &"x".repeat(65)] {
            assert!(ServiceName::parse(name).is_err(), "{name:?} was accepted");
        }
    }
}
