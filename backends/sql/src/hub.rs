//! [`PostgresHub`]: fan-out across nodes through PostgreSQL
//! `LISTEN`/`NOTIFY`, for deployments that run PostgreSQL and no broker.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use sqlx::Row;
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use sse_core::cluster::{ClusterHub, ClusterHubBuilder, Link, Route, Transport, TransportError};
use sse_core::{
    Audience, Event, EventLog, Hub, HubError, HubStats, InMemoryHub, Presence, Principal,
    Subscription, Timestamp, UserId,
};

use crate::SqlStoreError;

/// Longest `NOTIFY` payload sent inline; PostgreSQL refuses 8,000 bytes and
/// more. Larger messages travel by reference (see [`PostgresHub`]).
const MAX_INLINE: usize = 7_900;
/// Marks a payload that is a reference to `sse_hub_spill`.
const SPILLED: char = '\u{2}';
/// Marks a node's ping to itself (no message of the protocol starts so).
const PING: &str = "!ping:";
/// How long a spilled payload is kept for nodes to read it.
const SPILL_KEEP: Duration = Duration::from_secs(60);

/// A [`Hub`] that spans every node connected to the same PostgreSQL
/// database, through `LISTEN`/`NOTIFY` on one channel.
///
/// The protocol between nodes (the wire encoding, ordering and gap
/// filling, catch-up after a lost link, presence) is `sse-core`'s
/// [`cluster`](sse_core::cluster), the same on every engine; this is its
/// [`Transport`] over `NOTIFY`.
///
/// Each node keeps its own connections in an [`InMemoryHub`] and holds one
/// connection that `LISTEN`s on the hub's channel (`sse_hub` by default).
/// Publishing is one `pg_notify` carrying the message (for an event, an
/// [`Envelope`](sse_core::cluster::Envelope): the audience, length-prefixed,
/// then the event); every node reads every message and delivers it
/// through its local index (a hash lookup for an audience it does not
/// serve). One channel rather than one per audience keeps subscribing free
/// of round trips, and PostgreSQL's notification queue, not the filtering,
/// bounds the rate: this hub is for the deployments that run PostgreSQL
/// and nothing else, at thousands of events a second, not hundreds of
/// thousands (see BENCHMARKS.md).
///
/// # Large messages
///
/// `NOTIFY` payloads stop short of 8,000 bytes, and carry text only. A
/// message that would be longer, or is not text (a NUL in a name), is
/// written to the unlogged table `sse_hub_spill` and the notification
/// carries its row id; nodes read the row before delivering (in order with
/// the rest). Rows are deleted after a minute; a node that finds one gone
/// catches up from the log.
///
/// # When PostgreSQL goes away
///
/// Browser connections stay open. The node reconnects with exponential
/// backoff (100 ms to 5 s by default), `LISTEN`s again, and then reads
/// what the event log got meanwhile and delivers it, in order, to its
/// streams. Publishing while the database is down fails with
/// [`HubError::Unavailable`]. A silently dead connection is noticed: each
/// node `NOTIFY`s a ping every few seconds, and a listener that hears
/// nothing for three intervals reconnects.
///
/// # Who may publish
///
/// Any role that may `NOTIFY` on the channel can put messages on it; see
/// SECURITY.md for the grants that keep it to the app's role.
///
/// The spill table is created on connect if missing (`CREATE ... IF NOT
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
#[derive(Clone, Debug)]
pub struct PostgresHub {
    hub: ClusterHub<PostgresTransport>,
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
    cluster: ClusterHubBuilder,
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

    /// How long a publish waits on the database (default 2 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self.cluster = self.cluster.timeout(timeout);
        self
    }

    /// How often each node pings itself through `NOTIFY` to detect a dead
    /// listener (default 5 s), and renews its presence lease.
    pub fn ping_every(mut self, every: Duration) -> Self {
        self.ping_every = every.max(Duration::from_millis(10));
        self.cluster = self.cluster.announce_every(self.ping_every);
        self
    }

    /// How long a change in this node's streams may wait before other
    /// nodes hear of it (100 ms by default).
    pub fn presence_flush(mut self, every: Duration) -> Self {
        self.cluster = self.cluster.presence_flush(every);
        self
    }

    /// The protocol's other options ([`ClusterHubBuilder`]).
    pub fn cluster(mut self, options: ClusterHubBuilder) -> Self {
        self.cluster = options;
        self
    }

    /// Connects, creates the spill table if missing and starts listening.
    /// The hub is live when this returns.
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
        let listener = listen(&self.url, &self.channel).await.map_err(connect)?;
        let options = Options {
            url: self.url.clone(),
            channel: self.channel.clone(),
            min_backoff: self.min_backoff,
            max_backoff: self.max_backoff,
            ping_every: self.ping_every,
            timeout: self.timeout,
        };
        let hub = self
            .cluster
            .start(|link| async move {
                Ok::<_, SqlStoreError>(PostgresTransport::start(pool, listener, options, link))
            })
            .await?;
        Ok(PostgresHub { hub })
    }
}

