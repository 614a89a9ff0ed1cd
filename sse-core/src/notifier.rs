//! [`Notifier`]: the one call an application makes to notify.

use std::sync::Arc;

use crate::{
    Audience, Change, Event, EventLog, Hub, HubError, NewNotification, Notification,
    NotificationId, NotificationStore, Revocation, SessionId, StoreError, UserId,
};

/// Stores first, then publishes: the facade applications call.
///
/// - [`publish`](Notifier::publish): any event to a durable audience (a
///   user, a group, a topic, everyone) is appended to the [`EventLog`]
///   (durable, positioned) and only then delivered live through the
///   [`Hub`]. A connection that misses the live event (it was
///   reconnecting) replays it from the log, so nothing stored is lost.
/// - [`broadcast`](Notifier::broadcast): an ephemeral event (not stored,
///   not replayed), to any audience including a session or a connection.
/// - [`notify`](Notifier::notify) and the other inbox operations: through
///   the [`NotificationStore`], which writes each change through the log.
///
/// Cloning gives another handle to the same log, hub and store.
///
/// ```
/// use std::sync::Arc;
/// use sse_core::{Audience, Event, Hub, InMemoryHub, InMemoryStore, NewNotification, Notifier, Principal};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let hub = InMemoryHub::new();
/// let notifier = Notifier::with_store(Arc::new(InMemoryStore::new()), Arc::new(hub.clone()));
/// let mut bob = hub.subscribe(&Principal::new("bob").with_groups(["acme"]), 16).await?;
///
/// // An app-defined, durable event to a group.
/// let progress = Event::builder().event("job.progress").json_data(&serde_json::json!({"done": 50})).build()?;
/// let stored = notifier.publish(&Audience::group("acme"), &progress).await?;
/// assert_eq!(bob.recv().await?, stored);
///
/// // A notification in bob's inbox.
/// let notification = notifier.notify(NewNotification::new("bob", "Hi Bob")).await?;
/// assert_eq!(bob.recv().await?.cursor(), Some(stored.cursor().unwrap().next()));
/// assert_eq!(notification.title, "Hi Bob");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Notifier {
    log: Arc<dyn EventLog>,
    hub: Arc<dyn Hub>,
    inbox: Option<Arc<dyn NotificationStore>>,
}

/// Why a [`Notifier`] operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// The log or the store refused or failed; nothing was published.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An ephemeral event could not be delivered (nothing was stored).
    #[error("live delivery failed: {0}")]
    Hub(#[source] HubError),
    /// The event is stored (durable, with its position) but live delivery
    /// failed. Live streams get it when their node reads it from the log
    /// (on a hub built on `sse_core::cluster`, within about a second),
    /// and clients on replay.
    #[error("stored as {} but live delivery failed: {source}; streams receive it from the log", event.id().unwrap_or_default())]
    Publish {
        /// The stored event, with its position as `id:`.
        event: Event,
        /// The stored change, for inbox operations.
        change: Option<Box<Change>>,
        /// Why publishing failed.
        source: HubError,
    },
    /// Every event of a batch is stored, but live delivery failed for
    /// some (each was tried): they reach streams from the log, as with
    /// [`NotifyError::Publish`].
    #[error("stored {} events but live delivery failed for {} of them (first: {source}); streams receive them from the log", stored.len(), failed.len())]
    PublishMany {
        /// Every stored event, in order, with its position as `id:`.
        stored: Vec<Event>,
        /// Indexes (into `stored`) of the events whose publish failed.
        failed: Vec<usize>,
        /// Why the first failed publish failed.
        source: HubError,
    },
    /// An ephemeral event carried an id in the log's form. Streams read
    /// such ids as positions in the log, so delivering it would move
    /// clients' replay positions (and make them skip stored events).
    #[error(
        "an ephemeral event may not carry the id {id:?}: streams read ids of this form as positions in the event log; send it without an id (or with one of another form)"
    )]
    ReservedId {
        /// The refused id.
        id: String,
    },
    /// A durable event carried a [conflation
    /// key](crate::EventBuilder::conflate). Stored events are never
    /// conflated (a replay holds every one), so the key would be ignored.
    #[error(
        "a stored event may not carry a conflation key ({key:?}): only ephemeral events conflate; send it with broadcast, or without the key"
    )]
    ConflationKey {
        /// The refused key.
        key: String,
    },
    /// An inbox operation on a notifier built without a store.
    #[error(
        "this Notifier has no NotificationStore: build it with Notifier::with_store, or add one with with_inbox"
    )]
    NoInbox,
}

