//! One connection type for a single Redis and for a Redis Cluster.
//!
//! Every type of this crate takes a URL. One URL names a server; if that
//! server runs in cluster mode (`INFO cluster` says `cluster_enabled:1`),
//! it is taken as a seed of its cluster. Several URLs separated by commas
//! are seeds of one cluster. On a cluster, commands are routed by key slot
//! (the store keeps every key under one hash tag, so each of its scripts
//! runs on one shard) and the hub uses sharded pub/sub (`SPUBLISH`,
//! `SSUBSCRIBE`, Redis 7+): a channel lives on the shard of its slot, so
//! channels spread over the shards instead of every message crossing the
//! whole cluster bus.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

use crate::RedisError;
use crate::hub::redact;

/// A connection to a single Redis or to a cluster; cloning is cheap (both
/// multiplex one set of sockets).
#[derive(Clone)]
pub(crate) enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// Where a URL (or a comma-separated list of them) points.
#[derive(Clone)]
pub(crate) enum Target {
    Single(redis::Client),
    Cluster(Vec<String>),
}

impl Target {
    /// Reads `url`: several URLs are a cluster's seeds; one URL is asked
    /// whether it runs in cluster mode.
    pub(crate) async fn resolve(url: &str, timeout: Duration) -> Result<Self, RedisError> {
        let invalid = |source| RedisError::Url {
            url: redact(url),
            source,
        };
        let seeds: Vec<String> = url
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        for seed in &seeds {
            redis::Client::open(seed.as_str()).map_err(invalid)?;
        }
        if seeds.len() > 1 {
            return Ok(Self::Cluster(seeds));
        }
        let client = redis::Client::open(url).map_err(invalid)?;
        let connect_failed = |source| RedisError::Connect {
            url: redact(url),
            source,
        };
        let probe = async {
            let mut connection = client.get_multiplexed_async_connection().await?;
            redis::cmd("INFO")
                .arg("cluster")
                .query_async::<String>(&mut connection)
                .await
        };
        let info = tokio::time::timeout(timeout, probe)
            .await
            .map_err(|_| {
                connect_failed(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "connecting to Redis timed out",
                )))
            })?
            .map_err(connect_failed)?;
        if info.lines().any(|line| line.trim() == "cluster_enabled:1") {
            Ok(Self::Cluster(seeds))
        } else {
            Ok(Self::Single(client))
        }
    }

    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    /// A cluster client with this crate's timeouts; `resp3` for one that
    /// subscribes (pushes need RESP3).
    pub(crate) fn cluster_builder(seeds: &[String], timeout: Duration) -> ClusterClientBuilder {
        ClusterClientBuilder::new(seeds.to_vec())
            .connection_timeout(timeout)
            .response_timeout(timeout)
            .retries(2)
            .min_retry_wait(50)
            .max_retry_wait(1_000)
    }

    /// A command connection.
    pub(crate) async fn connect(
        &self,
        timeout: Duration,
        max_backoff: Duration,
    ) -> Result<Connection, redis::RedisError> {
        match self {
            Self::Single(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(max_backoff);
                Ok(Connection::Single(
                    ConnectionManager::new_with_config(client.clone(), config).await?,
                ))
            }
            Self::Cluster(seeds) => {
                let client = Self::cluster_builder(seeds, timeout).build()?;
                Ok(Connection::Cluster(
                    connect_cluster(&client, timeout).await?,
                ))
            }
        }
    }
}

/// A connection of `client`, within `timeout`.
pub(crate) async fn connect_cluster(
    client: &ClusterClient,
    timeout: Duration,
) -> Result<ClusterConnection, redis::RedisError> {
    tokio::time::timeout(timeout, client.get_async_connection())
        .await
        .map_err(|_| {
            redis::RedisError::from((
                redis::ErrorKind::Io,
                "connecting to the Redis Cluster timed out",
            ))
        })?
}
