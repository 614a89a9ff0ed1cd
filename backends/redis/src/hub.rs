//! [`RedisHub`]: fan-out across nodes through Redis pub/sub.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use sse_core::cluster::{ClusterHub, ClusterHubBuilder, Link, Route, Transport, TransportError};
use sse_core::{
    Audience, Event, EventLog, Hub, HubError, HubStats, InMemoryHub, Presence, Principal,
    Subscription, UserId,
};
use tokio::sync::{mpsc, oneshot};

use crate::RedisError;
use crate::connection::{Connection, Target};
use crate::listener::{Command, Listener};

/// A [`Hub`] that spans every node connected to the same Redis.
///
/// The protocol between nodes (the wire encoding, ordering and gap
/// filling, catch-up after a lost link, presence, node ids) is
/// `sse-core`'s [`cluster`](sse_core::cluster), the same on every engine;
/// this is its [`Transport`] over Redis pub/sub, [`RedisTransport`].
///
/// Each node keeps its own connections in an [`InMemoryHub`] and
/// subscribes to one Redis channel per user, session, group and topic it
/// currently serves (reference counted: a thousand tabs of one user are one
/// subscription), plus the channels every node reads: events for a single
/// connection of this node, to everyone, durable events, presence.
/// Publishing is a Redis `PUBLISH`; every node that serves the audience
/// delivers it through its local index.
///
/// # Channels
///
/// Ephemeral events go to `<prefix><kind>:<key>`, with the kind (`u`
/// user, `s` session, `g` group, `t` topic) at a fixed position, so no key
/// — a topic name a user chose, say — can spell another audience's
/// channel; events for one connection go to its node's channel only
/// (`<prefix>c:<node>`), events to everyone to `<prefix>a`. **Durable
/// events** (those with a log position) all go to `<prefix>d`, which every
/// node reads and delivers in position order, filling a position that never
/// arrives from the attached log (see [`sse_core::log`]); presence goes to
/// `<prefix>p`. Only exact `SUBSCRIBE`s are used, never patterns. Every
/// payload is an [`Envelope`](sse_core::cluster::Envelope) (the audience,
/// length-prefixed, then the event) or a presence message; a node delivers
/// a message only if its envelope decodes and its channel is the one that
/// envelope's audience travels on.
///
/// # When Redis goes away
///
/// Browser connections stay open. The node reconnects with exponential
/// backoff (100 ms to 5 s by default), re-subscribes every channel it
/// needs, and then reads what the event log got meanwhile and delivers it,
/// in order, to its streams (one read for all of them, retried until the
/// log answers). Publishing while Redis is down fails with
/// [`HubError::Unavailable`] (the [`Notifier`](sse_core::Notifier) has
/// stored the change by then; it is delivered by that catch-up). A node also
/// notices a silently dead connection: it pings Redis every few seconds.
/// Messages are handed over as the connection reads them, so a node that
/// cannot keep up is cut off by Redis's `client-output-buffer-limit` and
/// catches up, instead of queuing without bound.
///
/// Cloning gives another handle to the same hub; the background tasks end
/// when the last handle is dropped.
#[derive(Clone, Debug)]
pub struct RedisHub {
    hub: ClusterHub<RedisTransport>,
}

/// Options for [`RedisHub`]; see [`RedisHub::builder`].
#[derive(Debug, Clone)]
#[must_use = "call `connect` to start the hub"]
pub struct RedisHubBuilder {
    url: String,
    prefix: String,
    min_backoff: Duration,
    max_backoff: Duration,
    timeout: Duration,
    ping_every: Duration,
    cluster: ClusterHubBuilder,
}

