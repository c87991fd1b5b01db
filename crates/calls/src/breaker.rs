//! A circuit breaker per downstream service.
//!
//! Closed: calls go through; `threshold` consecutive failures open it. Open: calls are
//! not made until the cool-down has passed. Then it is half-open: exactly one call (the
//! probe) goes through, and its outcome closes the breaker or opens it for another
//! cool-down. Callers that find it open or probing are told when to look again; they
//! keep their attempts (a call that was never made is not an attempt).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// The breaker's state, as reported to metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug)]
enum State {
    Closed { consecutive_failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

#[derive(Debug)]
struct Inner {
    /// The service it guards, for its log lines.
    service: String,
    state: Mutex<State>,
    /// Woken whenever the state changes, so waiting callers look again at once.
    changed: Notify,
    threshold: u32,
    cooldown: Duration,
}

/// Cheap to clone; clones share the state.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    inner: Arc<Inner>,
}

/// Leave to make one call. Report its outcome with [`CallPermit::record`]; a permit
/// dropped without a report (the call was cancelled) counts as neither.
#[derive(Debug)]
pub struct CallPermit {
    breaker: CircuitBreaker,
    probe: bool,
    reported: bool,
}

/// No call now: look again at `retry_at` (or when the breaker changes state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotNow {
    pub retry_at: Instant,
}

/// How long a caller that finds a probe under way waits before looking again, unless
/// the probe's outcome wakes it first.
const PROBE_WAIT: Duration = Duration::from_millis(100);

