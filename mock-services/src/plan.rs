//! Deciding how to answer one request from the service's behaviour and the request's
//! overrides.
//!
//! Precedence, most specific first: `X-Mock-*` headers, then the service's behaviour
//! (which starts as the process default). Among the outcomes: hang, then connection reset,
//! then failure status, then the success body (malformed before huge before normal).

use std::time::Duration;

use actix_web::http::StatusCode;
use rand::Rng;

use crate::behaviour::{Behaviour, Latency};
use crate::overrides::Overrides;

/// How to answer one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Wait this long before answering (whatever the outcome).
    pub delay: Duration,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Hang,
    Reset,
    Fail {
        status: StatusCode,
        retry_after_secs: Option<u64>,
        reason: &'static str,
    },
    Succeed {
        status: StatusCode,
        body: SuccessBody,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SuccessBody {
    Normal,
    Malformed,
    Huge(u64),
}

impl Plan {
    /// `attempt` is the request's number among those with its `Idempotency-Key` at this
    /// service (`None` without the header).
    pub(crate) fn decide<R: Rng + ?Sized>(
        behaviour: &Behaviour,
        overrides: &Overrides,
        attempt: Option<u64>,
        rng: &mut R,
    ) -> Self {
        let latency = overrides
            .delay_ms
            .map_or(behaviour.latency, |ms| Latency::Fixed { ms });
        let delay = latency.sample(rng);
        let outcome = if overrides.hang || behaviour.hang {
            Outcome::Hang
        } else if overrides.reset || behaviour.reset_connection {
            Outcome::Reset
        } else {
            Self::status_outcome(behaviour, overrides, attempt, rng)
        };
        Self { delay, outcome }
    }

    fn status_outcome<R: Rng + ?Sized>(
        behaviour: &Behaviour,
        overrides: &Overrides,
        attempt: Option<u64>,
        rng: &mut R,
    ) -> Outcome {
        // Statuses were range-checked when parsed/validated; the fallbacks only keep this
        // total.
        let forced = overrides
            .status
            .map(|code| StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
        let forced_success = forced.filter(StatusCode::is_success);
        let forced_failure = forced.filter(|status| !status.is_success());
        let failure_status = forced_failure.unwrap_or_else(|| {
            StatusCode::from_u16(behaviour.failure_status)
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        });
        let within_first = |n: u32| attempt.is_some_and(|attempt| attempt <= u64::from(n));

        // A header-level fail-first combines with a header status (fail the first N with
        // that status); otherwise a header status decides alone.
        let failure = if let Some(n) = overrides.fail_first {
            within_first(n).then_some("injected failure (fail_first)")
        } else if forced_failure.is_some() {
            Some("injected failure (X-Mock-Status)")
        } else if forced_success.is_some() {
            None
        } else if let Some(n) = behaviour.fail_first {
            within_first(n).then_some("injected failure (fail_first)")
        } else if behaviour.failure_rate > 0.0 && rng.random::<f64>() < behaviour.failure_rate {
            Some("injected failure (failure_rate)")
        } else {
            None
        };

        if let Some(reason) = failure {
            return Outcome::Fail {
                status: failure_status,
                retry_after_secs: overrides.retry_after_secs.or(behaviour.retry_after_secs),
                reason,
            };
        }
        let body = if overrides.malformed || behaviour.malformed_body {
            SuccessBody::Malformed
        } else if let Some(bytes) = overrides.huge_bytes.or(behaviour.huge_body_bytes) {
            SuccessBody::Huge(bytes)
        } else {
            SuccessBody::Normal
        };
        Outcome::Succeed {
            status: forced_success.unwrap_or(StatusCode::OK),
            body,
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn decide(behaviour: &Behaviour, overrides: &Overrides, attempt: Option<u64>) -> Outcome {
        Plan::decide(behaviour, overrides, attempt, &mut StdRng::seed_from_u64(1)).outcome
    }

    fn is_failure(outcome: Outcome) -> bool {
        matches!(outcome, Outcome::Fail { .. })
    }

    const OK: Outcome = Outcome::Succeed {
        status: StatusCode::OK,
        body: SuccessBody::Normal,
    };

    #[test]
    fn healthy_by_default() {
        let plan = Plan::decide(
            &Behaviour::default(),
            &Overrides::default(),
            None,
            &mut StdRng::seed_from_u64(1),
        );
        assert_eq!(plan.delay, Duration::ZERO);
        assert_eq!(plan.outcome, OK);
    }

    #[test]
    fn fail_first_fails_exactly_the_first_attempts() {
        let behaviour = Behaviour {
            fail_first: Some(2),
            failure_status: 503,
            retry_after_secs: Some(4),
            // Ignored while fail_first is set.
            failure_rate: 1.0,
            ..Behaviour::default()
        };
        let outcomes: Vec<_> = (1..=4)
            .map(|n| decide(&behaviour, &Overrides::default(), Some(n)))
            .collect();
        assert_eq!(
            outcomes[0],
            Outcome::Fail {
                status: StatusCode::SERVICE_UNAVAILABLE,
                retry_after_secs: Some(4),
                reason: "injected failure (fail_first)"
            }
        );
        assert!(is_failure(outcomes[1]));
        assert_eq!(&outcomes[2..], &[OK, OK]);
        // Without a key there is nothing to count.
        assert_eq!(decide(&behaviour, &Overrides::default(), None), OK);
    }

    #[test]
    fn header_status_overrides_behaviour() {
        let failing = Behaviour {
            failure_rate: 1.0,
            ..Behaviour::default()
        };
        let created = Overrides {
            status: Some(201),
            ..Overrides::default()
        };
        assert_eq!(
            decide(&failing, &created, Some(1)),
            Outcome::Succeed {
                status: StatusCode::CREATED,
                body: SuccessBody::Normal
            }
        );

        let too_many = Overrides {
            status: Some(429),
            retry_after_secs: Some(9),
            ..Overrides::default()
        };
        assert_eq!(
            decide(&Behaviour::default(), &too_many, None),
            Outcome::Fail {
                status: StatusCode::TOO_MANY_REQUESTS,
                retry_after_secs: Some(9),
                reason: "injected failure (X-Mock-Status)"
            }
        );
    }

    #[test]
    fn header_fail_first_uses_header_status() {
        let overrides = Overrides {
            status: Some(502),
            fail_first: Some(1),
            ..Overrides::default()
        };
        assert!(matches!(
            decide(&Behaviour::default(), &overrides, Some(1)),
            Outcome::Fail { status, .. } if status == StatusCode::BAD_GATEWAY
        ));
        assert_eq!(decide(&Behaviour::default(), &overrides, Some(2)), OK);
    }

    #[test]
    fn failure_rate_is_honoured_roughly() {
        let behaviour = Behaviour {
            failure_rate: 0.25,
            ..Behaviour::default()
        };
        let mut rng = StdRng::seed_from_u64(3);
        let failures = (0..4_000)
            .filter(|_| {
                is_failure(Plan::decide(&behaviour, &Overrides::default(), None, &mut rng).outcome)
            })
            .count();
        assert!((800..1_200).contains(&failures), "{failures} failures");
    }

    #[test]
    fn transport_faults_take_precedence() {
        let overrides = Overrides {
            hang: true,
            reset: true,
            status: Some(500),
            ..Overrides::default()
        };
        assert_eq!(
            decide(&Behaviour::default(), &overrides, None),
            Outcome::Hang
        );
        let behaviour = Behaviour {
            reset_connection: true,
            ..Behaviour::default()
        };
        assert_eq!(
            decide(&behaviour, &Overrides::default(), None),
            Outcome::Reset
        );
    }

    #[test]
    fn body_faults_and_delay_override() {
        let behaviour = Behaviour {
            huge_body_bytes: Some(10),
            latency: Latency::Fixed { ms: 500 },
            ..Behaviour::default()
        };
        let plan = Plan::decide(
            &behaviour,
            &Overrides {
                delay_ms: Some(3),
                ..Overrides::default()
            },
            None,
            &mut StdRng::seed_from_u64(1),
        );
        assert_eq!(plan.delay, Duration::from_millis(3));
        assert_eq!(
            plan.outcome,
            Outcome::Succeed {
                status: StatusCode::OK,
                body: SuccessBody::Huge(10)
            }
        );
        let malformed = Overrides {
            malformed: true,
            ..Overrides::default()
        };
        assert!(matches!(
            decide(&behaviour, &malformed, None),
            Outcome::Succeed {
                body: SuccessBody::Malformed,
                ..
            }
        ));
    }
}
