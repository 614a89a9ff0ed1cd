//! [`SqlStore`]: connecting, pools and options.

use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::{Any, AnyPool, Transaction};
use sse_core::{NotificationPolicy, Retention, StoreError};

use crate::error::{SqlStoreError, store_error};
use crate::{Backend, migrate};

/// The event log and notification inbox on SQLite or PostgreSQL: an
/// [`EventLog`](sse_core::EventLog) for every durable audience and a
/// [`NotificationStore`](sse_core::NotificationStore) that writes its
/// changes through it, each change in the same transaction as the
/// notification it records.
///
/// Connect with [`SqlStore::connect`] (or [`SqlStore::builder`] for
/// options): the URL picks the database. Migrations are applied on connect
/// unless disabled.
///
/// # Ordering
///
/// Every append takes its positions by updating the single row of
/// `sse_log_head` in the appending transaction. The update holds that
/// row's lock until commit, so appends run one after another: positions are
/// dense, and each append commits before the next one is assigned — they
/// become visible in position order, which a sequence alone would not give
/// (transactions holding sequence values commit in any order). SQLite gets
/// the same from its single writer. A batch
/// ([`EventLog::append`](sse_core::EventLog::append) with many events,
/// [`NotificationStore::create_many`](sse_core::NotificationStore::create_many))
/// takes its positions in one update and commits once.
///
/// The unread count lives on the recipient's row of `sse_recipients`,
/// adjusted by each change, so reading it never scans.
///
/// # SQLite settings
///
/// Every SQLite connection the store opens runs in WAL mode with
/// `synchronous = NORMAL`: a commit survives the process crashing, while a
/// power loss may roll back the last commits (never corrupt the file).
/// Writers wait up to 5 s for the lock (`busy_timeout`). The WAL is copied
/// back into the database every 10,000 pages (about 40 MB; SQLite's default
/// is 1,000) and cut back to 64 MiB after, because a batch of
/// notifications dirties index pages all over the file and a longer WAL
/// writes each of them back once for many commits. Statement journals stay
/// in memory (`temp_store = MEMORY`). These are per connection: the
/// application's own connections to the same file keep theirs.
///
/// Cloning gives another handle to the same pools.
#[derive(Clone)]
pub struct SqlStore {
    pub(crate) writer: AnyPool,
    pub(crate) reader: AnyPool,
    pub(crate) backend: Backend,
    pub(crate) retention: Retention,
    pub(crate) policy: NotificationPolicy,
}

/// Set on every SQLite connection (see "SQLite settings" on [`SqlStore`]).
/// WAL lets readers run beside the writer; waiting on the lock beats
/// failing with `SQLITE_BUSY`; a multi-row statement journals the pages it
/// changes so that it alone can be undone, in memory rather than in a
/// temporary file. The longer WAL made `notify_many` 1.5x faster
/// (BENCHMARKS.md).
const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000; \
    PRAGMA synchronous = NORMAL; PRAGMA temp_store = MEMORY; \
    PRAGMA wal_autocheckpoint = 10000; PRAGMA journal_size_limit = 67108864;";

/// Options for [`SqlStore`]; see [`SqlStore::builder`].
#[derive(Debug, Clone)]
#[must_use = "call `connect` to open the store"]
pub struct SqlStoreBuilder {
    url: String,
    retention: Retention,
    policy: NotificationPolicy,
    max_connections: u32,
    acquire_timeout: Duration,
    run_migrations: bool,
}

