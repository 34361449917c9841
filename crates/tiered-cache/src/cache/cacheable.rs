//! What the cache needs of the ids and values it keeps, and nothing more: the
//! cache knows no particular kind of value.

use std::fmt;
use std::hash::Hash;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The id of a cached value: the last part of its Redis key,
/// `<prefix><id>`.
///
/// `as_str` must never contain `:` nor a Redis glob character (`*`, `?`,
/// `[`, `]`, `\`): then no id's key is another id's key, a lease
/// (`<key>:lease`) or a pattern, and no id can address a key outside its
/// own.
pub trait CacheId:
    Clone + Eq + Hash + Ord + fmt::Display + fmt::Debug + Send + Sync + 'static
{
    /// The id as it appears in its key.
    fn as_str(&self) -> &str;

    /// The id whose [`CacheId::as_str`] is `raw`, if `raw` is a valid id.
    fn parse(raw: &str) -> Option<Self>;
}

/// A value kept in the cache, under its id.
pub trait Cacheable:
    Clone + Serialize + DeserializeOwned + fmt::Debug + Send + Sync + 'static
{
    type Id: CacheId;

    /// The id it is cached under.
    fn id(&self) -> &Self::Id;

    /// Grows with every change of the value in the source of truth: the near
    /// cache never replaces a value with an older version of it.
    fn version(&self) -> i64;
}

/// An id and a value for the cache's own tests, with nothing of any real
/// kind of value about them.
#[cfg(test)]
pub(crate) mod testing {
    use serde::{Deserialize, Serialize};

    use super::{CacheId, Cacheable};

    /// 1 to 64 characters of `[A-Za-z0-9._-]`.
    #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
    #[serde(transparent)]
    pub struct Id(String);

    impl std::fmt::Display for Id {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }

    impl CacheId for Id {
        fn as_str(&self) -> &str {
            &self.0
        }

        fn parse(raw: &str) -> Option<Self> {
            let valid = |b: u8| b.is_ascii_alphanumeric() || b"._-".contains(&b);
            (!raw.is_empty() && raw.len() <= 64 && raw.bytes().all(valid))
                .then(|| Self(raw.to_owned()))
        }
    }

    /// `Id::parse(raw)`, which the test knows is valid.
    pub fn id(raw: &str) -> Id {
        Id::parse(raw).expect("a valid test id")
    }

    #[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
    pub struct Value {
        pub id: Id,
        pub version: i64,
    }

    impl Cacheable for Value {
        type Id = Id;

        fn id(&self) -> &Id {
            &self.id
        }

        fn version(&self) -> i64 {
            self.version
        }
    }
}
