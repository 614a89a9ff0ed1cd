//! [`NatsHub`]: a [`Hub`] that spans every node connected to the same NATS
//! server (or cluster), over core NATS subjects.
//!
//! ```no_run
//! use std::sync::Arc;
//! use sse_core::{InMemoryStore, Notifier};
//! use sse_nats::NatsHub;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let hub = NatsHub::builder("nats://127.0.0.1:4222").prefix("myapp").connect().await?;
//! let notifier = Notifier::with_store(Arc::new(InMemoryStore::new()), Arc::new(hub));
//! # Ok(()) }
//! ```
//!
//! # Subjects
//!
//! One subject per audience key: `<prefix>.u.<hex>` (a user), `.s.` (a
//! session), `.g.` (a group), `.t.` (a topic), with the key hex-encoded so
//! no name can spell another subject or a wildcard; `<prefix>.all` for
//! everyone; `<prefix>.c.<node>` for one connection of a node; **durable
//! events** (with a log position) on `<prefix>.d`. Every payload is an
//! [`Envelope`] ([`sse_core::cluster::wire`]): the audience, length-prefixed,
//! then the event. A node delivers a message only if its envelope decodes
//! and its subject is the one that envelope's audience travels on.
//!
//! Each node reads all of them through one subscription, `<prefix>.>`, and
//! delivers through its local index (a hash lookup for an audience it does
//! not serve). One subscription rather than one per audience because the
//! client hands each subscription's messages over separately: events of
//! one publisher to a user and then to that user's group could reach a
//! stream in the other order, and streams rely on one publisher's order
//! (and durable events on reaching every node in position order, see
//! [`sse_core::log`]). Subscribing costs no round trip either. The cost is
//! that every node reads every event: size the fleet by events a second
//! times nodes (see BENCHMARKS.md).
//!
//! # When NATS goes away
//!
//! Browser connections stay open. The client reconnects by itself and
//! subscribes again; once the server has confirmed the subscriptions, the
//! hub tells every local subscription that events may have been missed
//! ([`RecvError::Missed`](sse_core::RecvError::Missed)), and `sse-tower`
//! streams replay from the store. The NATS client buffers publishes made
//! while it is disconnected and sends them on reconnect, so they are not
//! refused; streams skip what they already replayed.
//!
//! # Presence
//!
//! Each node publishes its open streams per audience on `<prefix>.p`
//! (changes batched within [`presence_flush`](NatsHubBuilder::presence_flush),
//! everything every few seconds, and at once when a node joins), and keeps
//! the other nodes' counts in memory: [`Hub::presence`] asks nobody. A node
//! that stops announcing stops counting after its lease (30 s by default).
//! Node ids are random 64-bit numbers (the connection ids' high half).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sse_core::cluster::Envelope;
use sse_core::{
    Audience, Event, EventLog, Hub, HubError, HubStats, InMemoryHub, Presence, Principal,
    Subscription,
};
use tokio::sync::Notify;

/// How many announce intervals a node counts for without announcing.
const LEASE_ANNOUNCES: u32 = 6;

/// Why a [`NatsHub`] could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NatsHubError {
    /// Connecting or subscribing failed.
    #[error(
        "could not connect to NATS at {url}: {reason}; check that the server runs and the URL is right"
    )]
    Connect {
        /// The URL given.
        url: String,
        /// What the client said.
        reason: String,
    },
    /// The subject prefix is not one NATS takes as a single token.
    #[error("invalid subject prefix {prefix:?}: use letters, digits, `-` and `_` (such as `sse`)")]
    InvalidPrefix {
        /// The prefix given.
        prefix: String,
    },
}

/// A [`Hub`] over core NATS; see the [crate docs](crate).
///
/// Cloning gives another handle to the same hub; its background tasks end
/// when the last handle is dropped.
#[derive(Clone)]
pub struct NatsHub {
    inner: Arc<Inner>,
}

struct Inner {
    local: InMemoryHub,
    client: async_nats::Client,
    prefix: String,
    node: u64,
    published: AtomicU64,
    connected: Arc<AtomicBool>,
    counts: Arc<Counts>,
    remote: Arc<Remote>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        // Say goodbye, so other nodes stop counting this one at once.
        let client = self.client.clone();
        let subject = format!("{}.p", self.prefix);
        let goodbye = announcement(self.node, Kind::Gone, Vec::new(), Duration::ZERO);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = client.publish(subject, goodbye).await;
                let _ = client.flush().await;
            });
        }
    }
}

