//! Test hooks: a way for tests to hold a load at a chosen point, so that an
//! interleaving that is otherwise a matter of luck happens every time. They
//! exist only with the `test-hooks` feature (this crate's own tests turn it
//! on); without it every hook is an empty function the compiler removes.
//! With it, an unset hook costs one uncontended read lock.

#[cfg(feature = "test-hooks")]
use std::sync::{Arc, RwLock};

#[cfg(feature = "test-hooks")]
use futures::future::BoxFuture;

use crate::cache::CacheId;

/// Called with the ids of a load after its source-of-truth read and before
/// its fill; the fill waits for the returned future.
#[cfg(feature = "test-hooks")]
pub type FillHook<I> = Arc<dyn Fn(Vec<I>) -> BoxFuture<'static, ()> + Send + Sync>;

pub struct Hooks<I> {
    #[cfg(feature = "test-hooks")]
    before_fill: RwLock<Option<FillHook<I>>>,
    /// Called with the id of a lookup that is about to keep what it read
    /// (from Redis, or from a load) in the near cache.
    #[cfg(feature = "test-hooks")]
    before_l1_fill: RwLock<Option<FillHook<I>>>,
    #[cfg(not(feature = "test-hooks"))]
    ids: std::marker::PhantomData<fn(I)>,
}

impl<I> Default for Hooks<I> {
    fn default() -> Self {
        Self {
            #[cfg(feature = "test-hooks")]
            before_fill: RwLock::new(None),
            #[cfg(feature = "test-hooks")]
            before_l1_fill: RwLock::new(None),
            #[cfg(not(feature = "test-hooks"))]
            ids: std::marker::PhantomData,
        }
    }
}

#[cfg(feature = "test-hooks")]
impl<I: CacheId> Hooks<I> {
    pub fn set_before_fill(&self, hook: Option<FillHook<I>>) {
        *self.before_fill.write().unwrap_or_else(|e| e.into_inner()) = hook;
    }

    pub fn set_before_l1_fill(&self, hook: Option<FillHook<I>>) {
        *self
            .before_l1_fill
            .write()
            .unwrap_or_else(|e| e.into_inner()) = hook;
    }

    pub async fn before_l1_fill(&self, id: &I) {
        let hook = self
            .before_l1_fill
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(hook) = hook {
            hook(vec![id.clone()]).await;
        }
    }

    pub async fn before_fill(&self, ids: &[I]) {
        let hook = self
            .before_fill
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(hook) = hook {
            hook(ids.to_vec()).await;
        }
    }
}

#[cfg(not(feature = "test-hooks"))]
impl<I: CacheId> Hooks<I> {
    #[inline(always)]
    pub async fn before_l1_fill(&self, _id: &I) {}

    #[inline(always)]
    pub async fn before_fill(&self, _ids: &[I]) {}
}
