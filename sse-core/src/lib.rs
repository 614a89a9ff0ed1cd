//! Core of the SSE notification layer: events, who is connected, who an
//! event is for, and the three traits the stream is built from — with
//! in-memory defaults for each.
//!
//! - [`Event`]: one server-sent event, validated and encoded once into
//!   shared bytes.
//! - [`Principal`] and [`Audience`]: who is connected, and who an event is for.
//! - [`SessionAuthenticator`]: request head → principal (cookie session,
//!   bearer token, closure, or yours).
//! - [`Hub`]: live fan-out ([`InMemoryHub`]; `sse-redis` for many nodes).
//! - [`NotificationStore`]: notifications, unread counts and the change log
//!   streams replay from ([`InMemoryStore`]; `sse-sqlx` to persist).
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
//! let notifier = Notifier::new(Arc::new(InMemoryStore::new()), Arc::new(hub.clone()));
//!
//! // A connection of bob (in a server, sse-tower does this per request).
//! let mut bob = hub.subscribe(&Principal::new("bob"), 64).await?;
//!
//! notifier.notify(NewNotification::new("bob", "Your export is ready")).await?;
//! let event = bob.recv().await?;
//! assert!(std::str::from_utf8(event.frame())?.starts_with("id: 1\nevent: notification\n"));
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod audience;
pub mod auth;
pub mod event;
pub mod hub;
pub mod id;
pub mod notifier;
pub mod principal;
pub mod query;
pub mod store;
pub mod time;

mod sharded;

pub use audience::Audience;
pub use auth::{
    AuthRejection, BearerTokenAuthenticator, CookieSessionAuthenticator, FnAuthenticator,
    InMemorySessions, SessionAuthenticator, SessionLookup,
};
pub use event::{Event, EventBuilder, EventError};
pub use hub::{Hub, HubError, HubStats, InMemoryHub, RecvError, Subscription};
pub use id::{ConnectionId, EventId, GroupId, NotificationId, SessionId, Topic, UserId};
pub use notifier::{Notifier, NotifyError};
pub use principal::Principal;
pub use store::{
    Change, ChangeKind, InMemoryStore, NewNotification, Notification, NotificationStore, Page,
    PageRequest, Replay, Retention, StoreError,
};
pub use time::Timestamp;
