//! Items, and the validated shapes in which new items and changes arrive.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::ItemId;

pub const MAX_NAME_CHARS: usize = 200;
pub const MAX_DESCRIPTION_CHARS: usize = 2000;
pub const MAX_CATEGORY_CHARS: usize = 100;

/// An item as stored in the source of truth and served to clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({
    "id": "1", "name": "Laptop Pro", "description": "High-performance laptop for developers",
    "price": 1299.99, "category": "Electronics", "stock": 15,
    "created_at": "2026-11-26T14:03:48.920431Z", "updated_at": "2026-11-27T13:03:48.920431Z",
    "version": 1
}))]
pub struct Item {
    /// 1 to 64 characters of `[A-Za-z0-9._-]`.
    #[schema(value_type = String, pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub id: ItemId,
    /// 1 to 200 characters.
    pub name: String,
    /// At most 2000 characters.
    pub description: String,
    #[schema(minimum = 0.0)]
    pub price: f64,
    /// At most 100 characters.
    pub category: String,
    #[schema(minimum = 0)]
    pub stock: i64,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
    /// 1 on creation, +1 on every update; also the `ETag`.
    #[schema(value_type = i64, minimum = 1)]
    pub version: Version,
}

impl crate::cache::Cacheable for Item {
    type Id = ItemId;

    fn id(&self) -> &ItemId {
        &self.id
    }

    fn version(&self) -> i64 {
        self.version.0
    }
}

/// Row version: 1 on creation, +1 on every update. Doubles as the HTTP entity tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Version(pub i64);

impl Version {
    pub const FIRST: Version = Version(1);
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The fields a client may send when creating or changing an item. Everything is
/// optional here; [`NewItem::parse`] and [`ItemPatch::parse`] decide what is
/// required. Server-managed fields (`created_at`, `updated_at`, `version`) are
/// deliberately absent, so a client sending them is ignored rather than obeyed.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct ItemFields {
    /// Creation: generated when absent or empty. Update: ignored when absent
    /// or empty (as Go clients send it), else it must be the path's id.
    #[schema(pattern = "^([A-Za-z0-9._-]{1,64})?$")]
    pub id: Option<String>,
    /// Required on creation; 1 to 200 characters.
    pub name: Option<String>,
    /// At most 2000 characters (default empty).
    pub description: Option<String>,
    /// A number ≥ 0 (default 0).
    #[schema(minimum = 0.0)]
    pub price: Option<f64>,
    /// At most 100 characters (default empty).
    pub category: Option<String>,
    /// An integer ≥ 0 (default 0).
    #[schema(minimum = 0)]
    pub stock: Option<i64>,
}

/// A field that failed validation, with a message meant for the client.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: &'static str,
    pub message: String,
}

impl ValidationError {
    fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

/// A valid item that does not exist yet.
#[derive(Debug, Clone, PartialEq)]
pub struct NewItem {
    pub id: ItemId,
    pub name: String,
    pub description: String,
    pub price: f64,
    pub category: String,
    pub stock: i64,
}

impl NewItem {
    /// `name` is required; `price` and `stock` default to 0 and the texts to
    /// empty, as in the original API; a missing (or empty) id is generated.
    pub fn parse(fields: ItemFields) -> Result<Self, ValidationError> {
        let id = match fields.id.filter(|raw| !raw.is_empty()) {
            Some(raw) => {
                ItemId::parse(&raw).map_err(|e| ValidationError::new("id", e.to_string()))?
            }
            None => ItemId::generate(),
        };
        let name = fields
            .name
            .ok_or_else(|| ValidationError::new("name", "is required"))?;
        Ok(Self {
            id,
            name: name_field(name)?,
            description: text_field("description", fields.description, MAX_DESCRIPTION_CHARS)?
                .unwrap_or_default(),
            price: price_field(fields.price)?.unwrap_or(0.0),
            category: text_field("category", fields.category, MAX_CATEGORY_CHARS)?
                .unwrap_or_default(),
            stock: stock_field(fields.stock)?.unwrap_or(0),
        })
    }
}

/// A valid partial update: `None` keeps the stored value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ItemPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub price: Option<f64>,
    pub category: Option<String>,
    pub stock: Option<i64>,
}