impl Notifier {
    /// A notifier over an event log and a hub, without an inbox: for apps
    /// that keep their own notification table and [`publish`](Self::publish)
    /// the events their clients should see.
    ///
    /// The hub is given the log ([`Hub::attach_log`]), to fill gaps in live
    /// delivery from it.
    pub fn new(log: Arc<dyn EventLog>, hub: Arc<dyn Hub>) -> Self {
        hub.attach_log(log.clone());
        Self {
            log,
            hub,
            inbox: None,
        }
    }

    /// A notifier over a store that is both the inbox and the log it writes
    /// through (as `InMemoryStore`, `SqlStore` and `RedisStore` are).
    pub fn with_store<S>(store: Arc<S>, hub: Arc<dyn Hub>) -> Self
    where
        S: EventLog + NotificationStore,
    {
        Self::new(store.clone(), hub).with_inbox(store)
    }

    /// Adds the inbox [`notify`](Self::notify) and friends use. It must
    /// write through this notifier's log.
    #[must_use]
    pub fn with_inbox(mut self, inbox: Arc<dyn NotificationStore>) -> Self {
        self.inbox = Some(inbox);
        self
    }

    /// The event log, for replay and reads.
    pub fn log(&self) -> &Arc<dyn EventLog> {
        &self.log
    }

    /// The hub, for live delivery.
    pub fn hub(&self) -> &Arc<dyn Hub> {
        &self.hub
    }

    /// The inbox, for reads (`list`, `unread_count`), if there is one.
    pub fn inbox(&self) -> Option<&Arc<dyn NotificationStore>> {
        self.inbox.as_ref()
    }

    fn require_inbox(&self) -> Result<&Arc<dyn NotificationStore>, NotifyError> {
        self.inbox.as_ref().ok_or(NotifyError::NoInbox)
    }

    /// Stores `event` for a durable `audience` (user, group, topic,
    /// everyone), then delivers it live. Returns the stored event, whose
    /// `id:` is its position. The event must not have an id of its own.
    pub async fn publish(&self, audience: &Audience, event: &Event) -> Result<Event, NotifyError> {
        let mut stored = self
            .publish_many(&[(audience.clone(), event.clone())])
            .await?;
        stored
            .pop()
            .ok_or_else(|| NotifyError::Store(StoreError::Backend("the log stored nothing".into())))
    }

    /// Stores a batch of durable events in one append (one transaction or
    /// script where the log has them), then delivers each live, in order.
    pub async fn publish_many(
        &self,
        events: &[(Audience, Event)],
    ) -> Result<Vec<Event>, NotifyError> {
        if let Some(key) = events.iter().find_map(|(_, event)| event.conflation_key()) {
            return Err(NotifyError::ConflationKey {
                key: key.to_owned(),
            });
        }
        let stored = self.log.append(events).await?;
        let audiences = events.iter().map(|(audience, _)| audience);
        self.publish_all(audiences, stored)
            .await
            .map_err(|failure| match failure {
                Failure::One { event, source } => NotifyError::Publish {
                    event,
                    change: None,
                    source,
                },
                Failure::Many {
                    stored,
                    failed,
                    source,
                } => NotifyError::PublishMany {
                    stored,
                    failed,
                    source,
                },
            })
    }

