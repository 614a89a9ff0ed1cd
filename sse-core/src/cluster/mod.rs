//! The multi-node protocol: one piece of code that every engine (Redis,
//! Redis Cluster, NATS, PostgreSQL, the next one) runs under a thin
//! [`Transport`].
//!
//! A hub over a broker keeps each node's connections in an
//! [`InMemoryHub`](crate::InMemoryHub) and carries events between nodes.
//! [`ClusterHub`] does all of that once; an engine supplies only a
//! transport: publish bytes on a [`Route`], start and stop receiving a
//! route, and tell the [`Link`] what arrived and when the connection was
//! lost, regained, or dropped messages.
//!
//! This module is for engine authors; applications use the hubs
//! (`sse-redis`'s `RedisHub`, `sse-nats`'s `NatsHub`, `sse-sqlx`'s
//! `PostgresHub`). It lives in `sse-core` because the protocol delivers
//! through the in-memory index's sequencer.
//!
//! # What the protocol keeps, and where
//!
//! - **One encoding** ([`wire`]): every event travels as an [`Envelope`],
//!   injective for any id bytes; a node delivers a message only if it
//!   decodes and came on the channel its audience's route maps to. No id,
//!   however hostile, makes one audience's frame reach another.
//! - **Routes by interest** ([`Route`]): a node subscribes to the routes of
//!   the users, sessions, groups and topics it serves (counted: a thousand
//!   tabs of one user are one subscription), plus the routes every node
//!   reads. A transport may map every route to one channel.
//! - **Durable events in log order, without gaps, on every node**: they
//!   travel on one route every node reads, and each node's sequencer holds
//!   an event back until every position below it was delivered, reading a
//!   missing one from the log (see [`crate::log`]).
//! - **Catch-up after a lost link, a dropped message or a lost publish**:
//!   when the link is regained or the client dropped messages, the node
//!   reads what the log has between what it delivered and the log's head,
//!   once for all its streams, retrying while the log itself is still
//!   unreachable; a quiet node also reads the head every second, so a
//!   committed event whose publish failed (or whose publisher died after
//!   committing) reaches live streams within about a second. Only a gap
//!   too long to read at once is left to each stream
//!   ([`RecvError::Missed`](crate::RecvError::Missed)).
//! - **Forged positions are harmless**: a message claiming a position the
//!   log never wrote never makes a node skip real ones; it is dropped once
//!   it has stayed beyond the log's head.
//! - **Presence with leases**: nodes announce their streams per user (and
//!   per session, group and topic) on the control route, numbered, so a
//!   skipped announcement is noticed and the whole tally asked for again;
//!   a node's tally counts until its lease ends, and a clean stop says
//!   goodbye. [`Hub::presence`](crate::Hub::presence) and
//!   [`ClusterHub::members`] are answered from memory.
//! - **Node ids unique among live nodes**: a starting node says hello,
//!   hears the ids of the live ones, and draws a random one none of them
//!   holds; connection ids carry it.
//!
//! # What holds for order
//!
//! - Durable events reach every stream in log order, exactly once across
//!   reconnects.
//! - Ephemeral events of one publisher reach a stream in the order
//!   published when the broker delivers them in order on one connection
//!   (one Redis, NATS, PostgreSQL). Redis Cluster's shards are not ordered
//!   with each other: two ephemeral events of one publisher to audiences
//!   on different shards may arrive in either order.
//! - A durable event held back for a missing position may be overtaken by
//!   an ephemeral event published after it.
//!
//! # Writing an engine
//!
//! Implement [`Transport`] (four methods) over the broker's client: map
//! each [`Route`] to a channel or subject (any injective naming; the
//! audience's name may hold any bytes), publish and subscribe, read
//! messages on one task in the order the broker delivers them and pass
//! them to [`Link::receive`], report [`Link::lost`] when the connection
//! breaks and [`Link::regained`] once it is back with [`Link::routes`]
//! subscribed again, and [`Link::dropped`] for messages the client
//! discarded. Then [`ClusterHubBuilder::start`] runs the protocol on it:
//!
//! ```
//! use std::sync::Arc;
//! use sse_core::cluster::{ClusterHubBuilder, Link, Route, Transport, TransportError};
//! use sse_core::{async_trait, Audience, Event, Hub, Principal};
//!
//! /// Every node in one process, as a broker would carry it.
//! #[derive(Clone, Default)]
//! struct Bus(Arc<std::sync::Mutex<Vec<Link>>>);
//!
//! struct Local(Bus);
//!
//! #[async_trait]
//! impl Transport for Local {
//!     async fn publish(&self, route: &Route, payload: bytes::Bytes) -> Result<(), TransportError> {
//!         let links = self.0.0.lock().unwrap().clone();
//!         for link in links {
//!             link.receive(&self.channel(route), payload.clone());
//!         }
//!         Ok(())
//!     }
//!     // Every node receives every route: nothing to subscribe.
//!     async fn subscribe(&self, _: &[Route]) -> Result<(), TransportError> { Ok(()) }
//!     async fn unsubscribe(&self, _: &[Route]) -> Result<(), TransportError> { Ok(()) }
//!     fn channel(&self, _: &Route) -> String { "all".into() }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let bus = Bus::default();
//! let node = |bus: Bus| ClusterHubBuilder::new().start(move |link| async move {
//!     bus.0.lock().unwrap().push(link);
//!     Ok::<_, TransportError>(Local(bus))
//! });
//! let (a, b) = (node(bus.clone()).await?, node(bus.clone()).await?);
//! let mut ada = b.subscribe(&Principal::new("ada"), 8).await?;
//! a.publish(&Audience::user("ada"), &Event::json(&"hi from node a")?).await?;
//! assert!(String::from_utf8_lossy(ada.recv().await?.frame()).contains("hi from node a"));
//! assert_ne!(a.node_id(), b.node_id());
//! # Ok(()) }
//! ```
//!
//! `sse-conformance`'s `hub::run` and `hub::run_nodes` check the result;
//! the protocol itself is checked by a seeded simulation that drops,
//! delays, duplicates and reorders messages (`sse-tower/tests/simulation.rs`).

mod core;
mod hub;
mod interest;
mod presence;
mod transport;
pub mod wire;

pub use hub::{ClusterHub, ClusterHubBuilder};
pub use transport::{Link, Route, Transport, TransportError};
pub use wire::{Envelope, MAX_NAME_LEN, WireError};