impl ItemPatch {
    /// `path_id` is the id from the URL; an `id` in the body must agree with
    /// it, unless empty (Go marshals an unset string as `""`).
    pub fn parse(path_id: &ItemId, fields: ItemFields) -> Result<Self, ValidationError> {
        if let Some(raw) = fields.id
            && !raw.is_empty()
            && raw != path_id.as_str()
        {
            return Err(ValidationError::new(
                "id",
                "does not match the id in the path (ids cannot be changed)",
            ));
        }
        Ok(Self {
            name: fields.name.map(name_field).transpose()?,
            description: text_field("description", fields.description, MAX_DESCRIPTION_CHARS)?,
            price: price_field(fields.price)?,
            category: text_field("category", fields.category, MAX_CATEGORY_CHARS)?,
            stock: stock_field(fields.stock)?,
        })
    }
}

fn name_field(name: String) -> Result<String, ValidationError> {
    if name.trim().is_empty() {
        return Err(ValidationError::new("name", "must not be blank"));
    }
    check_length("name", &name, MAX_NAME_CHARS)?;
    Ok(name)
}

fn text_field(
    field: &'static str,
    value: Option<String>,
    max_chars: usize,
) -> Result<Option<String>, ValidationError> {
    if let Some(text) = &value {
        check_length(field, text, max_chars)?;
    }
    Ok(value)
}

fn check_length(field: &'static str, text: &str, max_chars: usize) -> Result<(), ValidationError> {
    // PostgreSQL cannot store U+0000 in text and SQLite's length() stops at it.
    if text.contains('\0') {
        return Err(ValidationError::new(
            field,
            "must not contain NUL characters",
        ));
    }
    if text.chars().count() > max_chars {
        return Err(ValidationError::new(
            field,
            format!("must be at most {max_chars} characters"),
        ));
    }
    Ok(())
}

fn price_field(price: Option<f64>) -> Result<Option<f64>, ValidationError> {
    match price {
        Some(p) if !p.is_finite() || p < 0.0 => Err(ValidationError::new(
            "price",
            "must be a finite number greater than or equal to 0",
        )),
        // `-0.0 >= 0.0`; store it as a plain zero.
        Some(p) => Ok(Some(p + 0.0)),
        None => Ok(None),
    }
}

