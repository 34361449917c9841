//! `Sequences`: what each sender has said so far, to notice invalidations
//! that never arrived. Pub/sub drops messages when a subscriber's connection
//! breaks or its output buffer overflows, and a sender whose publish failed
//! has lost one too; both show as a jump in the sender's sequence numbers, in
//! its next message or heartbeat. A sender that falls silent without saying
//! goodbye may have lost messages nobody will ever hear about.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Senders remembered at most; past this the map starts afresh (a forgotten
/// sender's next message is taken as its first).
const MAX_SENDERS: usize = 4096;

#[derive(Default)]
pub struct Sequences {
    /// Held only for one map operation.
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// By instance id and process start: a process restarted under the same
    /// id is another sender, so the one that died still falls silent.
    senders: HashMap<(String, Option<i64>), Heard>,
    /// When the current subscription started (ms since the Unix epoch): a
    /// sender that started after it has been heard from since its first
    /// message, so its numbering starts at 0 for us.
    subscribed_at: i64,
}

struct Heard {
    last: u64,
    at: Instant,
}

/// What a message says about the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Continuity {
    InOrder,
    /// Messages between the last one and this one never arrived.
    Gap {
        missed: u64,
    },
    /// Lower than the last one: a late duplicate; nothing to learn.
    Late,
}

/// What arrived: an invalidation uses the next number, a heartbeat repeats
/// the last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Invalidation,
    Heartbeat,
}

impl Sequences {
    pub fn observe(&self, sender: &str, started: Option<i64>, seq: u64, kind: Kind) -> Continuity {
        let mut state = self.lock();
        let id = (sender.to_owned(), started);
        if state.senders.len() >= MAX_SENDERS && !state.senders.contains_key(&id) {
            state.senders.clear();
        }
        let subscribed_at = state.subscribed_at;
        let known = state.senders.get(&id).map(|heard| heard.last);
        // Unknown (or restarted) senders: numbering starts at 0 if the
        // process started while we were listening; otherwise we cannot know
        // what it sent before, and take this message as the baseline.
        let last = known.or_else(|| started.filter(|&s| s >= subscribed_at).map(|_| 0));
        let expected = match kind {
            Kind::Invalidation => last.map(|l| l.saturating_add(1)),
            Kind::Heartbeat => last,
        };
        let continuity = match expected {
            None => Continuity::InOrder,
            Some(expected) if seq == expected => Continuity::InOrder,
            Some(expected) if seq > expected => Continuity::Gap {
                missed: seq - expected,
            },
            Some(_) => Continuity::Late,
        };
        if continuity != Continuity::Late {
            let heard = Heard {
                last: seq,
                at: Instant::now(),
            };
            state.senders.insert(id, heard);
        } else if let Some(heard) = state.senders.get_mut(&id) {
            heard.at = Instant::now();
        }
        continuity
    }

    /// The sender stopped cleanly: its silence from now on means nothing.
    pub fn forget(&self, sender: &str, started: Option<i64>) {
        self.lock().senders.remove(&(sender.to_owned(), started));
    }

    /// Forgets, and returns, the senders not heard from for `silence`: they
    /// stopped without saying goodbye, or cannot reach Redis, and may have
    /// lost invalidations that no later message will reveal.
    pub fn fallen_silent(&self, silence: Duration) -> Vec<String> {
        let mut state = self.lock();
        let silent: Vec<(String, Option<i64>)> = state
            .senders
            .iter()
            .filter(|(_, heard)| heard.at.elapsed() >= silence)
            .map(|(sender, _)| sender.clone())
            .collect();
        for sender in &silent {
            state.senders.remove(sender);
        }
        silent.into_iter().map(|(id, _)| id).collect()
    }

