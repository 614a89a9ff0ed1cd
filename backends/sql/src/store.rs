use std::time::Duration;

use async_trait::async_trait;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, Row, Transaction};
use sse_core::{
    Change, ChangeKind, EventId, NewNotification, Notification, NotificationId, NotificationStore,
    Page, PageRequest, Principal, Replay, Retention, StoreError, Timestamp, UserId,
};

use crate::error::{SqlStoreError, backend_error, store_error};
use crate::{Backend, migrate};

/// A [`NotificationStore`] on SQLite or PostgreSQL.
///
/// Connect with [`SqlStore::connect`] (or [`SqlStore::builder`] for
/// options): the URL picks the database. Migrations are applied on
/// connect unless disabled.
///
/// # Ordering
///
/// Every write bumps a per-recipient counter row
/// (`sse_recipients.last_event_id`) in the same transaction as the change
/// it records. The bump is an upsert, which takes that row's lock until
/// commit, so a recipient's writers run one after another: ids are
/// consecutive and each commits before the next is assigned, i.e. they
/// become visible in id order, which a sequence alone would not give
/// (transactions holding sequence values can commit out of order). SQLite
/// gets the same from its single writer. The unread count lives on the
/// same row, adjusted by each change, so reading it never scans.
///
/// Cloning gives another handle to the same pools.
#[derive(Clone)]
pub struct SqlStore {
    writer: AnyPool,
    reader: AnyPool,
    backend: Backend,
    retention: Retention,
}

/// Options for [`SqlStore`]; see [`SqlStore::builder`].
#[derive(Debug, Clone)]
#[must_use = "call `connect` to open the store"]
pub struct SqlStoreBuilder {
    url: String,
    retention: Retention,
    max_connections: u32,
    acquire_timeout: Duration,
    run_migrations: bool,
}

impl SqlStoreBuilder {
    /// How much change history to keep for replay (default: 1,000 changes
    /// per recipient). Pruning happens as changes are written; see also
    /// [`SqlStore::prune_expired`].
    pub fn retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// The largest pool (default 10; SQLite uses one writer and this many readers).
    pub fn max_connections(mut self, max: u32) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// How long an operation waits for a connection before failing with
    /// [`StoreError::Unavailable`] (default 5 s): a database outage answers
    /// quickly instead of hanging requests.
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// Whether to apply the shipped migrations on connect (default `true`).
    /// Teams that run migrations themselves take the SQL from
    /// [`migrate::SQLITE`] and [`migrate::POSTGRES`].
    pub fn run_migrations(mut self, run: bool) -> Self {
        self.run_migrations = run;
        self
    }

    /// Connects (creating the SQLite file if needed) and migrates.
    pub async fn connect(self) -> Result<SqlStore, SqlStoreError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of(&self.url)?;
        let options = |max: u32| {
            AnyPoolOptions::new()
                .max_connections(max)
                .acquire_timeout(self.acquire_timeout)
                .after_connect(move |conn, _| {
                    Box::pin(async move {
                        if backend == Backend::Sqlite {
                            // WAL lets readers run beside the writer; waiting
                            // on a lock beats failing with SQLITE_BUSY.
                            sqlx::raw_sql("PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000; PRAGMA synchronous = NORMAL;")
                                .execute(&mut *conn)
                                .await?;
                        }
                        Ok(())
                    })
                })
        };
        let connect_failed = |source| SqlStoreError::Connect {
            url: redact(&self.url),
            source,
        };
        let (writer, reader) = match backend {
            Backend::Postgres => {
                let pool = options(self.max_connections)
                    .connect(&self.url)
                    .await
                    .map_err(connect_failed)?;
                (pool.clone(), pool)
            }
            Backend::Sqlite => {
                let url = sqlite_url(&self.url);
                if url.contains(":memory:") {
                    // Every connection to `:memory:` is its own database.
                    let pool = options(1).connect(&url).await.map_err(connect_failed)?;
                    (pool.clone(), pool)
                } else {
                    let writer = options(1).connect(&url).await.map_err(connect_failed)?;
                    let reader = options(self.max_connections)
                        .connect(&url)
                        .await
                        .map_err(connect_failed)?;
                    (writer, reader)
                }
            }
        };
        if self.run_migrations {
            migrate::run(&writer, backend).await?;
        }
        Ok(SqlStore {
            writer,
            reader,
            backend,
            retention: self.retention,
        })
    }
}

