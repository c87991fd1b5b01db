//! How hard to try one service, and how to protect it.

use std::path::Path;
use std::time::Duration;

use rand::Rng;

use crate::credential::Credential;

/// The retry policy, time limits and protections of one downstream service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePolicy {
    /// Attempts per service request, the first included.
    pub max_attempts: u32,
    /// Ceiling of the first retry delay; doubles at each retry (full jitter).
    pub initial_backoff: Duration,
    /// Largest ceiling of a retry delay.
    pub max_backoff: Duration,
    /// Time limit of one attempt, from sending to the last byte of the answer.
    pub attempt_timeout: Duration,
    /// Time limit of a whole service request: every attempt, wait and backoff.
    pub deadline: Duration,
    /// Larger answers are refused without being read whole.
    pub max_response_bytes: usize,
    /// Calls to the service in flight from this process, at most.
    pub max_in_flight: usize,
    /// Consecutive failures that open the circuit breaker (0: never).
    pub breaker_threshold: u32,
    /// How long an open breaker stays open before one probe call.
    pub breaker_cooldown: Duration,
    /// A header sent with every call, for a service that is itself protected.
    pub credential: Option<Credential>,
}

impl ServicePolicy {
    /// Exponential backoff with full jitter: a uniform draw from zero up to
    /// `initial * 2^(retry-1)`, capped. The jitter spreads out the retries of many
    /// requests that failed together, so they don't hit a recovering service at once.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exp = self
            .initial_backoff
            .saturating_mul(2u32.saturating_pow(retry.saturating_sub(1)));
        let ceiling = exp.min(self.max_backoff);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::rng().random_range(0..=millis))
    }

    /// Applies one `KEY=VALUE` override (see [`ServicePolicy::KEYS`]).
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{key}: {value:?} is not a whole number"))
        };
        let millis = || number().map(Duration::from_millis);
        match key {
            "max_attempts" => {
                self.max_attempts =
                    u32::try_from(number()?).map_err(|_| format!("{key}: too large"))?;
            }
            "initial_backoff_ms" => self.initial_backoff = millis()?,
            "max_backoff_ms" => self.max_backoff = millis()?,
            "attempt_timeout_ms" => self.attempt_timeout = millis()?,
            "deadline_ms" => self.deadline = millis()?,
            "max_response_bytes" => {
                self.max_response_bytes =
                    usize::try_from(number()?).map_err(|_| format!("{key}: too large"))?;
            }
            "max_in_flight" => {
                self.max_in_flight =
                    usize::try_from(number()?).map_err(|_| format!("{key}: too large"))?;
            }
            "breaker_threshold" => {
                self.breaker_threshold =
                    u32::try_from(number()?).map_err(|_| format!("{key}: too large"))?;
            }
            "breaker_cooldown_ms" => self.breaker_cooldown = millis()?,
            "bearer_token_file" => {
                self.credential = Some(Credential::bearer_from_file(Path::new(value))?);
            }
            "header_file" => {
                self.credential = Some(Credential::header_from_file(Path::new(value))?);
            }
            _ => {
                return Err(format!(
                    "unknown setting {key:?}; expected one of {}",
                    Self::KEYS.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// The settings [`ServicePolicy::set`] knows.
    pub const KEYS: [&'static str; 11] = [
        "max_attempts",
        "initial_backoff_ms",
        "max_backoff_ms",
        "attempt_timeout_ms",
        "deadline_ms",
        "max_response_bytes",
        "max_in_flight",
        "breaker_threshold",
        "breaker_cooldown_ms",
        "bearer_token_file",
        "header_file",
    ];

    /// Checks the values that would make calls impossible.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_attempts == 0 {
            return Err("max_attempts must be at least 1".into());
        }
        if self.max_in_flight == 0 {
            return Err("max_in_flight must be at least 1".into());
        }
        if self.attempt_timeout.is_zero() || self.deadline.is_zero() {
            return Err("attempt_timeout_ms and deadline_ms must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn policy() -> ServicePolicy {
        ServicePolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1_000),
            attempt_timeout: Duration::from_secs(1),
            deadline: Duration::from_secs(10),
            max_response_bytes: 1024,
            max_in_flight: 64,
            breaker_threshold: 10,
            breaker_cooldown: Duration::from_secs(5),
            credential: None,
        }
    }

    #[test]
    fn backoff_stays_under_the_exponential_ceiling_and_the_cap() {
        let policy = policy();
        for _ in 0..200 {
            assert!(policy.backoff(1) <= Duration::from_millis(100));
            assert!(policy.backoff(3) <= Duration::from_millis(400));
            assert!(policy.backoff(30) <= Duration::from_millis(1_000));
        }
    }

    #[test]
    fn overrides_set_known_keys_and_name_bad_ones() {
        let mut policy = policy();
        policy.set("max_attempts", "2").expect("valid");
        policy.set("deadline_ms", "1500").expect("valid");
        policy.set("breaker_threshold", "0").expect("valid");
        assert_eq!(policy.max_attempts, 2);
        assert_eq!(policy.deadline, Duration::from_millis(1500));
        assert_eq!(policy.breaker_threshold, 0);
        assert!(
            policy
                .set("max_attempts", "many")
                .expect_err("must be refused")
                .contains("max_attempts")
        );
        assert!(
            policy
                .set("colour", "1")
                .expect_err("must be refused")
                .contains("unknown setting")
        );
        policy.set("max_attempts", "0").expect("parses");
        assert!(policy.validate().is_err());
    }
}
