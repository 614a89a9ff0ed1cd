//! [`RedisHub`]: fan-out across nodes through Redis pub/sub.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use sse_core::cluster::{Envelope, WireError};
use sse_core::{
    Audience, Event, EventLog, Hub, HubError, HubStats, InMemoryHub, Presence, Principal,
    Subscription,
};
use tokio::sync::{mpsc, oneshot};

use crate::RedisError;
use crate::connection::{Connection, Target, connect_cluster};
use crate::presence::{Dirty, Flusher, PresenceKeys, remote_count};

/// A [`Hub`] that spans every node connected to the same Redis.
///
/// Each node keeps its own connections in an [`InMemoryHub`] and
/// subscribes to one Redis channel per user, session, group and topic it
/// currently serves (reference counted: a thousand tabs of one user are one
/// subscription), plus one channel for events to a single connection and
/// one for events to everyone. Publishing is a Redis `PUBLISH` of the
/// event's encoded bytes; every node that serves the audience delivers it
/// through its local index.
///
/// # Channels
///
/// Ephemeral events go to `<prefix><kind>:<key>`, with the kind (`u`
/// user, `s` session, `g` group, `t` topic) at a fixed position, so no key
/// — a topic name a user chose, say — can spell another audience's
/// channel; events for one connection go to its node's channel only.
/// **Durable events** (those with a log position) all go to one channel,
/// `<prefix>d`, that every node reads: each node delivers them through its
/// [`InMemoryHub`] in position order, filling a position that never
/// arrives from the attached log (see [`sse_core::log`]). Only exact
/// `SUBSCRIBE`s are used, never patterns. Every payload is an
/// [`Envelope`] ([`sse_core::cluster::wire`]): the audience, length-prefixed,
/// then the event; a node delivers a message only if its envelope decodes
/// and its channel is the one that envelope's audience travels on.
///
/// # When Redis goes away
///
/// Browser connections stay open. The node reconnects with exponential
/// backoff (100 ms to 5 s by default), re-subscribes every channel it
/// needs, and then tells every local subscription that events may have
/// been missed ([`RecvError::Missed`](sse_core::RecvError::Missed)):
/// `sse-tower` streams then replay from the store what was published during
/// the outage, so nothing stored is lost and nothing is delivered twice.
/// Publishing while Redis is down fails with [`HubError::Unavailable`]
/// (the [`Notifier`](sse_core::Notifier) has stored the change by then; it
/// is delivered by that catch-up). A node also notices a silently dead
/// connection: it pings Redis every few seconds.
///
/// Cloning gives another handle to the same hub; the background task ends
/// when the last handle is dropped.
#[derive(Clone)]
pub struct RedisHub {
    inner: Arc<Inner>,
}

struct Inner {
    local: InMemoryHub,
    node: NodeLease,
    publisher: Connection,
    channels: Arc<Channels>,
    prefix: Arc<str>,
    subscribe_timeout: Duration,
    /// On a Redis Cluster: publish with `SPUBLISH`.
    cluster: bool,
    published: AtomicU64,
    link: Arc<Link>,
    presence: PresenceKeys,
    task: tokio::task::JoinHandle<()>,
    flusher: tokio::task::JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.task.abort();
        self.flusher.abort();
    }
}

/// What the listener task reports about its connection.
#[derive(Default)]
struct Link {
    connected: AtomicBool,
    reconnects: AtomicU64,
}

/// Redis channels this node needs, counted by local subscription. Commands
/// are queued while holding the count lock, so Redis sees SUBSCRIBE and
/// UNSUBSCRIBE of a channel in the order its count crossed zero.
pub(crate) struct Channels {
    counts: Mutex<HashMap<String, usize>>,
    commands: mpsc::UnboundedSender<Command>,
    /// Keys whose counts changed, for the presence mirror.
    pub(crate) dirty: Dirty,
}

enum Command {
    /// Subscribe to these (possibly none) and acknowledge: the ack also
    /// means every earlier command is done.
    Subscribe(Vec<String>, oneshot::Sender<()>),
    Unsubscribe(Vec<String>),
}

/// Subscriptions queued together (a connect storm), up to the first
/// unsubscription, which must go after them to keep Redis's view of each
/// channel in count order.
struct Batch {
    channels: Vec<String>,
    acks: Vec<oneshot::Sender<()>>,
    then: Option<Command>,
}

