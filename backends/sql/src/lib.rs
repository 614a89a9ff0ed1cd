//! A durable [`NotificationStore`](sse_core::NotificationStore) on SQLite
//! (embedded, zero setup) or PostgreSQL (production), with the schema
//! shipped in the crate and applied on connect.
//!
//! ```
//! use sse_core::{EventId, NewNotification, NotificationStore, Principal, Replay};
//! use sse_sqlx::SqlStore;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = SqlStore::connect("sqlite::memory:").await?;  // or sqlite://notifications.db, postgres://…
//! store.create(NewNotification::new("bob", "Build finished")).await?;
//! assert_eq!(store.unread_count(&"bob".into()).await?, 1);
//! let Replay::Changes(changes) = store.since(&Principal::new("bob"), EventId(0), 100).await? else { unreachable!() };
//! assert_eq!(changes.len(), 1);
//! # Ok(()) }
//! ```
//!
//! - **Ordering.** Change ids are consecutive per recipient and become
//!   visible in id order, even with many concurrent writers on PostgreSQL:
//!   see [`SqlStore`] for how.
//! - **Fast at scale.** Listing pages through an index on
//!   `(user_id, id DESC)`; the unread count is a column of the recipient's
//!   row, kept up to date by each change; replay reads the change log by
//!   its primary key `(user_id, id)`.
//! - **Retention.** The change log keeps [`Retention`](sse_core::Retention)
//!   worth of history per recipient, pruned as changes are written (and by
//!   [`SqlStore::prune_expired`] for an age limit).
//! - **Failures are values.** An unreachable database is
//!   [`StoreError::Unavailable`](sse_core::StoreError::Unavailable) within
//!   the acquire timeout (streams answer `503`), never a panic or a hang.
//!
//! Both databases go through sqlx's `Any` driver, so the logic is written
//! once; the crate installs sqlx's default `Any` drivers on connect (an app
//! that installs its own `Any` driver list must include these).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod error;
pub mod migrate;
mod sessions;
mod store;

pub use error::SqlStoreError;
pub use sessions::SqlSessions;
pub use store::{SqlStore, SqlStoreBuilder};

/// The database a [`SqlStore`] is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite (a file, WAL mode).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl Backend {
    fn of(url: &str) -> Result<Self, SqlStoreError> {
        if url.starts_with("sqlite:") && cfg!(feature = "sqlite") {
            Ok(Self::Sqlite)
        } else if (url.starts_with("postgres://") || url.starts_with("postgresql://"))
            && cfg!(feature = "postgres")
        {
            Ok(Self::Postgres)
        } else {
            Err(SqlStoreError::UnsupportedUrl {
                url: url.split('@').next_back().unwrap_or(url).to_owned(),
            })
        }
    }
}
