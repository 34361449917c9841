//! What `/stats/reset` means, one way for every figure `/stats` shows: what
//! is counted only ever grows (Prometheus scrapes the same values as
//! counters, which must never go back), a reset remembers the values of its
//! moment, and "since the reset" is the values now minus those remembered.

use std::sync::Mutex;

use time::OffsetDateTime;

/// Values that only grow, and can be told apart from earlier ones.
pub trait Counted: Clone + Default {
    /// What was counted between `earlier` and `self`.
    fn minus(&self, earlier: &Self) -> Self;
}

impl Counted for u64 {
    fn minus(&self, earlier: &Self) -> Self {
        self.saturating_sub(*earlier)
    }
}

/// The values at the last reset, and when it was.
#[derive(Debug)]
pub struct SinceReset<T> {
    started: OffsetDateTime,
    at_reset: Mutex<(T, Option<OffsetDateTime>)>,
}

impl<T: Counted> Default for SinceReset<T> {
    fn default() -> Self {
        Self {
            started: OffsetDateTime::now_utc(),
            at_reset: Mutex::new((T::default(), None)),
        }
    }
}

impl<T: Counted> SinceReset<T> {
    /// Starts the figures afresh from `now`, the values counted so far.
    pub fn reset(&self, now: T) {
        *self.at_reset.lock().unwrap_or_else(|e| e.into_inner()) =
            (now, Some(OffsetDateTime::now_utc()));
    }

    /// What `now` counts beyond the last reset, and since when (the reset,
    /// or the start without one).
    pub fn since(&self, now: &T) -> (T, OffsetDateTime) {
        let guard = self.at_reset.lock().unwrap_or_else(|e| e.into_inner());
        let (base, at) = &*guard;
        (now.minus(base), at.unwrap_or(self.started))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reset_starts_the_view_afresh_while_the_count_keeps_growing() {
        let view = SinceReset::<u64>::default();
        let (seen, since) = view.since(&4);
        assert_eq!((seen, since), (4, view.started));
        view.reset(4);
        assert_eq!(view.since(&4).0, 0);
        let (seen, since) = view.since(&5);
        assert_eq!(seen, 1);
        assert!(since >= view.started);
    }
}