impl Batch {
    fn drain(
        mut channels: Vec<String>,
        ack: oneshot::Sender<()>,
        commands: &mut mpsc::UnboundedReceiver<Command>,
    ) -> Self {
        let mut acks = vec![ack];
        let mut then = None;
        while channels.len() < 10_000 {
            match commands.try_recv() {
                Ok(Command::Subscribe(more, ack)) => {
                    channels.extend(more);
                    acks.push(ack);
                }
                Ok(other) => {
                    then = Some(other);
                    break;
                }
                Err(_) => break,
            }
        }
        Self {
            channels,
            acks,
            then,
        }
    }
}

/// Releases a subscription's channels when it drops.
struct Lease {
    channels: Arc<Channels>,
    keys: Vec<String>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.channels.release(&self.keys);
    }
}

impl Channels {
    fn acquire(&self, keys: &[String]) -> oneshot::Receiver<()> {
        let (ack, acked) = oneshot::channel();
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let new: Vec<String> = keys
            .iter()
            .filter(|key| {
                let count = counts.entry((*key).clone()).or_insert(0);
                *count += 1;
                *count == 1
            })
            .cloned()
            .collect();
        // If the task is gone the hub is being dropped; the ack then fails.
        let _ = self.commands.send(Command::Subscribe(new, ack));
        drop(counts);
        self.dirty.mark(keys);
        acked
    }

    fn release(&self, keys: &[String]) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let gone: Vec<String> = keys
            .iter()
            .filter(|key| match counts.get_mut(*key) {
                Some(count) if *count > 1 => {
                    *count -= 1;
                    false
                }
                Some(_) => {
                    counts.remove(*key);
                    true
                }
                None => false,
            })
            .cloned()
            .collect();
        if !gone.is_empty() {
            let _ = self.commands.send(Command::Unsubscribe(gone));
        }
        drop(counts);
        self.dirty.mark(keys);
    }

    /// This node's streams per channel key.
    pub(crate) fn counts(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn snapshot(&self) -> Vec<String> {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }
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
    node_id: Option<u64>,
    presence_flush: Duration,
}

/// This node's claim on its id in Redis: `<prefix>node:<id>`, set with
/// `NX` so no two live nodes hold the same id, and kept alive by the
/// listener (it expires [`NODE_LEASE_PINGS`] pings after the node stops).
#[derive(Clone)]
struct NodeLease {
    id: u64,
    key: String,
    lease: Duration,
}

/// How many ping intervals a node id stays claimed without a refresh.
const NODE_LEASE_PINGS: u32 = 6;

impl NodeLease {
    fn key(prefix: &str, id: u64) -> String {
        format!("{prefix}node:{id:016x}")
    }

    /// Claims `preferred` (or a random id), drawing another while the id
    /// is held by a live node.
    async fn claim(
        connection: &mut Connection,
        prefix: &str,
        preferred: Option<u64>,
        lease: Duration,
    ) -> Result<Self, redis::RedisError> {
        let mut candidate = preferred.unwrap_or_else(random_u64);
        for _ in 0..16 {
            let key = Self::key(prefix, candidate);
            let claimed: Option<String> = redis::cmd("SET")
                .arg(&key)
                .arg(1)
                .arg("NX")
                .arg("PX")
                .arg(millis(lease))
                .query_async(connection)
                .await?;
            if claimed.is_some() {
                return Ok(Self {
                    id: candidate,
                    key,
                    lease,
                });
            }
            tracing::info!(
                node = format_args!("{candidate:016x}"),
                "node id is held by another live node; drawing another"
            );
            candidate = random_u64();
        }
        Err(redis::RedisError::from((
            redis::ErrorKind::Client,
            "could not claim a free node id",
        )))
    }

    /// Extends the lease, re-claiming the id if it expired (Redis was
    /// restarted, or the node was cut off for longer than the lease).
    async fn renew(&self, connection: &mut Connection) -> Result<(), redis::RedisError> {
        let renewed: Option<String> = redis::cmd("SET")
            .arg(&self.key)
            .arg(1)
            .arg("XX")
            .arg("PX")
            .arg(millis(self.lease))
            .query_async(connection)
            .await?;
        if renewed.is_some() {
            return Ok(());
        }
        let reclaimed: Option<String> = redis::cmd("SET")
            .arg(&self.key)
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(millis(self.lease))
            .query_async(connection)
            .await?;
        if reclaimed.is_none() {
            tracing::error!(
                node = format_args!("{:016x}", self.id),
                "another node claimed this node's id while it was cut off; connection-addressed events may be misrouted until one of them restarts"
            );
        }
        Ok(())
    }
}

