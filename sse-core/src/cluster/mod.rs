//! What hubs that span nodes share: the multi-node protocol.
//!
//! A hub over a broker (`sse-redis`, `sse-nats`, `sse-sqlx`'s
//! `PostgresHub`) keeps each node's connections in an
//! [`InMemoryHub`](crate::InMemoryHub) and carries events between nodes
//! over the broker. What travels, and how a node reads it, is defined once
//! here so that every engine keeps the same guarantees:
//!
//! - [`wire`]: the one encoding of an event and its audience
//!   ([`Envelope`]), injective for any id bytes, and the one decoder that
//!   refuses anything else.
//!
//! This module is for engine authors; applications use the hubs.
//! (It lives in `sse-core` because the protocol delivers through the
//! in-memory index's sequencer, which engines reach only through this
//! crate.)

pub mod wire;

pub use wire::{Envelope, MAX_NAME_LEN, WireError};
