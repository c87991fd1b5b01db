//! Request rate limits, per API replica: each credential gets `RATE_LIMIT_PER_SECOND`
//! requests a second with bursts of `RATE_LIMIT_BURST` (GCRA, `governor`), and a client
//! address that presents invalid credentials more than `AUTH_FAILURES_PER_MINUTE` times
//! is refused for a while before any credential of its is even looked at, so guessing
//! tokens (or filling the database with lookups of made-up ones) goes nowhere.
//!
//! The counts are this replica's: with N replicas behind a load balancer a credential
//! can make up to N times the rate. Both answer 429 with `Retry-After`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use uuid::Uuid;

use crate::error::ApiError;

/// Rate limit settings of `orchestrator-api`.
#[derive(Debug, Clone, clap::Args)]
pub struct LimitsConfig {
    /// Requests a second each credential may make to this replica (0: no limit).
    #[arg(long, env = "RATE_LIMIT_PER_SECOND", default_value_t = 20_000)]
    pub rate_limit_per_second: u32,

    /// Requests a credential may make at once above its rate.
    #[arg(long, env = "RATE_LIMIT_BURST", default_value_t = 40_000)]
    pub rate_limit_burst: u32,

    /// Invalid credentials a client address may present a minute, after a burst of as
    /// many; past it its requests are refused (429) until it slows down.
    #[arg(long, env = "AUTH_FAILURES_PER_MINUTE", default_value_t = 30)]
    pub auth_failures_per_minute: u32,
}

/// Calls between two sweeps of keys idle long enough to be forgotten.
const SWEEP_EVERY: u64 = 10_000;
/// Blocked addresses kept at most; past it the expired ones go, then the rest.
const MAX_BLOCKED: usize = 100_000;

pub struct RateLimits {
    per_credential: Option<DefaultKeyedRateLimiter<Uuid>>,
    failures: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// Addresses over their failure quota, until when.
    blocked: Mutex<HashMap<IpAddr, Instant>>,
    calls: AtomicU64,
}

impl RateLimits {
    pub fn new(config: &LimitsConfig) -> RateLimits {
        let per_credential = NonZeroU32::new(config.rate_limit_per_second).map(|rate| {
            let burst = NonZeroU32::new(config.rate_limit_burst).unwrap_or(rate);
            DefaultKeyedRateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        let failures = NonZeroU32::new(config.auth_failures_per_minute)
            .map(|rate| DefaultKeyedRateLimiter::keyed(Quota::per_minute(rate)));
        RateLimits {
            per_credential,
            failures,
            blocked: Mutex::new(HashMap::new()),
            calls: AtomicU64::new(0),
        }
    }

    /// Refuses a client address that presented too many invalid credentials lately.
    pub fn check_client(&self, client: IpAddr) -> Result<(), ApiError> {
        let key = address_key(client);
        let mut blocked = self.blocked.lock().unwrap_or_else(|e| e.into_inner());
        match blocked.get(&key) {
            Some(until) if *until > Instant::now() => Err(too_many(*until - Instant::now())),
            Some(_) => {
                blocked.remove(&key);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Counts an invalid credential from `client`: the refusal to answer it with. Once
    /// over the quota, the address is refused (429, this request included) until its
    /// quota allows another attempt.
    pub fn failed(&self, client: IpAddr) -> ApiError {
        let Some(failures) = &self.failures else {
            return ApiError::InvalidToken;
        };
        let key = address_key(client);
        self.sweep();
        if let Err(not_until) = failures.check_key(&key) {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            tracing::warn!(client = %client, "Repeated invalid credentials: refusing this client for a while.");
            let mut blocked = self.blocked.lock().unwrap_or_else(|e| e.into_inner());
            if blocked.len() >= MAX_BLOCKED {
                let now = Instant::now();
                blocked.retain(|_, until| *until > now);
                if blocked.len() >= MAX_BLOCKED {
                    blocked.clear();
                }
            }
            blocked.insert(key, Instant::now() + wait);
            return too_many(wait);
        }
        ApiError::InvalidToken
    }

    /// Counts a request of the credential `id` against its rate.
    pub fn admit(&self, id: Uuid) -> Result<(), ApiError> {
        let Some(limiter) = &self.per_credential else {
            return Ok(());
        };
        self.sweep();
        limiter
            .check_key(&id)
            .map_err(|not_until| too_many(not_until.wait_time_from(DefaultClock::default().now())))
    }

    /// Forgets keys whose buckets are full again, now and then, so the maps hold only
    /// the recently active.
    fn sweep(&self) {
        if self.calls.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY != SWEEP_EVERY - 1 {
            return;
        }
        for limiter in [&self.per_credential].into_iter().flatten() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        if let Some(failures) = &self.failures {
            failures.retain_recent();
            failures.shrink_to_fit();
        }
    }
}

/// An IPv6 client is one /64: a host gets a whole one as easily as one address.
fn address_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(
                segments[0],
                segments[1],
                segments[2],
                segments[3],
                0,
                0,
                0,
                0,
            ))
        }
    }
}

fn too_many(wait: Duration) -> ApiError {
    // Whole seconds, rounded up: Retry-After has no fractions.
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    ApiError::TooManyRequests {
        retry_after_secs: seconds.max(1),
    }
}

/// Addresses here are only parsed and classified, never connected to.
#[cfg(test)]
mod tests {
    use super::*;

    fn config(per_second: u32, burst: u32, failures: u32) -> LimitsConfig {
        LimitsConfig {
            rate_limit_per_second: per_second,
            rate_limit_burst: burst,
            auth_failures_per_minute: failures,
        }
    }

    #[test]
    fn a_credential_gets_its_burst_then_a_retry_after() {
        let limits = RateLimits::new(&config(1, 3, 30));
        let (one, other) = (Uuid::new_v4(), Uuid::new_v4());
        for _ in 0..3 {
            assert!(limits.admit(one).is_ok());
        }
        match limits.admit(one) {
            Err(ApiError::TooManyRequests { retry_after_secs }) => assert_eq!(retry_after_secs, 1),
            other => panic!("expected 429, got {other:?}"),
        }
        assert!(
            limits.admit(other).is_ok(),
            "each credential has its own bucket"
        );
        let unlimited = RateLimits::new(&config(0, 0, 30));
        for _ in 0..100 {
            assert!(unlimited.admit(one).is_ok());
        }
    }

    #[test]
    fn an_address_that_keeps_failing_is_refused_and_its_v6_neighbours_with_it() {
        let limits = RateLimits::new(&config(0, 0, 2));
        let guesser: IpAddr = "2001:db8:1:2::17".parse().expect("an address");
        let neighbour: IpAddr = "2001:db8:1:2:ffff::1".parse().expect("an address");
        let elsewhere: IpAddr = "2001:db8:1:3::17".parse().expect("an address");
        for _ in 0..2 {
            assert!(limits.check_client(guesser).is_ok());
            assert!(matches!(limits.failed(guesser), ApiError::InvalidToken));
        }
        assert!(limits.check_client(guesser).is_ok(), "within the burst");
        assert!(matches!(
            limits.failed(guesser),
            ApiError::TooManyRequests { .. }
        ));
        assert!(matches!(
            limits.check_client(guesser),
            Err(ApiError::TooManyRequests { retry_after_secs }) if (1..=30).contains(&retry_after_secs)
        ));
        assert!(limits.check_client(neighbour).is_err(), "the same /64");
        assert!(limits.check_client(elsewhere).is_ok());
    }
}