/// The key prefix on a cluster: a hash tag, so that every key of the hub
/// lives on one slot (scripts and pipelines span several). Kept as given
/// when it has a tag already, or off a cluster.
pub(crate) fn slot_prefix(prefix: &str, cluster: bool) -> String {
    let tagged = prefix
        .find('{')
        .is_some_and(|open| prefix[open + 1..].find('}').is_some_and(|len| len > 0));
    if !cluster || tagged {
        prefix.to_owned()
    } else {
        format!("{{{prefix}}}")
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        use std::hash::{BuildHasher, RandomState};
        return RandomState::new().hash_one(std::time::SystemTime::now());
    }
    u64::from_le_bytes(bytes)
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
        self
    }

    /// How often the subscriber connection is pinged to detect a dead link
    /// (default 5 s). The node's id lease is renewed at the same pace.
    pub fn ping_every(mut self, every: Duration) -> Self {
        self.ping_every = every.max(Duration::from_millis(10));
        self
    }

    /// How long a change in this node's streams may wait before it is
    /// written to Redis for other nodes' [`Hub::presence`] (100 ms by
    /// default; changes meanwhile go in the same write).
    pub fn presence_flush(mut self, every: Duration) -> Self {
        self.presence_flush = every;
        self
    }

    /// The node id to claim (default: a random one). If a live node holds
    /// it, another is drawn: two nodes never share an id, so connection
    /// ids stay unique across nodes ([`ConnectionId`](sse_core::ConnectionId)).
    pub fn node_id(mut self, id: u64) -> Self {
        self.node_id = Some(id);
        self
    }

    /// Connects (publisher and subscriber) and starts listening.
    pub async fn connect(self) -> Result<RedisHub, RedisError> {
        let target = Target::resolve(&self.url, self.timeout).await?;
        let connect_failed = |source| RedisError::Connect {
            url: redact(&self.url),
            source,
        };
        let mut publisher = target
            .connect(self.timeout, self.max_backoff)
            .await
            .map_err(connect_failed)?;
        let cluster = target.is_cluster();
        // Keys (the node lease, presence) share one hash slot on a cluster:
        // presence scripts read several of them. Channels do not: sharded
        // channels spread over the shards by their own names.
        let key_prefix = slot_prefix(&self.prefix, cluster);
        let node = NodeLease::claim(
            &mut publisher,
            &key_prefix,
            self.node_id,
            self.ping_every * NODE_LEASE_PINGS,
        )
        .await
        .map_err(connect_failed)?;
        let (commands, receiver) = mpsc::unbounded_channel();
        let channels = Arc::new(Channels {
            counts: Mutex::new(HashMap::new()),
            commands,
            dirty: Dirty::default(),
        });
        let prefix: Arc<str> = self.prefix.as_str().into();
        let local = InMemoryHub::with_node_id(node.id);
        let link = Arc::new(Link::default());
        let (ready, ready_rx) = oneshot::channel();
        let listener = Listener {
            target,
            publisher: publisher.clone(),
            node: node.clone(),
            local: local.clone(),
            channels: channels.clone(),
            prefix: prefix.clone(),
            link: link.clone(),
            min_backoff: self.min_backoff,
            max_backoff: self.max_backoff,
            timeout: self.timeout,
            ping_every: self.ping_every,
        };
        let task = tokio::spawn(listener.run(receiver, ready));
        match ready_rx.await {
            Ok(Ok(())) => {}
            Ok(Err(source)) => {
                task.abort();
                return Err(connect_failed(source));
            }
            Err(_) => return Err(RedisError::Closed),
        }
        let presence = PresenceKeys::new(&self.prefix, &key_prefix, node.id);
        let flusher = tokio::spawn(
            Flusher {
                wake: channels.dirty.wake.clone(),
                publisher: publisher.clone(),
                channels: Arc::downgrade(&channels),
                local: local.clone(),
                keys: presence.clone(),
                flush_every: self.presence_flush,
                lease: node.lease,
            }
            .run(),
        );
        Ok(RedisHub {
            inner: Arc::new(Inner {
                local,
                node,
                publisher,
                channels,
                prefix,
                subscribe_timeout: self.timeout,
                cluster,
                published: AtomicU64::new(0),
                link,
                presence,
                task,
                flusher,
            }),
        })
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
            node_id: None,
            presence_flush: Duration::from_millis(100),
        }
    }

    /// The id of this node, claimed in Redis: the high half of every
    /// connection id it hands out.
    pub fn node_id(&self) -> u64 {
        self.inner.node.id
    }

    /// Whether the subscriber connection is up.
    pub fn is_connected(&self) -> bool {
        self.inner.link.connected.load(Ordering::SeqCst)
    }

    /// How many times the subscriber connection was re-established.
    pub fn reconnects(&self) -> u64 {
        self.inner.link.reconnects.load(Ordering::SeqCst)
    }

    /// The local index (this node's connections).
    pub fn local(&self) -> &InMemoryHub {
        &self.inner.local
    }

    /// Redis channels this node is subscribed to for its connections
    /// (besides the two shared ones). Zero when it serves no one.
    pub fn channels(&self) -> usize {
        self.inner
            .channels
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// Every node reads this channel: durable events, whatever their audience.
fn durable_channel(prefix: &str) -> String {
    format!("{prefix}d")
}

/// The channel an ephemeral event for `audience` travels on. `None` for
/// an audience kind this hub does not know (never "everyone" by default).
pub(crate) fn channel(prefix: &str, audience: &Audience) -> Option<String> {
    Some(match audience {
        Audience::User(user) => format!("{prefix}u:{user}"),
        Audience::Session(session) => format!("{prefix}s:{session}"),
        Audience::Group(group) => format!("{prefix}g:{group}"),
        Audience::Topic(topic) => format!("{prefix}t:{topic}"),
        // Only the node that owns the connection listens here.
        Audience::Connection(id) => connection_channel(prefix, id.node()),
        Audience::Everyone => format!("{prefix}a"),
        _ => return None,
    })
}

fn connection_channel(prefix: &str, node: u64) -> String {
    format!("{prefix}c:{node:016x}")
}

fn key_channel(prefix: &str, kind: char, key: &str) -> String {
    format!("{prefix}{kind}:{key}")
}

/// The per-key channels a principal's connection needs.
fn channels_of(prefix: &str, principal: &Principal) -> Vec<String> {
    let mut keys = vec![key_channel(prefix, 'u', principal.user().as_str())];
    keys.extend(
        principal
            .session()
            .map(|s| key_channel(prefix, 's', s.as_str())),
    );
    keys.extend(
        principal
            .groups()
            .iter()
            .map(|g| key_channel(prefix, 'g', g.as_str())),
    );
    keys.extend(
        principal
            .topics()
            .iter()
            .map(|t| key_channel(prefix, 't', t.as_str())),
    );
    keys
}

/// The envelope a message on `channel` carries, if this node should
/// deliver it: an envelope (see [`sse_core::cluster::wire`]) on a channel
/// of this hub that routes its audience, a connection's only on `node`'s
/// channel.
fn parse(prefix: &str, node: u64, on: &str, payload: Bytes) -> Result<Envelope, Refused> {
    let rest = on.strip_prefix(prefix).ok_or(Refused::Channel)?;
    let envelope = Envelope::decode(payload).map_err(Refused::Wire)?;
    let routed = match &envelope.audience {
        // Durable events of every audience travel on the one channel.
        _ if rest == "d" => envelope.event.cursor().is_some(),
        Audience::Connection(id) => id.node() == node && rest == connection_channel("", node),
        audience => channel("", audience).is_some_and(|name| name == rest),
    };
    if routed {
        Ok(envelope)
    } else {
        Err(Refused::Channel)
    }
}

/// Why a message was not delivered.
#[derive(Debug)]
enum Refused {
    /// Not a channel of this hub, or not the one its audience travels on.
    Channel,
    Wire(WireError),
}

#[async_trait]
impl Hub for RedisHub {
    async fn subscribe(
        &self,
        principal: &Principal,
        queue_capacity: usize,
    ) -> Result<Subscription, HubError> {
        let inner = &self.inner;
        inner.local.ready().await;
        let subscription = inner.local.subscribe_now(principal, queue_capacity);
        let keys = channels_of(&inner.prefix, principal);
        let acked = inner.channels.acquire(&keys);
        let subscription = subscription.with_guard(Lease {
            channels: inner.channels.clone(),
            keys,
        });
        // Once acknowledged, Redis delivers this channel to the node. While
        // Redis is down the task acknowledges at once: the subscription is
        // told it missed events when the link is back, and catches up.
        match tokio::time::timeout(inner.subscribe_timeout, acked).await {
            Ok(Ok(())) => Ok(subscription),
            Ok(Err(_)) => Err(HubError::Rejected("the Redis hub is shutting down".into())),
            Err(_) => {
                tracing::warn!(
                    "Redis did not confirm a subscription in time; it catches up on reconnect"
                );
                Ok(subscription)
            }
        }
    }

    async fn publish(&self, audience: &Audience, event: &Event) -> Result<(), HubError> {
        let payload = Envelope::new(audience.clone(), event.clone())
            .try_encode()
            .map_err(|e| HubError::Rejected(e.to_string()))?;
        let channel = match (event.cursor(), audience.is_durable()) {
            (Some(_), true) => durable_channel(&self.inner.prefix),
            _ => channel(&self.inner.prefix, audience).ok_or_else(|| {
                HubError::Rejected(format!("the Redis hub cannot address {audience:?}"))
            })?,
        };
        let mut connection = self.inner.publisher.clone();
        redis::cmd(if self.inner.cluster {
            "SPUBLISH"
        } else {
            "PUBLISH"
        })
        .arg(channel)
        .arg(&payload[..])
        .query_async::<i64>(&mut connection)
        .await
        .map_err(|e| HubError::Unavailable(Box::new(e)))?;
        self.inner.published.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn stats(&self) -> HubStats {
        let mut stats = self.inner.local.stats();
        stats.published = self.inner.published.load(Ordering::Relaxed);
        stats
    }

    fn attach_log(&self, log: Arc<dyn EventLog>) {
        self.inner.local.attach_log(log);
    }

    /// This node's exact count plus every other live node's, as of its
    /// last flush (within [`presence_flush`](RedisHubBuilder::presence_flush),
    /// 100 ms by default). A node that dies stops counting when its lease
    /// expires (six [`ping_every`](RedisHubBuilder::ping_every), 30 s by
    /// default). A connection on another node is not answered
    /// ([`HubError::Unsupported`]).
    async fn presence(&self, audience: &Audience) -> Result<Presence, HubError> {
        let inner = &self.inner;
        let local = inner.local.local_presence(audience);
        let Some(field) = inner.presence.field_of(audience) else {
            return match audience {
                Audience::Connection(id) if id.node() == inner.node.id => Ok(Presence::new(local)),
                _ => Err(HubError::Unsupported(
                    "presence of another node's connection",
                )),
            };
        };
        let mut connection = inner.publisher.clone();
        let remote = remote_count(&mut connection, &inner.presence, &field)
            .await
            .map_err(|e| HubError::Unavailable(Box::new(e)))?;
        Ok(Presence::new(local + remote))
    }
}

impl std::fmt::Debug for RedisHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisHub")
            .field("prefix", &self.inner.prefix)
            .field("connected", &self.is_connected())
            .field("channels", &self.channels())
            .finish_non_exhaustive()
    }
}

