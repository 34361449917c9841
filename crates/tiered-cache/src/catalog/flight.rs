//! `Flights`: concurrent lookups of one id in this process share one load.
//!
//! The first caller for an id *leads*: it starts the load in a task of its
//! own; later callers *join* and await the same outcome. Because the load is
//! its own task, a leader whose client hangs up cancels nothing (futures that
//! are cancelled and retried would otherwise stampede anyway). A write removes
//! the id's flight, so a lookup that starts after the write returned never
//! joins a load that may have read the value before it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use tokio::sync::oneshot;

use crate::cache::CacheId;

/// What a flight ends with: the load's outcome, shared by every waiter.
pub trait FlightOutcome: Clone + Send + Sync + 'static {
    /// What waiters get when the lead is dropped unfinished (a panic).
    fn abandoned() -> Self;
}

pub type SharedOutcome<O> = Shared<BoxFuture<'static, O>>;

pub struct Flights<K, O> {
    /// Off only to measure what coalescing buys: every caller then leads.
    enabled: bool,
    /// Flights in progress. Held only to look up, insert or remove; shared
    /// with the leads so that each removes its own flight when done.
    map: Arc<Mutex<FlightMap<K, O>>>,
    next: AtomicU64,
}

type FlightMap<K, O> = HashMap<K, Flight<O>>;

struct Flight<O> {
    /// Tells this flight from a newer one for the same id.
    generation: u64,
    outcome: SharedOutcome<O>,
}

/// A load the caller must perform and then [`Lead::finish`]. Dropping it
/// unfinished (a panic) fails its waiters and frees the id for a new flight.
pub struct Lead<K: CacheId, O> {
    pub id: K,
    generation: u64,
    tx: Option<oneshot::Sender<O>>,
    map: Arc<Mutex<FlightMap<K, O>>>,
}

impl<K: CacheId, O> Lead<K, O> {
    /// Ends the flight: later lookups start afresh, current ones get `outcome`.
    pub fn finish(mut self, outcome: O) {
        self.unregister();
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(outcome);
        }
    }

    fn unregister(&self) {
        let mut map = lock(&self.map);
        if map
            .get(&self.id)
            .is_some_and(|f| f.generation == self.generation)
        {
            map.remove(&self.id);
        }
    }
}

impl<K: CacheId, O> Drop for Lead<K, O> {
    fn drop(&mut self) {
        if self.tx.is_some() {
            self.unregister();
        }
    }
}

fn lock<K, O>(map: &Mutex<FlightMap<K, O>>) -> std::sync::MutexGuard<'_, FlightMap<K, O>> {
    map.lock().unwrap_or_else(|e| e.into_inner())
}

/// What [`Flights::join_or_lead`] handed out.
pub struct Assignment<K: CacheId, O> {
    /// One per id asked for, in the same order.
    pub outcomes: Vec<SharedOutcome<O>>,
    pub leads: Vec<Lead<K, O>>,
    /// How many ids joined a flight already in progress.
    pub joined: usize,
}

impl<K: CacheId, O: FlightOutcome> Flights<K, O> {
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled,
            map: Arc::default(),
            next: AtomicU64::new(1),
        }
    }

    pub fn join_or_lead(&self, ids: &[K]) -> Assignment<K, O> {
        let mut assignment = Assignment {
            outcomes: Vec::with_capacity(ids.len()),
            leads: Vec::new(),
            joined: 0,
        };
        let mut map = lock(&self.map);
        for id in ids {
            if self.enabled
                && let Some(flight) = map.get(id)
            {
                assignment.outcomes.push(flight.outcome.clone());
                assignment.joined += 1;
                continue;
            }
            let (tx, rx) = oneshot::channel();
            let outcome: SharedOutcome<O> =
                async move { rx.await.unwrap_or_else(|_| O::abandoned()) }
                    .boxed()
                    .shared();
            let generation = self.next.fetch_add(1, Ordering::Relaxed);
            if self.enabled {
                map.insert(
                    id.clone(),
                    Flight {
                        generation,
                        outcome: outcome.clone(),
                    },
                );
            }
            assignment.outcomes.push(outcome);
            assignment.leads.push(Lead {
                id: id.clone(),
                generation,
                tx: Some(tx),
                map: self.map.clone(),
            });
        }
        assignment
    }

    /// Called after a write: lookups from now on do not join a load that may
    /// have read the value from before the write.
    pub fn forget(&self, id: &K) {
        lock(&self.map).remove(id);
    }

    /// [`Flights::forget`] for every id that `invalidated` selects (an
    /// invalidation by key or pattern, from a peer or an operator). The map
    /// only holds loads in flight, so the scan is short.
    pub fn forget_where(&self, invalidated: impl Fn(&K) -> bool) {
        lock(&self.map).retain(|id, _| !invalidated(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::testing::{Id, id};

    /// A load's outcome, reduced to what flights care about.
    type Outcome = Result<u32, &'static str>;

    impl FlightOutcome for Outcome {
        fn abandoned() -> Self {
            Err("abandoned")
        }
    }

    fn ids(raw: &[&str]) -> Vec<Id> {
        raw.iter().map(|r| id(r)).collect()
    }

    fn loaded() -> Outcome {
        Ok(1)
    }

    #[tokio::test]
    async fn later_callers_join_and_share_the_outcome() {
        let flights = Flights::<Id, Outcome>::new(true);
        let first = flights.join_or_lead(&ids(&["1", "2"]));
        assert_eq!((first.leads.len(), first.joined), (2, 0));
        let second = flights.join_or_lead(&ids(&["2", "3"]));
        assert_eq!((second.leads.len(), second.joined), (1, 1));
        for lead in first.leads.into_iter().chain(second.leads) {
            lead.finish(loaded());
        }
        for outcome in first.outcomes.into_iter().chain(second.outcomes) {
            assert!(outcome.await.is_ok());
        }
        let third = flights.join_or_lead(&ids(&["1"]));
        assert_eq!(third.leads.len(), 1, "finished flights are not joined");
    }

    #[tokio::test]
    async fn forgetting_makes_the_next_caller_lead() {
        let flights = Flights::<Id, Outcome>::new(true);
        let first = flights.join_or_lead(&ids(&["1"]));
        flights.forget(&ids(&["1"])[0]);
        let second = flights.join_or_lead(&ids(&["1"]));
        assert_eq!(second.leads.len(), 1);
        // The old flight finishing must not remove the new one.
        for lead in first.leads {
            lead.finish(loaded());
        }
        assert_eq!(flights.join_or_lead(&ids(&["1"])).joined, 1);
    }

    #[tokio::test]
    async fn an_abandoned_lead_fails_its_waiters() {
        let flights = Flights::<Id, Outcome>::new(true);
        let assignment = flights.join_or_lead(&ids(&["1"]));
        drop(assignment.leads);
        assert!(assignment.outcomes[0].clone().await.is_err());
        assert_eq!(
            flights.join_or_lead(&ids(&["1"])).leads.len(),
            1,
            "the id is free again"
        );
    }

    #[test]
    fn disabled_means_everyone_leads() {
        let flights = Flights::<Id, Outcome>::new(false);
        flights.join_or_lead(&ids(&["1"]));
        assert_eq!(flights.join_or_lead(&ids(&["1"])).joined, 0);
    }
}
