//! The source of truth: items in SQL, SQLite for a single instance (default) or
//! PostgreSQL for several. Both dialects run the same statements where SQL
//! allows it; each has its own migrations folder.

/// Expands `$body` once per dialect with `$pool` bound to that dialect's pool,
/// so statements shared by both are written once yet type-checked for each.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store {
            Store::Sqlite($pool) => $body,
            Store::Postgres($pool) => $body,
        }
    };
}

mod demo;
mod url;

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};
use time::OffsetDateTime;

use crate::catalog::{Source, SourceFailure, WriteFailure};
use crate::domain::{Item, ItemId, ItemPatch, NewItem, Version};
pub use demo::FirstStart;
pub use url::{DEFAULT_DATABASE_URL, DatabaseUrl, DatabaseUrlError};

/// A pool for one of the two supported databases. Cloning is cheap.
#[derive(Clone, Debug)]
pub enum Store {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached (or is shutting down, or too busy).
    #[error("source of truth unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// Not tried: the database failed repeatedly moments ago (its circuit
    /// breaker is open).
    #[error("source of truth unavailable: down moments ago, not tried")]
    Down,
    /// The database is reachable but cannot store anything: its disk is full,
    /// an I/O error, a read-only file or server. Nothing was written.
    #[error("source of truth cannot write")]
    Storage(#[source] sqlx::Error),
    #[error("source of truth query failed")]
    Query(#[source] sqlx::Error),
    /// The database refused the values (a constraint or encoding check);
    /// validation should have caught it, so it is reported as bad input.
    #[error("the database refused the values")]
    Rejected(#[source] sqlx::Error),
    #[error("stored row has an invalid id {0:?}")]
    CorruptRow(String),
}

impl StoreError {
    /// A short, bounded name for metrics and spans (`error.type`).
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::Unavailable(_) => "unavailable",
            StoreError::Storage(_) => "storage",
            StoreError::Down => "down",
            StoreError::Query(_) => "query",
            StoreError::Rejected(_) => "rejected",
            StoreError::CorruptRow(_) => "corrupt_row",
        }
    }

    /// Whether retrying later may succeed: the database is unreachable or
    /// cannot write for now (503), as opposed to a query that fails.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable(_) | StoreError::Storage(_) | StoreError::Down
        )
    }

    /// Whether the database itself could not be reached (as opposed to a busy
    /// SQLite file or a cancelled statement): what opens its circuit breaker.
    pub fn is_outage(&self) -> bool {
        let StoreError::Unavailable(err) = self else {
            return false;
        };
        match err {
            sqlx::Error::Database(db) => db
                .code()
                .is_some_and(|code| !is_sqlite(db.as_ref()) && code != "57014"),
            _ => true,
        }
    }

    /// Whether a write that failed with this error may still have been
    /// committed: false only when the database certainly never ran it (no
    /// connection could be had, it refused the login or the values) or
    /// rolled it back (a full disk).
    pub fn may_have_applied(&self) -> bool {
        match self {
            StoreError::Rejected(_) | StoreError::Down => false,
            StoreError::Storage(sqlx::Error::Database(db)) => !is_full(db.as_ref()),
            StoreError::Unavailable(
                sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Tls(_),
            ) => false,
            StoreError::Unavailable(sqlx::Error::Database(db)) => !db.code().is_some_and(|code| {
                matches!(
                    code.as_ref(),
                    "53300" | "55000" | "3D000" | "28000" | "28P01"
                )
            }),
            _ => true,
        }
    }
}