/// The background task that owns the subscriber connection.
struct Listener {
    target: Target,
    /// For renewing the node's id lease (a subscriber connection cannot).
    publisher: Connection,
    node: NodeLease,
    local: InMemoryHub,
    channels: Arc<Channels>,
    prefix: Arc<str>,
    link: Arc<Link>,
    min_backoff: Duration,
    max_backoff: Duration,
    timeout: Duration,
    ping_every: Duration,
}

enum Ended {
    /// The connection broke: reconnect.
    Lost,
    /// Every hub handle is gone: stop.
    Closed,
}

impl Listener {
    async fn run(
        self,
        commands: mpsc::UnboundedReceiver<Command>,
        ready: oneshot::Sender<Result<(), redis::RedisError>>,
    ) {
        match self.target.clone() {
            Target::Single(client) => self.run_single(&client, commands, ready).await,
            Target::Cluster(seeds) => self.run_cluster(&seeds, commands, ready).await,
        }
    }

    async fn run_single(
        self,
        client: &redis::Client,
        mut commands: mpsc::UnboundedReceiver<Command>,
        ready: oneshot::Sender<Result<(), redis::RedisError>>,
    ) {
        let mut ready = Some(ready);
        let mut backoff = self.min_backoff;
        loop {
            match self.connect(client).await {
                Ok((sink, stream)) => {
                    backoff = self.min_backoff;
                    self.link.connected.store(true, Ordering::SeqCst);
                    match ready.take() {
                        Some(ready) => {
                            let _ = ready.send(Ok(()));
                        }
                        None => {
                            // Re-subscribed: whatever was published while the
                            // link was down must come from the store.
                            self.link.reconnects.fetch_add(1, Ordering::SeqCst);
                            tracing::info!(
                                "Redis hub reconnected; streams catch up from the store"
                            );
                            self.local.signal_missed_all();
                        }
                    }
                    let ended = self.serve(sink, stream, &mut commands).await;
                    self.link.connected.store(false, Ordering::SeqCst);
                    if let Ended::Closed = ended {
                        return;
                    }
                    tracing::warn!("Redis hub lost its subscriber connection; reconnecting");
                }
                Err(error) => {
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(Err(error));
                        return;
                    }
                    tracing::warn!(%error, retry_in = ?backoff, "Redis hub cannot reconnect yet");
                }
            }
            if let Ended::Closed = self.wait_offline(backoff, &mut commands).await {
                return;
            }
            backoff = (backoff * 2).min(self.max_backoff);
        }
    }

    async fn connect(
        &self,
        client: &redis::Client,
    ) -> Result<(PubSubSink, PubSubStream), redis::RedisError> {
        let pubsub = tokio::time::timeout(self.timeout, client.get_async_pubsub())
            .await
            .map_err(|_| {
                redis::RedisError::from((redis::ErrorKind::Io, "connecting to Redis timed out"))
            })??;
        let (mut sink, stream) = pubsub.split();
        let channels = self.all_channels();
        for chunk in channels.chunks(1_000) {
            tokio::time::timeout(self.timeout, sink.subscribe(chunk))
                .await
                .map_err(|_| {
                    redis::RedisError::from((redis::ErrorKind::Io, "subscribing timed out"))
                })??;
        }
        Ok((sink, stream))
    }

    async fn serve(
        &self,
        mut sink: PubSubSink,
        mut stream: PubSubStream,
        commands: &mut mpsc::UnboundedReceiver<Command>,
    ) -> Ended {
        let mut ping = tokio::time::interval(self.ping_every);
        ping.tick().await;
        loop {
            tokio::select! {
                message = stream.next() => match message {
                    Some(message) => self.deliver(&message),
                    None => return Ended::Lost,
                },
                command = commands.recv() => match command {
                    Some(Command::Subscribe(channels, ack)) => {
                        // Subscriptions queued meanwhile (a connect storm)
                        // go in the same SUBSCRIBE: one round trip for all.
                        let Batch { channels, acks, then } = Batch::drain(channels, ack, commands);
                        let subscribed = channels.is_empty()
                            || matches!(
                                tokio::time::timeout(self.timeout, sink.subscribe(&channels)).await,
                                Ok(Ok(()))
                            );
                        // Acknowledged either way: after a failure the
                        // reconnect re-subscribes and signals missed events.
                        for ack in acks {
                            let _ = ack.send(());
                        }
                        if !subscribed {
                            return Ended::Lost;
                        }
                        if let Some(Command::Unsubscribe(channels)) = then
                            && tokio::time::timeout(self.timeout, sink.unsubscribe(&channels)).await.is_err()
                        {
                            return Ended::Lost;
                        }
                    }
                    Some(Command::Unsubscribe(channels)) => {
                        if tokio::time::timeout(self.timeout, sink.unsubscribe(&channels)).await.is_err() {
                            return Ended::Lost;
                        }
                    }
                    None => return Ended::Closed,
                },
                _ = ping.tick() => {
                    // In subscribed mode Redis answers PING with an array
                    // (`pong`, ""), not a status: accept any reply.
                    if !matches!(tokio::time::timeout(self.timeout, sink.ping::<redis::Value>()).await, Ok(Ok(_))) {
                        return Ended::Lost;
                    }
                    let mut publisher = self.publisher.clone();
                    if let Err(error) = self.node.renew(&mut publisher).await {
                        tracing::warn!(%error, "renewing the node id lease failed");
                    }
                }
            }
        }
    }

    /// The listener on a Redis Cluster: one RESP3 cluster connection whose
    /// sharded subscriptions the client keeps on each channel's current
    /// shard, re-subscribing after a disconnection or a failover. Each
    /// disconnection it reports means messages may have been missed: once
    /// the cluster answers again and the re-subscriptions have settled,
    /// every local subscription is told to catch up from the store.
    async fn run_cluster(
        self,
        seeds: &[String],
        mut commands: mpsc::UnboundedReceiver<Command>,
        ready: oneshot::Sender<Result<(), redis::RedisError>>,
    ) {
        let (push_sender, mut pushes) = mpsc::unbounded_channel::<redis::PushInfo>();
        let connected = async {
            let client = Target::cluster_builder(seeds, self.timeout)
                .use_protocol(redis::ProtocolVersion::RESP3)
                .push_sender(push_sender)
                .build()?;
            let mut connection = connect_cluster(&client, self.timeout).await?;
            for channel in self.all_channels() {
                ssubscribe(&mut connection, &channel, self.timeout).await?;
            }
            Ok::<_, redis::RedisError>(connection)
        };
        let mut connection = match connected.await {
            Ok(connection) => connection,
            Err(error) => {
                let _ = ready.send(Err(error));
                return;
            }
        };
        self.link.connected.store(true, Ordering::SeqCst);
        let _ = ready.send(Ok(()));
        // Since when messages may have been missed, and when the client
        // last confirmed a (re-)subscription.
        let mut missed_since: Option<tokio::time::Instant> = None;
        let mut last_confirmation = tokio::time::Instant::now();
        let mut last_own_subscribe = tokio::time::Instant::now();
        let mut check = tokio::time::interval(Duration::from_millis(250));
        let mut renew = tokio::time::interval(self.ping_every);
        renew.tick().await;
        loop {
            tokio::select! {
                push = pushes.recv() => {
                    let Some(push) = push else { return };
                    match push.kind {
                        redis::PushKind::SMessage | redis::PushKind::Message => {
                            if let [channel, payload, ..] = push.data.as_slice()
                                && let (Some(channel), Some(payload)) = (bulk(channel), bulk(payload))
                            {
                                self.deliver_bytes(&String::from_utf8_lossy(channel), payload);
                            }
                        }
                        redis::PushKind::Disconnection => {
                            if missed_since.is_none() {
                                tracing::warn!("Redis Cluster connection lost; re-subscribing");
                            }
                            self.link.connected.store(false, Ordering::SeqCst);
                            missed_since.get_or_insert_with(tokio::time::Instant::now);
                        }
                        redis::PushKind::SSubscribe | redis::PushKind::Subscribe => {
                            last_confirmation = tokio::time::Instant::now();
                            // Not ours: the client re-subscribed a channel
                            // on its shard's new or restarted primary.
                            if last_own_subscribe.elapsed() > Duration::from_secs(1) {
                                missed_since.get_or_insert_with(tokio::time::Instant::now);
                            }
                        }
                        _ => {}
                    }
                }
                command = commands.recv() => match command {
                    Some(Command::Subscribe(channels, ack)) => {
                        // As on one Redis, subscriptions queued meanwhile
                        // go together; channels of one SSUBSCRIBE must share
                        // a slot, so each goes on its own, many in flight.
                        let Batch { channels, acks, then } = Batch::drain(channels, ack, &mut commands);
                        let timeout = self.timeout;
                        let failed = futures_util::stream::iter(channels.into_iter().map(|channel| {
                            let mut connection = connection.clone();
                            async move { ssubscribe(&mut connection, &channel, timeout).await.is_err() }
                        }))
                        .buffer_unordered(256)
                        .fold(false, |any, failed| std::future::ready(any || failed))
                        .await;
                        if failed {
                            // The client retries it with the others once
                            // the shard answers; catch up then.
                            missed_since.get_or_insert_with(tokio::time::Instant::now);
                        }
                        last_own_subscribe = tokio::time::Instant::now();
                        for ack in acks {
                            let _ = ack.send(());
                        }
                        if let Some(Command::Unsubscribe(channels)) = then {
                            for channel in &channels {
                                let _ = tokio::time::timeout(self.timeout, connection.sunsubscribe(channel)).await;
                            }
                        }
                    }
                    Some(Command::Unsubscribe(channels)) => {
                        for channel in &channels {
                            let _ = tokio::time::timeout(self.timeout, connection.sunsubscribe(channel)).await;
                        }
                    }
                    None => return,
                },
                _ = check.tick() => {
                    let Some(since) = missed_since else { continue };
                    let settled = since.elapsed() >= Duration::from_millis(500)
                        && last_confirmation.elapsed() >= Duration::from_millis(250);
                    if settled && cluster_ok(&mut connection, self.timeout).await {
                        missed_since = None;
                        self.link.connected.store(true, Ordering::SeqCst);
                        self.link.reconnects.fetch_add(1, Ordering::SeqCst);
                        tracing::info!("Redis Cluster answers again; streams catch up from the store");
                        self.local.signal_missed_all();
                    }
                }
                _ = renew.tick() => {
                    let mut publisher = self.publisher.clone();
                    if let Err(error) = self.node.renew(&mut publisher).await {
                        tracing::warn!(%error, "renewing the node id lease failed");
                    }
                }
            }
        }
    }

    /// Sleeps out the backoff, acknowledging subscriptions meanwhile (they
    /// are re-subscribed, and told to catch up, on reconnect).
    async fn wait_offline(
        &self,
        backoff: Duration,
        commands: &mut mpsc::UnboundedReceiver<Command>,
    ) -> Ended {
        let sleep = tokio::time::sleep(backoff);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => return Ended::Lost,
                command = commands.recv() => match command {
                    Some(Command::Subscribe(_, ack)) => {
                        let _ = ack.send(());
                    }
                    Some(Command::Unsubscribe(_)) => {}
                    None => return Ended::Closed,
                },
            }
        }
    }

    /// Every channel this node reads: its streams' and the shared ones.
    fn all_channels(&self) -> Vec<String> {
        let mut channels = self.channels.snapshot();
        channels.push(format!("{}a", self.prefix));
        channels.push(durable_channel(&self.prefix));
        channels.push(connection_channel(&self.prefix, self.node.id));
        channels
    }

    fn deliver(&self, message: &redis::Msg) {
        self.deliver_bytes(message.get_channel_name(), message.get_payload_bytes());
    }

    fn deliver_bytes(&self, channel: &str, payload: &[u8]) {
        match parse(
            &self.prefix,
            self.node.id,
            channel,
            Bytes::copy_from_slice(payload),
        ) {
            Ok(envelope) => self.local.deliver(&envelope.audience, &envelope.event),
            Err(Refused::Channel) => {
                tracing::warn!("ignoring a message on a channel that does not route its audience");
            }
            Err(Refused::Wire(error)) => tracing::warn!(%error, "ignoring a malformed message"),
        }
    }
}

