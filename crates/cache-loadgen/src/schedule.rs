//! When each request is due: rate patterns, and the sequence of send times
//! they produce. Pure functions of time, so the rates can be checked without
//! a clock.

use std::time::Duration;

/// How the target rate moves over the measured part of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pattern {
    /// `--rate` throughout.
    Constant,
    /// `--rate`, then `--max-rate` for the middle fifth of the run, then
    /// `--rate` again.
    Spike,
    /// From `--rate` to `--max-rate`, linearly.
    Ramp,
    /// From `--rate` to `--max-rate` in five equal steps.
    Step,
    /// Between `--rate` and `--max-rate` and back, twice (a cosine wave).
    Wave,
}

/// A rate pattern over a run of `duration`, after `warmup` at the starting
/// rate.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    pub pattern: Pattern,
    /// Requests per second.
    pub rate: f64,
    pub max_rate: f64,
    pub warmup: Duration,
    pub duration: Duration,
}

/// Steps of the `step` pattern.
const STEPS: f64 = 5.0;

impl Profile {
    /// The target rate `at` this time since the start (warm-up included).
    pub fn rate_at(&self, at: Duration) -> f64 {
        let Some(t) = at.checked_sub(self.warmup) else {
            return self.rate;
        };
        let x = (t.as_secs_f64() / self.duration.as_secs_f64().max(1e-9)).min(1.0);
        let span = self.max_rate - self.rate;
        match self.pattern {
            Pattern::Constant => self.rate,
            Pattern::Spike if (0.4..0.6).contains(&x) => self.max_rate,
            Pattern::Spike => self.rate,
            Pattern::Ramp => self.rate + span * x,
            Pattern::Step => {
                self.rate + span * ((x * STEPS).floor().min(STEPS - 1.0) / (STEPS - 1.0))
            }
            Pattern::Wave => {
                self.rate + span * (1.0 - (2.0 * std::f64::consts::TAU * x).cos()) / 2.0
            }
        }
    }

    /// Warm-up and measured time together.
    pub fn total(&self) -> Duration {
        self.warmup + self.duration
    }

    /// Every send time, as an offset from the start, in order.
    pub fn send_times(&self) -> SendTimes {
        SendTimes {
            profile: *self,
            next: 0.0,
        }
    }

    /// Requests the pattern asks for between `from` and `to` (the integral
    /// of the rate), for checking.
    pub fn expected(&self, from: Duration, to: Duration) -> f64 {
        const STEP: f64 = 1e-4;
        let (mut t, end) = (from.as_secs_f64(), to.as_secs_f64());
        let mut total = 0.0;
        while t < end {
            let dt = STEP.min(end - t);
            total += self.rate_at(Duration::from_secs_f64(t + dt / 2.0)) * dt;
            t += dt;
        }
        total
    }
}

/// The send times of a [`Profile`]: each one a request's worth of rate
/// after the last (the gap is taken at its own midpoint, so that ramps and
/// waves are followed closely).
pub struct SendTimes {
    profile: Profile,
    /// Seconds.
    next: f64,
}

impl Iterator for SendTimes {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let end = self.profile.total().as_secs_f64();
        if self.next >= end {
            return None;
        }
        let at = self.next;
        let rate = |t: f64| self.profile.rate_at(Duration::from_secs_f64(t)).max(1e-3);
        let first = 1.0 / rate(at);
        self.next = at + 1.0 / rate(at + first / 2.0);
        Some(Duration::from_secs_f64(at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(pattern: Pattern) -> Profile {
        Profile {
            pattern,
            rate: 200.0,
            max_rate: 1000.0,
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(10),
        }
    }

    /// Within every half second, the send times match the pattern's rate
    /// to 1 % (plus one request, for the window edges).
    #[test]
    fn every_pattern_is_met_window_by_window() {
        for pattern in [
            Pattern::Constant,
            Pattern::Spike,
            Pattern::Ramp,
            Pattern::Step,
            Pattern::Wave,
        ] {
            let profile = profile(pattern);
            let times: Vec<Duration> = profile.send_times().collect();
            let window = Duration::from_millis(500);
            let mut from = Duration::ZERO;
            while from < profile.total() {
                let to = from + window;
                let sent = times.iter().filter(|t| **t >= from && **t < to).count() as f64;
                let expected = profile.expected(from, to);
                assert!(
                    (sent - expected).abs() <= expected * 0.01 + 1.0,
                    "{pattern:?} {from:?}: {sent} sent, {expected:.1} expected"
                );
                from = to;
            }
            let total = profile.expected(Duration::ZERO, profile.total());
            assert!((times.len() as f64 - total).abs() <= total * 0.001 + 1.0);
        }
    }

    #[test]
    fn the_shapes_are_the_documented_ones() {
        let at = |p: Pattern, secs: f64| profile(p).rate_at(Duration::from_secs_f64(secs));
        // Warm-up at the starting rate, whatever the pattern.
        assert_eq!(at(Pattern::Ramp, 0.5), 200.0);
        assert_eq!(at(Pattern::Ramp, 6.0), 600.0);
        assert_eq!(at(Pattern::Spike, 3.0), 200.0);
        assert_eq!(at(Pattern::Spike, 6.0), 1000.0);
        assert_eq!(at(Pattern::Step, 1.5), 200.0);
        assert_eq!(at(Pattern::Step, 3.5), 400.0);
        assert_eq!(at(Pattern::Step, 10.9), 1000.0);
        assert!(
            (at(Pattern::Wave, 3.5) - 1000.0).abs() < 1e-6,
            "a crest at a quarter"
        );
        assert!(
            (at(Pattern::Wave, 6.0) - 200.0).abs() < 1e-6,
            "a trough at half"
        );
    }
}
