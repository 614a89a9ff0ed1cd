//! [`EventLog`]: the durable history streams replay from, for every
//! durable audience.
//!
//! A stream needs one thing from the durable side: "everything this
//! principal would have received after this position, or word that the
//! history is gone". The event log is exactly that, and nothing about
//! notifications: any event (`job.progress`, `invoice.paid`, JSON or text)
//! to any durable [`Audience`] — a user, a group, a topic or everyone — is
//! appended once and replayed to every connection that reads that audience.
//! [`NotificationStore`](crate::NotificationStore) is one schema on top: it
//! writes its changes through the log.
//!
//! ```
//! use sse_core::{Audience, Event, EventLog, InMemoryLog, Principal, log::Replay};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let log = InMemoryLog::new();
//! let start = log.head().await?;
//! let appended = log
//!     .append(&[(Audience::group("acme"), Event::builder().event("announcement").data("hi").build()?)])
//!     .await?;
//! // Whoever is in `acme` replays it from `start`, with the log's id on it.
//! let member = Principal::new("bob").with_groups(["acme"]);
//! let Replay::Events { events, .. } = log.since(&member, start, 100).await? else { unreachable!() };
//! assert_eq!(events, appended);
//! assert_eq!(events[0].cursor(), Some(start.next()));
//! // Whoever is not, does not.
//! let Replay::Events { events, .. } = log.since(&Principal::new("eve"), start, 100).await? else { unreachable!() };
//! assert!(events.is_empty());
//! # Ok(()) }
//! ```
//!
//! # The design: one dense, commit-ordered sequence per log
//!
//! Every event appended to a log gets the next **position** of one
//! sequence, 1, 2, 3, … with **no gap**, assigned in the order events
//! become **visible** (readable by [`since`](EventLog::since) and
//! [`read`](EventLog::read)): once position `n` is visible, every position
//! below it is too, and no event will ever take a position below it. An
//! event's SSE `id:` is its [`Cursor`] — the log's epoch and the position —
//! so one `Last-Event-ID` (at most 29 bytes) resumes every audience a
//! connection reads, however many groups and topics that is.
//!
//! A log whose writers can commit out of order must enforce this: the SQL
//! logs take the next position by updating a single head row in the
//! appending transaction, which holds that row's lock until commit, so
//! appends commit one after another in position order (a sequence alone
//! would not do: transactions holding sequence values commit in any
//! order). SQLite has one writer; Redis runs each append as one script;
//! [`InMemoryLog`] appends under one lock.
//!
//! # Why a stream loses and duplicates nothing
//!
//! Streams hold one number, the position of the last event they sent (the
//! *watermark*), and three rules keep it exact:
//!
//! 1. **Subscribe, then read.** A connecting stream registers with the hub
//!    first, then asks [`since`](EventLog::since) for its principal's events
//!    after the client's cursor. Everything up to the returned `head` is in
//!    the answer; anything appended later arrives live, because the
//!    subscription already existed.
//! 2. **Every node delivers durable events in position order, without
//!    gaps.** Hubs carry each durable event to every node (not only to
//!    nodes that serve its audience), and each node's
//!    [`InMemoryHub`](crate::InMemoryHub) holds an event back until all
//!    positions below it were delivered locally. A position that does not
//!    arrive (a publisher crashed between append and publish, a broker lost
//!    a message) is read from the log after a short wait. So when a stream
//!    receives position `n`, it has already received every event below `n`
//!    addressed to it.
//! 3. **Skip what was sent.** A live event at or below the watermark was
//!    replayed already and is dropped; any other one is sent and becomes
//!    the watermark.
//!
//! A client's `Last-Event-ID` is therefore always "everything addressed to
//! me up to here, and nothing after": a reconnect replays exactly the rest
//! (rule 1 again), in order. A cursor whose history was pruned (see
//! [`Retention`]) or that belongs to another epoch gets
//! [`Replay::HistoryGone`], and the stream sends a `reset`: the client
//! refetches its state rather than silently missing events.
//!
//! # What membership means for replay
//!
//! A replay delivers the events of the audiences the principal reads **at
//! reconnect time**, after the client's cursor: a user who joined a group
//! while offline receives that group's events published after their
//! cursor; a user removed from a group (or a topic) no longer receives its
//! history. Who may read what is decided by the authenticator on every
//! connect, never by the log.
//!
//! # Which audiences are durable
//!
//! [`Audience::User`], [`Audience::Group`], [`Audience::Topic`] and
//! [`Audience::Everyone`]. Session- and connection-addressed events are
//! ephemeral: they concern one login or one tab, which has no history to
//! resume (send them with [`Notifier::broadcast`](crate::Notifier::broadcast)).

use std::sync::Arc;

use async_trait::async_trait;

use crate::{Audience, Event, Principal, StoreError};

mod cursor;
mod memory;
mod retention;

pub use cursor::{Cursor, Epoch, ParseCursorError};
pub use memory::InMemoryLog;
pub use retention::Retention;

/// One event as a log keeps it: its audience and the event, whose `id:` is
/// its [`Cursor`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// Who the event is for.
    pub audience: Audience,
    /// The event, with its position as `id:`.
    pub event: Event,
}

impl LogRecord {
    /// The record's position.
    pub fn cursor(&self) -> Option<Cursor> {
        self.event.cursor()
    }
}

/// The answer to [`EventLog::since`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    /// The principal's events after the given cursor, oldest first.
    Events {
        /// At most the `limit` asked for, each with its position as `id:`.
        events: Vec<Event>,
        /// Where the answer is complete up to: the log's head when fewer
        /// than `limit` events came back, else the last event's position.
        /// A stream resumes live delivery after it.
        head: Cursor,
    },
    /// Some of what the client missed is no longer kept, or its cursor is
    /// not from this history: it must refetch its state and resume from
    /// `head`.
    HistoryGone {
        /// The log's newest position.
        head: Cursor,
    },
}

