//! [`PostgresHub`]: fan-out across nodes through PostgreSQL
//! `LISTEN`/`NOTIFY`, for deployments that run PostgreSQL and no broker.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use sqlx::Row;
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use sse_core::cluster::{Envelope, wire};
use sse_core::{
    Audience, Event, EventLog, Hub, HubError, HubStats, InMemoryHub, Presence, Principal,
    Subscription, Timestamp,
};
use tokio::sync::Notify;

use crate::SqlStoreError;

/// Longest `NOTIFY` payload sent inline; PostgreSQL refuses 8,000 bytes and
/// more. Larger events travel by reference (see [`PostgresHub`]).
const MAX_INLINE: usize = 7_900;
/// Marks a payload that is a reference to `sse_hub_spill`.
const SPILLED: char = '\u{2}';
/// How long a spilled payload is kept for nodes to read it.
const SPILL_KEEP: Duration = Duration::from_secs(60);
/// How many ping intervals a node's lease lasts without a renewal.
const LEASE_PINGS: u32 = 6;

/// A [`Hub`] that spans every node connected to the same PostgreSQL
/// database, through `LISTEN`/`NOTIFY` on one channel.
///
/// Each node keeps its own connections in an [`InMemoryHub`] and holds one
/// connection that `LISTEN`s on the hub's channel (`sse_hub` by default).
/// Publishing is one `pg_notify` carrying the event as an
/// [`Envelope`] ([`sse_core::cluster::wire`]: the audience, length-prefixed,
/// then the event); every node reads every event and delivers
/// it through its local index (a hash lookup for an audience it does not
/// serve). One channel rather than one per audience keeps subscribing free
/// of round trips, and PostgreSQL's notification queue, not the filtering,
/// bounds the rate: this hub is for the deployments that run PostgreSQL
/// and nothing else, at thousands of events a second, not hundreds of
/// thousands (see BENCHMARKS.md).
///
/// # Large events
///
/// `NOTIFY` payloads stop short of 8,000 bytes, and carry text only. An
/// envelope that would be longer, or is not text (a NUL in a name), is
/// written to the unlogged table `sse_hub_spill` and the notification
/// carries its row id; nodes read the row before delivering (in order with
/// the rest). Rows are deleted after a minute.
///
/// # Durable events
///
/// Every node reads the one channel, so durable events (with a log
/// position) reach every node, whose [`InMemoryHub`] delivers them in
/// position order and fills a gap from the attached log (see
/// [`sse_core::log`]).
///
/// # When PostgreSQL goes away
///
/// Browser connections stay open. The node reconnects with exponential
/// backoff (100 ms to 5 s by default), `LISTEN`s again, and then tells
/// every local subscription that events may have been missed
/// ([`RecvError::Missed`](sse_core::RecvError::Missed)): `sse-tower`
/// streams replay from the store what was published meanwhile, so nothing
/// stored is lost and nothing is delivered twice. Publishing while the
/// database is down fails with [`HubError::Unavailable`]. A silently dead
/// connection is noticed: each node `NOTIFY`s a ping every few seconds,
/// and a listener that hears nothing for three intervals reconnects.
///
/// # Presence and node ids
///
/// Node ids come from the sequence `sse_hub_node_ids`, so connection ids
/// are unique across nodes. Each node mirrors its open streams per audience
/// into the unlogged table `sse_hub_presence` (changes batched within
/// [`presence_flush`](PostgresHubBuilder::presence_flush)) under a lease in
/// `sse_hub_nodes` renewed with each ping; a node that dies stops counting
/// when its lease ends (six pings, 30 s by default).
///
/// The tables are created on connect if missing (`CREATE ... IF NOT
/// EXISTS`, under an advisory lock).
///
/// ```no_run
/// use std::sync::Arc;
/// use sse_core::Notifier;
/// use sse_sqlx::{PostgresHub, SqlStore};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let url = "postgres://app@db/app";
/// let store = Arc::new(SqlStore::connect(url).await?);
/// let hub = Arc::new(PostgresHub::connect(url).await?);
/// let notifier = Notifier::with_store(store, hub);
/// # Ok(()) }
/// ```
///
/// Cloning gives another handle to the same hub; its background tasks end
/// when the last handle is dropped.
#[derive(Clone)]
pub struct PostgresHub {
    inner: Arc<Inner>,
}