/// Counts a subscription's presence keys down when it drops.
struct Lease {
    counts: Arc<Counts>,
    keys: Vec<String>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.counts.add(&self.keys, false);
    }
}

/// This node's open streams per presence key, and the keys that changed.
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

/// Other nodes' counts, as last announced.
#[derive(Default)]
struct Remote {
    nodes: Mutex<HashMap<u64, RemoteNode>>,
}

struct RemoteNode {
    expires: Instant,
    counts: HashMap<String, u64>,
}

#[derive(Serialize, Deserialize, PartialEq, Eq, Clone, Copy, Debug)]
enum Kind {
    /// Every count of the node (others forget what it does not list).
    Full,
    /// Only changed counts (0: gone).
    Changes,
    /// A node that just started: answer with `Full`.
    Hello,
    /// A node that stops.
    Gone,
}

#[derive(Serialize, Deserialize)]
struct Announcement {
    node: u64,
    kind: Kind,
    lease_ms: u64,
    counts: Vec<(String, u64)>,
}

fn announcement(node: u64, kind: Kind, counts: Vec<(String, u64)>, lease: Duration) -> Bytes {
    let lease_ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX);
    serde_json::to_vec(&Announcement {
        node,
        kind,
        lease_ms,
        counts,
    })
    .map(Bytes::from)
    .unwrap_or_default()
}

impl Remote {
    /// Applies an announcement; returns whether the sender asked for ours.
    fn apply(&self, own: u64, payload: &[u8]) -> bool {
        let Ok(message) = serde_json::from_slice::<Announcement>(payload) else {
            tracing::warn!("ignoring a malformed presence announcement");
            return false;
        };
        if message.node == own {
            return false;
        }
        let mut nodes = self.nodes.lock().unwrap_or_else(PoisonError::into_inner);
        let expires = Instant::now() + Duration::from_millis(message.lease_ms);
        match message.kind {
            Kind::Gone => {
                nodes.remove(&message.node);
            }
            Kind::Hello => return true,
            Kind::Full => {
                nodes.insert(
                    message.node,
                    RemoteNode {
                        expires,
                        counts: message.counts.into_iter().filter(|(_, n)| *n > 0).collect(),
                    },
                );
            }
            Kind::Changes => {
                let node = nodes.entry(message.node).or_insert_with(|| RemoteNode {
                    expires,
                    counts: HashMap::new(),
                });
                node.expires = expires;
                for (key, n) in message.counts {
                    if n == 0 {
                        node.counts.remove(&key);
                    } else {
                        node.counts.insert(key, n);
                    }
                }
            }
        }
        false
    }

    fn count(&self, key: &str) -> u64 {
        let now = Instant::now();
        let mut nodes = self.nodes.lock().unwrap_or_else(PoisonError::into_inner);
        nodes.retain(|_, node| node.expires > now);
        nodes
            .values()
            .map(|node| node.counts.get(key).copied().unwrap_or(0))
            .sum()
    }
}

/// Options for [`NatsHub`]; see [`NatsHub::builder`].
#[derive(Debug, Clone)]
#[must_use = "call `connect` to start the hub"]
pub struct NatsHubBuilder {
    url: String,
    prefix: String,
    announce_every: Duration,
    presence_flush: Duration,
    max_backoff: Duration,
}

impl NatsHubBuilder {
    /// The first token of every subject (default `sse`); apps sharing a
    /// NATS server use different prefixes.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How often each node announces all its counts (default 5 s); a node
    /// counts for six of these after its last announcement.
    pub fn announce_every(mut self, every: Duration) -> Self {
        self.announce_every = every.max(Duration::from_millis(10));
        self
    }

    /// How long a change in this node's streams may wait before other
    /// nodes hear of it (100 ms by default).
    pub fn presence_flush(mut self, every: Duration) -> Self {
        self.presence_flush = every;
        self
    }

    /// The longest wait between reconnection attempts (default 5 s; the
    /// client backs off from 0 up to it).
    pub fn reconnect_backoff_max(mut self, max: Duration) -> Self {
        self.max_backoff = max;
        self
    }

