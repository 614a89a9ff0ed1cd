use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use super::{
    Change, ChangeKind, NewNotification, Notification, NotificationStore, Page, PageRequest,
    Replay, StoreError,
};
use crate::sharded::Sharded;
use crate::{EventId, NotificationId, Principal, Timestamp, UserId};

/// How much change history a store keeps for replay.
///
/// Replay covers a reconnecting client's gap only while the changes it
/// missed are still kept; older gaps get [`Replay::HistoryGone`] and the
/// client refetches. Retention applies to the change log, not to the
/// notifications themselves, which stay until deleted.
///
/// ```
/// use std::time::Duration;
/// use sse_core::Retention;
/// let retention = Retention::default()
///     .max_changes_per_user(500)
///     .max_age(Duration::from_secs(24 * 3600));
/// # let _ = retention;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    max_changes: Option<usize>,
    max_age: Option<Duration>,
}

impl Default for Retention {
    /// 1,000 changes per user, no age limit.
    fn default() -> Self {
        Self {
            max_changes: Some(1_000),
            max_age: None,
        }
    }
}

impl Retention {
    /// Keeps everything.
    pub fn unlimited() -> Self {
        Self {
            max_changes: None,
            max_age: None,
        }
    }

    /// Keeps at most `count` changes per user (at least 1).
    #[must_use]
    pub fn max_changes_per_user(mut self, count: usize) -> Self {
        self.max_changes = Some(count.max(1));
        self
    }

    /// Drops changes older than `age`.
    #[must_use]
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = Some(age);
        self
    }

    /// The per-user change limit, if any.
    pub fn changes_limit(&self) -> Option<usize> {
        self.max_changes
    }

    /// The age limit, if any.
    pub fn age_limit(&self) -> Option<Duration> {
        self.max_age
    }
}

/// The default [`NotificationStore`]: everything in process memory.
///
/// Users are kept in 64 independently locked shards; each operation locks
/// one user's shard for a bounded, await-free critical section, which is
/// also what makes change ids strictly increasing per user.
///
/// Everything is lost when the process exits, and change ids start again
/// from 1: a client that reconnects with an id from before the restart gets
/// [`Replay::HistoryGone`] once its id is above the new history's newest.
/// Use `sse-sqlx` to persist.
///
/// ```
/// use sse_core::{InMemoryStore, NewNotification, NotificationStore, EventId, Principal, Replay};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), sse_core::StoreError> {
/// let store = InMemoryStore::new();
/// let change = store.create(NewNotification::new("bob", "Hello")).await?;
/// assert_eq!(change.id, EventId(1));
/// assert_eq!(store.unread_count(&"bob".into()).await?, 1);
/// let Replay::Changes(missed) = store.since(&Principal::new("bob"), EventId(0), 100).await? else {
///     unreachable!()
/// };
/// assert_eq!(missed, vec![change]);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct InMemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    users: Sharded<UserId, UserLog>,
    next_notification: AtomicU64,
    retention: Retention,
}

#[derive(Default)]
struct UserLog {
    notifications: BTreeMap<NotificationId, Notification>,
    unread: u64,
    changes: VecDeque<Change>,
    latest: u64,
    /// Highest change id no longer kept (0 if none was dropped).
    pruned_through: u64,
}

impl Default for InMemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl InMemoryStore {
    /// An empty store with the default [`Retention`].
    pub fn new() -> Self {
        Self::with_retention(Retention::default())
    }

    /// An empty store keeping `retention` worth of change history.
    pub fn with_retention(retention: Retention) -> Self {
        Self {
            inner: Arc::new(Inner {
                users: Sharded::new(),
                next_notification: AtomicU64::new(1),
                retention,
            }),
        }
    }

    /// Runs `op` on `user`'s log under its shard's lock, creating the log if needed.
    fn with_log<T>(&self, user: &UserId, op: impl FnOnce(&mut UserLog) -> T) -> T {
        let mut shard = self.inner.users.write(user);
        let log = shard.entry(user.clone()).or_default();
        op(log)
    }

    /// Runs `op` on `user`'s log if it exists; unknown users are not
    /// created by operations that can only fail or do nothing for them.
    fn with_existing_log<T>(&self, user: &UserId, op: impl FnOnce(Option<&mut UserLog>) -> T) -> T {
        op(self.inner.users.write(user).get_mut(user))
    }

    fn read_log<T>(&self, user: &UserId, op: impl FnOnce(Option<&UserLog>) -> T) -> T {
        op(self.inner.users.read(user).get(user))
    }
}

impl UserLog {
    fn record(&mut self, user: &UserId, kind: ChangeKind, retention: &Retention) -> Change {
        self.latest += 1;
        let change = Change::new(
            EventId(self.latest),
            user.clone(),
            kind,
            self.unread,
            Timestamp::now(),
        );
        self.changes.push_back(change.clone());
        self.prune(retention, change.at);
        change
    }

    fn prune(&mut self, retention: &Retention, now: Timestamp) {
        while let Some(front) = self.changes.front() {
            let over_count = retention
                .max_changes
                .is_some_and(|max| self.changes.len() > max);
            let too_old = retention
                .max_age
                .is_some_and(|age| front.at.older_than(age, now));
            if !(over_count || too_old) {
                break;
            }
            self.pruned_through = front.id.get();
            self.changes.pop_front();
        }
    }
}