impl RedisHubBuilder {
    /// Prefix of every channel (default `sse:`); apps sharing a Redis use
    /// different prefixes.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Reconnection backoff bounds (default 100 ms to 5 s, doubling).
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.min_backoff = min;
        self.max_backoff = max.max(min);
        self
    }

    /// How long a publish or a subscription waits on Redis (default 2 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self.cluster = self.cluster.timeout(timeout);
        self
    }

    /// How often the subscriber connection is pinged to detect a dead link
    /// (default 5 s); presence leases are renewed at the same pace (a
    /// node that dies stops counting after six of these).
    pub fn ping_every(mut self, every: Duration) -> Self {
        self.ping_every = every.max(Duration::from_millis(10));
        self.cluster = self.cluster.announce_every(self.ping_every);
        self
    }

    /// How long a change in this node's streams may wait before other
    /// nodes hear of it (100 ms by default; changes meanwhile go in the
    /// same announcement).
    pub fn presence_flush(mut self, every: Duration) -> Self {
        self.cluster = self.cluster.presence_flush(every);
        self
    }

    /// The protocol's other options ([`ClusterHubBuilder`]).
    pub fn cluster(mut self, options: ClusterHubBuilder) -> Self {
        self.cluster = options;
        self
    }

    /// Connects (publisher and subscriber) and starts listening.
    pub async fn connect(self) -> Result<RedisHub, RedisError> {
        let target = Target::resolve(&self.url, self.timeout).await?;
        let connect_failed = |source| RedisError::Connect {
            url: redact(&self.url),
            source,
        };
        let publisher = target
            .connect(self.timeout, self.max_backoff)
            .await
            .map_err(connect_failed)?;
        let listener = |link: Link| Listener {
            target: target.clone(),
            link,
            prefix: self.prefix.as_str().into(),
            min_backoff: self.min_backoff,
            max_backoff: self.max_backoff,
            timeout: self.timeout,
            ping_every: self.ping_every,
        };
        let prefix: Arc<str> = self.prefix.as_str().into();
        let cluster = target.is_cluster();
        let hub = self
            .cluster
            .start(|link| async move {
                let (commands, receiver) = mpsc::unbounded_channel();
                let (ready, ready_rx) = oneshot::channel();
                let task = tokio::spawn(listener(link).run(receiver, ready));
                match ready_rx.await {
                    Ok(Ok(())) => Ok(RedisTransport {
                        publisher,
                        prefix,
                        cluster,
                        commands,
                        task,
                    }),
                    Ok(Err(source)) => {
                        task.abort();
                        Err(connect_failed(source))
                    }
                    Err(_) => Err(RedisError::Closed),
                }
            })
            .await?;
        Ok(RedisHub { hub })
    }
}

impl From<TransportError> for RedisError {
    fn from(error: TransportError) -> Self {
        RedisError::Connect {
            url: String::new(),
            source: redis::RedisError::from((
                redis::ErrorKind::Io,
                "the hub could not subscribe",
                error.to_string(),
            )),
        }
    }
}

impl RedisHub {
    /// Connects to `redis://host:port` with default options.
    pub async fn connect(url: &str) -> Result<Self, RedisError> {
        Self::builder(url).connect().await
    }

    /// Options for connecting to `url`.
    pub fn builder(url: impl Into<String>) -> RedisHubBuilder {
        RedisHubBuilder {
            url: url.into(),
            prefix: "sse:".to_owned(),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            ping_every: Duration::from_secs(5),
            cluster: ClusterHubBuilder::new(),
        }
    }

    /// The id of this node: the high half of every connection id it hands
    /// out, and no other live node's.
    pub fn node_id(&self) -> u64 {
        self.hub.node_id()
    }

    /// Whether the subscriber connection is up.
    pub fn is_connected(&self) -> bool {
        self.hub.is_connected()
    }

    /// How many times the subscriber connection was re-established.
    pub fn reconnects(&self) -> u64 {
        self.hub.reconnects()
    }

    /// The local index (this node's connections).
    pub fn local(&self) -> &InMemoryHub {
        self.hub.local()
    }

    /// Redis channels this node is subscribed to for its connections
    /// (besides the shared ones). Zero when it serves no one.
    pub fn channels(&self) -> usize {
        self.hub.routes()
    }

    /// Online users of `audience` with their streams, on every node.
    pub fn members(&self, audience: &Audience) -> BTreeMap<UserId, u64> {
        self.hub.members(audience)
    }
}

#[async_trait]
impl Hub for RedisHub {
    async fn subscribe(
        &self,
        principal: &Principal,
        queue_capacity: usize,
    ) -> Result<Subscription, HubError> {
        self.hub.subscribe(principal, queue_capacity).await
    }

    async fn publish(&self, audience: &Audience, event: &Event) -> Result<(), HubError> {
        self.hub.publish(audience, event).await
    }

    fn stats(&self) -> HubStats {
        self.hub.stats()
    }

    fn attach_log(&self, log: Arc<dyn EventLog>) {
        self.hub.attach_log(log);
    }

