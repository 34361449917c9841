//! The item catalogue on top of the cache engine: items read through the
//! [`Catalog`] from the SQL [`Store`], and their creates, updates and
//! deletes, each a write to the store through the catalog's write path
//! (`docs/cache-design.md`, "Writes").

use crate::catalog::Catalog;
use crate::domain::{Item, ItemId, ItemPatch, NewItem, Version};
use crate::store::{Store, WriteError};

/// The catalog of items kept in SQL.
pub type ItemCatalog = Catalog<Store>;

/// The writes of items.
pub trait ItemWrites {
    /// Creates an item and writes it through to Redis, so that the next
    /// read is a hit (see [`Catalog::write_created`]).
    fn create(&self, new: NewItem) -> impl Future<Output = Result<Item, WriteError>> + Send;

    /// Changes the fields `patch` sets, if the item is at `expected` (when
    /// given).
    fn update(
        &self,
        id: &ItemId,
        patch: &ItemPatch,
        expected: Option<Version>,
    ) -> impl Future<Output = Result<Item, WriteError>> + Send;

    /// Deletes the item, if it is at `expected` (when given).
    fn delete(
        &self,
        id: &ItemId,
        expected: Option<Version>,
    ) -> impl Future<Output = Result<(), WriteError>> + Send;
}

impl ItemWrites for ItemCatalog {
    async fn create(&self, new: NewItem) -> Result<Item, WriteError> {
        let store = self.source().clone();
        let id = new.id.clone();
        self.write_created(id, "INSERT", async move { store.insert(&new).await })
            .await
    }

    async fn update(
        &self,
        id: &ItemId,
        patch: &ItemPatch,
        expected: Option<Version>,
    ) -> Result<Item, WriteError> {
        let (store, key, patch) = (self.source().clone(), id.clone(), patch.clone());
        self.write(id.clone(), "UPDATE", async move {
            store.update(&key, &patch, expected).await
        })
        .await
    }

    async fn delete(&self, id: &ItemId, expected: Option<Version>) -> Result<(), WriteError> {
        let (store, key) = (self.source().clone(), id.clone());
        self.write(id.clone(), "DELETE", async move {
            store.delete(&key, expected).await
        })
        .await
    }
}