    /// Connects and subscribes to the subjects every node reads. The hub
    /// is live when this returns.
    pub async fn connect(self) -> Result<NatsHub, NatsHubError> {
        let valid = !self.prefix.is_empty()
            && self
                .prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err(NatsHubError::InvalidPrefix {
                prefix: self.prefix,
            });
        }
        let url = self.url.clone();
        let failed = |e: &dyn std::fmt::Display| NatsHubError::Connect {
            url: url.clone(),
            reason: e.to_string(),
        };
        let node = random_node_id();
        let local = InMemoryHub::with_node_id(node);
        let connected = Arc::new(AtomicBool::new(false));
        // The first `Connected` is the initial connection, nothing missed.
        let was_lost = Arc::new(AtomicBool::new(false));
        // Set once the client exists; the callback needs it to confirm the
        // re-subscriptions before telling streams to catch up.
        let client_slot: Arc<std::sync::OnceLock<async_nats::Client>> = Arc::default();
        let max_backoff = self.max_backoff;
        let options = {
            let connected = connected.clone();
            let was_lost = was_lost.clone();
            let local = local.clone();
            let client_slot = client_slot.clone();
            async_nats::ConnectOptions::new()
                .max_reconnects(None)
                .reconnect_delay_callback(move |attempts| {
                    let millis = 50u64.saturating_mul(1 << attempts.min(10));
                    Duration::from_millis(millis).min(max_backoff)
                })
                .event_callback(move |event| {
                    let connected = connected.clone();
                    let was_lost = was_lost.clone();
                    let local = local.clone();
                    let client_slot = client_slot.clone();
                    async move {
                        match event {
                            async_nats::Event::Disconnected => {
                                was_lost.store(true, Ordering::Relaxed);
                                connected.store(false, Ordering::Relaxed);
                                tracing::warn!("lost NATS; reconnecting");
                            }
                            async_nats::Event::Connected => {
                                // The client re-subscribes right after this
                                // event; a flush returns once the server has
                                // the subscriptions.
                                if was_lost.load(Ordering::Relaxed)
                                    && let Some(client) = client_slot.get()
                                {
                                    let _ = client.flush().await;
                                    local.signal_missed_all();
                                }
                                connected.store(true, Ordering::Relaxed);
                            }
                            other => tracing::debug!(event = %other, "NATS client event"),
                        }
                    }
                })
        };
        let client = options
            .connect(self.url.as_str())
            .await
            .map_err(|e| failed(&e))?;
        let _ = client_slot.set(client.clone());
        connected.store(true, Ordering::Relaxed);
        let prefix = self.prefix.clone();
        let mut tasks = Vec::new();
        let events = client
            .subscribe(format!("{prefix}.>"))
            .await
            .map_err(|e| failed(&e))?;
        tasks.push(tokio::spawn(forward(events, local.clone(), prefix.clone())));
        let counts = Arc::new(Counts::default());
        let remote = Arc::new(Remote::default());
        let presence = client
            .subscribe(format!("{prefix}.p"))
            .await
            .map_err(|e| failed(&e))?;
        let lease = self.announce_every * LEASE_ANNOUNCES;
        tasks.push(tokio::spawn(
            Announcer {
                client: client.clone(),
                subject: format!("{prefix}.p"),
                node,
                counts: Arc::downgrade(&counts),
                remote: remote.clone(),
                flush_every: self.presence_flush,
                announce_every: self.announce_every,
                lease,
            }
            .run(presence),
        ));
        client.flush().await.map_err(|e| failed(&e))?;
        Ok(NatsHub {
            inner: Arc::new(Inner {
                local,
                client,
                prefix,
                node,
                published: AtomicU64::new(0),
                connected,
                counts,
                remote,
                tasks,
            }),
        })
    }
}

impl NatsHub {
    /// Connects with the default options; see [`NatsHub::builder`].
    pub async fn connect(url: &str) -> Result<Self, NatsHubError> {
        Self::builder(url).connect().await
    }

