//! Many nodes behind one load balancer, Redis as the hub: any node can
//! notify a user whose browser is connected to any other node.
//!
//! - [`RedisHub`]: a [`Hub`](sse_core::Hub) over Redis pub/sub that
//!   delivers locally through the in-memory index, subscribes once per
//!   channel a node needs (not per connection), and reconnects by itself;
//!   streams catch up from the store after an outage, so nothing stored is
//!   lost.
//! - [`RedisStore`]: a [`NotificationStore`](sse_core::NotificationStore)
//!   over Redis streams, for teams with Redis and no SQL database.
//! - [`RedisSessions`]: cookie sessions every node shares.
//!
//! ```no_run
//! use std::sync::Arc;
//! use sse_core::{CookieSessionAuthenticator, InMemorySessions, Notifier};
//! use sse_redis::{RedisHub, RedisStore};
//! use sse_tower::SseService;
//!
//! # async fn run() -> Result<(), sse_redis::RedisError> {
//! let hub = RedisHub::connect("redis://127.0.0.1:6379").await?;
//! let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
//! let sse = SseService::builder(CookieSessionAuthenticator::new("sid", InMemorySessions::new()))
//!     .notifier(&Notifier::new(Arc::new(store), Arc::new(hub)))
//!     .build();
//! # let _ = sse; Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod hub;
mod link;
mod presence;
mod scripts;
mod sessions;
mod store;

pub use hub::{RedisHub, RedisHubBuilder};
pub use sessions::RedisSessions;
pub use store::{RedisStore, RedisStoreBuilder};

/// Why a Redis hub or store could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisError {
    /// The URL is not a Redis URL.
    #[error("invalid Redis URL {url:?}: {source}; use redis://host:port")]
    Url {
        /// The URL (without its password).
        url: String,
        /// The client's error.
        source: redis::RedisError,
    },
    /// Connecting failed.
    #[error("could not connect to Redis at {url}: {source}; check that it is running")]
    Connect {
        /// The URL (without its password).
        url: String,
        /// The client's error.
        source: redis::RedisError,
    },
    /// An option this backend does not support.
    #[error("unsupported option: {0}")]
    Unsupported(&'static str),
    /// The hub's background task stopped before it was ready.
    #[error("the Redis hub stopped while starting")]
    Closed,
}
