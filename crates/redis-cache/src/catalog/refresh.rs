//! Early refresh: a hit on a value close to the end of its freshness reloads
//! it once, in the background, while every reader keeps getting the current
//! value. The lease makes it once across instances; `refreshing` makes it once
//! within this one. The new value's freshness continues from the old expiry,
//! so a key read without pause costs one source-of-truth read per TTL.

use std::collections::HashSet;
use std::sync::Mutex;

use tracing::Instrument;

use super::Catalog;
use crate::cache::{self, CacheStats, Entry, Fill, LeaseTry, Overwrite, Tier};
use crate::domain::ItemId;

/// Ids being refreshed by this instance. Held only to insert or remove.
#[derive(Default)]
pub struct Refreshing(Mutex<HashSet<ItemId>>);

impl Refreshing {
    fn begin(&self, id: &ItemId) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone())
    }

    fn end(&self, id: &ItemId) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }
}

/// Whether Redis now holds a newer entry than the one that was due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refreshed {
    Newer,
    No,
}

struct RefreshGuard<'a> {
    refreshing: &'a Refreshing,
    id: &'a ItemId,
}

impl Drop for RefreshGuard<'_> {
    fn drop(&mut self) {
        self.refreshing.end(self.id);
    }
}

impl Catalog {
    /// Starts a background refresh of `id` if `entry`, just served from
    /// `tier`, is due. A near-cache entry starts at most one: it keeps the old
    /// freshness until it is replaced, and every later hit on it would
    /// otherwise try again.
    pub(super) fn refresh_if_due(&self, id: &ItemId, entry: &Entry, tier: Tier) {
        if !self.policy.refresh_due(entry, cache::now_ms())
            || (tier == Tier::L1 && !self.l1.claim_refresh(id))
            || !self.refreshing.begin(id)
        {
            return;
        }
        let (this, id, fresh_until) = (self.clone(), id.clone(), entry.fresh_until);
        // Its own trace (it outlives the request), linked from the request's.
        let span = tracing::info_span!(parent: None, "cache refresh", otel.name = "cache refresh", item.id = %id);
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

    async fn refresh(&self, id: &ItemId, old_fresh_until: i64) -> Refreshed {
        let key = self.prefix.key(id);
        if self.failsafe.throttled(id) || !self.l2.link().usable() || self.pending.blocks(&key) {
            return Refreshed::No;
        }
        let token = uuid::Uuid::new_v4().simple().to_string();
        let keys = std::slice::from_ref(&key);
        if self.policy.leases {
            match self
                .l2
                .try_leases(keys, &token, self.policy.lease_ttl)
                .await
                .as_deref()
            {
                Ok([LeaseTry::Taken { current }]) => {
                    let refreshed = current
                        .as_deref()
                        .and_then(|bytes| cache::decode(id, bytes).ok())
                        .is_some_and(|entry| entry.fresh_until > old_fresh_until);
                    if refreshed {
                        // Another refresh (here or on a peer) finished between
                        // our hit and our lease: nothing left to do.
                        let _ = self.l2.release_leases(keys, &token).await;
                        return Refreshed::Newer;
                    }
                }
                // Another instance is loading it, or Redis is not answering.
                _ => return Refreshed::No,
            }
        }
        let fetched_at = cache::now_ms();
        let ids = std::slice::from_ref(id);
        let item = match self.read_source(ids).await {
            Ok(mut found) => found.remove(id),
            Err(_) => {
                self.failsafe.failed(ids);
                let throttle = self.policy.failsafe_throttle;
                let _ = self.l2.mark_failed(keys, &token, throttle).await;
                return Refreshed::No;
            }
        };
        self.hooks.before_fill(ids).await;
        let Some((entry, keep_for)) = self.policy.entry(item, fetched_at, old_fresh_until) else {
            let _ = self.l2.release_leases(keys, &token).await;
            return Refreshed::No;
        };
        let fill = Fill {
            key,
            value: entry.encode(),
            keep_for,
        };
        let written = if self.policy.leases {
            matches!(
                self.l2.fill_leased(&token, vec![fill]).await.as_deref(),
                Ok([true])
            )
        } else {
            matches!(
                self.l2.fill_unleased(vec![fill], Overwrite::Always).await,
                Ok(1)
            )
        };
        if written {
            CacheStats::bump(&self.stats.early_refreshes);
            CacheStats::bump(&self.stats.fills);
            Refreshed::Newer
        } else {
            Refreshed::No
        }
    }
}