impl CircuitBreaker {
    /// `threshold` consecutive failures of calls to `service` open the breaker for
    /// `cooldown`; a threshold of 0 disables it.
    pub fn new(service: &str, threshold: u32, cooldown: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                service: service.to_owned(),
                state: Mutex::new(State::Closed {
                    consecutive_failures: 0,
                }),
                changed: Notify::new(),
                threshold,
                cooldown,
            }),
        }
    }

    pub fn state(&self) -> BreakerState {
        match *self.lock() {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { until } if Instant::now() < until => BreakerState::Open,
            State::Open { .. } | State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Asks to make a call now.
    pub fn try_acquire(&self) -> Result<CallPermit, NotNow> {
        let now = Instant::now();
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => Ok(self.permit(false)),
            State::Open { until } if now < until => Err(NotNow { retry_at: until }),
            State::Open { .. } | State::HalfOpen { probing: false } => {
                *state = State::HalfOpen { probing: true };
                Ok(self.permit(true))
            }
            State::HalfOpen { probing: true } => Err(NotNow {
                retry_at: now + PROBE_WAIT,
            }),
        }
    }

    /// Waits until the breaker lets a call through or `deadline` passes (then `None`).
    pub async fn acquire_before(&self, deadline: Instant) -> Option<CallPermit> {
        loop {
            let changed = self.inner.changed.notified();
            tokio::pin!(changed);
            // Registered before looking, so a change right after the look still wakes us.
            changed.as_mut().enable();
            match self.try_acquire() {
                Ok(permit) => return Some(permit),
                Err(NotNow { retry_at }) => {
                    if retry_at >= deadline {
                        // Waiting would outlast the caller's deadline.
                        tokio::select! {
                            () = tokio::time::sleep_until(deadline) => return None,
                            () = &mut changed => {}
                        }
                    } else {
                        tokio::select! {
                            () = tokio::time::sleep_until(retry_at) => {}
                            () = &mut changed => {}
                        }
                    }
                }
            }
        }
    }

    fn permit(&self, probe: bool) -> CallPermit {
        CallPermit {
            breaker: self.clone(),
            probe,
            reported: false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a plain value, valid whatever a panicking holder was doing.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn report(&self, probe: bool, success: bool) {
        let mut state = self.lock();
        let reopen = || State::Open {
            until: Instant::now() + self.inner.cooldown,
        };
        let next = match *state {
            _ if success => State::Closed {
                consecutive_failures: 0,
            },
            _ if probe => reopen(),
            State::Closed {
                consecutive_failures,
            } => {
                let failures = consecutive_failures.saturating_add(1);
                if self.inner.threshold > 0 && failures >= self.inner.threshold {
                    reopen()
                } else {
                    State::Closed {
                        consecutive_failures: failures,
                    }
                }
            }
            // A call that started before the breaker opened and failed after: the
            // breaker already knows.
            State::Open { until } => State::Open { until },
            State::HalfOpen { probing } => State::HalfOpen { probing },
        };
        let opened = matches!(next, State::Open { .. }) && !matches!(*state, State::Open { .. });
        *state = next;
        drop(state);
        if opened {
            tracing::warn!(
                service = self.inner.service,
                cooldown_ms = self.inner.cooldown.as_millis(),
                "Circuit breaker opened."
            );
        }
        self.inner.changed.notify_waiters();
    }

    fn abandon_probe(&self) {
        let mut state = self.lock();
        if let State::HalfOpen { probing: true } = *state {
            *state = State::HalfOpen { probing: false };
        }
        drop(state);
        self.inner.changed.notify_waiters();
    }
}

impl CallPermit {
    /// Reports the call's outcome: `healthy` is false for the failures that say the
    /// service is in trouble (transport errors, timeouts, 429, 5xx).
    pub fn record(mut self, healthy: bool) {
        self.reported = true;
        self.breaker.report(self.probe, healthy);
    }
}

impl Drop for CallPermit {
    fn drop(&mut self) {
        if !self.reported && self.probe {
            self.breaker.abandon_probe();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_after_the_threshold_then_one_probe_decides() {
        let breaker = CircuitBreaker::new("revenue", 3, Duration::from_secs(5));
        for _ in 0..2 {
            breaker.try_acquire().expect("closed").record(false);
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
        breaker.try_acquire().expect("closed").record(false);
        assert_eq!(breaker.state(), BreakerState::Open);
        let not_now = breaker.try_acquire().expect_err("open");
        assert!(not_now.retry_at > Instant::now());

        tokio::time::advance(Duration::from_secs(5)).await;
        let probe = breaker.try_acquire().expect("cool-down over: a probe");
        assert!(breaker.try_acquire().is_err(), "only one probe at a time");
        probe.record(false);
        assert_eq!(
            breaker.state(),
            BreakerState::Open,
            "a failed probe reopens"
        );

        tokio::time::advance(Duration::from_secs(5)).await;
        breaker.try_acquire().expect("probe").record(true);
        assert_eq!(breaker.state(), BreakerState::Closed);
        breaker.try_acquire().expect("closed again");
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_resets_the_count_and_an_abandoned_probe_frees_the_slot() {
        let breaker = CircuitBreaker::new("revenue", 2, Duration::from_secs(1));
        breaker.try_acquire().expect("closed").record(false);
        breaker.try_acquire().expect("closed").record(true);
        breaker.try_acquire().expect("closed").record(false);
        assert_eq!(breaker.state(), BreakerState::Closed, "count restarted");
        breaker.try_acquire().expect("closed").record(false);
        assert_eq!(breaker.state(), BreakerState::Open);

        tokio::time::advance(Duration::from_secs(1)).await;
        drop(breaker.try_acquire().expect("probe"));
        breaker
            .try_acquire()
            .expect("the abandoned probe's slot is free")
            .record(true);
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn waiters_wake_when_the_cool_down_ends_or_give_up_at_their_deadline() {
        let breaker = CircuitBreaker::new("revenue", 1, Duration::from_secs(2));
        breaker.try_acquire().expect("closed").record(false);
        let start = Instant::now();
        assert!(
            breaker
                .acquire_before(start + Duration::from_secs(1))
                .await
                .is_none()
        );
        assert_eq!(Instant::now() - start, Duration::from_secs(1));
        let permit = breaker
            .acquire_before(start + Duration::from_secs(10))
            .await
            .expect("after the cool-down");
        assert_eq!(Instant::now() - start, Duration::from_secs(2));
        permit.record(true);
    }

    #[test]
    fn threshold_zero_never_opens() {
        let breaker = CircuitBreaker::new("revenue", 0, Duration::from_secs(1));
        for _ in 0..100 {
            breaker.try_acquire().expect("closed").record(false);
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
    }
}
