//! [`Hub`]: live fan-out of events to connections.
//!
//! A hub keeps, for every live connection, a bounded queue
//! ([`Subscription`]) indexed by the connection's [`Principal`]. Publishing
//! to an [`Audience`] pushes the event into the matching queues only.
//! [`InMemoryHub`] serves one process; a hub over a message broker (see the
//! `sse-redis` crate) spans many.

use std::sync::Arc;

use async_trait::async_trait;

use crate::{Audience, Event, EventLog, Principal, UserId};

mod memory;
mod ring;
pub(crate) mod sequencer;
mod subscription;

pub use memory::InMemoryHub;
pub(crate) use memory::random_node_id;
pub use subscription::{RecvError, SendOutcome, Subscription, SubscriptionSender, channel};

/// The error type hubs wrap backend failures in.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Live fan-out: subscribe connections, publish events to audiences.
///
/// # Contract
///
/// - `publish` delivers the event to every current subscription whose
///   principal matches the audience (see [`Audience::matches`]; a
///   [`Audience::Connection`] reaches that one subscription), and to no
///   other. It costs time proportional to the matching subscriptions.
/// - `publish` never waits on a subscriber: a full queue lags that
///   subscription (see [`Subscription`]) and the publish goes on.
/// - A subscription is live when `subscribe` returns: an event published
///   after that reaches it. Streams rely on this to replay from the store
///   without a gap.
/// - [`Event::disconnect`] is delivered like any event, to the same
///   audience, and arrives as an event whose
///   [`is_disconnect`](Event::is_disconnect) is true: a stream that
///   receives it ends. Logout relies on it to end a session's streams on
///   every node, so a hub that spans nodes must carry it too.
/// - An event's [conflation key](crate::EventBuilder::conflate) arrives
///   with it on every node, so queues conflate events published anywhere.
/// - An event reaches its audience and no other, whatever bytes the
///   audience's name holds (a line feed, a colon, a NUL). A hub over a
///   broker sends each event as a [`cluster::Envelope`](crate::cluster::Envelope),
///   whose encoding is injective and whose decoder refuses anything else
///   (it also carries the conflation key and `disconnect`).
/// - **Durable events** — those whose id is a log position
///   ([`Event::cursor`]) — reach **every node** (not only nodes that serve
///   their audience) and are delivered there in position order. Streams'
///   single `Last-Event-ID` relies on it (see [`crate::log`]). Hubs built
///   on [`InMemoryHub`] get the ordering by delivering through it; a hub
///   over a broker sends durable events on one channel every node reads.
/// - Connection ids are unique across every node that shares the hub (see
///   [`ConnectionId`](crate::ConnectionId)), so
///   [`Audience::Connection`] never reaches another node's connection.
/// - Dropping a [`Subscription`] unregisters it, and [`Hub::stats`]
///   counts what is registered on this node exactly: leak tests (and
///   `sse-conformance`'s) rely on `subscriptions` going back to zero.
/// - [`Hub::presence`] counts the subscriptions of an audience on **every
///   node**: exact for this node's at once, other nodes' within a bounded
///   delay (the hub documents it), and a node that died stops counting
///   within a bounded time.
///
/// `sse-conformance`'s `hub::run` checks all of this against any
/// implementation.
///
/// Implementing it: the trait is `#[async_trait]`, re-exported by this
/// crate (`use sse_core::async_trait`); see [`InMemoryHub`] for a hub that
/// keeps the index, on which hubs over a broker build (they deliver what
/// the broker brings with [`InMemoryHub::deliver`]). A hub that wraps
/// another and refuses events to everyone:
///
/// ```
/// use sse_core::{async_trait, Audience, Event, Hub, HubError, HubStats, InMemoryHub, Presence, Principal, Subscription};
///
/// struct NoBroadcast(InMemoryHub);
///
/// #[async_trait]
/// impl Hub for NoBroadcast {
///     async fn subscribe(&self, principal: &Principal, capacity: usize) -> Result<Subscription, HubError> {
///         self.0.subscribe(principal, capacity).await
///     }
///     async fn publish(&self, audience: &Audience, event: &Event) -> Result<(), HubError> {
///         if *audience == Audience::Everyone {
///             return Err(HubError::Rejected("no broadcasts here".into()));
///         }
///         self.0.publish(audience, event).await
///     }
///     fn stats(&self) -> HubStats {
///         self.0.stats()
///     }
///     async fn presence(&self, audience: &Audience) -> Result<Presence, HubError> {
///         self.0.presence(audience).await
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let hub = NoBroadcast(InMemoryHub::new());
/// let mut ada = hub.subscribe(&Principal::new("ada"), 8).await?;
/// hub.publish(&Audience::user("ada"), &Event::json(&"hi")?).await?;
/// assert!(ada.try_recv()?.is_some());
/// assert!(hub.publish(&Audience::Everyone, &Event::json(&"all")?).await.is_err());
/// # Ok(()) }
/// ```
#[async_trait]
pub trait Hub: Send + Sync + 'static {
    /// Registers a connection of `principal`, with a queue of at most
    /// `queue_capacity` events.
    async fn subscribe(
        &self,
        principal: &Principal,
        queue_capacity: usize,
    ) -> Result<Subscription, HubError>;

    /// Delivers `event` to every subscription in `audience`.
    async fn publish(&self, audience: &Audience, event: &Event) -> Result<(), HubError>;

    /// Counters since the hub was created; `subscriptions` must be exact
    /// (see the contract). Hubs built on [`InMemoryHub`] return its stats.
    fn stats(&self) -> HubStats;

    /// Who is online: the open subscriptions (streams) of `audience` on
    /// every node of the hub: a user's, a session's, a group's members', a
    /// topic's readers', one connection (0 or 1), or everyone's.
    ///
    /// Cheap enough to ask per request (one index lookup in memory, one
    /// round trip to a broker). The default answers
    /// [`HubError::Unsupported`].
    ///
    /// ```
    /// use sse_core::{Audience, Hub, InMemoryHub, Principal};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), sse_core::HubError> {
    /// let hub = InMemoryHub::new();
    /// let tab_1 = hub.subscribe(&Principal::new("alice").with_groups(["acme"]), 8).await?;
    /// let tab_2 = hub.subscribe(&Principal::new("alice").with_groups(["acme"]), 8).await?;
    /// assert_eq!(hub.presence(&Audience::user("alice")).await?.streams, 2);
    /// assert!(hub.presence(&Audience::group("acme")).await?.is_online());
    /// drop((tab_1, tab_2));
    /// assert!(!hub.presence(&Audience::user("alice")).await?.is_online());
    /// # Ok(()) }
    /// ```
    async fn presence(&self, audience: &Audience) -> Result<Presence, HubError> {
        let _ = audience;
        Err(HubError::Unsupported("presence"))
    }

    /// Who is online in `audience`: each user with a stream open in it
    /// (a group's members, a topic's readers, a session's user, everyone)
    /// and how many, on every node, counted as [`presence`](Hub::presence)
    /// counts. In user id order, at most `limit`, after the user `after`
    /// (the last of the previous page; `None` for the first).
    ///
    /// Answered from memory on every hub we ship, with what other nodes
    /// last announced (within their presence flush). The default answers
    /// [`HubError::Unsupported`].
    ///
    /// ```
    /// use sse_core::{Audience, Hub, InMemoryHub, Principal};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), sse_core::HubError> {
    /// let hub = InMemoryHub::new();
    /// let acme = |user: &str| Principal::new(user).with_groups(["acme"]);
    /// let streams = [
    ///     hub.subscribe(&acme("bob"), 8).await?,
    ///     hub.subscribe(&acme("alice"), 8).await?,
    ///     hub.subscribe(&acme("alice"), 8).await?,
    ///     hub.subscribe(&Principal::new("eve"), 8).await?,
    /// ];
    /// let online = hub.members(&Audience::group("acme"), None, 10).await?;
    /// let listed: Vec<(&str, u64)> = online.iter().map(|m| (m.user.as_str(), m.streams)).collect();
    /// assert_eq!(listed, [("alice", 2), ("bob", 1)]);
    /// // Paged: after alice, one at most.
    /// let next = hub.members(&Audience::group("acme"), Some(&"alice".into()), 1).await?;
    /// assert_eq!(next[0].user.as_str(), "bob");
    /// # drop(streams); Ok(()) }
    /// ```
    async fn members(
        &self,
        audience: &Audience,
        after: Option<&UserId>,
        limit: usize,
    ) -> Result<Vec<Member>, HubError> {
        let _ = (audience, after, limit);
        Err(HubError::Unsupported("members"))
    }

    /// Gives the hub the log its durable events come from, so that a
    /// position that never arrives live is read from it (see
    /// [`InMemoryHub::gap_wait`]). [`Notifier::new`](crate::Notifier::new)
    /// calls it. The default ignores the log: such a hub tells streams to
    /// catch up instead.
    fn attach_log(&self, log: Arc<dyn EventLog>) {
        let _ = log;
    }
}