impl SqlStoreBuilder {
    /// How much history the event log keeps for replay (default: the
    /// newest 100,000 events). Appends prune it as they go; see also
    /// [`SqlStore::prune`].
    pub fn retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// The limits new notifications are checked against (default:
    /// [`NotificationPolicy::default`]).
    pub fn policy(mut self, policy: NotificationPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The largest pool (default 10; SQLite uses one writer and this many readers).
    pub fn max_connections(mut self, max: u32) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// How long an operation waits for a connection before failing with
    /// [`StoreError::Unavailable`] (default 5 s): a database outage answers
    /// quickly instead of hanging requests.
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// Whether to apply the shipped migrations on connect (default `true`).
    /// Teams that run migrations themselves take the SQL from
    /// [`migrate::SQLITE`] and [`migrate::POSTGRES`].
    pub fn run_migrations(mut self, run: bool) -> Self {
        self.run_migrations = run;
        self
    }

    /// Connects (creating the SQLite file if needed) and migrates.
    pub async fn connect(self) -> Result<SqlStore, SqlStoreError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of(&self.url)?;
        let options = |max: u32| {
            AnyPoolOptions::new()
                .max_connections(max)
                .acquire_timeout(self.acquire_timeout)
                .after_connect(move |conn, _| {
                    Box::pin(async move {
                        if backend == Backend::Sqlite {
                            // See "SQLite settings" on `SqlStore`.
                            sqlx::raw_sql(SQLITE_PRAGMAS).execute(&mut *conn).await?;
                        }
                        Ok(())
                    })
                })
        };
        let connect_failed = |source| SqlStoreError::Connect {
            url: redact(&self.url),
            source,
        };
        let (writer, reader) = match backend {
            Backend::Postgres => {
                let pool = options(self.max_connections)
                    .connect(&self.url)
                    .await
                    .map_err(connect_failed)?;
                (pool.clone(), pool)
            }
            Backend::Sqlite => {
                let url = sqlite_url(&self.url);
                if url.contains(":memory:") {
                    // Every connection to `:memory:` is its own database.
                    let pool = options(1).connect(&url).await.map_err(connect_failed)?;
                    (pool.clone(), pool)
                } else {
                    let writer = options(1).connect(&url).await.map_err(connect_failed)?;
                    let reader = options(self.max_connections)
                        .connect(&url)
                        .await
                        .map_err(connect_failed)?;
                    (writer, reader)
                }
            }
        };
        if self.run_migrations {
            migrate::run(&writer, backend).await?;
        }
        Ok(SqlStore {
            writer,
            reader,
            backend,
            retention: self.retention,
            policy: self.policy,
        })
    }
}

/// SQLite URLs create the file when missing, unless they say otherwise.
fn sqlite_url(url: &str) -> String {
    if url.contains(":memory:") || url.contains("mode=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}

/// The URL without its secrets, for error messages.
pub(crate) use sse_core::redact_url as redact;

impl SqlStore {
    /// Connects to `url` with default options: `sqlite://PATH` (created if
    /// missing, WAL mode), `sqlite::memory:`, or `postgres://…`.
    pub async fn connect(url: &str) -> Result<Self, SqlStoreError> {
        Self::builder(url).connect().await
    }

    /// Options for connecting to `url`.
    pub fn builder(url: impl Into<String>) -> SqlStoreBuilder {
        SqlStoreBuilder {
            url: url.into(),
            retention: Retention::default(),
            policy: NotificationPolicy::default(),
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
            run_migrations: true,
        }
    }

    /// Which database this store is on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub(crate) fn writer_pool(&self) -> &AnyPool {
        &self.writer
    }

    /// Closes the pools; operations afterwards fail.
    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }

    /// A write transaction; on SQLite it takes the write lock up front (a
    /// deferred transaction that reads, then writes, could fail to
    /// upgrade).
    pub async fn begin(&self) -> Result<Transaction<'static, Any>, StoreError> {
        let begin = match self.backend {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        };
        self.writer.begin_with(begin).await.map_err(store_error)
    }
}

impl std::fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore")
            .field("backend", &self.backend)
            .field("retention", &self.retention)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// Positions, counts and ids are never negative in the schema; clamp
/// defensively.
pub(crate) fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

pub(crate) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(sqlite_url("sqlite://a.db"), "sqlite://a.db?mode=rwc");
        assert_eq!(
            sqlite_url("sqlite://a.db?x=1"),
            "sqlite://a.db?x=1&mode=rwc"
        );
        assert_eq!(sqlite_url("sqlite::memory:"), "sqlite::memory:");
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }
}
