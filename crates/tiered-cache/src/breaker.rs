//! A circuit breaker, in front of Redis and of the source of truth: after
//! repeated timeouts or connection failures, stop asking for a cool-down, so
//! no request waits on a dependency that is not answering; then let one
//! probe through, and close again when it succeeds.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    Closed,
    Open,
    HalfOpen,
}

impl CircuitState {
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
        }
    }
}

pub struct Breaker {
    /// What it guards, for the log (`redis`, `source of truth`).
    guards: &'static str,
    /// Consecutive failures that open the circuit; 0 keeps it always closed.
    threshold: u32,
    cooldown: Duration,
    /// Held only for a few field updates, never across an `.await`.
    state: Mutex<State>,
}

#[derive(Debug)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe is in flight; everyone else keeps bypassing until it reports.
    HalfOpen,
}

/// Permission to use Redis for one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    Normal,
    /// The one operation let through after a cool-down: its outcome decides.
    Probe,
}

/// One operation under way. Report its outcome with [`Attempt::succeeded`] or
/// [`Attempt::failed`]; dropped without a verdict (its future was cancelled,
/// e.g. the client hung up), it hands a probe over to the next caller, so a
/// lost probe can never leave the breaker half-open for ever.
pub struct Attempt<'a> {
    breaker: &'a Breaker,
    permit: Permit,
    reported: bool,
}

impl Attempt<'_> {
    pub fn permit(&self) -> Permit {
        self.permit
    }

    pub fn succeeded(mut self) {
        self.reported = true;
        self.breaker.success(self.permit);
    }

    /// A timeout or a broken connection (not a refused command: those are
    /// fast answers, and waiting is what the breaker saves).
    pub fn failed(mut self) {
        self.reported = true;
        self.breaker.failure(self.permit);
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.reported {
            self.breaker.release(self.permit);
        }
    }
}

impl Breaker {
    pub fn new(guards: &'static str, threshold: u32, cooldown: Duration) -> Self {
        Self {
            guards,
            threshold,
            cooldown,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    /// `None` while open (or while another probe is in flight).
    pub fn allow(&self) -> Option<Attempt<'_>> {
        let mut state = self.lock();
        let permit = match *state {
            State::Closed { .. } => Permit::Normal,
            State::Open { until } if Instant::now() >= until => {
                *state = State::HalfOpen;
                Permit::Probe
            }
            State::Open { .. } | State::HalfOpen => return None,
        };
        Some(Attempt {
            breaker: self,
            permit,
            reported: false,
        })
    }

    /// Only the probe closes an open circuit: a late success of an operation
    /// allowed before the circuit opened says nothing about Redis now.
    fn success(&self, permit: Permit) {
        let mut state = self.lock();
        match (&*state, permit) {
            (State::Closed { failures: 0 }, _) => {}
            (State::Closed { .. }, _) => *state = State::Closed { failures: 0 },
            (State::HalfOpen, Permit::Probe) => {
                tracing::info!("{} answers again; circuit breaker closed", self.guards);
                *state = State::Closed { failures: 0 };
            }
            _ => {}
        }
    }

    fn failure(&self, permit: Permit) {
        if self.threshold == 0 {
            return;
        }
        let mut state = self.lock();
        let open = match (&mut *state, permit) {
            (State::Closed { failures }, Permit::Normal) => {
                *failures += 1;
                *failures >= self.threshold
            }
            (State::HalfOpen, Permit::Probe) => true,
            _ => false,
        };
        if open {
            if !matches!(*state, State::HalfOpen) {
                tracing::warn!(
                    cooldown = %humantime::format_duration(self.cooldown),
                    "{} keeps failing; circuit breaker open, not trying it during the cooldown",
                    self.guards
                );
            }
            *state = State::Open {
                until: Instant::now() + self.cooldown,
            };
        }
    }

    /// A probe that ended without a verdict: let the next request probe.
    fn release(&self, permit: Permit) {
        if permit == Permit::Probe {
            let mut state = self.lock();
            if matches!(*state, State::HalfOpen) {
                *state = State::Open {
                    until: Instant::now(),
                };
            }
        }
    }

    pub fn state(&self) -> CircuitState {
        match *self.lock() {
            State::Closed { .. } => CircuitState::Closed,
            State::Open { .. } => CircuitState::Open,
            State::HalfOpen => CircuitState::HalfOpen,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail_once(breaker: &Breaker) {
        breaker.allow().expect("allowed").failed();
    }

    #[test]
    fn opens_after_the_threshold_and_probes_after_the_cooldown() {
        let breaker = Breaker::new("test", 3, Duration::ZERO);
        for _ in 0..2 {
            fail_once(&breaker);
        }
        assert_eq!(breaker.state(), CircuitState::Closed);
        fail_once(&breaker);
        assert_eq!(breaker.state(), CircuitState::Open);
        // Cool-down of zero: the next caller is the probe, the others wait.
        let probe = breaker.allow().unwrap();
        assert_eq!(probe.permit(), Permit::Probe);
        assert!(breaker.allow().is_none());
        probe.failed();
        assert_eq!(breaker.state(), CircuitState::Open);
        let probe = breaker.allow().unwrap();
        assert_eq!(probe.permit(), Permit::Probe);
        probe.succeeded();
        assert_eq!(breaker.state(), CircuitState::Closed);
        assert_eq!(breaker.allow().unwrap().permit(), Permit::Normal);
    }

    #[test]
    fn a_success_resets_the_count() {
        let breaker = Breaker::new("test", 2, Duration::from_secs(60));
        fail_once(&breaker);
        breaker.allow().unwrap().succeeded();
        fail_once(&breaker);
        assert_eq!(breaker.state(), CircuitState::Closed);
        fail_once(&breaker);
        assert_eq!(breaker.state(), CircuitState::Open);
        assert!(breaker.allow().is_none(), "still cooling down");
    }

    #[test]
    fn threshold_zero_never_opens() {
        let breaker = Breaker::new("test", 0, Duration::ZERO);
        for _ in 0..100 {
            fail_once(&breaker);
        }
        assert_eq!(breaker.state(), CircuitState::Closed);
    }

    #[test]
    fn a_probe_dropped_without_a_verdict_hands_over() {
        let breaker = Breaker::new("test", 1, Duration::ZERO);
        fail_once(&breaker);
        let probe = breaker.allow().unwrap();
        assert_eq!(probe.permit(), Permit::Probe);
        drop(probe); // e.g. the request was cancelled
        assert_eq!(breaker.allow().unwrap().permit(), Permit::Probe);
    }

    #[test]
    fn a_late_success_from_before_the_opening_does_not_close_it() {
        let breaker = Breaker::new("test", 1, Duration::from_secs(60));
        let slow = breaker.allow().unwrap();
        fail_once(&breaker);
        assert_eq!(breaker.state(), CircuitState::Open);
        slow.succeeded();
        assert_eq!(
            breaker.state(),
            CircuitState::Open,
            "only a probe closes it"
        );
    }
}