struct Inner {
    local: InMemoryHub,
    pool: PgPool,
    channel: String,
    node: u64,
    timeout: Duration,
    published: AtomicU64,
    spilled: AtomicU64,
    connected: Arc<AtomicBool>,
    counts: Arc<Counts>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        // Leave presence at once on a graceful stop; a killed node's rows
        // stop counting when its lease ends.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let pool = self.pool.clone();
            let node = to_i64(self.node);
            runtime.spawn(async move {
                let _ = sqlx::query("DELETE FROM sse_hub_nodes WHERE node = $1")
                    .bind(node)
                    .execute(&pool)
                    .await;
                let _ = sqlx::query("DELETE FROM sse_hub_presence WHERE node = $1")
                    .bind(node)
                    .execute(&pool)
                    .await;
            });
        }
    }
}

/// This node's open streams per presence key, and the keys that changed
/// since the last flush.
#[derive(Default)]
struct Counts {
    streams: Mutex<HashMap<String, u64>>,
    dirty: Mutex<HashSet<String>>,
    wake: Notify,
}

impl Counts {
    fn add(&self, keys: &[String], open: bool) {
        let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        for key in keys {
            if open {
                *streams.entry(key.clone()).or_default() += 1;
            } else if let Some(count) = streams.get_mut(key) {
                *count -= 1;
                if *count == 0 {
                    streams.remove(key);
                }
            }
        }
        drop(streams);
        self.dirty
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(keys.iter().cloned());
        self.wake.notify_one();
    }
}

/// Counts a subscription's keys down when it drops.
struct PresenceGuard {
    counts: Arc<Counts>,
    keys: Vec<String>,
}

impl Drop for PresenceGuard {
    fn drop(&mut self) {
        self.counts.add(&self.keys, false);
    }
}

/// Options for [`PostgresHub`]; see [`PostgresHub::builder`].
#[derive(Debug, Clone)]
#[must_use = "call `connect` to start the hub"]
pub struct PostgresHubBuilder {
    url: String,
    channel: String,
    min_backoff: Duration,
    max_backoff: Duration,
    timeout: Duration,
    ping_every: Duration,
    presence_flush: Duration,
}

impl PostgresHubBuilder {
    /// The `LISTEN` channel (default `sse_hub`): lower-case letters, digits
    /// and `_`, at most 63. Apps sharing a database use different channels.
    pub fn channel(mut self, channel: impl Into<String>) -> Self {
        self.channel = channel.into();
        self
    }

    /// Reconnection backoff bounds (default 100 ms to 5 s, doubling).
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.min_backoff = min;
        self.max_backoff = max.max(min);
        self
    }

    /// How long a publish or a presence query waits on the database
    /// (default 2 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How often each node pings itself through `NOTIFY` to detect a dead
    /// listener and renews its lease (default 5 s).
    pub fn ping_every(mut self, every: Duration) -> Self {
        self.ping_every = every.max(Duration::from_millis(10));
        self
    }

    /// How long a change in this node's streams may wait before it is
    /// written for other nodes' [`Hub::presence`] (100 ms by default).
    pub fn presence_flush(mut self, every: Duration) -> Self {
        self.presence_flush = every;
        self
    }

    /// Connects, creates the hub's tables if missing, takes a node id and
    /// starts listening. The hub is live when this returns.
    pub async fn connect(self) -> Result<PostgresHub, SqlStoreError> {
        let redacted = crate::store::redact(&self.url);
        let valid = !self.channel.is_empty()
            && self.channel.len() <= 63
            && self
                .channel
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            return Err(SqlStoreError::InvalidChannel {
                channel: self.channel,
            });
        }
        let connect = |source| SqlStoreError::Connect {
            url: redacted.clone(),
            source,
        };
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(self.timeout)
            .connect(&self.url)
            .await
            .map_err(connect)?;
        create_tables(&pool).await.map_err(connect)?;
        let node: i64 = sqlx::query_scalar("SELECT nextval('sse_hub_node_ids')")
            .fetch_one(&pool)
            .await
            .map_err(connect)?;
        let node = to_u64(node);
        let listener = listen(&self.url, &self.channel).await.map_err(connect)?;
        let lease = self.ping_every * LEASE_PINGS;
        let local = InMemoryHub::with_node_id(node);
        let counts = Arc::new(Counts::default());
        let connected = Arc::new(AtomicBool::new(true));
        let listen_task = Listener {
            url: self.url.clone(),
            channel: self.channel.clone(),
            node,
            local: local.clone(),
            pool: pool.clone(),
            connected: connected.clone(),
            min_backoff: self.min_backoff,
            max_backoff: self.max_backoff,
            ping_every: self.ping_every,
            timeout: self.timeout,
            lease,
        };
        let flusher = Flusher {
            counts: Arc::downgrade(&counts),
            pool: pool.clone(),
            channel: self.channel.clone(),
            node,
            flush_every: self.presence_flush,
            lease,
        };
        Ok(PostgresHub {
            inner: Arc::new(Inner {
                local,
                pool,
                channel: self.channel,
                node,
                timeout: self.timeout,
                published: AtomicU64::new(0),
                spilled: AtomicU64::new(0),
                connected,
                counts,
                tasks: vec![
                    tokio::spawn(listen_task.run(listener)),
                    tokio::spawn(flusher.run()),
                ],
            }),
        })
    }
}

