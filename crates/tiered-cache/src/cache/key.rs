//! Redis key names: the cache namespace, the keys of ids inside it, and key
//! patterns that cannot escape it.

use std::fmt;

use super::cacheable::CacheId;

const MAX_PREFIX_LEN: usize = 64;
const MAX_PATTERN_LEN: usize = 256;

/// The namespace every cache key lives in (such as `item:`, the service's
/// `CACHE_KEY_PREFIX`).
///
/// It may only hold characters that Redis glob matching treats literally, and it
/// ends with `:`, a character ids cannot contain. Together this means any key or
/// pattern that starts with the prefix can only ever address keys inside the
/// namespace, and no key of the form `<prefix><id>` collides with another id.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyPrefix(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("must be 1 to {MAX_PREFIX_LEN} characters ending with ':'")]
    PrefixShape,
    #[error("may only contain letters, digits and . _ - : {{ }}")]
    PrefixCharacter,
    #[error("key must be the cache prefix {prefix:?} followed by a valid id")]
    KeyOutsideNamespace { prefix: String },
    #[error("pattern must start with the cache prefix {prefix:?}")]
    PatternOutsideNamespace { prefix: String },
    #[error("pattern is longer than {MAX_PATTERN_LEN} characters")]
    PatternTooLong,
}

