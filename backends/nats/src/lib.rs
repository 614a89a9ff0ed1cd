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
//! The protocol between nodes (the wire encoding, ordering and gap
//! filling, catch-up after a lost link, presence) is `sse-core`'s
//! [`cluster`](sse_core::cluster), the same on every engine; this crate is
//! its [`Transport`] over NATS, [`NatsTransport`].
//!
//! # Subjects
//!
//! One subject per audience key: `<prefix>.u.<hex>` (a user), `.s.` (a
//! session), `.g.` (a group), `.t.` (a topic), with the key hex-encoded so
//! no name can spell another subject or a wildcard; `<prefix>.all` for
//! everyone; `<prefix>.c.<node>` for one connection of a node; **durable
//! events** (with a log position) on `<prefix>.d`; presence on
//! `<prefix>.p`. Every payload is an [`Envelope`](sse_core::cluster::Envelope):
//! the audience, length-prefixed, then the event. A node delivers a
//! message only if its envelope decodes and its subject is the one that
//! envelope's audience travels on.
//!
//! Each node reads all of them through one subscription, `<prefix>.>`, and
//! delivers through its local index (a hash lookup for an audience it does
//! not serve). One subscription rather than one per audience because the
//! client hands each subscription's messages over separately: events of
//! one publisher to a user and then to that user's group could reach a
//! stream in the other order, and the protocol relies on the broker's
//! order on one connection. Subscribing costs no round trip either. The
//! cost is that every node reads every event: size the fleet by events a
//! second times nodes (see BENCHMARKS.md).
//!
//! # When NATS goes away
//!
//! Browser connections stay open. The client reconnects by itself and
//! subscribes again; once the server has confirmed the subscription, the
//! node reads what the event log got meanwhile and delivers it, in order,
//! to its streams (one read for all of them). The NATS client buffers
//! publishes made while it is disconnected and sends them on reconnect.
//! When the client drops messages because this node fell behind (a slow
//! consumer), the node catches up from the log the same way.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use sse_core::cluster::{ClusterHub, ClusterHubBuilder, Link, Route, Transport, TransportError};
use sse_core::{
    Audience, Event, EventLog, Hub, HubError, HubStats, InMemoryHub, Presence, Principal,
    Subscription, UserId,
};

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

impl From<TransportError> for NatsHubError {
    fn from(error: TransportError) -> Self {
        Self::Connect {
            url: String::new(),
            reason: error.to_string(),
        }
    }
}

/// A [`Hub`] over core NATS; see the [crate docs](crate).
///
/// Cloning gives another handle to the same hub; its background tasks end
/// when the last handle is dropped.
#[derive(Clone, Debug)]
pub struct NatsHub {
    hub: ClusterHub<NatsTransport>,
}

/// Options for [`NatsHub`]; see [`NatsHub::builder`].
#[derive(Debug, Clone)]
#[must_use = "call `connect` to start the hub"]
pub struct NatsHubBuilder {
    url: String,
    prefix: String,
    cluster: ClusterHubBuilder,
    max_backoff: Duration,
}

impl NatsHubBuilder {
    /// The first token of every subject (default `sse`); apps sharing a
    /// NATS server use different prefixes.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How often each node renews its presence lease (default 5 s); a node
    /// counts for six of these after its last word.
    pub fn announce_every(mut self, every: Duration) -> Self {
        self.cluster = self.cluster.announce_every(every);
        self
    }

    /// How long a change in this node's streams may wait before other
    /// nodes hear of it (100 ms by default).
    pub fn presence_flush(mut self, every: Duration) -> Self {
        self.cluster = self.cluster.presence_flush(every);
        self
    }

    /// The protocol's other options ([`ClusterHubBuilder`]: timeouts, how
    /// often a quiet node reads the log's head, ...).
    pub fn cluster(mut self, options: ClusterHubBuilder) -> Self {
        self.cluster = options;
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
        let failed = |reason: String| NatsHubError::Connect {
            url: sse_core::redact_url(&url),
            reason,
        };
        let (prefix, max_backoff) = (self.prefix.clone(), self.max_backoff);
        let hub = self
            .cluster
            .start(|link| NatsTransport::connect(self.url.clone(), prefix, max_backoff, link))
            .await
            .map_err(|e| match e {
                NatsHubError::Connect { reason, .. } => failed(reason),
                other => other,
            })?;
        Ok(NatsHub { hub })
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
            cluster: ClusterHubBuilder::new(),
            max_backoff: Duration::from_secs(5),
        }
    }

    /// Whether the client is connected to NATS.
    pub fn is_connected(&self) -> bool {
        self.hub.is_connected()
    }

    /// How many times the connection was regained after being lost.
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
impl Hub for NatsHub {
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

