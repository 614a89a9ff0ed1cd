//! [`NotificationStore`]: the notification inbox — one schema on top of
//! the [event log](crate::log).
//!
//! A store keeps each user's notifications, their read state and unread
//! count, and writes every change (created, read, deleted) through the
//! event log to the user's audience, so all of a user's tabs and devices
//! stay in sync and a reconnecting one replays what it missed.
//!
//! You may not need it: an application that keeps its own notification
//! table writes its rows as it always did and calls
//! [`Notifier::publish`](crate::Notifier::publish) with the event its
//! clients should see; see [mapping your existing schema](crate::guide).

use std::sync::Arc;

use async_trait::async_trait;

use crate::{NotificationId, UserId};

mod memory;
mod types;

pub use memory::InMemoryStore;
pub use types::{
    Change, ChangeKind, NOTIFICATION_EVENT, NewNotification, Notification, NotificationPolicy,
    Page, PageRequest,
};

/// The error type stores wrap backend failures in.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Keeps each user's notifications and writes their changes through the
/// event log.
///
/// # Contract
///
/// - Every state change (create, mark read, mark all read, delete, delete
///   all read) appends one [`Change`] event to the recipient's
///   [`Audience::User`](crate::Audience::User) in the store's event log,
///   atomically with the change itself, and returns it. An operation that
///   changes nothing (marking a read notification read) returns `None` and
///   appends nothing.
/// - A recipient's changes are appended in the order they are applied, so
///   their positions order them.
/// - `create` validates with the store's [`NotificationPolicy`];
///   `create_many` stores a batch in one transaction where the backend has
///   them, all or nothing.
/// - A user's operations never see or touch another user's notifications:
///   ids of someone else's notifications answer [`StoreError::NotFound`].
/// - The unread count is kept, never counted by scanning a user's history.
///
/// `sse-conformance`'s `store::run` checks all of this against any
/// implementation (and `log::run` the log it writes through).
///
/// Implementing it: the trait is `#[async_trait]`, re-exported by this
/// crate (`use sse_core::async_trait`). Apps that keep their own
/// notification table need not implement it at all: they write their rows
/// and [`Notifier::publish`](crate::Notifier::publish) the events (see
/// [`crate::guide`]). A store that wraps another, refusing notifications
/// to a blocked user:
///
/// ```
/// use sse_core::{
///     async_trait, Change, InMemoryStore, NewNotification, NotificationId, NotificationStore,
///     Page, PageRequest, StoreError, UserId,
/// };
///
/// struct Blocking { inner: InMemoryStore, blocked: UserId }
///
/// #[async_trait]
/// impl NotificationStore for Blocking {
///     async fn create(&self, new: NewNotification) -> Result<Change, StoreError> {
///         if new.user == self.blocked {
///             return Err(StoreError::Invalid { field: "user", reason: "this user is blocked".into() });
///         }
///         self.inner.create(new).await
///     }
///     async fn list(&self, user: &UserId, page: PageRequest) -> Result<Page, StoreError> { self.inner.list(user, page).await }
///     async fn unread_count(&self, user: &UserId) -> Result<u64, StoreError> { self.inner.unread_count(user).await }
///     async fn mark_read(&self, user: &UserId, id: NotificationId) -> Result<Option<Change>, StoreError> { self.inner.mark_read(user, id).await }
///     async fn mark_all_read(&self, user: &UserId) -> Result<Option<Change>, StoreError> { self.inner.mark_all_read(user).await }
///     async fn delete(&self, user: &UserId, id: NotificationId) -> Result<Change, StoreError> { self.inner.delete(user, id).await }
///     async fn delete_all_read(&self, user: &UserId) -> Result<Option<Change>, StoreError> { self.inner.delete_all_read(user).await }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let store = Blocking { inner: InMemoryStore::new(), blocked: "mallory".into() };
/// assert!(store.create(NewNotification::new("mallory", "hi")).await.is_err());
/// store.create(NewNotification::new("ada", "hi")).await.unwrap();
/// assert_eq!(store.unread_count(&"ada".into()).await.unwrap(), 1);
/// # }
/// ```
#[async_trait]
pub trait NotificationStore: Send + Sync + 'static {
    /// Validates and stores a notification, recording a `created` change.
    async fn create(&self, new: NewNotification) -> Result<Change, StoreError>;

    /// Stores many notifications at once (recipients may differ), each
    /// recording its `created` change, all or nothing. Backends with
    /// transactions store a batch in one; the default creates them one by
    /// one.
    async fn create_many(&self, new: Vec<NewNotification>) -> Result<Vec<Change>, StoreError> {
        let mut changes = Vec::with_capacity(new.len());
        for notification in new {
            changes.push(self.create(notification).await?);
        }
        Ok(changes)
    }

    /// A page of `user`'s notifications, newest first.
    async fn list(&self, user: &UserId, page: PageRequest) -> Result<Page, StoreError>;

    /// How many of `user`'s notifications are unread. Must not scan the
    /// user's history.
    async fn unread_count(&self, user: &UserId) -> Result<u64, StoreError>;

    /// Marks one notification read, recording a `read` change; `None` if it
    /// was already read.
    async fn mark_read(
        &self,
        user: &UserId,
        id: NotificationId,
    ) -> Result<Option<Change>, StoreError>;

    /// Marks every unread notification read; `None` if there were none.
    async fn mark_all_read(&self, user: &UserId) -> Result<Option<Change>, StoreError>;

    /// Deletes one notification, recording a `deleted` change.
    async fn delete(&self, user: &UserId, id: NotificationId) -> Result<Change, StoreError>;

    /// Deletes every read notification; `None` if there were none.
    async fn delete_all_read(&self, user: &UserId) -> Result<Option<Change>, StoreError>;
}

