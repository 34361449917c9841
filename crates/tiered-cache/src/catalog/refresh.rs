//! Early refresh: a hit on a value close to the end of its freshness reloads
//! it once, in the background, while every reader keeps getting the current
//! value. It is a load like a lookup's ([`super::load`]): the lease makes it
//! once across instances; `refreshing` makes it once within this one. The new
//! value's freshness continues from the old expiry, so a key read without
//! pause costs one source-of-truth read per TTL.

use std::collections::HashSet;
use std::sync::Mutex;

use tracing::Instrument;

use super::load::LoadFor;
use super::{Catalog, Loaded, Source};
use crate::cache::{self, CacheId, Entry, Tier};

/// Ids being refreshed by this instance. Held only to insert or remove.
pub struct Refreshing<I>(Mutex<HashSet<I>>);

impl<I> Default for Refreshing<I> {
    fn default() -> Self {
        Self(Mutex::new(HashSet::new()))
    }
}

impl<I: CacheId> Refreshing<I> {
    fn begin(&self, id: &I) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone())
    }

    fn end(&self, id: &I) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }
}

/// Whether Redis now holds a newer entry than the one that was due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refreshed {
    Newer,
    No,
}

struct RefreshGuard<'a, I: CacheId> {
    refreshing: &'a Refreshing<I>,
    id: &'a I,
}

impl<I: CacheId> Drop for RefreshGuard<'_, I> {
    fn drop(&mut self) {
        self.refreshing.end(self.id);
    }
}

impl<S: Source> Catalog<S> {
    /// Starts a background refresh of `id` if `entry`, just served from
    /// `tier`, is due. A near-cache entry starts at most one: it keeps the old
    /// freshness until it is replaced, and every later hit on it would
    /// otherwise try again.
    pub(super) fn refresh_if_due(&self, id: &S::Id, entry: &Entry<S::Value>, tier: Tier) {
        if !self.policy.refresh_due(entry, cache::now_ms())
            || (tier == Tier::L1 && !self.l1.claim_refresh(id))
            || !self.refreshing.begin(id)
        {
            return;
        }
        let (this, id, fresh_until) = (self.clone(), id.clone(), entry.fresh_until);
        // Its own trace (it outlives the request), linked from the request's.
        let span = tracing::info_span!(parent: None, "cache refresh", otel.name = "cache refresh", cache.id = %id);
        span.follows_from(tracing::Span::current());
        let refresh = async move {
            // Ends the refresh even if it panics, so the id can be refreshed again.
            let _refreshing = RefreshGuard {
                refreshing: &this.refreshing,
                id: &id,
            };
            if this.refresh(&id, fresh_until).await == Refreshed::Newer {
                // The next hit takes the new entry from Redis into L1.
                this.l1.invalidate(&id);
            }
        };
        tokio::spawn(refresh.instrument(span));
    }

    /// Reloads `id` through the load path ([`Catalog::load_alone`]), whose
    /// lease makes it once across instances: `Newer` once Redis holds an
    /// entry fresher than the one that was due (ours, or a peer's that came
    /// first).
    async fn refresh(&self, id: &S::Id, due: i64) -> Refreshed {
        let outcome = self
            .load_alone(std::slice::from_ref(id), LoadFor::Refresh { due })
            .await
            .remove(id);
        match outcome {
            Some(Ok(Loaded {
                stored: Some(stored),
                ..
            })) if stored.entry.fresh_until > due => Refreshed::Newer,
            _ => Refreshed::No,
        }
    }
}