    /// Starts configuring a hub on the NATS server at `url`
    /// (`nats://HOST:PORT`).
    pub fn builder(url: impl Into<String>) -> NatsHubBuilder {
        NatsHubBuilder {
            url: url.into(),
            prefix: "sse".into(),
            announce_every: Duration::from_secs(5),
            presence_flush: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }

    /// Whether the client is connected to NATS.
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
}

/// The subject an ephemeral event for `audience` travels on; a
/// connection's is its node's.
fn subject_of(prefix: &str, audience: &Audience) -> String {
    match audience {
        Audience::Everyone => format!("{prefix}.all"),
        Audience::Connection(id) => format!("{prefix}.c.{:x}", id.node()),
        other => format!("{prefix}.{}", key_token(other)),
    }
}

/// `u.<hex>`, `s.<hex>`, `g.<hex>`, `t.<hex>`: the kind, then the name
/// hex-encoded (NATS tokens may not hold `.`, `*`, `>` or spaces).
fn key_token(audience: &Audience) -> String {
    let (kind, name) = match audience {
        Audience::User(user) => ("u", user.as_str()),
        Audience::Session(session) => ("s", session.as_str()),
        Audience::Group(group) => ("g", group.as_str()),
        Audience::Topic(topic) => ("t", topic.as_str()),
        Audience::Everyone => return "all".into(),
        // Connections are addressed on their node's subject; other kinds
        // (the enum is non-exhaustive) have no subject of their own.
        _ => return "c".into(),
    };
    let mut token = String::with_capacity(2 + name.len() * 2);
    token.push_str(kind);
    token.push('.');
    // Every publish names its subject: no allocation per byte.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for byte in name.bytes() {
        token.push(char::from(HEX[usize::from(byte >> 4)]));
        token.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    token
}

/// The subscribed subjects and presence keys of a principal's stream.
fn audiences_of(principal: &Principal) -> Vec<Audience> {
    let mut audiences = vec![Audience::User(principal.user().clone())];
    if let Some(session) = principal.session() {
        audiences.push(Audience::Session(session.clone()));
    }
    audiences.extend(principal.groups().iter().cloned().map(Audience::Group));
    audiences.extend(principal.topics().iter().cloned().map(Audience::Topic));
    audiences
}

/// Delivers every message of `<prefix>.>` to local subscriptions, in the
/// order NATS delivers them.
async fn forward(mut subscriber: async_nats::Subscriber, local: InMemoryHub, prefix: String) {
    let node = local.node_id();
    let presence = format!("{prefix}.p");
    while let Some(message) = subscriber.next().await {
        // Presence has its own reader.
        if message.subject.as_str() == presence {
            continue;
        }
        match accept(&prefix, node, message.subject.as_str(), message.payload) {
            Ok(Some(envelope)) => local.deliver(&envelope.audience, &envelope.event),
            // Another node's connection.
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "ignoring a message"),
        }
    }
}

/// The envelope of a message on `subject` (see
/// [`sse_core::cluster::wire`]), if it is for this node: the subject must be
/// the one its audience travels on; `None` for another node's connection.
fn accept(
    prefix: &str,
    node: u64,
    subject: &str,
    payload: Bytes,
) -> Result<Option<Envelope>, String> {
    let envelope = Envelope::decode(payload).map_err(|e| e.to_string())?;
    let durable = subject.strip_prefix(prefix) == Some(".d");
    let routed = if durable {
        envelope.event.cursor().is_some()
    } else {
        subject == subject_of(prefix, &envelope.audience)
    };
    if !routed {
        return Err(format!(
            "an envelope for {:?} arrived on {subject:?}, which does not carry that audience",
            envelope.audience
        ));
    }
    match &envelope.audience {
        Audience::Connection(id) if id.node() != node => Ok(None),
        _ => Ok(Some(envelope)),
    }
}

#[async_trait]
impl Hub for NatsHub {
    async fn subscribe(
        &self,
        principal: &Principal,
        queue_capacity: usize,
    ) -> Result<Subscription, HubError> {
        let inner = &self.inner;
        inner.local.ready().await;
        // Every node reads every subject: the subscription is live as soon
        // as the local index holds it.
        let subscription = inner.local.subscribe_now(principal, queue_capacity);
        let mut keys: Vec<String> = audiences_of(principal).iter().map(key_token).collect();
        keys.push(key_token(&Audience::Everyone));
        inner.counts.add(&keys, true);
        Ok(subscription.with_guard(Lease {
            counts: inner.counts.clone(),
            keys,
        }))
    }