impl PostgresHub {
    /// Connects with the default options; see [`PostgresHub::builder`].
    pub async fn connect(url: &str) -> Result<Self, SqlStoreError> {
        Self::builder(url).connect().await
    }

    /// Starts configuring a hub on the PostgreSQL database at `url`.
    pub fn builder(url: impl Into<String>) -> PostgresHubBuilder {
        PostgresHubBuilder {
            url: url.into(),
            channel: "sse_hub".into(),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            ping_every: Duration::from_secs(5),
            presence_flush: Duration::from_millis(100),
        }
    }

    /// Whether the listening connection is up.
    pub fn is_connected(&self) -> bool {
        self.inner.connected.load(Ordering::Relaxed)
    }

    /// This node's id (the high half of its connection ids).
    pub fn node_id(&self) -> u64 {
        self.inner.node
    }

    /// The local hub this node delivers through.
    pub fn local(&self) -> &InMemoryHub {
        &self.inner.local
    }

    async fn spill(&self, wire: &[u8]) -> Result<i64, sqlx::Error> {
        let now = Timestamp::now().as_millis();
        let id = sqlx::query_scalar(
            "INSERT INTO sse_hub_spill (at, payload) VALUES ($1, $2) RETURNING id",
        )
        .bind(now)
        .bind(wire)
        .fetch_one(&self.inner.pool)
        .await?;
        if self
            .inner
            .spilled
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(64)
        {
            let keep = i64::try_from(SPILL_KEEP.as_millis()).unwrap_or(i64::MAX);
            sqlx::query("DELETE FROM sse_hub_spill WHERE at < $1")
                .bind(now.saturating_sub(keep))
                .execute(&self.inner.pool)
                .await?;
        }
        Ok(id)
    }
}

#[async_trait]
impl Hub for PostgresHub {
    async fn subscribe(
        &self,
        principal: &Principal,
        queue_capacity: usize,
    ) -> Result<Subscription, HubError> {
        let inner = &self.inner;
        inner.local.ready().await;
        // Every node reads the one channel: the subscription is live as
        // soon as the local index holds it.
        let subscription = inner.local.subscribe_now(principal, queue_capacity);
        let keys = presence_keys(principal);
        inner.counts.add(&keys, true);
        Ok(subscription.with_guard(PresenceGuard {
            counts: inner.counts.clone(),
            keys,
        }))
    }

