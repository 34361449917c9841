//! What is stored under an id's key: the value, or the fact that it does not
//! exist, with the two times that govern how it may be served.
//!
//! ```json
//! {"fetched_at":1764097523241,"fresh_until":1764097823241,"item":{"id":"1",…}}
//! {"fetched_at":1764097523241,"fresh_until":1764097553241,"item":null}
//! ```
//!
//! The value's field is named `item` in Redis, as in the entries of every
//! earlier version, so instances of different versions can share a cache.
//!
//! Times are milliseconds since the Unix epoch, so every instance reads them
//! the same way. Redis keeps the key until `fresh_until` plus the fail-safe
//! window: past `fresh_until` the value is only served when the source of
//! truth fails.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::cacheable::{CacheId, Cacheable};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(deserialize = "V: Cacheable"))]
pub struct Entry<V> {
    /// When the value was read from the source of truth.
    pub fetched_at: i64,
    /// Until when it may be served as a hit.
    pub fresh_until: i64,
    /// The value, or `None` when the id is known not to exist (a negative entry).
    #[serde(rename = "item")]
    pub value: Option<V>,
}

/// How an entry may be used at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Serve it; `remaining` is left of its freshness.
    Fresh { remaining: Duration },
    /// Only serve it if the source of truth fails.
    Stale,
}

impl<V: Cacheable> Entry<V> {
    pub fn freshness(&self, now_ms: i64) -> Freshness {
        if now_ms < self.fresh_until {
            Freshness::Fresh {
                remaining: Duration::from_millis(self.fresh_until.saturating_sub(now_ms) as u64),
            }
        } else {
            Freshness::Stale
        }
    }

    /// How long it was meant to be fresh for.
    pub fn lifetime(&self) -> Duration {
        Duration::from_millis(self.fresh_until.saturating_sub(self.fetched_at).max(0) as u64)
    }

    /// Time since the value was read from the source of truth (the HTTP `Age`).
    pub fn age(&self, now_ms: i64) -> Duration {
        Duration::from_millis(now_ms.saturating_sub(self.fetched_at).max(0) as u64)
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("entries always serialize")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("cached value is not a valid entry: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("cached value belongs to id {found:?}")]
    WrongId { found: String },
    #[error("cached value has impossible times")]
    Times,
}

/// Bounds on the times an entry may carry (milliseconds since the epoch):
/// anything outside was not written by us, and would overflow arithmetic or
/// stay fresh for ever.
const LATEST_TIME: i64 = 4_102_444_800_000; // 2100-01-01
const LONGEST_FRESHNESS: i64 = 10 * 365 * 86_400_000;

/// Decodes the value found under `id`'s key. A value that does not parse, or
/// that holds another id's value, is rejected so the caller treats it as a
/// miss.
pub fn decode<V: Cacheable>(id: &V::Id, bytes: &[u8]) -> Result<Entry<V>, DecodeError> {
    let entry: Entry<V> = serde_json::from_slice(bytes)?;
    let freshness = entry.fresh_until.saturating_sub(entry.fetched_at);
    if !(0..=LATEST_TIME).contains(&entry.fetched_at)
        || !(0..=LONGEST_FRESHNESS).contains(&freshness)
    {
        return Err(DecodeError::Times);
    }
    if let Some(value) = &entry.value
        && value.id() != id
    {
        return Err(DecodeError::WrongId {
            found: value.id().as_str().to_owned(),
        });
    }
    Ok(entry)
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::testing::{Id, Value, id};

    fn item(raw: &str) -> Value {
        Value {
            id: id(raw),
            version: 1,
        }
    }

    fn entry(value: Option<Value>) -> Entry<Value> {
        Entry {
            fetched_at: 1_000,
            fresh_until: 301_000,
            value,
        }
    }

    fn decode(id: &Id, bytes: &[u8]) -> Result<Entry<Value>, DecodeError> {
        super::decode(id, bytes)
    }

    #[test]
    fn round_trips_values_and_absences() {
        let id = id("1");
        for e in [entry(Some(item("1"))), entry(None)] {
            assert_eq!(decode(&id, &e.encode()).unwrap(), e);
        }
        let json = String::from_utf8(entry(None).encode()).unwrap();
        assert_eq!(
            json,
            r#"{"fetched_at":1000,"fresh_until":301000,"item":null}"#
        );
    }

    #[test]
    fn rejects_garbage_bare_values_and_foreign_values() {
        let id = id("1");
        assert!(matches!(
            decode(&id, b"not json"),
            Err(DecodeError::Malformed(_))
        ));
        let bare = serde_json::to_vec(&item("1")).unwrap();
        assert!(matches!(decode(&id, &bare), Err(DecodeError::Malformed(_))));
        assert!(matches!(
            decode(&id, &entry(Some(item("2"))).encode()),
            Err(DecodeError::WrongId { .. })
        ));
        for (fetched_at, fresh_until) in [(-1, 0), (0, i64::MAX), (i64::MIN, i64::MAX), (10, 5)] {
            let odd: Entry<Value> = Entry {
                fetched_at,
                fresh_until,
                value: None,
            };
            assert!(
                matches!(decode(&id, &odd.encode()), Err(DecodeError::Times)),
                "{fetched_at}..{fresh_until}"
            );
        }
    }

    #[test]
    fn freshness_age_and_lifetime() {
        let e = entry(None);
        assert_eq!(
            e.freshness(1_000),
            Freshness::Fresh {
                remaining: Duration::from_secs(300)
            }
        );
        assert_eq!(e.freshness(301_000), Freshness::Stale);
        assert_eq!(e.lifetime(), Duration::from_secs(300));
        assert_eq!(e.age(61_000), Duration::from_secs(60));
        assert_eq!(e.age(0), Duration::ZERO, "never negative under clock skew");
    }
}