#[async_trait]
impl<H: Hub + ?Sized> Hub for Arc<H> {
    async fn subscribe(
        &self,
        principal: &Principal,
        queue_capacity: usize,
    ) -> Result<Subscription, HubError> {
        (**self).subscribe(principal, queue_capacity).await
    }

    async fn publish(&self, audience: &Audience, event: &Event) -> Result<(), HubError> {
        (**self).publish(audience, event).await
    }

    fn stats(&self) -> HubStats {
        (**self).stats()
    }

    async fn presence(&self, audience: &Audience) -> Result<Presence, HubError> {
        (**self).presence(audience).await
    }

    async fn members(
        &self,
        audience: &Audience,
        after: Option<&UserId>,
        limit: usize,
    ) -> Result<Vec<Member>, HubError> {
        (**self).members(audience, after, limit).await
    }

    fn attach_log(&self, log: Arc<dyn EventLog>) {
        (**self).attach_log(log)
    }
}

/// Counters a hub keeps; see [`Hub::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HubStats {
    /// Subscriptions currently registered.
    pub subscriptions: u64,
    /// Calls to `publish`.
    pub published: u64,
    /// Events queued to subscriptions (one publish to N connections counts N).
    pub enqueued: u64,
    /// Subscriptions closed because their queue overflowed.
    pub lagged: u64,
}

