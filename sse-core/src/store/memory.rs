use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;

use super::{
    Change, ChangeKind, NewNotification, Notification, NotificationPolicy, NotificationStore, Page,
    PageRequest, StoreError,
};
use crate::log::{Cursor, EventLog, InMemoryLog, LogRecord, Replay};
use crate::sharded::Sharded;
use crate::{Audience, Event, NotificationId, Principal, Timestamp, UserId};

/// The default [`NotificationStore`]: everything in process memory, its
/// changes written through an [`InMemoryLog`].
///
/// Users are kept in 64 independently locked shards; each operation locks
/// one user's shard for a bounded, await-free critical section and appends
/// its change to the log before releasing it, so a user's changes reach the
/// log in the order they were applied.
///
/// It is also the [`EventLog`] it writes through (every method forwards to
/// [`InMemoryStore::log`]), so one value serves a [`Notifier`](crate::Notifier)
/// as both. Everything is lost when the process exits; use `sse-sqlx` or
/// `sse-redis` to persist.
///
/// ```
/// use sse_core::{EventLog, InMemoryStore, NewNotification, NotificationStore, Principal, log::Replay};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), sse_core::StoreError> {
/// let store = InMemoryStore::new();
/// let start = store.head().await?;
/// let change = store.create(NewNotification::new("bob", "Hello")).await?;
/// assert_eq!(change.cursor, start.next());
/// assert_eq!(store.unread_count(&"bob".into()).await?, 1);
/// let Replay::Events { events, .. } = store.since(&Principal::new("bob"), start, 100).await? else {
///     unreachable!()
/// };
/// assert_eq!(events, vec![change.event().clone()]);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct InMemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    users: Sharded<UserId, Inbox>,
    next_notification: AtomicU64,
    log: InMemoryLog,
    policy: NotificationPolicy,
}

#[derive(Default)]
struct Inbox {
    notifications: BTreeMap<NotificationId, Notification>,
    unread: u64,
}

impl Default for InMemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl InMemoryStore {
    /// An empty store with a log of its own (default
    /// [`Retention`](crate::Retention)) and the default policy.
    pub fn new() -> Self {
        Self::with_log(InMemoryLog::new())
    }

    /// An empty store writing its changes through `log`.
    pub fn with_log(log: InMemoryLog) -> Self {
        Self::build(log, NotificationPolicy::default())
    }

    /// This store, checking new notifications against `policy` instead of
    /// the default. Call it when building the store: it makes a new store
    /// over the same log.
    #[must_use]
    pub fn policy(self, policy: NotificationPolicy) -> Self {
        Self::build(self.inner.log.clone(), policy)
    }

    fn build(log: InMemoryLog, policy: NotificationPolicy) -> Self {
        Self {
            inner: Arc::new(Inner {
                users: Sharded::new(),
                next_notification: AtomicU64::new(1),
                log,
                policy,
            }),
        }
    }

    /// The log the store writes through.
    pub fn log(&self) -> &InMemoryLog {
        &self.inner.log
    }

    /// Appends `kind` to `user`'s audience; called under the user's lock.
    fn record(&self, user: &UserId, kind: ChangeKind, unread: u64) -> Result<Change, StoreError> {
        let event = Change::encode(&kind, unread).map_err(|e| StoreError::Backend(Box::new(e)))?;
        let stored = self
            .inner
            .log
            .append_now(&[(Audience::User(user.clone()), event)])?;
        let event = stored
            .into_iter()
            .next()
            .ok_or_else(|| StoreError::Backend("the log stored nothing".into()))?;
        Change::from_appended(user.clone(), kind, unread, Timestamp::now(), event)
            .map_err(|e| StoreError::Backend(Box::new(e)))
    }
}

#[async_trait]
impl NotificationStore for InMemoryStore {
    async fn create(&self, new: NewNotification) -> Result<Change, StoreError> {
        new.validate_with(&self.inner.policy)?;
        let id = NotificationId(self.inner.next_notification.fetch_add(1, Ordering::Relaxed));
        let user = new.user.clone();
        let notification = Notification::from_new(id, new, Timestamp::now());
        let mut shard = self.inner.users.write(&user);
        let inbox = shard.entry(user.clone()).or_default();
        let unread = inbox.unread + 1;
        let change = self.record(
            &user,
            ChangeKind::Created {
                notification: notification.clone(),
            },
            unread,
        )?;
        inbox.notifications.insert(id, notification);
        inbox.unread = unread;
        Ok(change)
    }