/// SQLite URLs create the file when missing, unless they say otherwise.
fn sqlite_url(url: &str) -> String {
    if url.contains(":memory:") || url.contains("mode=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}

/// The URL without its password, for error messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

impl SqlStore {
    /// Connects to `url` with default options: `sqlite://PATH` (created if
    /// missing, WAL mode), `sqlite::memory:`, or `postgres://…`.
    pub async fn connect(url: &str) -> Result<Self, SqlStoreError> {
        Self::builder(url).connect().await
    }

    /// Options for connecting to `url`.
    pub fn builder(url: impl Into<String>) -> SqlStoreBuilder {
        SqlStoreBuilder {
            url: url.into(),
            retention: Retention::default(),
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
            run_migrations: true,
        }
    }

    /// Which database this store is on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Deletes changes older than the retention's age limit for every
    /// recipient (writes prune their own recipient already). Returns how
    /// many were deleted. Run it periodically when using an age limit.
    pub async fn prune_expired(&self) -> Result<u64, StoreError> {
        let Some(age) = self.retention.age_limit() else {
            return Ok(0);
        };
        let cutoff = cutoff(age);
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE sse_recipients SET pruned_through = (SELECT MAX(c.id) FROM sse_changes c WHERE c.user_id = sse_recipients.user_id AND c.at < $1) \
             WHERE EXISTS (SELECT 1 FROM sse_changes c WHERE c.user_id = sse_recipients.user_id AND c.at < $1 AND c.id > sse_recipients.pruned_through)",
        )
        .bind(cutoff)
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        let deleted = sqlx::query("DELETE FROM sse_changes WHERE at < $1")
            .bind(cutoff)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?
            .rows_affected();
        tx.commit().await.map_err(store_error)?;
        Ok(deleted)
    }

    pub(crate) fn writer_pool(&self) -> &AnyPool {
        &self.writer
    }

    /// Closes the pools; operations afterwards fail.
    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }

    async fn begin(&self) -> Result<Transaction<'static, Any>, StoreError> {
        let begin = match self.backend {
            // Take the write lock up front: a deferred transaction that
            // reads, then writes, could fail to upgrade.
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        };
        self.writer.begin_with(begin).await.map_err(store_error)
    }

    /// Records a change for `user` inside `tx`: bumps the recipient row
    /// (locking it until commit), inserts the change and prunes.
    async fn record(
        &self,
        tx: &mut Transaction<'static, Any>,
        user: &UserId,
        kind: ChangeKind,
        unread_delta: i64,
    ) -> Result<Change, StoreError> {
        let row = sqlx::query(
            "INSERT INTO sse_recipients (user_id, last_event_id, unread_count) VALUES ($1, 1, $2) \
             ON CONFLICT (user_id) DO UPDATE SET last_event_id = sse_recipients.last_event_id + 1, \
             unread_count = sse_recipients.unread_count + $2 \
             RETURNING last_event_id, unread_count, pruned_through",
        )
        .bind(user.as_str())
        .bind(unread_delta)
        .fetch_one(&mut **tx)
        .await
        .map_err(store_error)?;
        let id: i64 = row.try_get(0).map_err(store_error)?;
        let unread: i64 = row.try_get(1).map_err(store_error)?;
        let pruned_through: i64 = row.try_get(2).map_err(store_error)?;
        let at = Timestamp::now();
        let payload = serde_json::to_string(&kind).map_err(backend_error)?;
        sqlx::query("INSERT INTO sse_changes (user_id, id, at, unread_count, kind) VALUES ($1, $2, $3, $4, $5)")
            .bind(user.as_str())
            .bind(id)
            .bind(at.as_millis())
            .bind(unread)
            .bind(payload)
            .execute(&mut **tx)
            .await
            .map_err(store_error)?;
        self.prune(tx, user, id, pruned_through).await?;
        Ok(Change::new(
            EventId(to_u64(id)),
            user.clone(),
            kind,
            to_u64(unread),
            at,
        ))
    }

    async fn prune(
        &self,
        tx: &mut Transaction<'static, Any>,
        user: &UserId,
        latest: i64,
        pruned_through: i64,
    ) -> Result<(), StoreError> {
        let mut floor = pruned_through;
        if let Some(max) = self.retention.changes_limit() {
            floor = floor.max(latest - i64::try_from(max).unwrap_or(i64::MAX));
        }
        if let Some(age) = self.retention.age_limit() {
            let expired: Option<i64> = sqlx::query_scalar(
                "SELECT MAX(id) FROM sse_changes WHERE user_id = $1 AND at < $2",
            )
            .bind(user.as_str())
            .bind(cutoff(age))
            .fetch_one(&mut **tx)
            .await
            .map_err(store_error)?;
            floor = floor.max(expired.unwrap_or(0));
        }
        if floor > pruned_through {
            sqlx::query("DELETE FROM sse_changes WHERE user_id = $1 AND id <= $2")
                .bind(user.as_str())
                .bind(floor)
                .execute(&mut **tx)
                .await
                .map_err(store_error)?;
            sqlx::query("UPDATE sse_recipients SET pruned_through = $2 WHERE user_id = $1")
                .bind(user.as_str())
                .bind(floor)
                .execute(&mut **tx)
                .await
                .map_err(store_error)?;
        }
        Ok(())
    }
}

