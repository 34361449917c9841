//! What the catalog asks of the source of truth, and nothing more: the
//! values of some ids, ids worth warming, whether it answers, and how its
//! failures are told apart. The SQL store implements it for items.

use std::future::Future;

use crate::cache::{CacheId, Cacheable};

/// The source of truth a [`super::Catalog`] reads through and writes behind.
/// Cloning it is cheap (a pool handle).
pub trait Source: Clone + Send + Sync + 'static {
    type Id: CacheId;
    type Value: Cacheable<Id = Self::Id>;
    type Error: SourceFailure;

    /// The values of those of distinct `ids` that exist, in any order: one
    /// read for all of them.
    fn get_many(
        &self,
        ids: &[Self::Id],
    ) -> impl Future<Output = Result<Vec<Self::Value>, Self::Error>> + Send;

    /// Up to `limit` ids to warm the cache with, the most recently changed
    /// first.
    fn recent_ids(
        &self,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Self::Id>, Self::Error>> + Send;

    /// Whether it answers at all (`/health`).
    fn ping(&self) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Its name in spans and metrics (`db.system.name`: `sqlite`,
    /// `postgresql`).
    fn system(&self) -> &'static str;

    /// What it keeps, in spans (`db.collection.name`: a table's name).
    fn collection(&self) -> &'static str;

    /// Whether it is a server that can be down, which a circuit breaker then
    /// guards. A local file is never "down": its errors are contention or its
    /// disk, which a breaker would only turn into refusals.
    fn can_be_down(&self) -> bool;
}

/// How a failure of the source of truth is told apart.
pub trait SourceFailure: std::error::Error + Send + Sync + 'static {
    /// A short, bounded name for metrics and spans (`error.type`).
    fn kind(&self) -> &'static str;

    /// The source could not be reached or did not answer: what opens its
    /// circuit breaker.
    fn is_outage(&self) -> bool;

    /// Retrying later may succeed (unreachable, cannot write for now), as
    /// opposed to a query that fails.
    fn is_unavailable(&self) -> bool;
}

/// How a failed write to the source of truth is told apart by the write
/// path (`docs/cache-design.md`, "Writes").
pub trait WriteFailure: std::error::Error + Send + 'static {
    /// A failure's name for metrics and spans (`error.type`); `None` for an
    /// expected refusal (not found, a version conflict).
    fn kind(&self) -> Option<&'static str>;

    /// The source could not be reached: what opens its circuit breaker.
    fn is_outage(&self) -> bool;

    /// Whether the write may have been committed anyway (a connection lost
    /// while the answer was on its way): the cache is then invalidated, as
    /// after a commit. A needless delete costs one miss; a missing one hides
    /// the write until the TTL.
    fn may_have_committed(&self) -> bool;

    /// The error of a write not tried because the source is known to be
    /// down (its circuit breaker is open).
    fn source_down() -> Self;
}
