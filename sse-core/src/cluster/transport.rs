//! [`Transport`]: the little an engine supplies to the protocol.

use std::sync::Weak;

use async_trait::async_trait;
use bytes::Bytes;

use super::core::Core;
use crate::Audience;

/// Where a message travels. The protocol names routes; a transport maps
/// each to one of its broker's channels or subjects, and may map several
/// (or all) to one.
///
/// | route | carries | who subscribes |
/// | --- | --- | --- |
/// | [`Audience`](Route::Audience) | ephemeral events of one user, session, group or topic | nodes with a stream of it |
/// | [`Everyone`](Route::Everyone) | ephemeral events to everyone | every node |
/// | [`Node`](Route::Node) | events to one connection of that node | that node |
/// | [`Durable`](Route::Durable) | every durable event, whatever its audience | every node |
/// | [`Control`](Route::Control) | presence and hellos between nodes | every node |
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Route {
    /// Ephemeral events of a user, session, group or topic.
    Audience(Audience),
    /// Ephemeral events to everyone.
    Everyone,
    /// Events to connections of the node with this id.
    Node(u64),
    /// Durable events (every node delivers them in log order).
    Durable,
    /// The protocol's own messages.
    Control,
}

impl Route {
    /// The route of an ephemeral event to `audience`.
    pub fn of(audience: &Audience) -> Self {
        match audience {
            Audience::Everyone => Self::Everyone,
            Audience::Connection(id) => Self::Node(id.node()),
            other => Self::Audience(other.clone()),
        }
    }
}

/// Why a transport could not do what it was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The broker cannot be reached now; the protocol retries or reports
    /// it ([`HubError::Unavailable`](crate::HubError::Unavailable)).
    #[error("the broker is unavailable: {0}")]
    Unavailable(#[source] crate::hub::BoxError),
    /// The broker refused (a payload too large, a name it does not take).
    #[error("the broker refused: {0}")]
    Refused(String),
}

/// What an engine supplies: publish bytes on a route, start and stop
/// receiving a route. Everything else (the encoding, node ids, ordering and
/// gap filling, catch-up after a lost link, presence, revocation) is the
/// protocol's, in [`ClusterHub`](super::ClusterHub).
///
/// Messages received go to the [`Link`] the transport was built with, in
/// the order the broker delivered them; so does word of the connection
/// being lost and regained, and of messages the client dropped.
///
/// # Contract
///
/// - [`publish`](Transport::publish) returns once the broker took the
///   message (or fails): the protocol publishes a durable event after the
///   log committed it and relies on every node that receives it getting
///   it in one piece.
/// - [`subscribe`](Transport::subscribe) returns once the broker will
///   deliver the routes' messages published from then on (a confirmed
///   `SUBSCRIBE`, a flushed `SUB`). The protocol calls it and
///   [`unsubscribe`](Transport::unsubscribe) in the order each route's
///   local interest starts and ends, never twice in a row for one route.
///   A transport that carries every route on one channel every node reads
///   (PostgreSQL's `NOTIFY`) may do nothing in both.
/// - After [`Link::lost`], the transport reconnects by itself and calls
///   [`Link::regained`] once every route it was asked for is subscribed
///   again. A message it knows it did not deliver (a slow-consumer drop)
///   is reported with [`Link::dropped`].
/// - Messages go to [`Link::receive`] in the order the broker delivered
///   them on one connection: events of one publisher to a user and then to
///   that user's group arrive in that order. A client that hands each
///   subscription's messages over separately must read them through one.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Publishes `payload` (an encoded [`Envelope`](super::Envelope), or
    /// one of the protocol's own messages) on
    /// `route`.
    async fn publish(&self, route: &Route, payload: Bytes) -> Result<(), TransportError>;

    /// Starts receiving `routes`; returns once the broker confirmed.
    async fn subscribe(&self, routes: &[Route]) -> Result<(), TransportError>;

    /// Stops receiving `routes`.
    async fn unsubscribe(&self, routes: &[Route]) -> Result<(), TransportError>;

    /// The channel (or subject) `route` travels on, as the transport names
    /// it: a node delivers a message only if it came on the channel of its
    /// own audience's route (see [`Link::receive`]).
    fn channel(&self, route: &Route) -> String;
}

/// The protocol's end of a transport: where received messages and the
/// state of the connection go. Cloning gives another handle.
///
/// A link does not keep its hub alive: once the hub is dropped, what it
/// is told goes nowhere (and the transport, owned by the hub, goes too).
#[derive(Clone)]
pub struct Link {
    pub(super) core: Weak<Core>,
}

impl Link {
    /// A message arrived on `channel` (the transport's name, as
    /// [`Transport::channel`] gives it).
    pub fn receive(&self, channel: &str, payload: Bytes) {
        if let Some(core) = self.core.upgrade() {
            core.receive(channel, payload);
        }
    }

    /// The connection to the broker is lost: messages published from now
    /// on may never arrive.
    pub fn lost(&self) {
        if let Some(core) = self.core.upgrade() {
            core.link_lost();
        }
    }

    /// The connection is back and every route is subscribed again: the
    /// protocol catches up on what was published meanwhile.
    pub fn regained(&self) {
        if let Some(core) = self.core.upgrade() {
            core.link_regained();
        }
    }

    /// The client dropped messages it had received (a slow consumer): the
    /// protocol catches up as after a lost connection.
    pub fn dropped(&self) {
        if let Some(core) = self.core.upgrade() {
            core.link_dropped();
        }
    }
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let node = self.core.upgrade().map_or(0, |core| core.node());
        f.debug_struct("Link")
            .field("node", &format_args!("{node:016x}"))
            .finish_non_exhaustive()
    }
}
