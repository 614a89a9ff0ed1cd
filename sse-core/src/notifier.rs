//! [`Notifier`]: the one call an application makes to notify.

use std::sync::Arc;

use crate::{
    Audience, Change, Event, EventError, Hub, HubError, NewNotification, Notification,
    NotificationId, NotificationStore, StoreError, UserId,
};

/// Stores first, then publishes: the facade applications call.
///
/// Every operation writes to the [`NotificationStore`] (which assigns the
/// change id and makes it durable) and only then publishes the change to
/// the user's live connections through the [`Hub`]. A connection that
/// misses the live event (it was reconnecting) replays it from the store,
/// so a notification that was stored is never lost.
///
/// Cloning gives another handle to the same store and hub.
///
/// ```
/// use std::sync::Arc;
/// use sse_core::{Hub, InMemoryHub, InMemoryStore, NewNotification, Notifier, Principal};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let hub = InMemoryHub::new();
/// let notifier = Notifier::new(Arc::new(InMemoryStore::new()), Arc::new(hub.clone()));
/// let mut bob = hub.subscribe(&Principal::new("bob"), 16).await?;
///
/// let notification = notifier.notify(NewNotification::new("bob", "Hi Bob")).await?;
/// let event = bob.recv().await?;
/// assert_eq!(event.id(), Some("1"));
/// assert_eq!(notification.title, "Hi Bob");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Notifier {
    store: Arc<dyn NotificationStore>,
    hub: Arc<dyn Hub>,
}

/// Why a [`Notifier`] operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// The store refused or failed; nothing was published.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The change is stored (durable, with its id) but live delivery failed.
    /// Connected clients get it when they next reconnect and replay.
    #[error("stored as event {} but live delivery failed: {source}; clients will receive it on replay", change.id)]
    Publish {
        /// The stored change.
        change: Box<Change>,
        /// Why publishing failed.
        source: HubError,
    },
    /// The change could not be encoded as an event.
    #[error("stored as event {} but it could not be encoded: {source}", change.id)]
    Encode {
        /// The stored change.
        change: Box<Change>,
        /// Why encoding failed.
        source: EventError,
    },
}

impl Notifier {
    /// A notifier over `store` and `hub`.
    pub fn new(store: Arc<dyn NotificationStore>, hub: Arc<dyn Hub>) -> Self {
        Self { store, hub }
    }

    /// The store, for reads (`list`, `unread_count`).
    pub fn store(&self) -> &Arc<dyn NotificationStore> {
        &self.store
    }

    /// The hub, for ephemeral broadcasts.
    pub fn hub(&self) -> &Arc<dyn Hub> {
        &self.hub
    }

    /// Creates a notification and delivers it to the recipient's connections.
    pub async fn notify(&self, new: NewNotification) -> Result<Notification, NotifyError> {
        let change = self.store.create(new).await?;
        let notification = match &change.kind {
            crate::ChangeKind::Created { notification } => notification.clone(),
            _ => {
                return Err(NotifyError::Store(StoreError::Backend(
                    "the store answered `create` with a change that is not `created`".into(),
                )));
            }
        };
        self.publish(change).await?;
        Ok(notification)
    }

    /// Marks one notification read and tells the user's other tabs.
    /// Returns whether it was unread.
    pub async fn mark_read(&self, user: &UserId, id: NotificationId) -> Result<bool, NotifyError> {
        let change = self.store.mark_read(user, id).await?;
        self.publish_some(change).await
    }

    /// Marks all of a user's notifications read. Returns whether any was unread.
    pub async fn mark_all_read(&self, user: &UserId) -> Result<bool, NotifyError> {
        let change = self.store.mark_all_read(user).await?;
        self.publish_some(change).await
    }

    /// Deletes one notification and tells the user's other tabs.
    pub async fn delete(&self, user: &UserId, id: NotificationId) -> Result<(), NotifyError> {
        let change = self.store.delete(user, id).await?;
        self.publish(change).await
    }

    /// Deletes all of a user's read notifications. Returns whether any existed.
    pub async fn delete_all_read(&self, user: &UserId) -> Result<bool, NotifyError> {
        let change = self.store.delete_all_read(user).await?;
        self.publish_some(change).await
    }

    /// Sends an ephemeral event (not stored, not replayed) to an audience,
    /// such as an announcement to a group or a topic.
    ///
    /// Give it no numeric `id`: streams use ids to de-duplicate stored
    /// changes, and an id here would move the client's replay position.
    pub async fn broadcast(&self, audience: &Audience, event: &Event) -> Result<(), HubError> {
        self.hub.publish(audience, event).await
    }

    /// Ends the open streams of an audience on every node, such as a
    /// session's at logout (see [`Event::disconnect`]). Their clients
    /// reconnect and are authenticated again.
    pub async fn disconnect(&self, audience: &Audience) -> Result<(), HubError> {
        self.hub.publish(audience, &Event::disconnect()).await
    }

    async fn publish_some(&self, change: Option<Change>) -> Result<bool, NotifyError> {
        match change {
            Some(change) => self.publish(change).await.map(|()| true),
            None => Ok(false),
        }
    }

    async fn publish(&self, change: Change) -> Result<(), NotifyError> {
        let event = match change.to_event() {
            Ok(event) => event,
            Err(source) => {
                return Err(NotifyError::Encode {
                    change: Box::new(change),
                    source,
                });
            }
        };
        let audience = Audience::User(change.user.clone());
        self.hub
            .publish(&audience, &event)
            .await
            .map_err(|source| NotifyError::Publish {
                change: Box::new(change),
                source,
            })
    }
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier").finish_non_exhaustive()
    }
}
