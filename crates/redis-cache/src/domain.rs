//! The catalogue's vocabulary: identifiers and items, parsed once at the edge.

mod item;
mod item_id;

pub use item::{Item, ItemFields, ItemPatch, NewItem, ValidationError, Version};
pub use item_id::{ItemId, ItemIdError};