/// The durable history streams replay from. See the [module docs](self)
/// for the design and why it loses and duplicates nothing.
///
/// # Contract
///
/// - `append` gives its events consecutive positions directly after the
///   current head, in the order given, atomically (all or none), and
///   returns them with their [`Cursor`] as `id:`
///   ([`Event::with_cursor`]). Positions become visible in order: once
///   `since` or `read` has returned position `n`, every position below it
///   is readable (unless pruned) and no new event takes one. Concurrent
///   appenders, on any number of nodes, must not break this.
/// - Only durable audiences are accepted ([`Audience::is_durable`]); an
///   event that already has an id is refused
///   ([`EventError::AlreadyHasId`](crate::EventError::AlreadyHasId)).
/// - `since(principal, after, limit)` returns the events after `after`
///   whose audience the principal reads ([`Principal::reads`]), oldest
///   first, at most `limit`, or [`Replay::HistoryGone`] when `after` is
///   from another epoch, beyond the head, or older than what is kept.
/// - `read(after, limit)` returns every event after `after`, whatever its
///   audience, oldest first: hubs fill gaps in live delivery from it.
/// - `head` is the newest position (position 0 of the epoch when empty).
///
/// `sse-conformance`'s `log::run` checks all of this, under concurrency.
///
/// Implementing it: the trait is `#[async_trait]`, re-exported by this
/// crate (`use sse_core::async_trait`); errors are [`StoreError`]s
/// (`Unavailable` when the backend cannot be reached, so streams answer
/// `503`). A log that wraps another, counting what it stores:
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use sse_core::log::{LogRecord, Replay};
/// use sse_core::{async_trait, Audience, Cursor, Event, EventLog, InMemoryLog, Principal, StoreError};
///
/// #[derive(Default)]
/// struct Counted {
///     inner: InMemoryLog,
///     appended: AtomicUsize,
/// }
///
/// #[async_trait]
/// impl EventLog for Counted {
///     async fn append(&self, events: &[(Audience, Event)]) -> Result<Vec<Event>, StoreError> {
///         let stored = self.inner.append(events).await?;
///         self.appended.fetch_add(stored.len(), Ordering::Relaxed);
///         Ok(stored)
///     }
///     async fn since(&self, principal: &Principal, after: Cursor, limit: usize) -> Result<Replay, StoreError> {
///         self.inner.since(principal, after, limit).await
///     }
///     async fn read(&self, after: Cursor, limit: usize) -> Result<Vec<LogRecord>, StoreError> {
///         self.inner.read(after, limit).await
///     }
///     async fn head(&self) -> Result<Cursor, StoreError> {
///         self.inner.head().await
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let log = Counted::default();
/// let start = log.head().await?;
/// let paid = Event::builder().event("invoice.paid").data("{}").build()?;
/// log.append(&[(Audience::group("acme"), paid)]).await?;
/// let member = Principal::new("ada").with_groups(["acme"]);
/// assert!(matches!(log.since(&member, start, 10).await?, Replay::Events { events, .. } if events.len() == 1));
/// assert_eq!(log.appended.load(Ordering::Relaxed), 1);
/// # Ok(()) }
/// ```
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Appends `events` in order; returns them with their positions.
    async fn append(&self, events: &[(Audience, Event)]) -> Result<Vec<Event>, StoreError>;

    /// The principal's events after `after`; see the contract.
    async fn since(
        &self,
        principal: &Principal,
        after: Cursor,
        limit: usize,
    ) -> Result<Replay, StoreError>;

    /// Every event after `after`, oldest first, at most `limit`; empty when
    /// `after` is not from this history or nothing follows it.
    async fn read(&self, after: Cursor, limit: usize) -> Result<Vec<LogRecord>, StoreError>;

    /// The newest position.
    async fn head(&self) -> Result<Cursor, StoreError>;
}

macro_rules! forward_log {
    ($($ty:ty),*) => {$(
        #[async_trait]
        impl<L: EventLog + ?Sized> EventLog for $ty {
            async fn append(&self, events: &[(Audience, Event)]) -> Result<Vec<Event>, StoreError> {
                (**self).append(events).await
            }
            async fn since(&self, principal: &Principal, after: Cursor, limit: usize) -> Result<Replay, StoreError> {
                (**self).since(principal, after, limit).await
            }
            async fn read(&self, after: Cursor, limit: usize) -> Result<Vec<LogRecord>, StoreError> {
                (**self).read(after, limit).await
            }
            async fn head(&self) -> Result<Cursor, StoreError> {
                (**self).head().await
            }
        }
    )*};
}

forward_log!(Arc<L>, Box<L>);

/// Checks what every log refuses: a non-durable audience, or an event that
/// already has an id. For log implementations.
pub fn check_appendable(events: &[(Audience, Event)]) -> Result<(), StoreError> {
    for (audience, event) in events {
        if !audience.is_durable() {
            return Err(StoreError::Invalid {
                field: "audience",
                reason: format!(
                    "{audience:?} is not durable: only user, group, topic and everyone events are stored; send session and connection events with broadcast"
                ),
            });
        }
        if event.is_disconnect() {
            return Err(StoreError::Invalid {
                field: "event",
                reason: "a disconnect signal is never stored".into(),
            });
        }
        if let Some(id) = event.id() {
            return Err(StoreError::Invalid {
                field: "id",
                reason: format!(
                    "an event stored in the log may not carry an id of its own (it has {id:?}); the log assigns it"
                ),
            });
        }
    }
    Ok(())
}
