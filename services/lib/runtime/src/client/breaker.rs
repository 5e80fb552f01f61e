//! The circuit breaker a caller keeps per downstream: after consecutive
//! failures it opens and refuses calls at once, so a slow or dead
//! dependency costs one timeout per cool-down, not one per request; then a
//! single probe decides whether it closes again.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

/// When the circuit breaker opens and for how long.
#[derive(Debug, Clone, Copy)]
pub struct BreakerPolicy {
    /// Consecutive failed calls (timeouts, unreachable, 5xx) that open it.
    pub failure_threshold: u32,
    /// How long it stays open before one probe call may test the water.
    pub open_for: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_for: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe is out; everything else is refused until it answers.
    HalfOpen {
        probe_since: Instant,
    },
}

impl BreakerState {
    pub fn name(self) -> &'static str {
        match self {
            Self::Closed { .. } => "closed",
            Self::Open { .. } => "open",
            Self::HalfOpen { .. } => "half-open",
        }
    }

    /// The value of `valerix_circuit_breaker_state`.
    fn gauge(self) -> f64 {
        match self {
            Self::Closed { .. } => 0.0,
            Self::HalfOpen { .. } => 1.0,
            Self::Open { .. } => 2.0,
        }
    }
}

/// A circuit breaker: a slow or dead dependency costs one timeout per
/// `open_for`, not one per request.
#[derive(Debug)]
pub struct Breaker {
    name: &'static str,
    policy: BreakerPolicy,
    state: Mutex<BreakerState>,
}

impl Breaker {
    pub fn new(name: &'static str, policy: BreakerPolicy) -> Self {
        let state = BreakerState::Closed { failures: 0 };
        metrics::gauge!("valerix_circuit_breaker_state", "downstream" => name).set(state.gauge());
        Self {
            name,
            policy,
            state: Mutex::new(state),
        }
    }

    pub fn state(&self) -> BreakerState {
        self.state
            .lock()
            .map(|s| *s)
            .unwrap_or(BreakerState::Closed { failures: 0 })
    }

    fn transition(&self, s: &mut BreakerState, next: BreakerState) {
        if s.name() != next.name() {
            tracing::warn!(
                downstream = self.name,
                from = s.name(),
                to = next.name(),
                "circuit breaker"
            );
            metrics::gauge!("valerix_circuit_breaker_state", "downstream" => self.name)
                .set(next.gauge());
        }
        *s = next;
    }

    /// Whether a call may go out now.
    pub fn admit(&self) -> bool {
        let Ok(mut s) = self.state.lock() else {
            return true;
        };
        let now = Instant::now();
        match *s {
            BreakerState::Closed { .. } => true,
            BreakerState::Open { until } if now >= until => {
                self.transition(&mut s, BreakerState::HalfOpen { probe_since: now });
                true
            }
            BreakerState::Open { .. } => false,
            // A probe that never reported back (its caller gave up) must not
            // keep the circuit shut forever.
            BreakerState::HalfOpen { probe_since }
                if now.duration_since(probe_since) >= self.policy.open_for =>
            {
                *s = BreakerState::HalfOpen { probe_since: now };
                true
            }
            BreakerState::HalfOpen { .. } => false,
        }
    }

    /// Counts a call's outcome.
    pub fn record(&self, ok: bool) {
        let Ok(mut s) = self.state.lock() else { return };
        let next = match (*s, ok) {
            (_, true) => BreakerState::Closed { failures: 0 },
            (BreakerState::Closed { failures }, false)
                if failures + 1 < self.policy.failure_threshold =>
            {
                BreakerState::Closed {
                    failures: failures + 1,
                }
            }
            (BreakerState::Open { until }, false) => BreakerState::Open { until },
            (_, false) => BreakerState::Open {
                until: Instant::now() + self.policy.open_for,
            },
        };
        self.transition(&mut s, next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(open_ms: u64) -> Breaker {
        Breaker::new(
            "test",
            BreakerPolicy {
                failure_threshold: 3,
                open_for: Duration::from_millis(open_ms),
            },
        )
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let b = breaker(60_000);
        b.record(false);
        b.record(false);
        b.record(true);
        b.record(false);
        b.record(false);
        assert_eq!(b.state().name(), "closed", "a success resets the count");
        b.record(false);
        assert_eq!(b.state().name(), "open");
        assert!(!b.admit());
    }

    #[test]
    fn half_open_lets_one_probe_through_and_closes_on_success() {
        let b = breaker(0);
        for _ in 0..3 {
            b.record(false);
        }
        assert!(b.admit(), "the cool-down has passed: a probe goes out");
        assert_eq!(b.state().name(), "half-open");
        b.record(true);
        assert_eq!(b.state().name(), "closed");
    }

    #[test]
    fn a_failed_probe_opens_it_again() {
        let b = breaker(0);
        for _ in 0..3 {
            b.record(false);
        }
        assert!(b.admit());
        b.record(false);
        assert_eq!(b.state().name(), "open");
    }
}