    async fn publish(&self, audience: &Audience, event: &Event) -> Result<(), HubError> {
        let envelope = Envelope::new(audience.clone(), event.clone())
            .try_encode()
            .map_err(|e| HubError::Rejected(e.to_string()))?;
        let inline = std::str::from_utf8(&envelope)
            .ok()
            .filter(|text| text.len() <= MAX_INLINE && !text.contains('\0'));
        let unavailable = |e: sqlx::Error| HubError::Unavailable(Box::new(e));
        let send = async {
            let payload = match inline {
                Some(text) => text.to_owned(),
                None => {
                    // The envelope goes in a row; the notification names
                    // the row, after the audience when that is text (so a
                    // row gone by the time it is read misses one audience).
                    let id = self.spill(&envelope).await.map_err(unavailable)?;
                    let mut head = bytes::BytesMut::new();
                    let _ = wire::encode_audience(audience, &mut head);
                    let head = std::str::from_utf8(&head)
                        .ok()
                        .filter(|head| head.len() <= MAX_INLINE - 24 && !head.contains('\0'))
                        .unwrap_or_default();
                    format!("{head}{SPILLED}{id}")
                }
            };
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(&self.inner.channel)
                .bind(&payload)
                .execute(&self.inner.pool)
                .await
                .map_err(unavailable)
        };
        match tokio::time::timeout(self.inner.timeout, send).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(HubError::Unavailable(
                    "PostgreSQL did not take the notification in time".into(),
                ));
            }
        };
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
    /// last flush (within [`presence_flush`](PostgresHubBuilder::presence_flush)).
    /// A connection on another node is not answered
    /// ([`HubError::Unsupported`]).
    async fn presence(&self, audience: &Audience) -> Result<Presence, HubError> {
        let inner = &self.inner;
        let local = inner.local.local_presence(audience);
        let key = match audience {
            Audience::Connection(id) if id.node() == inner.node => {
                return Ok(Presence::new(local));
            }
            Audience::Connection(_) => {
                return Err(HubError::Unsupported(
                    "presence of another node's connection",
                ));
            }
            other => target(other),
        };
        let query = sqlx::query_scalar::<_, i64>(
            "SELECT COALESCE(SUM(p.streams), 0)::BIGINT FROM sse_hub_presence p \
             JOIN sse_hub_nodes n ON n.node = p.node \
             WHERE p.audience = $1 AND n.channel = $2 AND p.node <> $3 AND n.expires_at > $4",
        )
        .bind(key)
        .bind(&inner.channel)
        .bind(to_i64(inner.node))
        .bind(Timestamp::now().as_millis())
        .fetch_one(&inner.pool);
        let remote = match tokio::time::timeout(inner.timeout, query).await {
            Ok(Ok(remote)) => to_u64(remote),
            Ok(Err(e)) => return Err(HubError::Unavailable(Box::new(e))),
            Err(_) => return Err(HubError::Unavailable("presence query timed out".into())),
        };
        Ok(Presence::new(local + remote))
    }
}

impl std::fmt::Debug for PostgresHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresHub")
            .field("channel", &self.inner.channel)
            .field("node", &self.inner.node)
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

/// How a notification names its audience: the audience key (`u:`, `g:`,
/// `t:`, `*`), `s:<session>`, or `c:<node>:<seq>` in hex.
fn target(audience: &Audience) -> String {
    match audience {
        Audience::Session(session) => format!("s:{session}"),
        Audience::Connection(id) => format!("c:{:x}:{:x}", id.node(), id.seq()),
        other => other.key().unwrap_or_default(),
    }
}

/// The presence keys a principal's stream counts under.
fn presence_keys(principal: &Principal) -> Vec<String> {
    let mut keys = vec![
        target(&Audience::Everyone),
        target(&Audience::User(principal.user().clone())),
    ];
    if let Some(session) = principal.session() {
        keys.push(target(&Audience::Session(session.clone())));
    }
    keys.extend(
        principal
            .groups()
            .iter()
            .map(|group| target(&Audience::Group(group.clone()))),
    );
    keys.extend(
        principal
            .topics()
            .iter()
            .map(|topic| target(&Audience::Topic(topic.clone()))),
    );
    keys
}

/// What a notification on the hub's channel says.
#[derive(Debug, PartialEq)]
enum Notice {
    /// A node's ping to itself: hearing it was the point.
    Ping,
    /// An event for this node's connections.
    Event(Envelope),
    /// A large event (or one whose audience is not text), by reference to
    /// its envelope's row in `sse_hub_spill`; its audience, when given.
    Spilled(Option<Audience>, i64),
    /// Another node's connection: not for this node.
    Elsewhere,
}

/// The prefix of a ping (no envelope starts with it).
const PING: &str = "!ping:";