impl SourceFailure for StoreError {
    fn kind(&self) -> &'static str {
        StoreError::kind(self)
    }

    fn is_outage(&self) -> bool {
        StoreError::is_outage(self)
    }

    fn is_unavailable(&self) -> bool {
        StoreError::is_unavailable(self)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("item not found")]
    NotFound,
    #[error("an item with this id already exists")]
    AlreadyExists,
    #[error("item is at version {current}")]
    VersionMismatch { current: Version },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl WriteFailure for WriteError {
    /// Refusals (not found, exists, a version conflict) are no failure.
    fn kind(&self) -> Option<&'static str> {
        match self {
            WriteError::Store(err) => Some(err.kind()),
            _ => None,
        }
    }

    fn is_outage(&self) -> bool {
        matches!(self, WriteError::Store(err) if err.is_outage())
    }

    /// Refusals by the store and errors before the write reached the
    /// database are certain no-ops.
    fn may_have_committed(&self) -> bool {
        match self {
            WriteError::NotFound
            | WriteError::AlreadyExists
            | WriteError::VersionMismatch { .. } => false,
            WriteError::Store(err) => err.may_have_applied(),
        }
    }

    fn source_down() -> Self {
        WriteError::Store(StoreError::Down)
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        if is_unavailable(&err) {
            StoreError::Unavailable(err)
        } else if is_storage_failure(&err) {
            StoreError::Storage(err)
        } else if is_rejected_input(&err) {
            StoreError::Rejected(err)
        } else {
            StoreError::Query(err)
        }
    }
}

/// SQLite reports extended result codes (e.g. 517 = BUSY_SNAPSHOT); the
/// primary code is the low byte.
fn sqlite_primary_code(code: &str) -> Option<i64> {
    code.parse::<i64>().ok().map(|c| c & 0xff)
}

fn is_rejected_input(err: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = err else {
        return false;
    };
    let Some(code) = db.code() else { return false };
    // PostgreSQL: check violation, not-null violation, invalid encoding or
    // character; SQLite: CONSTRAINT (19).
    matches!(code.as_ref(), "23514" | "23502" | "22021" | "22P05")
        || (is_sqlite(db.as_ref()) && sqlite_primary_code(&code) == Some(19))
}

fn is_sqlite(db: &dyn sqlx::error::DatabaseError) -> bool {
    db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some()
}

/// SQLite: FULL (13); PostgreSQL: disk full (53100).
fn is_full(db: &dyn sqlx::error::DatabaseError) -> bool {
    let Some(code) = db.code() else { return false };
    if is_sqlite(db) {
        sqlite_primary_code(&code) == Some(13)
    } else {
        code == "53100"
    }
}

/// The database cannot write, whatever the statement: SQLite READONLY (8),
/// IOERR (10), FULL (13), CANTOPEN (14); PostgreSQL insufficient resources
/// (53…: disk full, out of memory), system errors (58…: I/O), a read-only
/// transaction (25006: a standby, as after a failover).
fn is_storage_failure(err: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = err else {
        return false;
    };
    let Some(code) = db.code() else { return false };
    if is_sqlite(db.as_ref()) {
        matches!(sqlite_primary_code(&code), Some(8 | 10 | 13 | 14))
    } else {
        code.starts_with("53") || code.starts_with("58") || code == "25006"
    }
}

impl From<sqlx::Error> for WriteError {
    fn from(err: sqlx::Error) -> Self {
        WriteError::Store(err.into())
    }
}

fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            if is_sqlite(db.as_ref()) {
                // BUSY (5) and LOCKED (6), extended codes included.
                return matches!(sqlite_primary_code(&code), Some(5 | 6));
            }
            // PostgreSQL: connection exceptions (08…), shutdown (57P0x), a
            // cancelled statement (57014), too many connections (53300), and
            // refusals while connecting: database not accepting connections
            // (55000), gone (3D000), login refused (28000, 28P01).
            code.starts_with("08")
                || code.starts_with("57P0")
                || matches!(
                    code.as_ref(),
                    "57014" | "53300" | "55000" | "3D000" | "28000" | "28P01"
                )
        }),
        _ => false,
    }
}

/// The item columns, in the order of [`ItemRow`].
macro_rules! columns {
    () => {
        "id, name, description, price, category, stock, created_at, updated_at, version"
    };
}

