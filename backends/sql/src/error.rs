use sse_core::StoreError;

/// Why a [`SqlStore`](crate::SqlStore) could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SqlStoreError {
    /// The URL's scheme is not one this build supports.
    #[error(
        "unsupported database URL {url:?}: use sqlite://PATH, sqlite::memory: or postgres://… (with the matching `sqlite` / `postgres` feature of sse-sqlx)"
    )]
    UnsupportedUrl {
        /// The URL given (without its password).
        url: String,
    },
    /// Connecting failed.
    #[error(
        "could not connect to {url}: {source}; check that the database is running and the URL is right"
    )]
    Connect {
        /// The URL (without its password).
        url: String,
        /// The driver's error.
        source: sqlx::Error,
    },
    /// A migration this database applied differs from the one this build
    /// ships: someone edited a released migration.
    #[error(
        "migration {version} was applied with a different SQL text (checksum {recorded}, this build ships {shipped}); released migrations must not change: restore it and add a new migration instead"
    )]
    MigrationChanged {
        /// The migration's version.
        version: i64,
        /// The checksum recorded when it was applied.
        recorded: String,
        /// The checksum of the SQL this build ships.
        shipped: String,
    },
    /// A `PostgresHub` channel name PostgreSQL would
    /// not take as given.
    #[error(
        "invalid LISTEN channel {channel:?}: use 1 to 63 lower-case letters, digits and `_`, such as `sse_hub`"
    )]
    InvalidChannel {
        /// The channel given.
        channel: String,
    },
    /// The hub could not start on the database it connected to.
    #[error(
        "the PostgreSQL hub could not start: {0}; check that the database runs and the role may LISTEN and NOTIFY"
    )]
    Hub(String),
    /// A migration failed; the database is left at the previous version.
    #[error("applying migration {version} failed: {source}")]
    Migrate {
        /// The migration's version (0: the bookkeeping around them).
        version: i64,
        /// The driver's error.
        source: sqlx::Error,
    },
}

/// Maps a driver error: an unreachable database is `Unavailable` (callers
/// retry; streams answer 503), anything else a `Backend` failure.
pub(crate) fn store_error(error: sqlx::Error) -> StoreError {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(Box::new(error)),
        sqlx::Error::Database(ref db) if is_unavailable(db.code().as_deref()) => {
            StoreError::Unavailable(Box::new(error))
        }
        other => StoreError::Backend(Box::new(other)),
    }
}

/// SQLSTATE classes of a database that is shutting down or not accepting
/// connections (PostgreSQL `57P0x`, `08xxx`), and SQLite's busy/locked codes.
fn is_unavailable(code: Option<&str>) -> bool {
    code.is_some_and(|code| {
        code.starts_with("57P") || code.starts_with("08") || code == "5" || code == "6"
    })
}

pub(crate) fn backend_error(error: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Backend(Box::new(error))
}