impl From<TransportError> for SqlStoreError {
    fn from(error: TransportError) -> Self {
        SqlStoreError::Hub(error.to_string())
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
            cluster: ClusterHubBuilder::new(),
        }
    }

    /// Whether the listening connection is up.
    pub fn is_connected(&self) -> bool {
        self.hub.is_connected()
    }

    /// How many times the listening connection was regained after being
    /// lost.
    pub fn reconnects(&self) -> u64 {
        self.hub.reconnects()
    }

    /// This node's id (the high half of its connection ids).
    pub fn node_id(&self) -> u64 {
        self.hub.node_id()
    }

    /// The local hub this node delivers through.
    pub fn local(&self) -> &InMemoryHub {
        self.hub.local()
    }

    /// Online users of `audience` with their streams, on every node.
    pub fn members(&self, audience: &Audience) -> BTreeMap<UserId, u64> {
        self.hub.members(audience)
    }
}

#[async_trait]
impl Hub for PostgresHub {
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
    /// announced (within [`presence_flush`](PostgresHubBuilder::presence_flush)),
    /// answered from memory. A connection on another node is not answered
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

/// How the transport's listener runs.
#[derive(Debug, Clone)]
struct Options {
    url: String,
    channel: String,
    min_backoff: Duration,
    max_backoff: Duration,
    ping_every: Duration,
    timeout: Duration,
}

/// The protocol's [`Transport`] over PostgreSQL's `NOTIFY`: every route on
/// the one channel, large messages by reference.
pub struct PostgresTransport {
    pool: PgPool,
    channel: String,
    timeout: Duration,
    spilled: AtomicU64,
    listener: tokio::task::JoinHandle<()>,
}

impl Drop for PostgresTransport {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl std::fmt::Debug for PostgresTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresTransport")
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

impl PostgresTransport {
    fn start(pool: PgPool, listener: PgListener, options: Options, link: Link) -> Self {
        let node_ping = format!("{PING}{:x}", random_tag());
        let task = Listener {
            pool: pool.clone(),
            options: options.clone(),
            link,
            ping: node_ping,
        };
        Self {
            pool,
            channel: options.channel,
            timeout: options.timeout,
            spilled: AtomicU64::new(0),
            listener: tokio::spawn(task.run(listener)),
        }
    }

    async fn spill(&self, payload: &[u8]) -> Result<i64, sqlx::Error> {
        let now = Timestamp::now().as_millis();
        let id = sqlx::query_scalar(
            "INSERT INTO sse_hub_spill (at, payload) VALUES ($1, $2) RETURNING id",
        )
        .bind(now)
        .bind(payload)
        .fetch_one(&self.pool)
        .await?;
        if self
            .spilled
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(64)
        {
            let keep = i64::try_from(SPILL_KEEP.as_millis()).unwrap_or(i64::MAX);
            sqlx::query("DELETE FROM sse_hub_spill WHERE at < $1")
                .bind(now.saturating_sub(keep))
                .execute(&self.pool)
                .await?;
        }
        Ok(id)
    }
}

#[async_trait]
impl Transport for PostgresTransport {
    async fn publish(&self, _route: &Route, payload: Bytes) -> Result<(), TransportError> {
        let unavailable = |e: sqlx::Error| TransportError::Unavailable(Box::new(e));
        let inline = std::str::from_utf8(&payload)
            .ok()
            .filter(|text| text.len() <= MAX_INLINE && !text.contains('\0'));
        let send = async {
            let text = match inline {
                Some(text) => text.to_owned(),
                None => format!(
                    "{SPILLED}{}",
                    self.spill(&payload).await.map_err(unavailable)?
                ),
            };
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(&self.channel)
                .bind(&text)
                .execute(&self.pool)
                .await
                .map_err(unavailable)
        };
        match tokio::time::timeout(self.timeout, send).await {
            Ok(result) => result.map(|_| ()),
            Err(_) => Err(TransportError::Unavailable(
                "PostgreSQL did not take the notification in time".into(),
            )),
        }
    }

