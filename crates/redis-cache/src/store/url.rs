//! `DatabaseUrl`: which database to use, with credentials kept out of sight.

use std::fmt;
use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;

use crate::secret::Secret;

/// The default: a SQLite file under `./data/`, created on first start.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/redis-cache.db";

#[derive(Clone)]
pub enum DatabaseUrl {
    Sqlite(Secret),
    Postgres(Secret),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatabaseUrlError {
    #[error("must start with sqlite: or postgres://")]
    Scheme,
    #[error("is not a valid {0} URL")]
    Invalid(&'static str),
}

impl DatabaseUrl {
    /// Parses without ever echoing the input: it may hold a password.
    pub fn parse(raw: &str) -> Result<Self, DatabaseUrlError> {
        if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            PgConnectOptions::from_str(raw).map_err(|_| DatabaseUrlError::Invalid("postgres"))?;
            Ok(DatabaseUrl::Postgres(Secret::new(raw)))
        } else if raw.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(raw).map_err(|_| DatabaseUrlError::Invalid("sqlite"))?;
            Ok(DatabaseUrl::Sqlite(Secret::new(raw)))
        } else {
            Err(DatabaseUrlError::Scheme)
        }
    }
}

/// Shows where the database is, never who connects to it.
impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseUrl::Sqlite(raw) => match SqliteConnectOptions::from_str(raw.expose()) {
                Ok(options) => write!(f, "sqlite:{}", options.get_filename().display()),
                Err(_) => f.write_str("sqlite:<invalid>"),
            },
            DatabaseUrl::Postgres(raw) => match PgConnectOptions::from_str(raw.expose()) {
                Ok(options) => write!(
                    f,
                    "postgres://{}:{}/{}",
                    options.get_host(),
                    options.get_port(),
                    options.get_database().unwrap_or("")
                ),
                Err(_) => f.write_str("postgres://<invalid>"),
            },
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_dialect_from_the_scheme() {
        assert!(matches!(
            DatabaseUrl::parse(DEFAULT_DATABASE_URL),
            Ok(DatabaseUrl::Sqlite(_))
        ));
        assert!(matches!(
            DatabaseUrl::parse("postgres://u:p@db:5432/items"),
            Ok(DatabaseUrl::Postgres(_))
        ));
        assert_eq!(
            DatabaseUrl::parse("mysql://x").unwrap_err(),
            DatabaseUrlError::Scheme
        );
    }

    #[test]
    fn display_and_debug_hide_credentials() {
        let url = DatabaseUrl::parse("postgres://admin:s3cret@db.example:6543/items").unwrap();
        for shown in [url.to_string(), format!("{url:?}")] {
            assert!(
                !shown.contains("s3cret") && !shown.contains("admin"),
                "{shown}"
            );
            assert!(shown.contains("db.example:6543/items"), "{shown}");
        }
    }
}
