//! `FillGate`: holds every load of one instance between its source-of-truth
//! read and its fill, until the test releases it. Turns races that depend on
//! luck into interleavings that happen every time.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use redis_cache::catalog::FillHook;
use redis_cache::domain::ItemId;
use redis_cache::items::ItemCatalog;
use tokio::sync::watch;

/// Where in a lookup the gate holds it.
enum Point {
    /// Between the source-of-truth read and the fill of Redis.
    BeforeFill,
    /// Before the near cache keeps what the lookup read.
    BeforeL1Fill,
}

pub struct FillGate {
    /// Tickets handed to loads as they arrive, from 1.
    arrived: AtomicU64,
    /// Loads with a ticket up to this one may go on.
    released: watch::Sender<u64>,
    /// Loads waiting at the gate right now.
    held: watch::Sender<usize>,
    /// Once set, loads pass without stopping.
    passthrough: AtomicBool,
    /// When set, only loads of one of these ids stop.
    only: Option<Vec<String>>,
    ids: Mutex<Vec<Vec<ItemId>>>,
}

impl FillGate {
    /// Installs a gate on `catalog`: from now on every load stops at it.
    pub fn install(catalog: &ItemCatalog) -> Arc<Self> {
        Self::install_with(catalog, None, Point::BeforeFill)
    }

    /// Like [`FillGate::install`], but only loads that include one of `ids`
    /// stop; the others pass (and are still recorded).
    pub fn install_for(catalog: &ItemCatalog, ids: &[&str]) -> Arc<Self> {
        let only = Some(ids.iter().map(|id| id.to_string()).collect());
        Self::install_with(catalog, only, Point::BeforeFill)
    }

    /// A gate where lookups are about to keep what they read (from Redis or a
    /// load) in the near cache.
    pub fn install_before_l1(catalog: &ItemCatalog) -> Arc<Self> {
        Self::install_with(catalog, None, Point::BeforeL1Fill)
    }

    fn install_with(catalog: &ItemCatalog, only: Option<Vec<String>>, point: Point) -> Arc<Self> {
        let gate = Arc::new(Self {
            arrived: AtomicU64::new(0),
            released: watch::Sender::new(0),
            held: watch::Sender::new(0),
            passthrough: AtomicBool::new(false),
            only,
            ids: Mutex::default(),
        });
        let hook_gate = gate.clone();
        let hook: FillHook<ItemId> = Arc::new(move |ids: Vec<ItemId>| {
            let gate = hook_gate.clone();
            async move {
                let selected = gate
                    .only
                    .as_ref()
                    .is_none_or(|only| ids.iter().any(|id| only.iter().any(|o| o == id.as_str())));
                gate.ids.lock().unwrap().push(ids);
                if !selected || gate.passthrough.load(Ordering::SeqCst) {
                    return;
                }
                let ticket = gate.arrived.fetch_add(1, Ordering::SeqCst) + 1;
                let mut released = gate.released.subscribe();
                gate.held.send_modify(|n| *n += 1);
                let _ = released.wait_for(|r| *r >= ticket).await;
                gate.held.send_modify(|n| *n -= 1);
            }
            .boxed()
        });
        match point {
            Point::BeforeFill => catalog.set_before_fill_hook(Some(hook)),
            Point::BeforeL1Fill => catalog.set_before_l1_fill_hook(Some(hook)),
        }
        gate
    }

    /// Waits until `n` loads are held at the gate.
    pub async fn held(&self, n: usize) {
        let mut held = self.held.subscribe();
        tokio::time::timeout(Duration::from_secs(10), held.wait_for(|h| *h >= n))
            .await
            .unwrap_or_else(|_| panic!("{n} loads never reached the gate"))
            .unwrap();
    }

    /// Lets every load held now go on; later ones stop again.
    pub fn release(&self) {
        self.released
            .send_replace(self.arrived.load(Ordering::SeqCst));
    }

    /// Loads arriving from now on pass; those held now stay held.
    pub fn let_new_loads_pass(&self) {
        self.passthrough.store(true, Ordering::SeqCst);
    }

    /// Lets every load through, now and from now on.
    pub fn remove(&self) {
        self.passthrough.store(true, Ordering::SeqCst);
        self.release();
    }

    /// The ids of every load that reached the gate, in order.
    pub fn loads(&self) -> Vec<Vec<ItemId>> {
        self.ids.lock().unwrap().clone()
    }
}
