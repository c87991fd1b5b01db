//! How a mock service behaves: its latency and the faults it injects.

use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// Status answered on injected failures unless configured otherwise.
pub const DEFAULT_FAILURE_STATUS: u16 = 500;

/// The 99th percentile of the standard normal distribution, used to turn a
/// (median, p99) pair into the parameters of a log-normal distribution.
const Z_99: f64 = 2.326_347_874_040_840_8;

/// A long-tail sample is capped at this multiple of its p99, so that one
/// astronomically unlucky draw cannot stall a benchmark for minutes.
const LONG_TAIL_CAP_FACTOR: f64 = 10.0;

/// How long a mock service waits before answering.
///
/// In JSON the variant is named by `kind`, e.g. `{"kind": "uniform", "min_ms": 5, "max_ms": 20}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Latency {
    /// Always exactly `ms` milliseconds.
    Fixed { ms: u64 },
    /// Uniformly distributed over `min_ms..=max_ms`.
    Uniform { min_ms: u64, max_ms: u64 },
    /// Log-normal with the given median and 99th percentile.
    ///
    /// `ln(latency)` is normal with `mu = ln(median_ms)` and
    /// `sigma = (ln(p99_ms) - ln(median_ms)) / 2.3263` (the p99 of the standard normal),
    /// so a sample is `median_ms * exp(sigma * z)` for a standard normal `z`. Samples are
    /// capped at `10 * p99_ms`.
    LongTail { median_ms: u64, p99_ms: u64 },
}

impl Default for Latency {
    fn default() -> Self {
        Self::Fixed { ms: 0 }
    }
}

impl Latency {
    /// Draws one delay.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> Duration {
        match *self {
            Self::Fixed { ms } => Duration::from_millis(ms),
            Self::Uniform { min_ms, max_ms } => {
                // Validation rejects min > max, but sampling must not panic on it either.
                let (low, high) = (min_ms.min(max_ms), min_ms.max(max_ms));
                Duration::from_millis(rng.random_range(low..=high))
            }
            Self::LongTail { median_ms, p99_ms } => {
                if median_ms == 0 || p99_ms <= median_ms {
                    return Duration::from_millis(median_ms);
                }
                let median = median_ms as f64;
                let sigma = (p99_ms as f64 / median).ln() / Z_99;
                let z = standard_normal(rng);
                let ms = (median * (sigma * z).exp()).min(p99_ms as f64 * LONG_TAIL_CAP_FACTOR);
                Duration::from_secs_f64(ms / 1000.0)
            }
        }
    }

    fn validate(&self) -> Result<(), String> {
        match *self {
            Self::Fixed { .. } => Ok(()),
            Self::Uniform { min_ms, max_ms } if min_ms > max_ms => Err(format!(
                "latency: min_ms ({min_ms}) must not exceed max_ms ({max_ms})"
            )),
            Self::LongTail { median_ms, p99_ms } if median_ms > p99_ms => Err(format!(
                "latency: median_ms ({median_ms}) must not exceed p99_ms ({p99_ms})"
            )),
            Self::Uniform { .. } | Self::LongTail { .. } => Ok(()),
        }
    }
}

/// One standard normal draw (Box-Muller), so no extra distribution crate is needed.
fn standard_normal<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    // `random::<f64>()` is in [0, 1); flipping it gives (0, 1], keeping ln() finite.
    let u1 = 1.0 - rng.random::<f64>();
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Latency and faults of one mock service.
///
/// `Default` is healthy and instant. Missing JSON fields take their default values, so
/// `{"fail_first": 2}` is a complete behaviour; unknown fields are rejected to catch typos.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Behaviour {
    pub latency: Latency,
    /// Probability in `0..=1` that a request fails with `failure_status`.
    /// Ignored when `fail_first` is set, so that retry counts stay exact.
    pub failure_rate: f64,
    /// Status of injected failures (400..=599).
    pub failure_status: u16,
    /// Sent as `Retry-After` on injected failures.
    pub retry_after_secs: Option<u64>,
    /// For each distinct `Idempotency-Key`, the first N requests fail, later ones succeed.
    /// Requests without the header are never failed by this rule.
    pub fail_first: Option<u32>,
    /// Never answer: the request ends when the client gives up (closes the connection)
    /// or the server stops.
    pub hang: bool,
    /// Send the status line and part of the body, then drop the connection.
    pub reset_connection: bool,
    /// Answer 200 with `application/json` content that is not JSON.
    pub malformed_body: bool,
    /// Answer 200 with a streamed JSON body of this many bytes (at least 14).
    pub huge_body_bytes: Option<u64>,
    /// Answer 401 to a request without this header and value, as a service that is
    /// itself protected would.
    pub required_header: Option<RequiredHeader>,
}

