//! [`Hub`]: live fan-out of events to connections.
//!
//! A hub keeps, for every live connection, a bounded queue
//! ([`Subscription`]) indexed by the connection's [`Principal`]. Publishing
//! to an [`Audience`] pushes the event into the matching queues only.
//! [`InMemoryHub`] serves one process; a hub over a message broker (see the
//! `sse-redis` crate) spans many.

use std::sync::Arc;

use async_trait::async_trait;

use crate::{Audience, Event, Principal};

mod memory;
mod subscription;

pub use memory::InMemoryHub;
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
/// - Dropping a [`Subscription`] unregisters it.
///
/// `sse-conformance`'s `hub::run` checks all of this against any
/// implementation.
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

    /// Counters since the hub was created. Defaults to zeros for hubs that
    /// keep none.
    fn stats(&self) -> HubStats {
        HubStats::default()
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
}