/// `SSUBSCRIBE` one channel (channels of one call must share a slot).
async fn ssubscribe(
    connection: &mut redis::cluster_async::ClusterConnection,
    channel: &str,
    timeout: Duration,
) -> Result<(), redis::RedisError> {
    tokio::time::timeout(timeout, connection.ssubscribe(channel))
        .await
        .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "subscribing timed out")))?
}

/// Whether the cluster serves every slot again (`cluster_state:ok`): a
/// `PING` is answered even while a shard has no primary, and streams told
/// to catch up then would find the store refusing.
async fn cluster_ok(
    connection: &mut redis::cluster_async::ClusterConnection,
    timeout: Duration,
) -> bool {
    let mut command = redis::cmd("CLUSTER");
    command.arg("INFO");
    let info = command.query_async::<String>(connection);
    matches!(
        tokio::time::timeout(timeout, info).await,
        Ok(Ok(info)) if info.lines().any(|line| line.trim() == "cluster_state:ok")
    )
}

fn bulk(value: &redis::Value) -> Option<&[u8]> {
    match value {
        redis::Value::BulkString(bytes) => Some(bytes),
        _ => None,
    }
}

/// The URL without its password, for error messages.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sse_core::ConnectionId;

    #[test]
    fn channels_keep_kinds_apart_and_parse_back() {
        let prefix = "sse:";
        let node = 0xfeed;
        let user = channel(prefix, &Audience::user("alice")).unwrap();
        let spoof = channel(prefix, &Audience::topic("u:alice")).unwrap();
        assert_eq!(user, "sse:u:alice");
        assert_eq!(spoof, "sse:t:u:alice");
        assert_ne!(user, spoof);
        let event = Event::builder().data("x").build().unwrap();
        let envelope = |audience: Audience| Envelope::new(audience, event.clone()).encode();
        let spoofed = parse(prefix, node, &spoof, envelope(Audience::topic("u:alice")));
        assert_eq!(spoofed.unwrap().audience, Audience::topic("u:alice"));
        // An envelope on a channel that does not route its audience.
        assert!(parse(prefix, node, &user, envelope(Audience::topic("u:alice"))).is_err());
        let mine = channel(prefix, &Audience::Connection(ConnectionId::new(node, 42))).unwrap();
        assert_eq!(mine, "sse:c:000000000000feed");
        let to_42 = envelope(Audience::Connection(ConnectionId::new(node, 42)));
        assert_eq!(
            parse(prefix, node, &mine, to_42.clone()).unwrap().audience,
            Audience::Connection(ConnectionId::new(node, 42))
        );
        // Another node's connection is never delivered here.
        assert!(parse(prefix, node + 1, &mine, to_42).is_err());
        assert_eq!(
            parse(prefix, node, "sse:a", envelope(Audience::Everyone))
                .unwrap()
                .audience,
            Audience::Everyone
        );
        assert!(parse(prefix, node, "other:u:x", envelope(Audience::user("x"))).is_err());
        assert!(parse(prefix, node, "sse:zz", envelope(Audience::user("x"))).is_err());
        assert!(parse(prefix, node, "sse:u:x", Bytes::from_static(b"data: x\n\n")).is_err());
        // An ephemeral event is never taken from the durable channel.
        assert!(parse(prefix, node, "sse:d", envelope(Audience::user("x"))).is_err());
        assert_eq!(redact("redis://:pw@host:6379"), "redis://***@host:6379");
    }

    #[test]
    fn a_line_break_in_an_id_never_reaches_another_user() {
        let prefix = "sse:";
        let cursor = "abcdefgh.1".parse().unwrap();
        let event = Event::builder().data("x").build().unwrap();
        let durable = event.with_cursor(cursor).unwrap();
        let evil = Audience::user("x\ndata: evil");
        let payload = Envelope::new(evil.clone(), durable.clone()).encode();
        let received = parse(prefix, 1, "sse:d", payload).unwrap();
        assert_eq!(received.audience, evil);
        assert_eq!(received.event.frame(), durable.frame());
    }
}