const SELECT_ONE: &str = concat!("SELECT ", columns!(), " FROM items WHERE id = $1");
const SELECT_MANY_SQLITE: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM items WHERE id IN (SELECT value FROM json_each($1))"
);
const SELECT_MANY_POSTGRES: &str = concat!("SELECT ", columns!(), " FROM items WHERE id = ANY($1)");
const SELECT_RECENT_IDS: &str = "SELECT id FROM items ORDER BY updated_at DESC, id LIMIT $1";
const INSERT: &str = concat!(
    "INSERT INTO items (",
    columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1) ON CONFLICT (id) DO NOTHING RETURNING ",
    columns!()
);
/// `$8` is the version the client expects (`If-Match`), or NULL for any.
const UPDATE: &str = concat!(
    "UPDATE items SET name = COALESCE($2, name), description = COALESCE($3, description), ",
    "price = COALESCE($4, price), category = COALESCE($5, category), ",
    "stock = COALESCE($6, stock), updated_at = $7, version = version + 1 ",
    "WHERE id = $1 AND ($8 IS NULL OR version = $8) RETURNING ",
    columns!()
);
const DELETE: &str = "DELETE FROM items WHERE id = $1 AND ($2 IS NULL OR version = $2)";
const SELECT_VERSION: &str = "SELECT version FROM items WHERE id = $1";

#[derive(sqlx::FromRow)]
struct ItemRow {
    id: String,
    name: String,
    description: String,
    price: f64,
    category: String,
    stock: i64,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
    version: i64,
}

impl TryFrom<ItemRow> for Item {
    type Error = StoreError;

    fn try_from(row: ItemRow) -> Result<Self, StoreError> {
        Ok(Item {
            id: ItemId::parse(&row.id).map_err(|_| StoreError::CorruptRow(row.id.clone()))?,
            name: row.name,
            description: row.description,
            price: row.price,
            category: row.category,
            stock: row.stock,
            created_at: row.created_at,
            updated_at: row.updated_at,
            version: Version(row.version),
        })
    }
}

fn to_items(rows: Vec<ItemRow>) -> Result<Vec<Item>, StoreError> {
    rows.into_iter().map(Item::try_from).collect()
}

/// Current time at the precision both databases keep (microseconds), so an
/// item reads back exactly as it was written.
pub fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(now.nanosecond() / 1_000 * 1_000)
        .unwrap_or(now)
}

/// Opens the PostgreSQL pool, waiting up to [`STARTUP_WAIT`] for a database
/// that is not reachable yet (containers starting together); errors that
/// waiting cannot fix, such as a wrong password, fail at once.
async fn connect_postgres(
    options: PgConnectOptions,
    max_connections: u32,
    acquire_timeout: Duration,
) -> Result<PgPool, sqlx::Error> {
    let started = std::time::Instant::now();
    let mut backoff =
        crate::backoff::Backoff::new(Duration::from_millis(200), Duration::from_secs(3));
    loop {
        let attempt = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(acquire_timeout)
            .connect_with(options.clone())
            .await;
        match attempt {
            Err(err) if is_unreachable(&err) && started.elapsed() < STARTUP_WAIT => {
                tracing::warn!(error = %err, "postgres not reachable yet; retrying");
                tokio::time::sleep(backoff.next_delay()).await;
            }
            other => return other,
        }
    }
}

/// How long start-up waits for an unreachable PostgreSQL.
const STARTUP_WAIT: Duration = Duration::from_secs(30);

fn is_unreachable(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut)
        || matches!(err, sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("57P0")))
}

/// Takes an exclusive lock on `<database>-migrate.lock`, held until the
/// returned file is dropped.
async fn lock_beside(database: &std::path::Path) -> anyhow::Result<std::fs::File> {
    let mut name = database.as_os_str().to_owned();
    name.push("-migrate.lock");
    let path = std::path::PathBuf::from(name);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    tokio::task::spawn_blocking(move || file.lock().map(|()| file))
        .await
        .context("migration lock task failed")?
        .with_context(|| format!("cannot lock {}", path.display()))
}

