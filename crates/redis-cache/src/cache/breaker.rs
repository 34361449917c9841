//! The circuit breaker in front of Redis: after repeated timeouts or
//! connection failures, stop asking Redis for a cool-down, so no request waits
//! on a Redis that is not answering; then let one probe through, and close
//! again when it succeeds.

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

/// Permission to use Redis for one operation; report how it went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    Normal,
    Probe,
}

impl Breaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold,
            cooldown,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    /// `None` while open (or while another probe is in flight).
    pub fn allow(&self) -> Option<Permit> {
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => Some(Permit::Normal),
            State::Open { until } if Instant::now() >= until => {
                *state = State::HalfOpen;
                Some(Permit::Probe)
            }
            State::Open { .. } | State::HalfOpen => None,
        }
    }

    pub fn success(&self) {
        let mut state = self.lock();
        if !matches!(*state, State::Closed { failures: 0 }) {
            if matches!(*state, State::HalfOpen) {
                tracing::info!("redis answers again; circuit breaker closed");
            }
            *state = State::Closed { failures: 0 };
        }
    }

    /// A timeout or a broken connection (not a refused command: those are
    /// fast answers, and waiting is what the breaker saves).
    pub fn failure(&self, permit: Permit) {
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
                    "redis keeps failing; circuit breaker open, bypassing redis"
                );
            }
            *state = State::Open {
                until: Instant::now() + self.cooldown,
            };
        }
    }

    /// A probe that ended without a verdict (e.g. no connection to try on):
    /// let the next request probe instead.
    pub fn release(&self, permit: Permit) {
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

    #[test]
    fn opens_after_the_threshold_and_probes_after_the_cooldown() {
        let breaker = Breaker::new(3, Duration::ZERO);
        for _ in 0..2 {
            breaker.failure(breaker.allow().unwrap());
        }
        assert_eq!(breaker.state(), CircuitState::Closed);
        breaker.failure(breaker.allow().unwrap());
        assert_eq!(breaker.state(), CircuitState::Open);
        // Cool-down of zero: the next caller is the probe, the others wait.
        assert_eq!(breaker.allow(), Some(Permit::Probe));
        assert_eq!(breaker.allow(), None);
        breaker.failure(Permit::Probe);
        assert_eq!(breaker.state(), CircuitState::Open);
        assert_eq!(breaker.allow(), Some(Permit::Probe));
        breaker.success();
        assert_eq!(breaker.state(), CircuitState::Closed);
        assert_eq!(breaker.allow(), Some(Permit::Normal));
    }

    #[test]
    fn a_success_resets_the_count() {
        let breaker = Breaker::new(2, Duration::from_secs(60));
        breaker.failure(Permit::Normal);
        breaker.success();
        breaker.failure(Permit::Normal);
        assert_eq!(breaker.state(), CircuitState::Closed);
        breaker.failure(Permit::Normal);
        assert_eq!(breaker.state(), CircuitState::Open);
        assert_eq!(breaker.allow(), None, "still cooling down");
    }

    #[test]
    fn threshold_zero_never_opens() {
        let breaker = Breaker::new(0, Duration::ZERO);
        for _ in 0..100 {
            breaker.failure(Permit::Normal);
        }
        assert_eq!(breaker.state(), CircuitState::Closed);
    }

    #[test]
    fn an_unfinished_probe_hands_over() {
        let breaker = Breaker::new(1, Duration::ZERO);
        breaker.failure(Permit::Normal);
        assert_eq!(breaker.allow(), Some(Permit::Probe));
        breaker.release(Permit::Probe);
        assert_eq!(breaker.allow(), Some(Permit::Probe));
    }
}