    /// Every route is on the one channel the listener `LISTEN`s to.
    async fn subscribe(&self, _routes: &[Route]) -> Result<(), TransportError> {
        Ok(())
    }

    async fn unsubscribe(&self, _routes: &[Route]) -> Result<(), TransportError> {
        Ok(())
    }

    fn channel(&self, _route: &Route) -> String {
        self.channel.clone()
    }
}

async fn create_tables(pool: &PgPool) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    // Nodes starting together create the table once.
    sqlx::query("SELECT pg_advisory_xact_lock(5365200002)")
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "CREATE UNLOGGED TABLE IF NOT EXISTS sse_hub_spill (id BIGSERIAL PRIMARY KEY, at BIGINT NOT NULL, payload BYTEA NOT NULL)",
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

async fn listen(url: &str, channel: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect(url).await?;
    // This hub reconnects itself, to tell the protocol what it missed.
    listener.eager_reconnect(false);
    listener.listen(channel).await?;
    Ok(listener)
}

/// The task that reads the channel and hands each message to the link.
struct Listener {
    pool: PgPool,
    options: Options,
    link: Link,
    /// This node's own ping payload.
    ping: String,
}

impl Listener {
    async fn run(self, first: PgListener) {
        let mut listener = Some(first);
        let mut backoff = self.options.min_backoff;
        loop {
            let current = match listener.take() {
                Some(current) => Ok(current),
                None => {
                    let attempt = tokio::time::timeout(
                        self.options.timeout,
                        listen(&self.options.url, &self.options.channel),
                    )
                    .await;
                    match attempt {
                        Ok(Ok(current)) => {
                            // Listening again: the protocol catches up on
                            // what was published meanwhile.
                            self.link.regained();
                            Ok(current)
                        }
                        Ok(Err(error)) => Err(error.to_string()),
                        Err(_) => Err("timed out".to_owned()),
                    }
                }
            };
            match current {
                Ok(current) => {
                    backoff = self.options.min_backoff;
                    self.pump(current).await;
                    self.link.lost();
                }
                Err(error) => {
                    tracing::warn!(%error, ?backoff, "listening on PostgreSQL failed; retrying");
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.options.max_backoff);
        }
    }

    /// Hands notifications to the link until the connection is lost or
    /// silent.
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
        let mut ping = tokio::time::interval(self.options.ping_every);
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
                    if last_heard.elapsed() > self.options.ping_every * 3 {
                        tracing::warn!("heard nothing on the PostgreSQL LISTEN connection, not even this node's pings");
                        return;
                    }
                    self.ping().await;
                }
            }
        }
    }

    /// A ping to itself through the channel: hearing it proves the link.
    async fn ping(&self) {
        let sent = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(&self.options.channel)
            .bind(&self.ping)
            .execute(&self.pool);
        match tokio::time::timeout(self.options.timeout, sent).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::warn!(%error, "pinging PostgreSQL failed"),
            Err(_) => tracing::warn!("pinging PostgreSQL timed out"),
        }
    }

    async fn deliver(&self, payload: &str) {
        if payload.starts_with(PING) {
            return;
        }
        let Some(id) = payload.strip_prefix(SPILLED) else {
            self.link.receive(
                &self.options.channel,
                Bytes::copy_from_slice(payload.as_bytes()),
            );
            return;
        };
        match self.fetch_spilled(id).await {
            Some(message) => self.link.receive(&self.options.channel, message),
            // Gone (kept a minute) or unreadable: what it held is caught up
            // from the log.
            None => self.link.dropped(),
        }
    }

    async fn fetch_spilled(&self, id: &str) -> Option<Bytes> {
        let canonical =
            !id.is_empty() && !id.starts_with('0') && id.bytes().all(|b| b.is_ascii_digit());
        let id: i64 = id.parse().ok().filter(|_| canonical)?;
        let row = sqlx::query("SELECT payload FROM sse_hub_spill WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool);
        match tokio::time::timeout(self.options.timeout, row).await {
            Ok(Ok(Some(row))) => row.try_get::<Vec<u8>, _>(0).ok().map(Bytes::from),
            Ok(Ok(None)) => {
                tracing::warn!(id, "a large message's row is gone (kept for a minute)");
                None
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "reading a large message failed");
                None
            }
            Err(_) => {
                tracing::warn!("reading a large message timed out");
                None
            }
        }
    }
}

/// A tag that tells this node's pings from other nodes'.
fn random_tag() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}