impl KeyPrefix {
    pub fn parse(raw: &str) -> Result<Self, KeyError> {
        if raw.is_empty() || raw.len() > MAX_PREFIX_LEN || !raw.ends_with(':') {
            return Err(KeyError::PrefixShape);
        }
        let literal = |b: u8| b.is_ascii_alphanumeric() || b"._-:{}".contains(&b);
        if !raw.bytes().all(literal) {
            return Err(KeyError::PrefixCharacter);
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn key<I: CacheId>(&self, id: &I) -> CacheKey {
        CacheKey(format!("{}{}", self.0, id.as_str()))
    }

    /// Parses a full key such as `item:42` sent by a client or a publisher:
    /// the prefix followed by a valid `I`.
    pub fn parse_key<I: CacheId>(&self, raw: &str) -> Result<CacheKey, KeyError> {
        raw.strip_prefix(self.as_str())
            .and_then(I::parse)
            .map(|id| self.key(&id))
            .ok_or_else(|| KeyError::KeyOutsideNamespace {
                prefix: self.0.clone(),
            })
    }

    /// Parses a Redis `MATCH` pattern; it must begin with the literal prefix.
    pub fn parse_pattern(&self, raw: &str) -> Result<KeyPattern, KeyError> {
        if raw.len() > MAX_PATTERN_LEN {
            return Err(KeyError::PatternTooLong);
        }
        if !raw.starts_with(self.as_str()) {
            return Err(KeyError::PatternOutsideNamespace {
                prefix: self.0.clone(),
            });
        }
        Ok(KeyPattern(raw.to_owned()))
    }

    /// The id whose key `key` is.
    pub fn id_of<I: CacheId>(&self, key: &CacheKey) -> Option<I> {
        key.as_str().strip_prefix(self.as_str()).and_then(I::parse)
    }

    /// A key in the namespace that no id can have (`!` is not allowed in
    /// ids), for trying commands on: `item:!permission-check`.
    pub fn permission_probe(&self) -> CacheKey {
        CacheKey(format!("{}!permission-check", self.0))
    }

    /// The pattern that matches every key in the namespace.
    pub fn everything(&self) -> KeyPattern {
        KeyPattern(format!("{}*", self.0))
    }
}

impl fmt::Debug for KeyPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// A Redis key inside the cache namespace.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey(String);

/// Suffix of a key's lease. Ids cannot contain `:`, so no value's key ends in it.
const LEASE_SUFFIX: &str = ":lease";

impl CacheKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key of this key's lease: in the namespace, so pattern invalidations
    /// and namespace flushes remove leases too (voiding their fills).
    pub fn lease(&self) -> CacheKey {
        CacheKey(format!("{}{LEASE_SUFFIX}", self.0))
    }

    pub fn is_lease(raw: &[u8]) -> bool {
        raw.ends_with(LEASE_SUFFIX.as_bytes())
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl redis::ToRedisArgs for CacheKey {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        out.write_arg(self.0.as_bytes());
    }
}

impl redis::ToSingleRedisArg for CacheKey {}

/// A Redis glob pattern that can only match keys inside the cache namespace.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct KeyPattern(String);

impl KeyPattern {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn matches(&self, key: &CacheKey) -> bool {
        super::glob::matches(self.0.as_bytes(), key.as_str().as_bytes())
    }

    /// Matches the leases of exactly the keys this pattern matches.
    pub fn leases(&self) -> KeyPattern {
        KeyPattern(format!("{}{LEASE_SUFFIX}", self.0))
    }
}

impl fmt::Display for KeyPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::testing::{Id, id};

    fn prefix() -> KeyPrefix {
        KeyPrefix::parse("item:").unwrap()
    }

    #[test]
    fn prefix_must_be_literal_and_end_with_a_colon() {
        assert!(KeyPrefix::parse("item:").is_ok());
        assert!(KeyPrefix::parse("shop.v2:{items}:").is_ok());
        assert_eq!(KeyPrefix::parse("item"), Err(KeyError::PrefixShape));
        assert_eq!(KeyPrefix::parse(""), Err(KeyError::PrefixShape));
        assert_eq!(KeyPrefix::parse("it*m:"), Err(KeyError::PrefixCharacter));
        assert_eq!(KeyPrefix::parse("it[e]m:"), Err(KeyError::PrefixCharacter));
        assert_eq!(KeyPrefix::parse("a b:"), Err(KeyError::PrefixCharacter));
    }

    #[test]
    fn keys_are_prefix_plus_id() {
        let id = id("42");
        assert_eq!(prefix().key(&id).as_str(), "item:42");
        assert_eq!(
            prefix().parse_key::<Id>("item:42").unwrap(),
            prefix().key(&id)
        );
    }

    #[test]
    fn keys_outside_the_namespace_or_with_globs_are_rejected() {
        for bad in [
            "other:1", "item:", "item:*", "item:1*", "item:a:b", "*", "item",
        ] {
            assert!(prefix().parse_key::<Id>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn patterns_must_start_with_the_literal_prefix() {
        assert!(prefix().parse_pattern("item:*").is_ok());
        assert!(prefix().parse_pattern("item:1?").is_ok());
        for bad in ["*", "other:*", "ite*", "?tem:*", "[i]tem:*", "\\item:*"] {
            assert!(prefix().parse_pattern(bad).is_err(), "{bad}");
        }
        assert_eq!(
            prefix().parse_pattern(&format!("item:{}", "*".repeat(300))),
            Err(KeyError::PatternTooLong)
        );
    }

    #[test]
    fn leases_live_in_the_namespace_beside_their_key() {
        let key = prefix().parse_key::<Id>("item:42").unwrap();
        assert_eq!(key.lease().as_str(), "item:42:lease");
        assert!(CacheKey::is_lease(key.lease().as_str().as_bytes()));
        assert!(!CacheKey::is_lease(key.as_str().as_bytes()));
        assert!(
            prefix().parse_key::<Id>("item:42:lease").is_err(),
            "never parsed as an item key"
        );
        let pattern = prefix().parse_pattern("item:4*").unwrap();
        assert!(pattern.matches(&key));
        assert!(pattern.leases().matches(&key.lease()));
        assert!(!pattern.leases().matches(&key));
    }

    #[test]
    fn everything_matches_only_the_namespace() {
        let all = prefix().everything();
        assert!(all.matches(&prefix().parse_key::<Id>("item:1").unwrap()));
        let other = KeyPrefix::parse("other:").unwrap();
        assert!(!all.matches(&other.parse_key::<Id>("other:1").unwrap()));
    }
}