    async fn publish(&self, audience: &Audience, event: &Event) -> Result<(), HubError> {
        let inner = &self.inner;
        let payload = Envelope::new(audience.clone(), event.clone())
            .try_encode()
            .map_err(|e| HubError::Rejected(e.to_string()))?;
        let subject = match (event.cursor(), audience.is_durable()) {
            (Some(_), true) => format!("{}.d", inner.prefix),
            _ => subject_of(&inner.prefix, audience),
        };
        inner
            .client
            .publish(subject, payload)
            .await
            .map_err(|e| HubError::Unavailable(Box::new(e)))?;
        inner.published.fetch_add(1, Ordering::Relaxed);
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

    /// This node's exact count plus the other nodes' as last announced
    /// (within [`presence_flush`](NatsHubBuilder::presence_flush)); answered
    /// from memory. A connection on another node is not answered
    /// ([`HubError::Unsupported`]).
    async fn presence(&self, audience: &Audience) -> Result<Presence, HubError> {
        let inner = &self.inner;
        let local = inner.local.local_presence(audience);
        match audience {
            Audience::Connection(id) if id.node() == inner.node => Ok(Presence::new(local)),
            Audience::Connection(_) => Err(HubError::Unsupported(
                "presence of another node's connection",
            )),
            other => Ok(Presence::new(local + inner.remote.count(&key_token(other)))),
        }
    }
}

impl std::fmt::Debug for NatsHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsHub")
            .field("prefix", &self.inner.prefix)
            .field("node", &format_args!("{:016x}", self.inner.node))
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

/// Announces this node's counts and applies the other nodes'.
struct Announcer {
    client: async_nats::Client,
    subject: String,
    node: u64,
    counts: Weak<Counts>,
    remote: Arc<Remote>,
    flush_every: Duration,
    announce_every: Duration,
    lease: Duration,
}

impl Announcer {
    async fn run(self, mut announcements: async_nats::Subscriber) {
        let _ = self
            .client
            .publish(
                self.subject.clone(),
                announcement(self.node, Kind::Hello, Vec::new(), self.lease),
            )
            .await;
        let mut full = tokio::time::interval(self.announce_every);
        loop {
            let Some(counts) = self.counts.upgrade() else {
                return;
            };
            let kind = tokio::select! {
                message = announcements.next() => {
                    let Some(message) = message else { return };
                    if !self.remote.apply(self.node, &message.payload) {
                        continue;
                    }
                    Kind::Full
                }
                () = counts.wake.notified() => {
                    drop(counts);
                    tokio::time::sleep(self.flush_every).await;
                    Kind::Changes
                }
                _ = full.tick() => Kind::Full,
            };
            let Some(counts) = self.counts.upgrade() else {
                return;
            };
            let list = snapshot(&counts, kind == Kind::Full);
            drop(counts);
            let payload = announcement(self.node, kind, list, self.lease);
            if let Err(error) = self.client.publish(self.subject.clone(), payload).await {
                tracing::warn!(%error, "announcing presence failed");
            }
        }
    }
}

/// Every count (`full`), or the changed ones (0 for a key now empty).
fn snapshot(counts: &Counts, full: bool) -> Vec<(String, u64)> {
    let dirty = std::mem::take(&mut *counts.dirty.lock().unwrap_or_else(PoisonError::into_inner));
    let streams = counts
        .streams
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if full {
        streams.iter().map(|(key, n)| (key.clone(), *n)).collect()
    } else {
        dirty
            .into_iter()
            .map(|key| {
                let n = streams.get(&key).copied().unwrap_or(0);
                (key, n)
            })
            .collect()
    }
}

fn random_node_id() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    // RandomState is seeded from the OS per process; mixing in the time
    // and a counter keeps two hubs of one process apart.
    static NEXT: AtomicU64 = AtomicU64::new(0);
    RandomState::new().hash_one((
        std::time::SystemTime::now(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        std::process::id(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_tokens_cannot_spell_another_subject() {
        let mut tokens = std::collections::HashSet::new();
        for name in ["a.b", "*", ">", "a b", "é", "u.61", "x\ndata: y"] {
            let token = key_token(&Audience::user(name));
            assert!(token.starts_with("u."));
            assert!(token[2..].bytes().all(|b| b.is_ascii_hexdigit()), "{token}");
            assert!(tokens.insert(token));
        }
        assert_ne!(
            key_token(&Audience::user("x")),
            key_token(&Audience::group("x"))
        );
    }

    #[test]
    fn only_envelopes_on_their_own_subject_are_delivered() {
        let event = Event::builder().data("x").build().unwrap();
        let evil = Audience::user("x\ndata: evil");
        let payload = Envelope::new(evil.clone(), event.clone()).encode();
        let on_own = accept("sse", 1, &subject_of("sse", &evil), payload.clone());
        assert_eq!(on_own.unwrap().unwrap().audience, evil);
        // The same envelope on user x's subject, or as durable: refused.
        let victim = subject_of("sse", &Audience::user("x"));
        assert!(accept("sse", 1, &victim, payload.clone()).is_err());
        assert!(accept("sse", 1, "sse.d", payload).is_err());
        // The old form (key, line feed, frame) is refused.
        let old = Bytes::from_static(b"u:x\ndata: evil\nid: a.1\ndata: x\n\n");
        assert!(accept("sse", 1, "sse.d", old).is_err());
        let to_other_node = Audience::Connection(sse_core::ConnectionId::new(2, 5));
        let payload = Envelope::new(to_other_node.clone(), event).encode();
        let subject = subject_of("sse", &to_other_node);
        assert!(accept("sse", 1, &subject, payload).unwrap().is_none());
    }
}
