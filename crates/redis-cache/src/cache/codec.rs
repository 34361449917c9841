//! The value stored under an item key: the item's JSON, exactly as the API
//! serves it. Plain JSON keeps cached values readable with `redis-cli GET`.

use crate::domain::{Item, ItemId};

pub fn encode(item: &Item) -> Vec<u8> {
    serde_json::to_vec(item).expect("items always serialize")
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("cached value is not a valid item: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("cached value belongs to item {found:?}")]
    WrongItem { found: ItemId },
}

/// Decodes the value found under `id`'s key. A value that does not parse, or
/// that parses as another item, is rejected so the caller treats it as a miss.
pub fn decode(id: &ItemId, bytes: &[u8]) -> Result<Item, DecodeError> {
    let item: Item = serde_json::from_slice(bytes)?;
    if &item.id != id {
        return Err(DecodeError::WrongItem { found: item.id });
    }
    Ok(item)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Version;

    fn item(id: &str) -> Item {
        Item {
            id: ItemId::parse(id).unwrap(),
            name: "n".into(),
            description: String::new(),
            price: 1.5,
            category: String::new(),
            stock: 2,
            created_at: time::OffsetDateTime::UNIX_EPOCH,
            updated_at: time::OffsetDateTime::UNIX_EPOCH,
            version: Version::FIRST,
        }
    }

    #[test]
    fn round_trips() {
        let it = item("1");
        assert_eq!(decode(&it.id, &encode(&it)).unwrap(), it);
    }

    #[test]
    fn rejects_garbage_and_foreign_items() {
        let id = ItemId::parse("1").unwrap();
        assert!(matches!(
            decode(&id, b"not json"),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            decode(&id, br#"{"id":"1"}"#),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            decode(&id, &encode(&item("2"))),
            Err(DecodeError::WrongItem { .. })
        ));
    }
}