#[async_trait]
impl NotificationStore for InMemoryStore {
    async fn create(&self, new: NewNotification) -> Result<Change, StoreError> {
        new.validate()?;
        let id = NotificationId(self.inner.next_notification.fetch_add(1, Ordering::Relaxed));
        let user = new.user.clone();
        let notification = Notification::from_new(id, new, Timestamp::now());
        Ok(self.with_log(&user, |log| {
            log.notifications.insert(id, notification.clone());
            log.unread += 1;
            log.record(
                &user,
                ChangeKind::Created { notification },
                &self.inner.retention,
            )
        }))
    }

    async fn list(&self, user: &UserId, page: PageRequest) -> Result<Page, StoreError> {
        Ok(self.read_log(user, |log| {
            let Some(log) = log else {
                return Page::new(Vec::new(), None);
            };
            let upper = page.before_id().unwrap_or(NotificationId(u64::MAX));
            let mut items: Vec<Notification> = log
                .notifications
                .range(..upper)
                .rev()
                .take(page.limit() + 1)
                .map(|(_, n)| n.clone())
                .collect();
            let next_before = if items.len() > page.limit() {
                items.truncate(page.limit());
                items.last().map(|n| n.id)
            } else {
                None
            };
            Page::new(items, next_before)
        }))
    }

    async fn unread_count(&self, user: &UserId) -> Result<u64, StoreError> {
        Ok(self.read_log(user, |log| log.map_or(0, |log| log.unread)))
    }

    async fn mark_read(
        &self,
        user: &UserId,
        id: NotificationId,
    ) -> Result<Option<Change>, StoreError> {
        self.with_existing_log(user, |log| {
            let log = log.ok_or(StoreError::NotFound { id })?;
            let notification = log
                .notifications
                .get_mut(&id)
                .ok_or(StoreError::NotFound { id })?;
            if notification.read {
                return Ok(None);
            }
            notification.read = true;
            log.unread -= 1;
            Ok(Some(log.record(
                user,
                ChangeKind::Read { ids: vec![id] },
                &self.inner.retention,
            )))
        })
    }

    async fn mark_all_read(&self, user: &UserId) -> Result<Option<Change>, StoreError> {
        Ok(self.with_existing_log(user, |log| {
            let log = log?;
            let ids: Vec<NotificationId> = log
                .notifications
                .values_mut()
                .filter(|n| !n.read)
                .map(|n| {
                    n.read = true;
                    n.id
                })
                .collect();
            if ids.is_empty() {
                return None;
            }
            log.unread = 0;
            Some(log.record(user, ChangeKind::Read { ids }, &self.inner.retention))
        }))
    }

    async fn delete(&self, user: &UserId, id: NotificationId) -> Result<Change, StoreError> {
        self.with_existing_log(user, |log| {
            let log = log.ok_or(StoreError::NotFound { id })?;
            let removed = log
                .notifications
                .remove(&id)
                .ok_or(StoreError::NotFound { id })?;
            if !removed.read {
                log.unread -= 1;
            }
            Ok(log.record(
                user,
                ChangeKind::Deleted { ids: vec![id] },
                &self.inner.retention,
            ))
        })
    }

    async fn delete_all_read(&self, user: &UserId) -> Result<Option<Change>, StoreError> {
        Ok(self.with_existing_log(user, |log| {
            let log = log?;
            let ids: Vec<NotificationId> = log
                .notifications
                .values()
                .filter(|n| n.read)
                .map(|n| n.id)
                .collect();
            if ids.is_empty() {
                return None;
            }
            for id in &ids {
                log.notifications.remove(id);
            }
            Some(log.record(user, ChangeKind::Deleted { ids }, &self.inner.retention))
        }))
    }

    async fn since(
        &self,
        principal: &Principal,
        after: EventId,
        limit: usize,
    ) -> Result<Replay, StoreError> {
        let user = principal.user();
        let mut shard = self.inner.users.write(user);
        let Some(log) = shard.get_mut(user) else {
            return Ok(if after.get() == 0 {
                Replay::Changes(Vec::new())
            } else {
                Replay::HistoryGone { latest: None }
            });
        };
        log.prune(&self.inner.retention, Timestamp::now());
        let latest = (log.latest > 0).then_some(EventId(log.latest));
        if after.get() > log.latest || after.get() < log.pruned_through {
            return Ok(Replay::HistoryGone { latest });
        }
        // Ids in the log are consecutive, so the first wanted one sits at a
        // known offset from the front.
        let first_kept = log.pruned_through + 1;
        let skip = usize::try_from(after.get() + 1 - first_kept).unwrap_or(usize::MAX);
        Ok(Replay::Changes(
            log.changes.iter().skip(skip).take(limit).cloned().collect(),
        ))
    }

    async fn last_event_id(&self, principal: &Principal) -> Result<Option<EventId>, StoreError> {
        Ok(self.read_log(principal.user(), |log| {
            log.and_then(|log| (log.latest > 0).then_some(EventId(log.latest)))
        }))
    }
}

impl std::fmt::Debug for InMemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryStore")
            .field("retention", &self.inner.retention)
            .finish_non_exhaustive()
    }
}