    /// This node's exact count plus the other nodes' as last announced
    /// (within [`presence_flush`](NatsHubBuilder::presence_flush)); answered
    /// from memory. A connection on another node is not answered
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

/// The protocol's [`Transport`] over core NATS: one wildcard subscription,
/// one subject per route (see the [crate docs](crate)).
pub struct NatsTransport {
    client: async_nats::Client,
    prefix: String,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for NatsTransport {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl std::fmt::Debug for NatsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsTransport")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl NatsTransport {
    /// Connects to `url`, subscribes to `<prefix>.>` and hands every
    /// message to `link`, reporting the connection's state to it.
    pub async fn connect(
        url: String,
        prefix: String,
        max_backoff: Duration,
        link: Link,
    ) -> Result<Self, NatsHubError> {
        let failed = |e: &dyn std::fmt::Display| NatsHubError::Connect {
            url: sse_core::redact_url(&url),
            reason: e.to_string(),
        };
        // The first `Connected` is the initial connection, nothing missed.
        let was_lost = Arc::new(AtomicBool::new(false));
        // Set once the client exists: the callback confirms the
        // re-subscription with a flush before saying the link is back.
        let client_slot: Arc<std::sync::OnceLock<async_nats::Client>> = Arc::default();
        let options = {
            let (link, was_lost, client_slot) =
                (link.clone(), was_lost.clone(), client_slot.clone());
            async_nats::ConnectOptions::new()
                .max_reconnects(None)
                .reconnect_delay_callback(move |attempts| {
                    let millis = 50u64.saturating_mul(1 << attempts.min(10));
                    Duration::from_millis(millis).min(max_backoff)
                })
                .event_callback(move |event| {
                    let (link, was_lost, client_slot) =
                        (link.clone(), was_lost.clone(), client_slot.clone());
                    async move {
                        match event {
                            async_nats::Event::Disconnected => {
                                was_lost.store(true, Ordering::Relaxed);
                                link.lost();
                            }
                            async_nats::Event::Connected => {
                                // The client re-subscribes right after this
                                // event; a flush returns once the server has
                                // the subscription.
                                if was_lost.swap(false, Ordering::Relaxed)
                                    && let Some(client) = client_slot.get()
                                {
                                    let _ = client.flush().await;
                                    link.regained();
                                }
                            }
                            async_nats::Event::SlowConsumer(_) => link.dropped(),
                            other => tracing::debug!(event = %other, "NATS client event"),
                        }
                    }
                })
        };
        let client = options
            .connect(url.as_str())
            .await
            .map_err(|e| failed(&e))?;
        let _ = client_slot.set(client.clone());
        let mut subscriber = client
            .subscribe(format!("{prefix}.>"))
            .await
            .map_err(|e| failed(&e))?;
        client.flush().await.map_err(|e| failed(&e))?;
        let reader = tokio::spawn(async move {
            while let Some(message) = subscriber.next().await {
                link.receive(message.subject.as_str(), message.payload);
            }
        });
        Ok(Self {
            client,
            prefix,
            reader,
        })
    }
}

#[async_trait]
impl Transport for NatsTransport {
    async fn publish(&self, route: &Route, payload: Bytes) -> Result<(), TransportError> {
        self.client
            .publish(self.channel(route), payload)
            .await
            .map_err(|e| TransportError::Unavailable(Box::new(e)))
    }

    /// Every route is under the one wildcard subscription made at connect.
    async fn subscribe(&self, _routes: &[Route]) -> Result<(), TransportError> {
        Ok(())
    }

    async fn unsubscribe(&self, _routes: &[Route]) -> Result<(), TransportError> {
        Ok(())
    }

    fn channel(&self, route: &Route) -> String {
        let prefix = &self.prefix;
        match route {
            Route::Audience(audience) => format!("{prefix}.{}", key_token(audience)),
            Route::Everyone => format!("{prefix}.all"),
            Route::Node(node) => format!("{prefix}.c.{node:x}"),
            Route::Durable => format!("{prefix}.d"),
            Route::Control => format!("{prefix}.p"),
            // Routes this version does not know travel on a subject no
            // node reads.
            _ => format!("{prefix}.unknown"),
        }
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
        // Connections are addressed on their node's subject.
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
}
