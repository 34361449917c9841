//! `Failsafe`: remembers which ids recently failed to load from the source of
//! truth, so that while it is down each id costs at most one attempt per
//! throttle interval (callers serve what the cache holds meanwhile).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::domain::ItemId;

/// Entries kept before expired ones are swept out.
const SWEEP_AT: usize = 100_000;

pub struct Failsafe {
    throttle: Duration,
    /// When each id last failed. Held only for map operations.
    failed: Mutex<HashMap<ItemId, Instant>>,
}

impl Failsafe {
    pub fn new(throttle: Duration) -> Self {
        Self {
            throttle,
            failed: Mutex::default(),
        }
    }

    /// Whether `id` failed less than a throttle interval ago.
    pub fn throttled(&self, id: &ItemId) -> bool {
        let failed = self.lock();
        failed
            .get(id)
            .is_some_and(|at| at.elapsed() < self.throttle)
    }

    pub fn failed(&self, ids: &[ItemId]) {
        let now = Instant::now();
        let mut failed = self.lock();
        if failed.len() >= SWEEP_AT {
            failed.retain(|_, at| at.elapsed() < self.throttle);
        }
        for id in ids {
            failed.insert(id.clone(), now);
        }
    }

    pub fn succeeded(&self, ids: &[ItemId]) {
        let mut failed = self.lock();
        if failed.is_empty() {
            return;
        }
        for id in ids {
            failed.remove(id);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ItemId, Instant>> {
        self.failed.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttles_failed_ids_until_success_or_the_interval_passes() {
        let id = ItemId::parse("1").unwrap();
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
}