impl Store {
    /// Connects, creating the SQLite file (and its folder) if needed, and runs
    /// the dialect's migrations. A query waits at most `acquire_timeout` for
    /// a pooled connection (`SOURCE_TIMEOUT`): a dead database turns into a
    /// quick 503, not a request hung in the pool's queue.
    pub async fn connect(
        url: &DatabaseUrl,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> anyhow::Result<Self> {
        let store = match url {
            DatabaseUrl::Sqlite(raw) => {
                let options = SqliteConnectOptions::from_str(raw.expose())
                    .context("DATABASE_URL is not a valid sqlite URL")?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    // FULL: a commit acknowledged to a client survives power loss.
                    .synchronous(SqliteSynchronous::Full)
                    .busy_timeout(Duration::from_secs(5))
                    .foreign_keys(true);
                if let Some(dir) = options.get_filename().parent()
                    && !dir.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(dir).with_context(|| {
                        format!("cannot create the database folder {}", dir.display())
                    })?;
                }
                // Instances sharing the file may start together; sqlx takes no
                // lock for SQLite migrations, so a file lock beside the
                // database makes them apply once.
                let database = options.get_filename().to_owned();
                let _migrating =
                    if database.as_os_str().is_empty() || raw.expose().contains(":memory:") {
                        None
                    } else {
                        Some(lock_beside(&database).await?)
                    };
                let pool = SqlitePoolOptions::new()
                    .max_connections(max_connections)
                    .acquire_timeout(acquire_timeout)
                    .connect_with(options)
                    .await
                    .with_context(|| format!("cannot open the sqlite database {url}"))?;
                sqlx::migrate!("./migrations/sqlite")
                    .run(&pool)
                    .await
                    .context("sqlite migrations failed")?;
                Store::Sqlite(pool)
            }
            DatabaseUrl::Postgres(raw) => {
                let options = PgConnectOptions::from_str(raw.expose())
                    .context("DATABASE_URL is not a valid postgres URL")?;
                let pool = connect_postgres(options, max_connections, acquire_timeout)
                    .await
                    .with_context(|| format!("cannot connect to postgres at {url}"))?;
                // Migrations take an advisory lock, so instances starting
                // together apply them once.
                sqlx::migrate!("./migrations/postgres")
                    .run(&pool)
                    .await
                    .context("postgres migrations failed")?;
                Store::Postgres(pool)
            }
        };
        Ok(store)
    }