fn stock_field(stock: Option<i64>) -> Result<Option<i64>, ValidationError> {
    match stock {
        Some(s) if s < 0 => Err(ValidationError::new(
            "stock",
            "must be an integer greater than or equal to 0",
        )),
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(json: &str) -> ItemFields {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn new_item_takes_the_original_create_body() {
        let item = NewItem::parse(fields(
            r#"{"id":"100","name":"New Product","price":99.99,"category":"Electronics","stock":10}"#,
        ))
        .unwrap();
        assert_eq!(item.id.as_str(), "100");
        assert_eq!(item.name, "New Product");
        assert_eq!(item.description, "");
        assert_eq!(item.price, 99.99);
        assert_eq!(item.stock, 10);
    }

    #[test]
    fn new_item_generates_an_id_when_absent() {
        let item = NewItem::parse(fields(r#"{"name":"x"}"#)).unwrap();
        assert!(ItemId::parse(item.id.as_str()).is_ok());
        assert_eq!((item.price, item.stock), (0.0, 0));
    }

    /// As Go's encoding/json marshals an item whose id and timestamps are
    /// unset: an empty id is absent, the zero time is ignored.
    #[test]
    fn new_item_takes_a_whole_item_as_go_marshals_it() {
        let item = NewItem::parse(fields(
            r#"{"id":"","name":"x","description":"","price":0,"category":"","stock":0,"created_at":"0001-01-01T00:00:00Z","updated_at":"0001-01-01T00:00:00Z","version":0}"#,
        ))
        .unwrap();
        assert!(ItemId::parse(item.id.as_str()).is_ok());
        assert_eq!(item.name, "x");
    }

    #[test]
    fn new_item_rejects_each_bad_field_by_name() {
        let cases = [
            (r#"{}"#, "name"),
            (r#"{"name":"  "}"#, "name"),
            (r#"{"name":"x","id":"a*b"}"#, "id"),
            (r#"{"name":"x","price":-0.01}"#, "price"),
            (r#"{"name":"x","stock":-1}"#, "stock"),
        ];
        for (body, field) in cases {
            let err = NewItem::parse(fields(body)).unwrap_err();
            assert_eq!(err.field, field, "{body}");
        }
        let long =
            |field: &str, n: usize| format!(r#"{{"name":"x","{field}":"{}"}}"#, "é".repeat(n));
        assert!(NewItem::parse(fields(&long("description", 2000))).is_ok());
        assert_eq!(
            NewItem::parse(fields(&long("description", 2001)))
                .unwrap_err()
                .field,
            "description"
        );
        assert_eq!(
            NewItem::parse(fields(&long("category", 101)))
                .unwrap_err()
                .field,
            "category"
        );
        assert_eq!(
            NewItem::parse(fields(r#"{"name":"a\u0000b"}"#))
                .unwrap_err()
                .field,
            "name"
        );
        assert_eq!(
            NewItem::parse(fields(r#"{"name":"a","category":"\u0000"}"#))
                .unwrap_err()
                .field,
            "category"
        );
        assert!(NewItem::parse(fields(r#"{"name":"tab\tand\nnewline"}"#)).is_ok());
        let name = format!(r#"{{"name":"{}"}}"#, "n".repeat(201));
        assert_eq!(NewItem::parse(fields(&name)).unwrap_err().field, "name");
    }

    #[test]
    fn negative_zero_price_is_stored_as_zero() {
        let item = NewItem::parse(fields(r#"{"name":"x","price":-0.0}"#)).unwrap();
        assert!(item.price.is_sign_positive());
    }

    #[test]
    fn patch_keeps_omitted_fields_and_checks_the_id() {
        let id = ItemId::parse("100").unwrap();
        let patch =
            ItemPatch::parse(&id, fields(r#"{"name":"Updated Product","price":149.99}"#)).unwrap();
        assert_eq!(patch.name.as_deref(), Some("Updated Product"));
        assert_eq!(patch.price, Some(149.99));
        assert_eq!(
            (patch.description, patch.category, patch.stock),
            (None, None, None)
        );
        assert!(ItemPatch::parse(&id, fields(r#"{"id":"100"}"#)).is_ok());
        assert!(ItemPatch::parse(&id, fields(r#"{"id":""}"#)).is_ok());
        assert_eq!(
            ItemPatch::parse(&id, fields(r#"{"id":"101"}"#))
                .unwrap_err()
                .field,
            "id"
        );
    }

    #[test]
    fn item_json_has_the_documented_fields_in_order() {
        let item = Item {
            id: ItemId::parse("1").unwrap(),
            name: "Laptop Pro".into(),
            description: "d".into(),
            price: 1299.99,
            category: "Electronics".into(),
            stock: 15,
            created_at: time::macros::datetime!(2026-01-02 03:04:05.123456 UTC),
            updated_at: time::macros::datetime!(2026-01-02 03:04:05 UTC),
            version: Version::FIRST,
        };
        let json = serde_json::to_string(&item).unwrap();
        assert_eq!(
            json,
            r#"{"id":"1","name":"Laptop Pro","description":"d","price":1299.99,"category":"Electronics","stock":15,"created_at":"2026-01-02T03:04:05.123456Z","updated_at":"2026-01-02T03:04:05Z","version":1}"#
        );
        assert_eq!(serde_json::from_str::<Item>(&json).unwrap(), item);
    }
}