/// Who is online in an audience; see [`Hub::presence`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Presence {
    /// Open subscriptions (streams, one per tab) of the audience, on every
    /// node.
    pub streams: u64,
}

impl Presence {
    /// `streams` open subscriptions.
    pub fn new(streams: u64) -> Self {
        Self { streams }
    }

    /// Whether at least one stream is open.
    pub fn is_online(&self) -> bool {
        self.streams > 0
    }
}

/// An online user of an audience and their open streams in it; see
/// [`Hub::members`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Member {
    /// The user.
    pub user: UserId,
    /// Their open streams (tabs) in the audience, on every node.
    pub streams: u64,
}

impl Member {
    /// `user` with `streams` open streams.
    pub fn new(user: UserId, streams: u64) -> Self {
        Self { user, streams }
    }
}

/// One page of `members` (user id order): at most `limit` after `after`.
pub(crate) fn members_page(
    members: std::collections::BTreeMap<UserId, u64>,
    after: Option<&UserId>,
    limit: usize,
) -> Vec<Member> {
    use std::ops::Bound;
    let start = after.map_or(Bound::Unbounded, |after| Bound::Excluded(after.clone()));
    members
        .range((start, Bound::Unbounded))
        .filter(|(_, streams)| **streams > 0)
        .take(limit)
        .map(|(user, streams)| Member::new(user.clone(), *streams))
        .collect()
}

/// Why a hub operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// The hub's backend (a broker, a database) cannot be reached.
    #[error("the hub backend is unavailable: {0}; retry later")]
    Unavailable(#[source] BoxError),
    /// The hub refused the operation.
    #[error("the hub refused the operation: {0}")]
    Rejected(String),
    /// The hub does not implement this operation (an optional trait
    /// method it left to its default).
    #[error("this hub does not support {0}; implement the Hub method, or use a hub that does")]
    Unsupported(&'static str),
}
