//! The original example's three demo items, inserted on the first start of an
//! empty database so its `curl` walkthrough works out of the box.

use time::Duration;

use super::{INSERT, Store, StoreError, now};

struct DemoItem {
    id: &'static str,
    name: &'static str,
    description: &'static str,
    price: f64,
    category: &'static str,
    stock: i64,
    /// The original's timestamps were relative to "now": created 24/48/72 h ago,
    /// updated 1/2/3 h ago. We keep that, relative to the first start.
    created_hours_ago: i64,
    updated_hours_ago: i64,
}

const DEMO_ITEMS: [DemoItem; 3] = [
    DemoItem {
        id: "1",
        name: "Laptop Pro",
        description: "High-performance laptop for developers",
        price: 1299.99,
        category: "Electronics",
        stock: 15,
        created_hours_ago: 24,
        updated_hours_ago: 1,
    },
    DemoItem {
        id: "2",
        name: "Wireless Mouse",
        description: "Ergonomic wireless mouse",
        price: 29.99,
        category: "Accessories",
        stock: 50,
        created_hours_ago: 48,
        updated_hours_ago: 2,
    },
    DemoItem {
        id: "3",
        name: "Mechanical Keyboard",
        description: "RGB mechanical gaming keyboard",
        price: 149.99,
        category: "Accessories",
        stock: 25,
        created_hours_ago: 72,
        updated_hours_ago: 3,
    },
];

const MARK_INITIALIZED: &str = "INSERT INTO store_meta (name, value) VALUES ('initialized_at', $1) ON CONFLICT (name) DO NOTHING";

/// What [`Store::initialize`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstStart {
    /// The database had been initialised by an earlier start.
    No,
    Yes {
        demo_items: usize,
    },
}

impl Store {
    /// Records the database's first start and, on that start only, inserts the
    /// demo items when asked to. One transaction, so instances starting
    /// together on one PostgreSQL database seed it exactly once, and deleting
    /// the demo items later does not bring them back on restart.
    pub async fn initialize(&self, with_demo_data: bool) -> Result<FirstStart, StoreError> {
        let started = now();
        let stamp = started
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let first = sqlx::query(MARK_INITIALIZED)
                .bind(&stamp)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
            let mut demo_items = 0;
            if first && with_demo_data {
                for demo in &DEMO_ITEMS {
                    demo_items += sqlx::query(INSERT)
                        .bind(demo.id)
                        .bind(demo.name)
                        .bind(demo.description)
                        .bind(demo.price)
                        .bind(demo.category)
                        .bind(demo.stock)
                        .bind(started - Duration::hours(demo.created_hours_ago))
                        .bind(started - Duration::hours(demo.updated_hours_ago))
                        .execute(&mut *tx)
                        .await?
                        .rows_affected() as usize;
                }
            }
            tx.commit().await?;
            Ok(if first { FirstStart::Yes { demo_items } } else { FirstStart::No })
        })
    }
}