fn cutoff(age: Duration) -> i64 {
    Timestamp::now().as_millis() - i64::try_from(age.as_millis()).unwrap_or(i64::MAX)
}

/// Ids and counts are never negative in the schema; clamp defensively.
fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn notification(row: &AnyRow) -> Result<Notification, StoreError> {
    let mut new = NewNotification::new(
        row.try_get::<String, _>(1).map_err(store_error)?,
        row.try_get::<String, _>(2).map_err(store_error)?,
    )
    .message(row.try_get::<String, _>(3).map_err(store_error)?)
    .kind(row.try_get::<String, _>(4).map_err(store_error)?);
    new.action_url = row.try_get::<Option<String>, _>(5).map_err(store_error)?;
    let mut notification = Notification::from_new(
        NotificationId(to_u64(row.try_get(0).map_err(store_error)?)),
        new,
        Timestamp::from_millis(row.try_get(7).map_err(store_error)?),
    );
    // Read as 0/1: sqlx's `Any` driver cannot decode SQLite booleans.
    notification.read = row.try_get::<i64, _>(6).map_err(store_error)? != 0;
    Ok(notification)
}

fn change(user: &UserId, row: &AnyRow) -> Result<Change, StoreError> {
    let kind: String = row.try_get(3).map_err(store_error)?;
    Ok(Change::new(
        EventId(to_u64(row.try_get(0).map_err(store_error)?)),
        user.clone(),
        serde_json::from_str(&kind).map_err(backend_error)?,
        to_u64(row.try_get(2).map_err(store_error)?),
        Timestamp::from_millis(row.try_get(1).map_err(store_error)?),
    ))
}

