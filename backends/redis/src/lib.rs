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
//! # A single Redis or a Redis Cluster
//!
//! Every type takes a URL. One URL names a server; if it runs in cluster
//! mode (`INFO cluster` says so) it is used as a seed of its cluster.
//! Several URLs separated by commas (`redis://10.0.0.1:7000,redis://10.0.0.2:7000`)
//! are seeds of one cluster. On a cluster:
//!
//! - the hub publishes with `SPUBLISH` and subscribes with `SSUBSCRIBE`
//!   (sharded pub/sub, Redis 7+): each audience's channel lives on the
//!   shard of its slot, so pub/sub load spreads over the shards instead of
//!   every message crossing the cluster bus. Its few keys (node lease,
//!   presence) share one hash slot. After a disconnection or a failover
//!   the client re-subscribes each channel on its shard's current primary,
//!   and once the cluster reports `cluster_state:ok` again every local
//!   stream is told to catch up from the store, as after a single Redis's
//!   outage;
//! - the store keeps every key under one hash tag (one slot, so each write
//!   is one atomic script on one shard, with its replicas for failover);
//! - sessions write their two keys one after the other (no transaction
//!   spans two slots);
//! - while a shard has no primary (between a primary's death and its
//!   replica's promotion) requests fail fast with
//!   [`StoreError::Unavailable`](sse_core::StoreError::Unavailable)
//!   (`503`), and succeed again once the cluster is whole.
//!
//! Redis replicates asynchronously: a write a primary acknowledged just
//! before it died may be missing on the replica that takes over. Run the
//! store's shard with `appendfsync always` and `min-replicas-to-write 1`
//! where that matters. What the store does about it: the log's epoch is
//! tied to the server's replication id, so the first write after a
//! replica was promoted starts a new epoch. Clients that hold a position
//! of the old one (including positions of the lost writes) get a `reset`
//! and refetch, instead of silently skipping the new writes that would
//! otherwise take those positions again.
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

mod connection;
mod hub;
mod link;
mod listener;
mod scripts;
mod sessions;
mod store;

pub use hub::{RedisHub, RedisHubBuilder, RedisTransport};
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
