//! The catalog as the invalidation channel's receiving end acts on it: the
//! narrow [`Caches`] interface that [`crate::invalidation::Receiver`] (what a
//! message means) drives, and the [`Listener`] the subscriber reports to; and
//! the shared Redis connection's state, which the near cache depends on too.

use tracing::Instrument;

use super::{Catalog, Source};
use crate::cache::{CacheKey, CacheStats, KeyPattern};
use crate::invalidation::{Caches, Listener};

/// The catalog is what the invalidation subscriber reports to.
impl<S: Source> Listener for Catalog<S> {
    fn subscribed(&self) {
        self.receiver.subscribed(self);
    }

    fn subscription_lost(&self) {
        if self.l1.is_usable() {
            tracing::warn!(
                "invalidations may be lost; near cache flushed and bypassed until resubscribed"
            );
        }
        self.receiver.subscription_lost(self);
    }

    async fn message(&self, payload: &[u8]) {
        self.receiver.message::<S::Id>(self, payload);
    }

    fn tick(&self) {
        self.receiver.tick(self);
    }
}

/// What receiving invalidations does to the catalog's caches.
impl<S: Source> Caches for Catalog<S> {
    fn evict(&self, key: Option<&CacheKey>, pattern: Option<&KeyPattern>) {
        self.forget_loads(key, pattern);
        self.evict_from_l1(key, pattern);
    }

    fn apply_announced(&self, key: Option<CacheKey>, pattern: Option<KeyPattern>) {
        let this = self.clone();
        let span = crate::telemetry::spans::invalidation_announced();
        let apply = async move {
            this.apply_to_redis(key.as_ref(), pattern.as_ref()).await;
            this.forget_loads(key.as_ref(), pattern.as_ref());
            this.evict_from_l1(key.as_ref(), pattern.as_ref());
        };
        self.writes.spawn(apply.instrument(span));
    }

    fn lost(&self) {
        CacheStats::bump(&self.stats.invalidation_gaps);
        self.forget_all_loads();
        self.l1.flush();
    }

    fn resume(&self) {
        self.forget_all_loads();
        self.l1.resume();
    }

    fn suspend(&self) {
        self.l1.suspend();
        self.forget_all_loads();
    }

    fn received(&self) {
        CacheStats::bump(&self.stats.invalidations_received);
    }
}

impl<S: Source> Catalog<S> {
    /// The shared Redis connection changed state. While it is down the near
    /// cache is bypassed: Redis may be frozen or cut off, and the
    /// subscription may not have noticed yet.
    pub(crate) fn on_link_state(&self, connected: bool) {
        let was_usable = self.l1.is_usable();
        self.l1.set_linked(connected);
        // Loads in flight are left alone: invalidations still arrive on the
        // subscription, and forget them, unless it breaks too.
        if !connected && was_usable {
            tracing::warn!(
                "redis connection lost; near cache flushed and bypassed until it is back"
            );
        }
    }

    /// After invalidations may have been lost, no lookup may join a load that
    /// started before: its answer may be one of them.
    fn forget_all_loads(&self) {
        self.flights.forget_where(|_| true);
    }
}