    /// Publishes every stored event, each tried whatever became of the
    /// others; says which failed.
    async fn publish_all<'a>(
        &self,
        audiences: impl Iterator<Item = &'a Audience>,
        stored: Vec<Event>,
    ) -> Result<Vec<Event>, Failure> {
        let mut failed = Vec::new();
        let mut first = None;
        for (index, (audience, event)) in audiences.zip(&stored).enumerate() {
            if let Err(source) = self.hub.publish(audience, event).await {
                failed.push(index);
                first.get_or_insert(source);
            }
        }
        match first {
            None => Ok(stored),
            Some(source) if stored.len() == 1 => Err(Failure::One {
                event: stored[0].clone(),
                source,
            }),
            Some(source) => Err(Failure::Many {
                stored,
                failed,
                source,
            }),
        }
    }

    /// Delivers events that are already in the log (appended in your own
    /// transaction, say; see the [guide](crate::guide)) to their audiences'
    /// live connections, in order. Each must carry its position as `id:`.
    pub async fn deliver(&self, events: &[(Audience, Event)]) -> Result<(), NotifyError> {
        for (audience, event) in events {
            if event.cursor().is_none() {
                return Err(NotifyError::Store(StoreError::Invalid {
                    field: "id",
                    reason: "only events returned by the log (with their position as id) can be delivered".into(),
                }));
            }
            self.hub
                .publish(audience, event)
                .await
                .map_err(|source| NotifyError::Publish {
                    event: event.clone(),
                    change: None,
                    source,
                })?;
        }
        Ok(())
    }

    /// Sends an ephemeral event (not stored, not replayed) to an audience,
    /// such as a progress update to one session or a typing indicator to a
    /// topic.
    ///
    /// An event whose id is in the log's form is refused with
    /// [`NotifyError::ReservedId`]: streams use those ids as replay
    /// positions.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use sse_core::{Audience, Event, InMemoryHub, InMemoryStore, Notifier, NotifyError};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let notifier = Notifier::with_store(Arc::new(InMemoryStore::new()), Arc::new(InMemoryHub::new()));
    /// notifier.broadcast(&Audience::Everyone, &Event::json(&"deploy done")?).await?;
    /// let positioned = Event::builder().id("abcdefgh.42").data("x").build()?;
    /// assert!(matches!(
    ///     notifier.broadcast(&Audience::Everyone, &positioned).await,
    ///     Err(NotifyError::ReservedId { .. })
    /// ));
    /// # Ok(()) }
    /// ```
    pub async fn broadcast(&self, audience: &Audience, event: &Event) -> Result<(), NotifyError> {
        if event.cursor().is_some() {
            return Err(NotifyError::ReservedId {
                id: event.id().unwrap_or_default().to_owned(),
            });
        }
        self.hub
            .publish(audience, event)
            .await
            .map_err(NotifyError::Hub)
    }

    /// Ends the open streams of an audience on every node, now (see
    /// [`Event::disconnect`]). Their clients reconnect and are
    /// authenticated again. This is a live message only: sent while the
    /// broker is down, it is lost. At logout use [`Notifier::revoke`].
    pub async fn disconnect(&self, audience: &Audience) -> Result<(), HubError> {
        self.hub.publish(audience, &Event::disconnect()).await
    }

    /// Ends `user`'s open streams of `session` (all of the user's with
    /// `None`) on every node, **durably**: the revocation is written to the
    /// log under the user's audience, so a node that misses the live
    /// message (a broker down, a link cut) gets it from the log when it
    /// catches up, and ends those streams then (see [`crate::revocation`]).
    /// Their clients reconnect and are authenticated again; revoke the
    /// session in your session store first, so that they are refused.
    ///
    /// A [`NotifyError::Publish`] means the revocation is stored and will
    /// end the streams once their node reads it from the log.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use sse_core::{Hub, InMemoryHub, InMemoryStore, Notifier, Principal, SessionId, UserId};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let hub = InMemoryHub::new();
    /// let notifier = Notifier::with_store(Arc::new(InMemoryStore::new()), Arc::new(hub.clone()));
    /// let mut tab = hub.subscribe(&Principal::new("ada").with_session("s-1"), 8).await?;
    /// notifier.revoke(&UserId::from("ada"), Some(&SessionId::from("s-1"))).await?;
    /// assert!(tab.recv().await?.revocation().is_some()); // sse-tower streams end on it
    /// # Ok(()) }
    /// ```
    pub async fn revoke(
        &self,
        user: &UserId,
        session: Option<&SessionId>,
    ) -> Result<(), NotifyError> {
        let revocation = match session {
            Some(session) => Revocation::Session(session.clone()),
            None => Revocation::AllSessions,
        };
        let event = revocation
            .to_event()
            .map_err(|e| NotifyError::Store(StoreError::Backend(Box::new(e))))?;
        self.publish(&Audience::User(user.clone()), &event)
            .await
            .map(|_| ())
    }

    /// Creates a notification and delivers it to the recipient's connections.
    pub async fn notify(&self, new: NewNotification) -> Result<Notification, NotifyError> {
        let change = self.require_inbox()?.create(new).await?;
        let notification = created(&change)?;
        self.deliver_change(change).await?;
        Ok(notification)
    }

    /// Creates many notifications in one batch (one transaction where the
    /// store has them), then delivers each to its recipient's connections,
    /// in order per recipient.
    pub async fn notify_many(
        &self,
        new: Vec<NewNotification>,
    ) -> Result<Vec<Notification>, NotifyError> {
        let changes = self.require_inbox()?.create_many(new).await?;
        let notifications = changes.iter().map(created).collect::<Result<Vec<_>, _>>()?;
        let audiences: Vec<Audience> = changes
            .iter()
            .map(|change| Audience::User(change.user.clone()))
            .collect();
        let events: Vec<Event> = changes.into_iter().map(|c| c.event().clone()).collect();
        match self.publish_all(audiences.iter(), events).await {
            Ok(_) => Ok(notifications),
            Err(Failure::One { event, source }) => Err(NotifyError::Publish {
                event,
                change: None,
                source,
            }),
            Err(Failure::Many {
                stored,
                failed,
                source,
            }) => Err(NotifyError::PublishMany {
                stored,
                failed,
                source,
            }),
        }
    }

    /// Marks one notification read and tells the user's other tabs.
    /// Returns whether it was unread.
    pub async fn mark_read(&self, user: &UserId, id: NotificationId) -> Result<bool, NotifyError> {
        let change = self.require_inbox()?.mark_read(user, id).await?;
        self.deliver_some(change).await
    }

    /// Marks all of a user's notifications read. Returns whether any was unread.
    pub async fn mark_all_read(&self, user: &UserId) -> Result<bool, NotifyError> {
        let change = self.require_inbox()?.mark_all_read(user).await?;
        self.deliver_some(change).await
    }

    /// Deletes one notification and tells the user's other tabs.
    pub async fn delete(&self, user: &UserId, id: NotificationId) -> Result<(), NotifyError> {
        let change = self.require_inbox()?.delete(user, id).await?;
        self.deliver_change(change).await
    }

    /// Deletes all of a user's read notifications. Returns whether any existed.
    pub async fn delete_all_read(&self, user: &UserId) -> Result<bool, NotifyError> {
        let change = self.require_inbox()?.delete_all_read(user).await?;
        self.deliver_some(change).await
    }

    async fn deliver_some(&self, change: Option<Change>) -> Result<bool, NotifyError> {
        match change {
            Some(change) => self.deliver_change(change).await.map(|()| true),
            None => Ok(false),
        }
    }

    async fn deliver_change(&self, change: Change) -> Result<(), NotifyError> {
        let audience = Audience::User(change.user.clone());
        self.hub
            .publish(&audience, change.event())
            .await
            .map_err(|source| NotifyError::Publish {
                event: change.event().clone(),
                change: Some(Box::new(change)),
                source,
            })
    }
}

/// What [`Notifier::publish_all`] could not publish.
enum Failure {
    One {
        event: Event,
        source: HubError,
    },
    Many {
        stored: Vec<Event>,
        failed: Vec<usize>,
        source: HubError,
    },
}

fn created(change: &Change) -> Result<Notification, NotifyError> {
    match &change.kind {
        crate::ChangeKind::Created { notification } => Ok(notification.clone()),
        _ => Err(NotifyError::Store(StoreError::Backend(
            "the store answered `create` with a change that is not `created`".into(),
        ))),
    }
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("inbox", &self.inbox.is_some())
            .finish_non_exhaustive()
    }
}
