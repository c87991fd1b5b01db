//! How long finished tasks are kept: one period for every tenant (`RETENTION`), and
//! periods of their own for some (`RETENTION_BY_TENANT`). A period is a duration as
//! people write them (`30d`, `12h`, `10m`) or `off` (kept for ever).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::TenantName;

/// How long a finished task is kept; `None`: for ever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPeriod(Option<Duration>);

/// Why a retention setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRetention {
    #[error("invalid retention period {text:?}: {reason} (write e.g. 30d, 12h, 10m, or off)")]
    Period { text: String, reason: String },
    #[error("invalid retention entry {entry:?}: expected TENANT=PERIOD, e.g. acme=7d")]
    Entry { entry: String },
    #[error(transparent)]
    Tenant(#[from] crate::InvalidTenant),
    #[error("tenant {tenant} is given two retention periods")]
    Repeated { tenant: TenantName },
}

impl RetentionPeriod {
    /// Kept for ever.
    pub const FOREVER: RetentionPeriod = RetentionPeriod(None);

    pub fn parse(text: &str) -> Result<Self, InvalidRetention> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("off") {
            return Ok(Self::FOREVER);
        }
        let period = humantime::parse_duration(text).map_err(|error| InvalidRetention::Period {
            text: text.to_owned(),
            reason: error.to_string(),
        })?;
        if period.is_zero() {
            return Err(InvalidRetention::Period {
                text: text.to_owned(),
                reason: "a period of zero would remove every task as it finishes".to_owned(),
            });
        }
        Ok(Self(Some(period)))
    }

    /// The period, unless tasks are kept for ever.
    pub fn duration(self) -> Option<Duration> {
        self.0
    }
}

impl fmt::Display for RetentionPeriod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("off"),
            Some(period) => write!(f, "{}", humantime::format_duration(period)),
        }
    }
}

/// The periods of the tenants that have their own, parsed from `acme=7d,beta=off`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantRetention(BTreeMap<TenantName, RetentionPeriod>);

impl TenantRetention {
    pub fn parse(list: &str) -> Result<Self, InvalidRetention> {
        let mut periods = BTreeMap::new();
        for entry in list
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
        {
            let (tenant, period) =
                entry
                    .split_once('=')
                    .ok_or_else(|| InvalidRetention::Entry {
                        entry: entry.to_owned(),
                    })?;
            let tenant = TenantName::parse(tenant.trim())?;
            let period = RetentionPeriod::parse(period)?;
            if periods.insert(tenant.clone(), period).is_some() {
                return Err(InvalidRetention::Repeated { tenant });
            }
        }
        Ok(Self(periods))
    }

    /// The period of `tenant`: its own, else `default`.
    pub fn period_of(&self, tenant: &str, default: RetentionPeriod) -> RetentionPeriod {
        self.0
            .iter()
            .find(|(name, _)| name.as_str() == tenant)
            .map_or(default, |(_, period)| *period)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&TenantName, &RetentionPeriod)> {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_read_as_people_write_them() {
        let day = Duration::from_secs(86_400);
        assert_eq!(
            RetentionPeriod::parse("30d").expect("parses").duration(),
            Some(day * 30)
        );
        assert_eq!(
            RetentionPeriod::parse(" 10m ").expect("parses").duration(),
            Some(Duration::from_secs(600))
        );
        assert_eq!(
            RetentionPeriod::parse("OFF").expect("parses"),
            RetentionPeriod::FOREVER
        );
        assert_eq!(
            RetentionPeriod::parse("30d").expect("parses").to_string(),
            "30days"
        );
        for bad in ["", "0s", "thirty days", "-5d"] {
            assert!(RetentionPeriod::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn tenants_get_their_own_period_and_the_rest_the_default() {
        let default = RetentionPeriod::parse("30d").expect("parses");
        let periods = TenantRetention::parse("acme=7d, audit-kept=off").expect("parses");
        assert_eq!(
            periods.period_of("acme", default).duration(),
            Some(Duration::from_secs(7 * 86_400))
        );
        assert_eq!(
            periods.period_of("audit-kept", default),
            RetentionPeriod::FOREVER
        );
        assert_eq!(periods.period_of("other", default), default);
        assert!(TenantRetention::parse("").expect("parses").is_empty());
    }

    #[test]
    fn bad_lists_are_refused_naming_the_entry() {
        let error = TenantRetention::parse("acme")
            .expect_err("refused")
            .to_string();
        assert!(error.contains("\"acme\""), "{error}");
        assert!(TenantRetention::parse("Acme=7d").is_err());
        assert!(TenantRetention::parse("acme=7d,acme=8d").is_err());
        assert!(TenantRetention::parse("acme=soon").is_err());
    }
}
