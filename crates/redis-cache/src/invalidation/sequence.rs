//! `Sequences`: the last sequence number seen from each sender, to notice
//! invalidations that never arrived (pub/sub drops messages when a
//! subscriber's connection breaks or its output buffer overflows).

use std::collections::HashMap;
use std::sync::Mutex;

/// Senders remembered at most; past this the map starts afresh (a forgotten
/// sender's next message is taken as its first).
const MAX_SENDERS: usize = 4096;

#[derive(Default)]
pub struct Sequences {
    /// Held only for one map operation.
    last: Mutex<HashMap<String, u64>>,
}

/// What a message's sequence number says about the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Continuity {
    /// The next one, or the first heard from this sender since we subscribed.
    InOrder,
    /// Messages between the last one and this one never arrived.
    Gap { missed: u64 },
    /// Lower than or equal to the last one: the sender restarted with the
    /// same name, or the message was delivered twice. Nothing was missed that
    /// we can tell; it becomes the sender's new baseline.
    Restarted,
}

impl Sequences {
    pub fn observe(&self, sender: &str, seq: u64) -> Continuity {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.len() >= MAX_SENDERS && !last.contains_key(sender) {
            last.clear();
        }
        match last.insert(sender.to_owned(), seq) {
            None => Continuity::InOrder,
            Some(previous) if seq == previous + 1 => Continuity::InOrder,
            Some(previous) if seq > previous => Continuity::Gap {
                missed: seq - previous - 1,
            },
            Some(_) => Continuity::Restarted,
        }
    }

    /// Forgets every sender: after a new subscription, numbering restarts
    /// from whatever each sender sends next.
    pub fn reset(&self) {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_gaps_and_restarts() {
        let sequences = Sequences::default();
        assert_eq!(
            sequences.observe("a", 7),
            Continuity::InOrder,
            "first heard"
        );
        assert_eq!(sequences.observe("a", 8), Continuity::InOrder);
        assert_eq!(sequences.observe("b", 1), Continuity::InOrder);
        assert_eq!(sequences.observe("a", 11), Continuity::Gap { missed: 2 });
        assert_eq!(sequences.observe("a", 1), Continuity::Restarted);
        assert_eq!(sequences.observe("a", 2), Continuity::InOrder);
        sequences.reset();
        assert_eq!(sequences.observe("a", 9), Continuity::InOrder);
    }
}