    /// This node's exact count plus every other live node's as last
    /// announced (within [`presence_flush`](RedisHubBuilder::presence_flush),
    /// 100 ms by default), answered from memory. A node that dies stops
    /// counting when its lease ends (six [`ping_every`](RedisHubBuilder::ping_every),
    /// 30 s by default). A connection on another node is not answered
    /// ([`HubError::Unsupported`]).
    async fn presence(&self, audience: &Audience) -> Result<Presence, HubError> {
        self.hub.presence(audience).await
    }

    /// Who is online in `audience`, on every node: this node's streams and
    /// the others' as last announced (see [`presence`](Self::presence)).
    async fn members(
        &self,
        audience: &Audience,
        after: Option<&sse_core::UserId>,
        limit: usize,
    ) -> Result<Vec<sse_core::Member>, HubError> {
        Hub::members(&self.hub, audience, after, limit).await
    }
}

/// The protocol's [`Transport`] over Redis (or Redis Cluster, with sharded
/// pub/sub): one channel per route, see [`RedisHub`].
pub struct RedisTransport {
    publisher: Connection,
    prefix: Arc<str>,
    /// On a Redis Cluster: publish with `SPUBLISH`.
    cluster: bool,
    commands: mpsc::UnboundedSender<Command>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RedisTransport {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for RedisTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTransport")
            .field("prefix", &self.prefix)
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Transport for RedisTransport {
    async fn publish(&self, route: &Route, payload: Bytes) -> Result<(), TransportError> {
        let mut connection = self.publisher.clone();
        redis::cmd(if self.cluster { "SPUBLISH" } else { "PUBLISH" })
            .arg(self.channel(route))
            .arg(&payload[..])
            .query_async::<i64>(&mut connection)
            .await
            .map(|_| ())
            .map_err(|e| TransportError::Unavailable(Box::new(e)))
    }

    async fn subscribe(&self, routes: &[Route]) -> Result<(), TransportError> {
        let channels = routes.iter().map(|r| self.channel(r)).collect();
        let (ack, acked) = oneshot::channel();
        self.commands
            .send(Command::Subscribe(channels, ack))
            .map_err(|_| TransportError::Unavailable("the Redis listener stopped".into()))?;
        match acked.await {
            Ok(true) => Ok(()),
            _ => Err(TransportError::Unavailable(
                "Redis is not reachable now".into(),
            )),
        }
    }

    async fn unsubscribe(&self, routes: &[Route]) -> Result<(), TransportError> {
        let channels = routes.iter().map(|r| self.channel(r)).collect();
        let _ = self.commands.send(Command::Unsubscribe(channels));
        Ok(())
    }

    fn channel(&self, route: &Route) -> String {
        channel(&self.prefix, route)
    }
}

/// The channel of a route.
pub(crate) fn channel(prefix: &str, route: &Route) -> String {
    match route {
        Route::Audience(Audience::User(user)) => format!("{prefix}u:{user}"),
        Route::Audience(Audience::Session(session)) => format!("{prefix}s:{session}"),
        Route::Audience(Audience::Group(group)) => format!("{prefix}g:{group}"),
        Route::Audience(Audience::Topic(topic)) => format!("{prefix}t:{topic}"),
        // Only the node that owns the connection listens here.
        Route::Node(node) => format!("{prefix}c:{node:016x}"),
        Route::Everyone | Route::Audience(Audience::Everyone) => format!("{prefix}a"),
        Route::Durable => format!("{prefix}d"),
        Route::Control => format!("{prefix}p"),
        // Routes this version does not know travel on a channel no node
        // reads.
        _ => format!("{prefix}?"),
    }
}

/// The URL without its secrets, for error messages.
pub(crate) use sse_core::redact_url as redact;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_keep_kinds_apart() {
        let prefix = "sse:";
        let user = channel(prefix, &Route::Audience(Audience::user("alice")));
        let spoof = channel(prefix, &Route::Audience(Audience::topic("u:alice")));
        assert_eq!(user, "sse:u:alice");
        assert_eq!(spoof, "sse:t:u:alice");
        assert_ne!(user, spoof);
        assert_eq!(
            channel(prefix, &Route::Node(0xfeed)),
            "sse:c:000000000000feed"
        );
        let shared: Vec<String> = [Route::Everyone, Route::Durable, Route::Control]
            .iter()
            .map(|r| channel(prefix, r))
            .collect();
        assert_eq!(shared, ["sse:a", "sse:d", "sse:p"]);
        assert_eq!(redact("redis://:pw@host:6379"), "redis://:***@host:6379");
    }
}
