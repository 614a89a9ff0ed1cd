//! [`NotificationStore`]: the durable side — notifications, unread counts
//! and the per-recipient change log streams replay from.

use std::sync::Arc;

use async_trait::async_trait;

use crate::{EventId, NotificationId, Principal, UserId};

mod memory;
mod types;

pub use memory::{InMemoryStore, Retention};
pub use types::{
    Change, ChangeKind, NOTIFICATION_EVENT, NewNotification, Notification, Page, PageRequest,
    Replay, limits,
};

/// The error type stores wrap backend failures in.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Keeps each user's notifications and a change log to replay from.
///
/// # Contract
///
/// - Every state change (create, mark read, mark all read, delete, delete
///   all read) appends one [`Change`] to the recipient's log and returns it.
///   An operation that changes nothing (marking a read notification read)
///   returns `None` and logs nothing.
/// - Change ids are **consecutive per recipient (`n`, `n + 1`, …), in the
///   order changes become visible**: once `since` has returned a change
///   with id `n`, no change with an id `<= n` appears later, and `n + 1` is
///   the next one. Concurrent writers must not break this (for SQL: bump a
///   per-recipient counter row in the same transaction, which locks it).
///   Streams rely on it: when live delivery brings `n + 2` before `n + 1`
///   (two writers published in the other order), they know `n + 1` exists
///   and fetch it from the store, so no client misses or reorders a change.
/// - `since(principal, after, limit)` returns the recipient's changes with
///   ids above `after`, oldest first, at most `limit`. If any of those is no
///   longer kept (retention), or `after` is above the newest id (the client
///   holds an id from another history, such as before a restart of an
///   in-memory store), it returns [`Replay::HistoryGone`] instead.
/// - A user's operations never see or touch another user's notifications:
///   ids of someone else's notifications answer [`StoreError::NotFound`].
///
/// `sse-conformance`'s `store::run` checks all of this against any
/// implementation.
#[async_trait]
pub trait NotificationStore: Send + Sync + 'static {
    /// Validates ([`NewNotification::validate`]) and stores a notification,
    /// recording a `created` change.
    async fn create(&self, new: NewNotification) -> Result<Change, StoreError>;

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

    /// The principal's changes after `after`, for replay; see the contract.
    async fn since(
        &self,
        principal: &Principal,
        after: EventId,
        limit: usize,
    ) -> Result<Replay, StoreError>;

    /// The principal's newest change id, if any.
    async fn last_event_id(&self, principal: &Principal) -> Result<Option<EventId>, StoreError>;
}

macro_rules! forward_store {
    ($($ty:ty),*) => {$(
        #[async_trait]
        impl<S: NotificationStore + ?Sized> NotificationStore for $ty {
            async fn create(&self, new: NewNotification) -> Result<Change, StoreError> {
                (**self).create(new).await
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
            async fn since(&self, principal: &Principal, after: EventId, limit: usize) -> Result<Replay, StoreError> {
                (**self).since(principal, after, limit).await
            }
            async fn last_event_id(&self, principal: &Principal) -> Result<Option<EventId>, StoreError> {
                (**self).last_event_id(principal).await
            }
        }
    )*};
}

forward_store!(Arc<S>, Box<S>);

/// Why a store operation failed.
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
    #[error("the notification store is unavailable: {0}; retry later")]
    Unavailable(#[source] BoxError),
    /// The backend answered with something this store cannot use.
    #[error("the notification store failed: {0}")]
    Backend(#[source] BoxError),
}