    /// Forgets every sender: after a new subscription, numbering restarts
    /// from whatever each sender sends next (or from 0 for senders that start
    /// from now on).
    pub fn reset(&self, subscribed_at: i64) {
        let mut state = self.lock();
        state.senders.clear();
        state.subscribed_at = subscribed_at;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Kind::{Heartbeat, Invalidation};

    const BEFORE: Option<i64> = Some(1_000);
    const AFTER: Option<i64> = Some(5_000);

    fn subscribed() -> Sequences {
        let sequences = Sequences::default();
        sequences.reset(2_000);
        sequences
    }

    #[test]
    fn in_order_gaps_and_late_duplicates() {
        let s = subscribed();
        assert_eq!(
            s.observe("a", BEFORE, 7, Invalidation),
            Continuity::InOrder,
            "baseline"
        );
        assert_eq!(s.observe("a", BEFORE, 8, Invalidation), Continuity::InOrder);
        assert_eq!(s.observe("a", BEFORE, 8, Heartbeat), Continuity::InOrder);
        assert_eq!(
            s.observe("a", BEFORE, 11, Invalidation),
            Continuity::Gap { missed: 2 }
        );
        assert_eq!(s.observe("a", BEFORE, 10, Invalidation), Continuity::Late);
        assert_eq!(
            s.observe("a", BEFORE, 12, Invalidation),
            Continuity::InOrder,
            "not lowered"
        );
    }

    #[test]
    fn a_heartbeat_reveals_a_lost_last_message() {
        let s = subscribed();
        s.observe("a", BEFORE, 3, Invalidation);
        assert_eq!(
            s.observe("a", BEFORE, 4, Heartbeat),
            Continuity::Gap { missed: 1 }
        );
        assert_eq!(s.observe("a", BEFORE, 4, Heartbeat), Continuity::InOrder);
    }

    #[test]
    fn a_sender_started_while_we_listened_counts_from_zero() {
        let s = subscribed();
        assert_eq!(
            s.observe("new", AFTER, 1, Invalidation),
            Continuity::InOrder
        );
        assert_eq!(
            s.observe("lost-first", AFTER, 2, Invalidation),
            Continuity::Gap { missed: 1 }
        );
        assert_eq!(s.observe("quiet", AFTER, 0, Heartbeat), Continuity::InOrder);
        assert_eq!(
            s.observe("lost-only", AFTER, 1, Heartbeat),
            Continuity::Gap { missed: 1 }
        );
    }

    #[test]
    fn a_restart_under_the_same_name_is_a_new_sender_and_the_old_one_falls_silent() {
        let s = subscribed();
        s.observe("a", BEFORE, 40, Invalidation);
        assert_eq!(s.observe("a", AFTER, 1, Invalidation), Continuity::InOrder);
        assert_eq!(s.observe("a", AFTER, 2, Invalidation), Continuity::InOrder);
        s.observe("a", AFTER, 2, Heartbeat);
        std::thread::sleep(Duration::from_millis(20));
        s.observe("a", AFTER, 2, Heartbeat);
        assert_eq!(
            s.fallen_silent(Duration::from_millis(10)),
            vec!["a".to_owned()],
            "the old process"
        );
        assert!(s.fallen_silent(Duration::from_millis(10)).is_empty());
    }

    #[test]
    fn silent_senders_are_reported_once_and_goodbyes_are_not() {
        let s = subscribed();
        s.observe("gone", BEFORE, 1, Invalidation);
        s.observe("stopped", BEFORE, 1, Invalidation);
        s.forget("stopped", BEFORE);
        assert_eq!(s.fallen_silent(Duration::ZERO), vec!["gone".to_owned()]);
        assert!(s.fallen_silent(Duration::ZERO).is_empty());
        assert!(s.fallen_silent(Duration::from_secs(60)).is_empty());
    }

    #[test]
    fn no_overflow_at_the_end_of_the_numbers() {
        let s = subscribed();
        s.observe("a", BEFORE, u64::MAX, Invalidation);
        assert_eq!(
            s.observe("a", BEFORE, u64::MAX, Invalidation),
            Continuity::InOrder
        );
    }
}