/// Reads a notification: an [envelope](sse_core::cluster::wire), the
/// audience of one followed by a spilled row's id, or a ping; an error for
/// anything else.
fn read_notice(payload: &str, node: u64) -> Result<Notice, String> {
    if payload.starts_with(PING) {
        return Ok(Notice::Ping);
    }
    if let Some(id) = payload.strip_prefix(SPILLED) {
        return Ok(Notice::Spilled(None, row_id(id)?));
    }
    let (audience, at) = wire::decode_audience(payload.as_bytes()).map_err(|e| e.to_string())?;
    if let Audience::Connection(id) = &audience
        && id.node() != node
    {
        return Ok(Notice::Elsewhere);
    }
    if let Some(id) = payload[at..].strip_prefix(SPILLED) {
        return Ok(Notice::Spilled(Some(audience), row_id(id)?));
    }
    Envelope::decode(Bytes::copy_from_slice(payload.as_bytes()))
        .map(Notice::Event)
        .map_err(|e| e.to_string())
}

/// A spilled row's id, in canonical decimal.
fn row_id(id: &str) -> Result<i64, String> {
    let canonical =
        !id.is_empty() && !id.starts_with('0') && id.bytes().all(|b| b.is_ascii_digit());
    id.parse()
        .ok()
        .filter(|_| canonical)
        .ok_or_else(|| "a spilled event's row id is not a number".to_owned())
}

async fn create_tables(pool: &PgPool) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    // Nodes starting together create the tables once.
    sqlx::query("SELECT pg_advisory_xact_lock(5365200002)")
        .execute(&mut *tx)
        .await?;
    for statement in [
        "CREATE SEQUENCE IF NOT EXISTS sse_hub_node_ids",
        "CREATE UNLOGGED TABLE IF NOT EXISTS sse_hub_nodes (node BIGINT PRIMARY KEY, channel TEXT NOT NULL, expires_at BIGINT NOT NULL)",
        "CREATE UNLOGGED TABLE IF NOT EXISTS sse_hub_presence (node BIGINT NOT NULL, audience TEXT NOT NULL, streams BIGINT NOT NULL, PRIMARY KEY (node, audience))",
        "CREATE INDEX IF NOT EXISTS sse_hub_presence_audience ON sse_hub_presence (audience)",
        "CREATE UNLOGGED TABLE IF NOT EXISTS sse_hub_spill (id BIGSERIAL PRIMARY KEY, at BIGINT NOT NULL, payload BYTEA NOT NULL)",
    ] {
        sqlx::query(statement).execute(&mut *tx).await?;
    }
    tx.commit().await
}

async fn listen(url: &str, channel: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect(url).await?;
    // This hub reconnects itself, to tell subscriptions what they missed.
    listener.eager_reconnect(false);
    listener.listen(channel).await?;
    Ok(listener)
}

/// The task that reads the channel and delivers to local subscriptions.
struct Listener {
    url: String,
    channel: String,
    node: u64,
    local: InMemoryHub,
    pool: PgPool,
    connected: Arc<AtomicBool>,
    min_backoff: Duration,
    max_backoff: Duration,
    ping_every: Duration,
    timeout: Duration,
    lease: Duration,
}

