//! The event log and notification inbox of the SSE notification layer on
//! SQLite (embedded, zero setup) or PostgreSQL (production), with the
//! schema shipped in the crate and applied on connect.
//!
//! ```
//! use sse_core::{Audience, Event, EventLog, NewNotification, NotificationStore, Principal, log::Replay};
//! use sse_sqlx::SqlStore;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = SqlStore::connect("sqlite::memory:").await?;  // or sqlite://notifications.db, postgres://…
//! let start = store.head().await?;
//! store.create(NewNotification::new("bob", "Build finished")).await?;
//! store.append(&[(Audience::group("acme"), Event::builder().event("announcement").data("hi").build()?)]).await?;
//! assert_eq!(store.unread_count(&"bob".into()).await?, 1);
//! let bob = Principal::new("bob").with_groups(["acme"]);
//! let Replay::Events { events, .. } = store.since(&bob, start, 100).await? else { unreachable!() };
//! assert_eq!(events.len(), 2);
//! # Ok(()) }
//! ```
//!
//! - **One log for every durable audience.** [`SqlStore`] is an
//!   [`EventLog`](sse_core::EventLog): events to users, groups, topics and
//!   everyone, in one dense sequence that commits in order even with many
//!   concurrent writers on PostgreSQL (see [`SqlStore`] for how), so a
//!   stream's single `Last-Event-ID` resumes all of them.
//! - **The inbox on top.** It is also a
//!   [`NotificationStore`](sse_core::NotificationStore): each change is
//!   appended in the same transaction as the notification it records.
//!   Apps with their own tables append inside their own transaction with
//!   [`SqlStore::append_in`].
//! - **Fast at scale.** A replay reads the principal's audiences through
//!   an index on `(audience, pos)`; listing pages through `(user_id, id
//!   DESC)`; the unread count is a column of the recipient's row.
//! - **Retention.** The log keeps [`Retention`](sse_core::Retention) worth
//!   of history, pruned as events are appended (and by [`SqlStore::prune`]).
//! - **Upgrades keep data.** Databases created by earlier versions migrate
//!   forward on connect; the old per-user change log moves into the event
//!   log ([`migrate::DataStep`]).
//! - **Many nodes on PostgreSQL alone.** `PostgresHub` (feature
//!   `postgres`) carries live events between nodes over
//!   `LISTEN`/`NOTIFY`, with catch-up from the log after an outage and
//!   presence across nodes.
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
#[cfg(feature = "postgres")]
mod hub;
mod inbox;
mod log;
pub mod migrate;
mod sessions;
mod store;

pub use error::SqlStoreError;
#[cfg(feature = "postgres")]
pub use hub::{PostgresHub, PostgresHubBuilder, PostgresTransport};
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
