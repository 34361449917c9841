//! User profiles, kept in a map that stands for a database, read through
//! a near cache and Redis with `tiered-cache`: a miss, a hit from the near
//! cache, a write that invalidates, and a read that sees it.
//!
//! Against a local Redis (`REDIS_URL`, default `redis://127.0.0.1:6379/`):
//!
//! ```sh
//! cargo run -p tiered-cache --example profiles
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tiered_cache::cache::{CacheId, CacheStatus, Cacheable, KeyPrefix, Tier};
use tiered_cache::invalidation::SubscriberState;
use tiered_cache::{CacheConfig, Engine, RedisSettings, Source, SourceFailure, WriteFailure};

/// A user's id: 1 to 32 letters, digits, `-` or `_` (never `:` nor a glob
/// character, as the cache asks of ids).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
struct UserId(String);

impl std::fmt::Display for UserId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl CacheId for UserId {
    fn as_str(&self) -> &str {
        &self.0
    }

    fn parse(raw: &str) -> Option<Self> {
        let valid = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
        (!raw.is_empty() && raw.len() <= 32 && raw.bytes().all(valid))
            .then(|| UserId(raw.to_owned()))
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Profile {
    id: UserId,
    name: String,
    /// Grows with every change: the near cache never goes back to an older one.
    version: i64,
}

impl Cacheable for Profile {
    type Id = UserId;

    fn id(&self) -> &UserId {
        &self.id
    }

    fn version(&self) -> i64 {
        self.version
    }
}

/// The source of truth: profiles in a map. A real one would be a database.
#[derive(Clone, Default)]
struct Profiles(Arc<Mutex<HashMap<UserId, Profile>>>);

/// A map cannot fail; a database's errors would say here whether it was
/// unreachable.
#[derive(Debug, thiserror::Error)]
#[error("profiles unavailable")]
struct Unavailable;

impl SourceFailure for Unavailable {
    fn kind(&self) -> &'static str {
        "unavailable"
    }
    fn is_outage(&self) -> bool {
        true
    }
    fn is_unavailable(&self) -> bool {
        true
    }
}

impl WriteFailure for Unavailable {
    fn kind(&self) -> Option<&'static str> {
        Some("unavailable")
    }
    fn is_outage(&self) -> bool {
        true
    }
    fn may_have_committed(&self) -> bool {
        false
    }
    fn source_down() -> Self {
        Unavailable
    }
}

impl Profiles {
    fn rename(&self, id: &UserId, name: &str) -> Result<Profile, Unavailable> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let profile = map.get_mut(id).ok_or(Unavailable)?;
        profile.name = name.to_owned();
        profile.version += 1;
        Ok(profile.clone())
    }
}

impl Source for Profiles {
    type Id = UserId;
    type Value = Profile;
    type Error = Unavailable;

    async fn get_many(&self, ids: &[UserId]) -> Result<Vec<Profile>, Unavailable> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        Ok(ids.iter().filter_map(|id| map.get(id).cloned()).collect())
    }

    async fn recent_ids(&self, limit: u32) -> Result<Vec<UserId>, Unavailable> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        Ok(map.keys().take(limit as usize).cloned().collect())
    }

    async fn ping(&self) -> Result<(), Unavailable> {
        Ok(())
    }

    fn system(&self) -> &'static str {
        "memory"
    }

    fn collection(&self) -> &'static str {
        "profiles"
    }

    fn can_be_down(&self) -> bool {
        false
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    let profiles = Profiles::default();
    let ada = UserId::parse("ada").expect("a valid id");
    let first = Profile {
        id: ada.clone(),
        name: "Ada".into(),
        version: 1,
    };
    profiles.0.lock().unwrap().insert(ada.clone(), first);

    let config = CacheConfig::with_prefix(KeyPrefix::parse("profile:")?);
    let redis = RedisSettings::new(redis::Client::open(url)?, "local redis");
    let engine = Engine::start(profiles.clone(), redis, &config, "profiles-example", None).await;
    let cache = engine.catalog();
    // The near cache is used once invalidations are known to arrive.
    let mut subscriber = engine.subscriber();
    subscriber
        .wait_for(|state| *state == SubscriberState::Subscribed)
        .await?;

    // What an earlier run left in Redis goes, as after a flush of the namespace.
    cache
        .invalidate(None, Some(cache.prefix().everything()))
        .await;

    let first = cache.get(&ada).await?;
    let again = cache.get(&ada).await?;
    for found in [&first, &again] {
        println!(
            "{:?}: {} from {}",
            found.value.as_ref().map(|p| &p.name),
            found.status.as_str(),
            found.tier.map_or("the source", |tier| tier.as_str())
        );
    }
    // A write commits through the closure, then deletes the key and its
    // lease in Redis, evicts the near cache and tells the other processes.
    let (source, id) = (profiles.clone(), ada.clone());
    cache
        .write(ada.clone(), "UPDATE", async move {
            source.rename(&id, "Ada Lovelace")
        })
        .await?;
    let after = cache.get(&ada).await?;
    println!(
        "after the write: {:?}: {}",
        after.value.as_ref().map(|p| &p.name),
        after.status.as_str()
    );
    anyhow::ensure!(
        first.status == CacheStatus::Miss
            && again.tier == Some(Tier::L1)
            && after.value.map(|p| p.name).as_deref() == Some("Ada Lovelace"),
        "the cache did not answer as it should"
    );

    engine.shutdown(Duration::from_secs(2)).await;
    Ok(())
}