impl Listener {
    async fn run(self, first: PgListener) {
        let mut listener = Some(first);
        let mut backoff = self.min_backoff;
        loop {
            let current = match listener.take() {
                Some(current) => Ok(current),
                None => {
                    let attempt =
                        tokio::time::timeout(self.timeout, listen(&self.url, &self.channel)).await;
                    match attempt {
                        Ok(Ok(current)) => {
                            // Listening again: whatever was published
                            // meanwhile is replayed by the streams.
                            self.local.signal_missed_all();
                            Ok(current)
                        }
                        Ok(Err(error)) => Err(error.to_string()),
                        Err(_) => Err("timed out".to_owned()),
                    }
                }
            };
            match current {
                Ok(current) => {
                    self.connected.store(true, Ordering::Relaxed);
                    backoff = self.min_backoff;
                    self.pump(current).await;
                    self.connected.store(false, Ordering::Relaxed);
                    tracing::warn!("lost the PostgreSQL LISTEN connection; reconnecting");
                }
                Err(error) => {
                    tracing::warn!(%error, ?backoff, "listening on PostgreSQL failed; retrying");
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.max_backoff);
        }
    }

    /// Delivers notifications until the connection is lost or silent.
    async fn pump(&self, listener: PgListener) {
        // Polled through a stream so that a tick of the ping timer never
        // drops a half-read notification.
        let mut notifications = Box::pin(futures_util::stream::unfold(
            listener,
            |mut listener| async move {
                let next = listener.try_recv().await;
                Some((next, listener))
            },
        ));
        let mut ping = tokio::time::interval(self.ping_every);
        let mut last_heard = Instant::now();
        loop {
            tokio::select! {
                next = notifications.next() => match next {
                    Some(Ok(Some(notification))) => {
                        last_heard = Instant::now();
                        self.deliver(notification.payload()).await;
                    }
                    _ => return,
                },
                _ = ping.tick() => {
                    if last_heard.elapsed() > self.ping_every * 3 {
                        tracing::warn!("heard nothing on the PostgreSQL LISTEN connection, not even this node's pings");
                        return;
                    }
                    self.ping().await;
                }
            }
        }
    }

    /// A ping to itself through the channel, and the lease renewal.
    async fn ping(&self) {
        let node = to_i64(self.node);
        let lease = i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX);
        let work = async {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(&self.channel)
                .bind(format!("{PING}{:x}", self.node))
                .execute(&self.pool)
                .await?;
            sqlx::query(
                "INSERT INTO sse_hub_nodes (node, channel, expires_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (node) DO UPDATE SET expires_at = excluded.expires_at",
            )
            .bind(node)
            .bind(&self.channel)
            .bind(Timestamp::now().as_millis().saturating_add(lease))
            .execute(&self.pool)
            .await?;
            Ok::<_, sqlx::Error>(())
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "pinging PostgreSQL failed"),
            Err(_) => tracing::warn!("pinging PostgreSQL timed out"),
        }
    }

    async fn deliver(&self, payload: &str) {
        let envelope = match read_notice(payload, self.node) {
            Ok(Notice::Event(envelope)) => envelope,
            Ok(Notice::Spilled(audience, id)) => {
                let Some(row) = self.fetch_spilled(id).await else {
                    // Streams replay a stored event; an ephemeral one is gone.
                    match audience {
                        Some(audience) => self.local.signal_missed(&audience),
                        None => self.local.signal_missed_all(),
                    }
                    return;
                };
                match Envelope::decode(row) {
                    Ok(envelope) if audience.as_ref().is_none_or(|a| *a == envelope.audience) => {
                        if let Audience::Connection(id) = &envelope.audience
                            && id.node() != self.node
                        {
                            return;
                        }
                        envelope
                    }
                    Ok(_) => {
                        tracing::warn!("ignoring a large event whose row names another audience");
                        return;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "ignoring a malformed large event");
                        return;
                    }
                }
            }
            Ok(Notice::Ping | Notice::Elsewhere) => return,
            Err(error) => {
                tracing::warn!(%error, "ignoring a malformed notification");
                return;
            }
        };
        self.local.deliver(&envelope.audience, &envelope.event);
    }

    async fn fetch_spilled(&self, id: i64) -> Option<Bytes> {
        let row = sqlx::query("SELECT payload FROM sse_hub_spill WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool);
        match tokio::time::timeout(self.timeout, row).await {
            Ok(Ok(Some(row))) => row.try_get::<Vec<u8>, _>(0).ok().map(Bytes::from),
            Ok(Ok(None)) => {
                tracing::warn!(id, "a large event's row is gone (kept for a minute)");
                None
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "reading a large event failed");
                None
            }
            Err(_) => {
                tracing::warn!("reading a large event timed out");
                None
            }
        }
    }
}

/// The task that mirrors this node's counts into `sse_hub_presence`.
struct Flusher {
    counts: Weak<Counts>,
    pool: PgPool,
    channel: String,
    node: u64,
    flush_every: Duration,
    lease: Duration,
}

impl Flusher {
    async fn run(self) {
        let mut rewrite = tokio::time::interval(self.lease / 3);
        let mut full = true;
        loop {
            let Some(counts) = self.counts.upgrade() else {
                return;
            };
            let wake = async {
                counts.wake.notified().await;
                // Batch what else changes meanwhile.
                tokio::time::sleep(self.flush_every).await;
            };
            tokio::select! {
                () = wake => {}
                _ = rewrite.tick() => full = true,
            }
            let dirty =
                std::mem::take(&mut *counts.dirty.lock().unwrap_or_else(PoisonError::into_inner));
            let writes: Vec<(String, u64)> = {
                let streams = counts
                    .streams
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if full {
                    streams.iter().map(|(key, n)| (key.clone(), *n)).collect()
                } else {
                    dirty
                        .iter()
                        .map(|key| (key.clone(), streams.get(key).copied().unwrap_or(0)))
                        .collect()
                }
            };
            drop(counts);
            match self.write(full, &writes).await {
                Ok(()) => full = false,
                Err(error) => {
                    tracing::warn!(%error, "writing presence to PostgreSQL failed; retrying");
                    full = true;
                    tokio::time::sleep(self.flush_every.max(Duration::from_millis(100))).await;
                }
            }
        }
    }

