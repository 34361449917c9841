//! `ItemId`: the only form in which an id travels past the HTTP layer.

use std::fmt;

/// Longest id we accept, in bytes (all accepted characters are ASCII).
pub const MAX_ID_LEN: usize = 64;

/// An item identifier: 1–64 characters of `[A-Za-z0-9._-]`.
///
/// The alphabet is chosen so that an id can be appended to the cache prefix
/// without ever forming a glob (`*`, `?`, `[`, `\`) or a key separator (`:`),
/// so no request can address a Redis key outside its own item.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ItemId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ItemIdError {
    #[error("item id must not be empty")]
    Empty,
    #[error("item id is longer than {MAX_ID_LEN} characters")]
    TooLong,
    #[error("item id may only contain letters, digits, '.', '_' and '-'")]
    BadCharacter,
    #[error("item id \"batch\" is reserved: /items/batch is the batch lookup route")]
    Reserved,
    #[error("item ids \".\" and \"..\" are path segments that clients remove from URLs")]
    DotSegment,
}

/// Ids that would shadow a route under `/items/`: such an item could be
/// created but never read, updated or deleted.
const RESERVED: [&str; 1] = ["batch"];

impl ItemId {
    pub fn parse(raw: &str) -> Result<Self, ItemIdError> {
        if raw.is_empty() {
            return Err(ItemIdError::Empty);
        }
        if raw.len() > MAX_ID_LEN {
            return Err(ItemIdError::TooLong);
        }
        if !raw.bytes().all(is_id_byte) {
            return Err(ItemIdError::BadCharacter);
        }
        if RESERVED.contains(&raw) {
            return Err(ItemIdError::Reserved);
        }
        // `/items/..` reaches us as `/` from any client that normalises URLs
        // (RFC 3986 dot segments): such an item could never be read.
        if matches!(raw, "." | "..") {
            return Err(ItemIdError::DotSegment);
        }
        Ok(Self(raw.to_owned()))
    }

    /// A fresh id for items created without one: a UUIDv7, so generated ids sort
    /// by creation time.
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

/// Its alphabet has no `:` and no glob character, as the cache asks.
impl crate::cache::CacheId for ItemId {
    fn as_str(&self) -> &str {
        &self.0
    }

    fn parse(raw: &str) -> Option<Self> {
        ItemId::parse(raw).ok()
    }
}

impl fmt::Display for ItemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ItemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl serde::Serialize for ItemId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for ItemId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        ItemId::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        for ok in ["1", "100", "a.b_c-D", "x".repeat(64).as_str()] {
            assert_eq!(ItemId::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_empty_and_too_long() {
        assert_eq!(ItemId::parse(""), Err(ItemIdError::Empty));
        assert_eq!(ItemId::parse(&"x".repeat(65)), Err(ItemIdError::TooLong));
    }

    #[test]
    fn rejects_globs_separators_and_non_ascii() {
        for bad in [
            "*", "1*", "a?", "[ab]", "a:b", "a/b", "a b", "a\\b", "é", "a\n", "\0",
        ] {
            assert_eq!(
                ItemId::parse(bad),
                Err(ItemIdError::BadCharacter),
                "{bad:?} must be rejected"
            );
        }
    }

    #[test]
    fn route_names_are_reserved() {
        assert_eq!(ItemId::parse("batch"), Err(ItemIdError::Reserved));
    }

    #[test]
    fn dot_segments_are_refused_but_dots_inside_ids_are_not() {
        assert_eq!(ItemId::parse("."), Err(ItemIdError::DotSegment));
        assert_eq!(ItemId::parse(".."), Err(ItemIdError::DotSegment));
        for ok in ["...", ".a", "a.", "v1.2"] {
            assert!(ItemId::parse(ok).is_ok(), "{ok}");
        }
        assert!(ItemId::parse("batch2").is_ok());
    }

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let a = ItemId::generate();
        let b = ItemId::generate();
        assert_ne!(a, b);
        assert_eq!(ItemId::parse(a.as_str()).unwrap(), a);
    }

    #[test]
    fn deserializes_through_parse() {
        let id: ItemId = serde_json::from_str("\"abc\"").unwrap();
        assert_eq!(id.as_str(), "abc");
        assert!(serde_json::from_str::<ItemId>("\"a*\"").is_err());
    }
}
