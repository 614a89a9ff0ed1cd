//! Core of the SSE notification layer: events, who is connected, who an
//! event is for, and the traits the stream is built from — with in-memory
//! defaults for each.
//!
//! - [`Event`]: one server-sent event, validated and encoded once into
//!   shared bytes.
//! - [`Principal`] and [`Audience`]: who is connected, and who an event is for.
//! - [`SessionAuthenticator`]: request head → principal (cookie session,
//!   bearer token, closure, or yours).
//! - [`Hub`]: live fan-out ([`InMemoryHub`]; `sse-redis` for many nodes).
//! - [`EventLog`]: the durable history of every durable audience (user,
//!   group, topic, everyone) that streams replay from after
//!   `Last-Event-ID` ([`InMemoryLog`]; `sse-sqlx`, `sse-redis` to persist).
//!   The [`log`] module documents the design and why a stream loses and
//!   duplicates nothing.
//! - [`NotificationStore`]: the notification inbox, one schema on top of
//!   the log ([`InMemoryStore`]). Optional: see the [`guide`] for apps that
//!   keep their own notification table.
//! - [`Notifier`]: what applications call — store, then publish.
//!
//! This crate has no HTTP server code; `sse-tower` turns these into a
//! `text/event-stream` endpoint.
//!
//! ```
//! use std::sync::Arc;
//! use sse_core::{Hub, InMemoryHub, InMemoryStore, NewNotification, Notifier, Principal};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let hub = InMemoryHub::new();
//! let notifier = Notifier::with_store(Arc::new(InMemoryStore::new()), Arc::new(hub.clone()));
//!
//! // A connection of bob (in a server, sse-tower does this per request).
//! let mut bob = hub.subscribe(&Principal::new("bob"), 64).await?;
//!
//! notifier.notify(NewNotification::new("bob", "Your export is ready")).await?;
//! let event = bob.recv().await?;
//! assert!(std::str::from_utf8(event.frame())?.contains("\nevent: notification\n"));
//! # Ok(()) }
//! ```
//!
//! Implementing a trait: each is `#[async_trait]`, re-exported here as
//! [`async_trait`](macro@async_trait), and takes the [`http`] types
//! re-exported here too, so `use sse_core::{async_trait, http}` is all an
//! implementation needs.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod audience;
pub mod auth;
pub mod cluster;
pub mod event;
pub mod guide;
pub mod hub;
pub mod id;
pub mod log;
pub mod notifier;
pub mod principal;
pub mod query;
mod redact;
pub mod revocation;
pub mod store;
pub mod time;

mod sharded;

pub use async_trait::async_trait;
pub use audience::Audience;
#[cfg(feature = "jwt")]
pub use auth::JwtAuthenticator;
pub use auth::{
    AuthRejection, BearerTokenAuthenticator, CookieSessionAuthenticator, ExtensionAuthenticator,
    FnAuthenticator, InMemorySessions, SessionAuthenticator, SessionLookup,
};
pub use event::{Event, EventBuilder, EventError, MAX_CONFLATION_KEY_LEN};
pub use http;
pub use hub::{Hub, HubError, HubStats, InMemoryHub, Member, Presence, RecvError, Subscription};
pub use id::{ConnectionId, GroupId, NotificationId, SessionId, Topic, UserId};
pub use log::{Cursor, EventLog, InMemoryLog, Retention};
pub use notifier::{Notifier, NotifyError};
pub use principal::Principal;
pub use redact::redact_url;
pub use revocation::Revocation;
pub use store::{
    Change, ChangeKind, InMemoryStore, NewNotification, Notification, NotificationPolicy,
    NotificationStore, Page, PageRequest, StoreError,
};
pub use time::Timestamp;