    pub fn dialect(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(drop))?;
        Ok(())
    }

    pub async fn get(&self, id: &ItemId) -> Result<Option<Item>, StoreError> {
        let row = on_pool!(self, pool => sqlx::query_as::<_, ItemRow>(SELECT_ONE)
            .bind(id.as_str())
            .fetch_optional(pool)
            .await)?;
        row.map(Item::try_from).transpose()
    }

    /// All items among `ids`, in no particular order, with one query.
    pub async fn get_many(&self, ids: &[ItemId]) -> Result<Vec<Item>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = ids.iter().map(ItemId::as_str).collect();
        let rows = match self {
            Store::Sqlite(pool) => {
                let json = serde_json::to_string(&ids).expect("ids serialize");
                sqlx::query_as::<_, ItemRow>(SELECT_MANY_SQLITE)
                    .bind(json)
                    .fetch_all(pool)
                    .await?
            }
            Store::Postgres(pool) => {
                sqlx::query_as::<_, ItemRow>(SELECT_MANY_POSTGRES)
                    .bind(ids)
                    .fetch_all(pool)
                    .await?
            }
        };
        to_items(rows)
    }

    /// The ids of up to `limit` items, most recently updated first.
    pub async fn recent_ids(&self, limit: u32) -> Result<Vec<ItemId>, StoreError> {
        let ids = on_pool!(self, pool => sqlx::query_scalar::<_, String>(SELECT_RECENT_IDS)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await)?;
        ids.into_iter()
            .map(|raw| ItemId::parse(&raw).map_err(|_| StoreError::CorruptRow(raw)))
            .collect()
    }

    /// Inserts `new` unless its id exists. Like every write here, the statement
    /// is run to completion (`fetch_all`, `execute`), never stopped at its
    /// first row: SQLite commits a `RETURNING` statement only when it is
    /// stepped to the end, and a commit that fails there (a full disk, an
    /// I/O error, a deferred constraint) must reach the caller instead of
    /// the row it already returned.
    pub async fn insert(&self, new: &NewItem) -> Result<Item, WriteError> {
        let at = now();
        let rows = on_pool!(self, pool => sqlx::query_as::<_, ItemRow>(INSERT)
            .bind(new.id.as_str())
            .bind(&new.name)
            .bind(&new.description)
            .bind(new.price)
            .bind(&new.category)
            .bind(new.stock)
            .bind(at)
            .bind(at)
            .fetch_all(pool)
            .await)?;
        match rows.into_iter().next() {
            Some(row) => Ok(Item::try_from(row)?),
            None => Err(WriteError::AlreadyExists),
        }
    }

    /// Applies `patch` atomically; with `expected`, only if the stored version
    /// still equals it (the check and the write are one statement).
    pub async fn update(
        &self,
        id: &ItemId,
        patch: &ItemPatch,
        expected: Option<Version>,
    ) -> Result<Item, WriteError> {
        let rows = on_pool!(self, pool => sqlx::query_as::<_, ItemRow>(UPDATE)
            .bind(id.as_str())
            .bind(patch.name.as_deref())
            .bind(patch.description.as_deref())
            .bind(patch.price)
            .bind(patch.category.as_deref())
            .bind(patch.stock)
            .bind(now())
            .bind(expected.map(|v| v.0))
            .fetch_all(pool)
            .await)?;
        match rows.into_iter().next() {
            Some(row) => Ok(Item::try_from(row)?),
            None => Err(self.why_not_written(id, expected).await),
        }
    }

    pub async fn delete(&self, id: &ItemId, expected: Option<Version>) -> Result<(), WriteError> {
        let deleted = on_pool!(self, pool => sqlx::query(DELETE)
            .bind(id.as_str())
            .bind(expected.map(|v| v.0))
            .execute(pool)
            .await
            .map(|done| done.rows_affected()))?;
        if deleted == 1 {
            Ok(())
        } else {
            Err(self.why_not_written(id, expected).await)
        }
    }

    /// After a write matched no row: was the item missing, or at another
    /// version? Without a version condition only a missing row explains it,
    /// even if a concurrent create has made the id exist since.
    async fn why_not_written(&self, id: &ItemId, expected: Option<Version>) -> WriteError {
        if expected.is_none() {
            return WriteError::NotFound;
        }
        let current = on_pool!(self, pool => sqlx::query_scalar::<_, i64>(SELECT_VERSION)
            .bind(id.as_str())
            .fetch_optional(pool)
            .await);
        match current {
            Ok(Some(v)) => WriteError::VersionMismatch {
                current: Version(v),
            },
            Ok(None) => WriteError::NotFound,
            Err(err) => WriteError::Store(err.into()),
        }
    }
}

/// Items in SQL, as the catalog reads them.
impl Source for Store {
    type Id = ItemId;
    type Value = Item;
    type Error = StoreError;

    async fn get_many(&self, ids: &[ItemId]) -> Result<Vec<Item>, StoreError> {
        match ids {
            // The common case, a single lookup, with a plain `WHERE id = ?`.
            [id] => Ok(self.get(id).await?.into_iter().collect()),
            _ => Store::get_many(self, ids).await,
        }
    }

    async fn recent_ids(&self, limit: u32) -> Result<Vec<ItemId>, StoreError> {
        Store::recent_ids(self, limit).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Store::ping(self).await
    }

    fn system(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgresql",
        }
    }

    fn collection(&self) -> &'static str {
        "items"
    }

    fn can_be_down(&self) -> bool {
        matches!(self, Store::Postgres(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_extended_codes_reduce_to_their_primary_code() {
        assert_eq!(sqlite_primary_code("5"), Some(5));
        assert_eq!(sqlite_primary_code("517"), Some(5), "SQLITE_BUSY_SNAPSHOT");
        assert_eq!(
            sqlite_primary_code("262"),
            Some(6),
            "SQLITE_LOCKED_SHAREDCACHE"
        );
        assert_eq!(
            sqlite_primary_code("275"),
            Some(19),
            "SQLITE_CONSTRAINT_CHECK"
        );
    }

    #[test]
    fn now_keeps_microseconds_only() {
        assert_eq!(now().nanosecond() % 1_000, 0);
    }
}