/// A header a protected service requires, e.g. `Authorization: Bearer ...`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequiredHeader {
    pub name: String,
    pub value: String,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            latency: Latency::default(),
            failure_rate: 0.0,
            failure_status: DEFAULT_FAILURE_STATUS,
            retry_after_secs: None,
            fail_first: None,
            hang: false,
            reset_connection: false,
            malformed_body: false,
            huge_body_bytes: None,
            required_header: None,
        }
    }
}

impl Behaviour {
    /// Checks the values serde cannot: ranges and orderings.
    pub fn validate(&self) -> Result<(), String> {
        self.latency.validate()?;
        if !(0.0..=1.0).contains(&self.failure_rate) {
            return Err(format!(
                "failure_rate must be within 0..=1, got {}",
                self.failure_rate
            ));
        }
        if !(400..=599).contains(&self.failure_status) {
            return Err(format!(
                "failure_status must be within 400..=599, got {}",
                self.failure_status
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn samples(latency: Latency, n: usize) -> Vec<u128> {
        let mut rng = StdRng::seed_from_u64(7);
        (0..n)
            .map(|_| latency.sample(&mut rng).as_millis())
            .collect()
    }

    #[test]
    fn fixed_latency_is_exact() {
        assert!(
            samples(Latency::Fixed { ms: 42 }, 100)
                .iter()
                .all(|&ms| ms == 42)
        );
    }

    #[test]
    fn uniform_latency_stays_within_bounds_and_reaches_both_ends() {
        let drawn = samples(
            Latency::Uniform {
                min_ms: 10,
                max_ms: 20,
            },
            5_000,
        );
        assert!(drawn.iter().all(|&ms| (10..=20).contains(&ms)));
        assert!(drawn.contains(&10) && drawn.contains(&20));
    }

    #[test]
    fn uniform_latency_tolerates_swapped_bounds() {
        let drawn = samples(
            Latency::Uniform {
                min_ms: 20,
                max_ms: 10,
            },
            1_000,
        );
        assert!(drawn.iter().all(|&ms| (10..=20).contains(&ms)));
    }

    #[test]
    fn long_tail_matches_median_and_p99_and_is_capped() {
        let latency = Latency::LongTail {
            median_ms: 20,
            p99_ms: 200,
        };
        let mut drawn = samples(latency, 20_000);
        drawn.sort_unstable();
        let median = drawn[drawn.len() / 2];
        let p99 = drawn[drawn.len() * 99 / 100];
        assert!((17..=23).contains(&median), "median {median}");
        assert!((150..=260).contains(&p99), "p99 {p99}");
        assert!(drawn.iter().all(|&ms| ms <= 2_000));
    }

    #[test]
    fn degenerate_long_tail_is_fixed_at_the_median() {
        let drawn = samples(
            Latency::LongTail {
                median_ms: 30,
                p99_ms: 30,
            },
            100,
        );
        assert!(drawn.iter().all(|&ms| ms == 30));
    }

    #[test]
    fn partial_json_fills_in_defaults() {
        let parsed: Behaviour = serde_json::from_str(r#"{"fail_first": 2}"#).expect("parses");
        assert_eq!(
            parsed,
            Behaviour {
                fail_first: Some(2),
                ..Behaviour::default()
            }
        );
        let parsed: Behaviour = serde_json::from_str(
            r#"{"latency": {"kind": "long_tail", "median_ms": 5, "p99_ms": 50}}"#,
        )
        .expect("parses");
        assert_eq!(
            parsed.latency,
            Latency::LongTail {
                median_ms: 5,
                p99_ms: 50
            }
        );
    }

    #[test]
    fn unknown_fields_are_rejected() {
        assert!(serde_json::from_str::<Behaviour>(r#"{"failure_rat": 1}"#).is_err());
    }

    #[test]
    fn validation_rejects_out_of_range_values() {
        let bad = [
            Behaviour {
                failure_rate: 1.5,
                ..Behaviour::default()
            },
            Behaviour {
                failure_rate: f64::NAN,
                ..Behaviour::default()
            },
            Behaviour {
                failure_status: 200,
                ..Behaviour::default()
            },
            Behaviour {
                latency: Latency::Uniform {
                    min_ms: 5,
                    max_ms: 1,
                },
                ..Behaviour::default()
            },
        ];
        for behaviour in bad {
            assert!(behaviour.validate().is_err(), "{behaviour:?} was accepted");
        }
        assert_eq!(Behaviour::default().validate(), Ok(()));
    }
}