macro_rules! forward_store {
    ($($ty:ty),*) => {$(
        #[async_trait]
        impl<S: NotificationStore + ?Sized> NotificationStore for $ty {
            async fn create(&self, new: NewNotification) -> Result<Change, StoreError> {
                (**self).create(new).await
            }
            async fn create_many(&self, new: Vec<NewNotification>) -> Result<Vec<Change>, StoreError> {
                (**self).create_many(new).await
            }
            async fn list(&self, user: &UserId, page: PageRequest) -> Result<Page, StoreError> {
                (**self).list(user, page).await
            }
            async fn unread_count(&self, user: &UserId) -> Result<u64, StoreError> {
                (**self).unread_count(user).await
            }
            async fn mark_read(&self, user: &UserId, id: NotificationId) -> Result<Option<Change>, StoreError> {
                (**self).mark_read(user, id).await
            }
            async fn mark_all_read(&self, user: &UserId) -> Result<Option<Change>, StoreError> {
                (**self).mark_all_read(user).await
            }
            async fn delete(&self, user: &UserId, id: NotificationId) -> Result<Change, StoreError> {
                (**self).delete(user, id).await
            }
            async fn delete_all_read(&self, user: &UserId) -> Result<Option<Change>, StoreError> {
                (**self).delete_all_read(user).await
            }
        }
    )*};
}

forward_store!(Arc<S>, Box<S>);

/// Why an operation of a store or an event log failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No notification with this id belongs to the user.
    #[error("notification {id} not found for this user")]
    NotFound {
        /// The id asked for.
        id: NotificationId,
    },
    /// An input field is invalid.
    #[error("invalid `{field}`: {reason}")]
    Invalid {
        /// The field, as named in JSON (`title`, `actionUrl`, ...).
        field: &'static str,
        /// What a valid value looks like.
        reason: String,
    },
    /// The backend cannot be reached (down, timed out, pool exhausted).
    #[error("the store is unavailable: {0}; retry later")]
    Unavailable(#[source] BoxError),
    /// The backend answered with something this store cannot use.
    #[error("the store failed: {0}")]
    Backend(#[source] BoxError),
}