    async fn write(&self, full: bool, writes: &[(String, u64)]) -> Result<(), sqlx::Error> {
        let node = to_i64(self.node);
        let now = Timestamp::now().as_millis();
        let lease = i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX);
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO sse_hub_nodes (node, channel, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (node) DO UPDATE SET expires_at = excluded.expires_at",
        )
        .bind(node)
        .bind(&self.channel)
        .bind(now.saturating_add(lease))
        .execute(&mut *tx)
        .await?;
        if full {
            sqlx::query("DELETE FROM sse_hub_presence WHERE node = $1")
                .bind(node)
                .execute(&mut *tx)
                .await?;
            // Forget nodes whose lease ended long ago, and their counts.
            sqlx::query(
                "DELETE FROM sse_hub_presence WHERE node IN (SELECT node FROM sse_hub_nodes WHERE expires_at < $1)",
            )
            .bind(now.saturating_sub(lease))
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM sse_hub_nodes WHERE expires_at < $1")
                .bind(now.saturating_sub(lease))
                .execute(&mut *tx)
                .await?;
        }
        let (keys, streams): (Vec<&str>, Vec<i64>) = writes
            .iter()
            .map(|(key, n)| (key.as_str(), to_i64(*n)))
            .unzip();
        sqlx::query(
            "INSERT INTO sse_hub_presence (node, audience, streams) \
             SELECT $1, key, n FROM UNNEST($2::TEXT[], $3::BIGINT[]) AS w (key, n) WHERE n > 0 \
             ON CONFLICT (node, audience) DO UPDATE SET streams = excluded.streams",
        )
        .bind(node)
        .bind(&keys)
        .bind(&streams)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM sse_hub_presence p USING UNNEST($2::TEXT[], $3::BIGINT[]) AS w (key, n) \
             WHERE p.node = $1 AND p.audience = w.key AND w.n = 0",
        )
        .bind(node)
        .bind(&keys)
        .bind(&streams)
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sse_core::ConnectionId;

    #[test]
    fn notifications_name_their_audience_unambiguously() {
        let node = 0xabc;
        let event = Event::builder().data("x").build().unwrap();
        for audience in [
            Audience::user("a:b\nc"),
            Audience::user("x\ndata: evil"),
            Audience::group("g"),
            Audience::topic("t:1"),
            Audience::session("s"),
            Audience::Everyone,
            Audience::Connection(ConnectionId::new(node, 42)),
        ] {
            let envelope = Envelope::new(audience.clone(), event.clone());
            let payload = String::from_utf8(envelope.encode().to_vec()).unwrap();
            assert_eq!(read_notice(&payload, node), Ok(Notice::Event(envelope)));
            let mut head = bytes::BytesMut::new();
            wire::encode_audience(&audience, &mut head).unwrap();
            let spilled = format!("{}{SPILLED}17", std::str::from_utf8(&head).unwrap());
            assert_eq!(
                read_notice(&spilled, node),
                Ok(Notice::Spilled(Some(audience), 17))
            );
        }
        let elsewhere =
            Envelope::new(Audience::Connection(ConnectionId::new(7, 1)), event).encode();
        let elsewhere = String::from_utf8(elsewhere.to_vec()).unwrap();
        assert_eq!(read_notice(&elsewhere, node), Ok(Notice::Elsewhere));
        assert_eq!(read_notice(&format!("{PING}abc"), node), Ok(Notice::Ping));
        assert_eq!(
            read_notice(&format!("{SPILLED}9"), node),
            Ok(Notice::Spilled(None, 9))
        );
        for junk in [
            "",
            "x",
            "9:ab",
            "2:é",
            "-1:x",
            "u:x\ndata: evil\ndata: x\n\n",
            "u1:x\u{2}",
            "u1:x\u{2}01",
            "u1:xdata: a\n\ndata: b\n\n",
        ] {
            assert!(read_notice(junk, node).is_err(), "{junk:?}");
        }
    }
}