    async fn create_many(&self, new: Vec<NewNotification>) -> Result<Vec<Change>, StoreError> {
        // All or nothing: validate everything before storing anything.
        for notification in &new {
            notification.validate_with(&self.inner.policy)?;
        }
        let mut changes = Vec::with_capacity(new.len());
        for notification in new {
            changes.push(self.create(notification).await?);
        }
        Ok(changes)
    }

    async fn list(&self, user: &UserId, page: PageRequest) -> Result<Page, StoreError> {
        let shard = self.inner.users.read(user);
        let Some(inbox) = shard.get(user) else {
            return Ok(Page::new(Vec::new(), None));
        };
        let upper = page.before_id().unwrap_or(NotificationId(u64::MAX));
        let items: Vec<Notification> = inbox
            .notifications
            .range(..upper)
            .rev()
            .take(page.limit() + 1)
            .map(|(_, n)| n.clone())
            .collect();
        Ok(Page::from_overfetch(items, page))
    }

    async fn unread_count(&self, user: &UserId) -> Result<u64, StoreError> {
        Ok(self
            .inner
            .users
            .read(user)
            .get(user)
            .map_or(0, |inbox| inbox.unread))
    }

    async fn mark_read(
        &self,
        user: &UserId,
        id: NotificationId,
    ) -> Result<Option<Change>, StoreError> {
        let mut shard = self.inner.users.write(user);
        let inbox = shard.get_mut(user).ok_or(StoreError::NotFound { id })?;
        let notification = inbox
            .notifications
            .get(&id)
            .ok_or(StoreError::NotFound { id })?;
        if notification.read {
            return Ok(None);
        }
        let unread = inbox.unread.saturating_sub(1);
        let change = self.record(user, ChangeKind::Read { ids: vec![id] }, unread)?;
        if let Some(notification) = inbox.notifications.get_mut(&id) {
            notification.read = true;
        }
        inbox.unread = unread;
        Ok(Some(change))
    }

    async fn mark_all_read(&self, user: &UserId) -> Result<Option<Change>, StoreError> {
        let mut shard = self.inner.users.write(user);
        let Some(inbox) = shard.get_mut(user) else {
            return Ok(None);
        };
        let ids: Vec<NotificationId> = inbox
            .notifications
            .values()
            .filter(|n| !n.read)
            .map(|n| n.id)
            .collect();
        if ids.is_empty() {
            return Ok(None);
        }
        let change = self.record(user, ChangeKind::Read { ids: ids.clone() }, 0)?;
        for id in ids {
            if let Some(notification) = inbox.notifications.get_mut(&id) {
                notification.read = true;
            }
        }
        inbox.unread = 0;
        Ok(Some(change))
    }

    async fn delete(&self, user: &UserId, id: NotificationId) -> Result<Change, StoreError> {
        let mut shard = self.inner.users.write(user);
        let inbox = shard.get_mut(user).ok_or(StoreError::NotFound { id })?;
        let was_unread = !inbox
            .notifications
            .get(&id)
            .ok_or(StoreError::NotFound { id })?
            .read;
        let unread = inbox.unread - u64::from(was_unread);
        let change = self.record(user, ChangeKind::Deleted { ids: vec![id] }, unread)?;
        inbox.notifications.remove(&id);
        inbox.unread = unread;
        Ok(change)
    }

    async fn delete_all_read(&self, user: &UserId) -> Result<Option<Change>, StoreError> {
        let mut shard = self.inner.users.write(user);
        let Some(inbox) = shard.get_mut(user) else {
            return Ok(None);
        };
        let ids: Vec<NotificationId> = inbox
            .notifications
            .values()
            .filter(|n| n.read)
            .map(|n| n.id)
            .collect();
        if ids.is_empty() {
            return Ok(None);
        }
        let change = self.record(user, ChangeKind::Deleted { ids: ids.clone() }, inbox.unread)?;
        for id in &ids {
            inbox.notifications.remove(id);
        }
        Ok(Some(change))
    }
}

#[async_trait]
impl EventLog for InMemoryStore {
    async fn append(&self, events: &[(Audience, Event)]) -> Result<Vec<Event>, StoreError> {
        self.inner.log.append(events).await
    }

    async fn since(
        &self,
        principal: &Principal,
        after: Cursor,
        limit: usize,
    ) -> Result<Replay, StoreError> {
        self.inner.log.since(principal, after, limit).await
    }

    async fn read(&self, after: Cursor, limit: usize) -> Result<Vec<LogRecord>, StoreError> {
        self.inner.log.read(after, limit).await
    }

    async fn head(&self) -> Result<Cursor, StoreError> {
        self.inner.log.head().await
    }
}

impl std::fmt::Debug for InMemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryStore")
            .field("log", &self.inner.log)
            .field("policy", &self.inner.policy)
            .finish_non_exhaustive()
    }
}
