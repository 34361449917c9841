//! `Failsafe`: remembers which ids recently failed to load from the source of
//! truth, so that while it is down each id costs at most one attempt per
//! throttle interval (callers serve what the cache holds meanwhile).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::cache::CacheId;

/// Entries kept before expired ones are first swept out.
const SWEEP_AT: usize = 10_000;

pub struct Failsafe<K> {
    throttle: Duration,
    /// Held only for map operations.
    state: Mutex<State<K>>,
}

struct State<K> {
    /// When each id last failed.
    failed: HashMap<K, Instant>,
    /// Size at which to sweep next: twice what a sweep left, so that sweeps
    /// cost O(1) per failure on average however many ids keep failing.
    sweep_at: usize,
}

impl<K: CacheId> Failsafe<K> {
    pub fn new(throttle: Duration) -> Self {
        Self {
            throttle,
            state: Mutex::new(State {
                failed: HashMap::new(),
                sweep_at: SWEEP_AT,
            }),
        }
    }

    /// Whether `id` failed less than a throttle interval ago.
    pub fn throttled(&self, id: &K) -> bool {
        self.lock()
            .failed
            .get(id)
            .is_some_and(|at| at.elapsed() < self.throttle)
    }

    pub fn failed(&self, ids: &[K]) {
        let now = Instant::now();
        let mut state = self.lock();
        if state.failed.len() >= state.sweep_at {
            state.failed.retain(|_, at| at.elapsed() < self.throttle);
            state.sweep_at = (state.failed.len() * 2).max(SWEEP_AT);
        }
        for id in ids {
            state.failed.insert(id.clone(), now);
        }
    }

    pub fn succeeded(&self, ids: &[K]) {
        let mut state = self.lock();
        if state.failed.is_empty() {
            return;
        }
        for id in ids {
            state.failed.remove(id);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<K>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::testing::id;

    #[test]
    fn throttles_failed_ids_until_success_or_the_interval_passes() {
        let id = id("1");
        let failsafe = Failsafe::new(Duration::from_secs(60));
        assert!(!failsafe.throttled(&id));
        failsafe.failed(std::slice::from_ref(&id));
        assert!(failsafe.throttled(&id));
        failsafe.succeeded(std::slice::from_ref(&id));
        assert!(!failsafe.throttled(&id));

        let instant = Failsafe::new(Duration::ZERO);
        instant.failed(std::slice::from_ref(&id));
        assert!(!instant.throttled(&id));
    }

    #[test]
    fn expired_failures_are_swept_out() {
        let failsafe = Failsafe::new(Duration::ZERO);
        for i in 0..=SWEEP_AT {
            failsafe.failed(&[id(&i.to_string())]);
        }
        assert_eq!(
            failsafe.lock().failed.len(),
            1,
            "all but the newest expired"
        );
    }
}