#[async_trait]
impl NotificationStore for SqlStore {
    async fn create(&self, new: NewNotification) -> Result<Change, StoreError> {
        new.validate()?;
        let user = new.user.clone();
        let created_at = Timestamp::now();
        let mut tx = self.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO sse_notifications (user_id, title, message, kind, action_url, read, created_at) \
             VALUES ($1, $2, $3, $4, $5, FALSE, $6) RETURNING id",
        )
        .bind(user.as_str())
        .bind(new.title.as_str())
        .bind(new.message.as_str())
        .bind(new.kind.as_str())
        .bind(new.action_url.as_deref())
        .bind(created_at.as_millis())
        .fetch_one(&mut *tx)
        .await
        .map_err(store_error)?;
        let notification = Notification::from_new(NotificationId(to_u64(id)), new, created_at);
        let change = self
            .record(&mut tx, &user, ChangeKind::Created { notification }, 1)
            .await?;
        tx.commit().await.map_err(store_error)?;
        Ok(change)
    }

    async fn list(&self, user: &UserId, page: PageRequest) -> Result<Page, StoreError> {
        let before = page.before_id().map_or(i64::MAX, |id| to_i64(id.get()));
        let limit = i64::try_from(page.limit()).unwrap_or(100);
        let rows = sqlx::query(
            "SELECT id, user_id, title, message, kind, action_url, CAST(CASE WHEN read THEN 1 ELSE 0 END AS BIGINT), created_at \
             FROM sse_notifications \
             WHERE user_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
        )
        .bind(user.as_str())
        .bind(before)
        .bind(limit + 1)
        .fetch_all(&self.reader)
        .await
        .map_err(store_error)?;
        let mut items = rows
            .iter()
            .map(notification)
            .collect::<Result<Vec<_>, _>>()?;
        let next_before = if items.len() > page.limit() {
            items.truncate(page.limit());
            items.last().map(|n| n.id)
        } else {
            None
        };
        Ok(Page::new(items, next_before))
    }

    async fn unread_count(&self, user: &UserId) -> Result<u64, StoreError> {
        let count: Option<i64> =
            sqlx::query_scalar("SELECT unread_count FROM sse_recipients WHERE user_id = $1")
                .bind(user.as_str())
                .fetch_optional(&self.reader)
                .await
                .map_err(store_error)?;
        Ok(count.map_or(0, to_u64))
    }

    async fn mark_read(
        &self,
        user: &UserId,
        id: NotificationId,
    ) -> Result<Option<Change>, StoreError> {
        let mut tx = self.begin().await?;
        let updated = sqlx::query(
            "UPDATE sse_notifications SET read = TRUE WHERE id = $1 AND user_id = $2 AND NOT read",
        )
        .bind(to_i64(id.get()))
        .bind(user.as_str())
        .execute(&mut *tx)
        .await
        .map_err(store_error)?
        .rows_affected();
        if updated == 0 {
            let exists: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM sse_notifications WHERE id = $1 AND user_id = $2",
            )
            .bind(to_i64(id.get()))
            .bind(user.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(store_error)?;
            tx.rollback().await.map_err(store_error)?;
            return match exists {
                Some(_) => Ok(None),
                None => Err(StoreError::NotFound { id }),
            };
        }
        let change = self
            .record(&mut tx, user, ChangeKind::Read { ids: vec![id] }, -1)
            .await?;
        tx.commit().await.map_err(store_error)?;
        Ok(Some(change))
    }

    async fn mark_all_read(&self, user: &UserId) -> Result<Option<Change>, StoreError> {
        let mut tx = self.begin().await?;
        let ids: Vec<i64> = sqlx::query_scalar(
            "UPDATE sse_notifications SET read = TRUE WHERE user_id = $1 AND NOT read RETURNING id",
        )
        .bind(user.as_str())
        .fetch_all(&mut *tx)
        .await
        .map_err(store_error)?;
        if ids.is_empty() {
            tx.rollback().await.map_err(store_error)?;
            return Ok(None);
        }
        let delta = -i64::try_from(ids.len()).unwrap_or(i64::MAX);
        let mut ids: Vec<NotificationId> = ids
            .into_iter()
            .map(|id| NotificationId(to_u64(id)))
            .collect();
        ids.sort_unstable();
        let change = self
            .record(&mut tx, user, ChangeKind::Read { ids }, delta)
            .await?;
        tx.commit().await.map_err(store_error)?;
        Ok(Some(change))
    }

    async fn delete(&self, user: &UserId, id: NotificationId) -> Result<Change, StoreError> {
        let mut tx = self.begin().await?;
        let was_read: Option<i64> = sqlx::query_scalar(
            "DELETE FROM sse_notifications WHERE id = $1 AND user_id = $2 RETURNING CAST(CASE WHEN read THEN 1 ELSE 0 END AS BIGINT)",
        )
            .bind(to_i64(id.get()))
            .bind(user.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(store_error)?;
        let Some(was_read) = was_read else {
            tx.rollback().await.map_err(store_error)?;
            return Err(StoreError::NotFound { id });
        };
        let delta = if was_read != 0 { 0 } else { -1 };
        let change = self
            .record(&mut tx, user, ChangeKind::Deleted { ids: vec![id] }, delta)
            .await?;
        tx.commit().await.map_err(store_error)?;
        Ok(change)
    }

    async fn delete_all_read(&self, user: &UserId) -> Result<Option<Change>, StoreError> {
        let mut tx = self.begin().await?;
        let ids: Vec<i64> = sqlx::query_scalar(
            "DELETE FROM sse_notifications WHERE user_id = $1 AND read RETURNING id",
        )
        .bind(user.as_str())
        .fetch_all(&mut *tx)
        .await
        .map_err(store_error)?;
        if ids.is_empty() {
            tx.rollback().await.map_err(store_error)?;
            return Ok(None);
        }
        let mut ids: Vec<NotificationId> = ids
            .into_iter()
            .map(|id| NotificationId(to_u64(id)))
            .collect();
        ids.sort_unstable();
        let change = self
            .record(&mut tx, user, ChangeKind::Deleted { ids }, 0)
            .await?;
        tx.commit().await.map_err(store_error)?;
        Ok(Some(change))
    }

    async fn since(
        &self,
        principal: &Principal,
        after: EventId,
        limit: usize,
    ) -> Result<Replay, StoreError> {
        let user = principal.user();
        let recipient = sqlx::query(
            "SELECT last_event_id, pruned_through FROM sse_recipients WHERE user_id = $1",
        )
        .bind(user.as_str())
        .fetch_optional(&self.reader)
        .await
        .map_err(store_error)?;
        let Some(recipient) = recipient else {
            return Ok(if after.get() == 0 {
                Replay::Changes(Vec::new())
            } else {
                Replay::HistoryGone { latest: None }
            });
        };
        let last: i64 = recipient.try_get(0).map_err(store_error)?;
        let pruned_through: i64 = recipient.try_get(1).map_err(store_error)?;
        let latest = (last > 0).then(|| EventId(to_u64(last)));
        let after_i64 = to_i64(after.get());
        if after_i64 > last || after_i64 < pruned_through {
            return Ok(Replay::HistoryGone { latest });
        }
        let rows = sqlx::query("SELECT id, at, unread_count, kind FROM sse_changes WHERE user_id = $1 AND id > $2 ORDER BY id LIMIT $3")
            .bind(user.as_str())
            .bind(after_i64)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.reader)
            .await
            .map_err(store_error)?;
        let changes = rows
            .iter()
            .map(|row| change(user, row))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(first) = changes.first() {
            // Pruned between the two queries, or older than the age limit
            // (and not deleted yet): part of what the client needs is gone.
            let expired = self
                .retention
                .age_limit()
                .is_some_and(|age| first.at.as_millis() < cutoff(age));
            if first.id.get() != after.get() + 1 || expired {
                return Ok(Replay::HistoryGone { latest });
            }
        }
        Ok(Replay::Changes(changes))
    }

    async fn last_event_id(&self, principal: &Principal) -> Result<Option<EventId>, StoreError> {
        let last: Option<i64> =
            sqlx::query_scalar("SELECT last_event_id FROM sse_recipients WHERE user_id = $1")
                .bind(principal.user().as_str())
                .fetch_optional(&self.reader)
                .await
                .map_err(store_error)?;
        Ok(last.filter(|id| *id > 0).map(|id| EventId(to_u64(id))))
    }
}

impl std::fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore")
            .field("backend", &self.backend)
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(sqlite_url("sqlite://a.db"), "sqlite://a.db?mode=rwc");
        assert_eq!(
            sqlite_url("sqlite://a.db?x=1"),
            "sqlite://a.db?x=1&mode=rwc"
        );
        assert_eq!(sqlite_url("sqlite::memory:"), "sqlite::memory:");
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }
}
