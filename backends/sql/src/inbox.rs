//! The notification inbox on SQL: `sse_notifications` and the unread count
//! of `sse_recipients`, each change appended to the event log in the same
//! transaction.

use std::collections::BTreeMap;

use async_trait::async_trait;
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, Row, Transaction};
use sse_core::{
    Audience, Change, ChangeKind, NewNotification, Notification, NotificationId, NotificationStore,
    Page, PageRequest, StoreError, Timestamp, UserId,
};

use crate::error::{backend_error, store_error};
use crate::log::placeholders;
use crate::store::{to_i64, to_u64};
use crate::{Backend, SqlStore};

const COLUMNS: &str = "id, user_id, title, message, kind, action_url, \
    CAST(CASE WHEN read THEN 1 ELSE 0 END AS BIGINT), created_at, data";

fn notification(row: &AnyRow) -> Result<Notification, StoreError> {
    let mut new = NewNotification::new(
        row.try_get::<String, _>(1).map_err(store_error)?,
        row.try_get::<String, _>(2).map_err(store_error)?,
    )
    .message(row.try_get::<String, _>(3).map_err(store_error)?)
    .kind(row.try_get::<String, _>(4).map_err(store_error)?);
    new.action_url = row.try_get::<Option<String>, _>(5).map_err(store_error)?;
    new.data = row
        .try_get::<Option<String>, _>(8)
        .map_err(store_error)?
        .map(|json| serde_json::from_str(&json))
        .transpose()
        .map_err(backend_error)?;
    let mut notification = Notification::from_new(
        NotificationId(to_u64(row.try_get(0).map_err(store_error)?)),
        new,
        Timestamp::from_millis(row.try_get(7).map_err(store_error)?),
    );
    // Read as 0/1: sqlx's `Any` driver cannot decode SQLite booleans.
    notification.read = row.try_get::<i64, _>(6).map_err(store_error)? != 0;
    Ok(notification)
}

impl SqlStore {
    /// Adjusts `user`'s unread count by `delta` and returns the new count;
    /// locks the recipient's row until commit.
    async fn adjust_unread(
        &self,
        tx: &mut Transaction<'static, Any>,
        user: &UserId,
        delta: i64,
    ) -> Result<u64, StoreError> {
        let unread: i64 = sqlx::query_scalar(
            "INSERT INTO sse_recipients (user_id, unread_count) VALUES ($1, $2) \
             ON CONFLICT (user_id) DO UPDATE SET unread_count = sse_recipients.unread_count + $2 \
             RETURNING unread_count",
        )
        .bind(user.as_str())
        .bind(delta)
        .fetch_one(&mut **tx)
        .await
        .map_err(store_error)?;
        Ok(to_u64(unread))
    }

    /// Records a change for `user` inside `tx`: adjusts the unread count
    /// (locking the recipient's row, which orders one user's writers) and
    /// appends the change to the user's audience in the log.
    async fn record(
        &self,
        tx: &mut Transaction<'static, Any>,
        user: &UserId,
        kind: ChangeKind,
        unread_delta: i64,
    ) -> Result<Change, StoreError> {
        let unread = self.adjust_unread(tx, user, unread_delta).await?;
        self.append_changes(tx, vec![(user.clone(), kind, unread)])
            .await?
            .pop()
            .ok_or_else(|| StoreError::Backend("the log stored nothing".into()))
    }

    async fn append_changes(
        &self,
        tx: &mut Transaction<'static, Any>,
        changes: Vec<(UserId, ChangeKind, u64)>,
    ) -> Result<Vec<Change>, StoreError> {
        let events = changes
            .iter()
            .map(|(user, kind, unread)| {
                Change::encode(kind, *unread).map(|event| (Audience::User(user.clone()), event))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend_error)?;
        let stored = self.append_events_in(tx, &events).await?;
        let at = Timestamp::now();
        changes
            .into_iter()
            .zip(stored)
            .map(|((user, kind, unread), event)| {
                Change::from_appended(user, kind, unread, at, event).map_err(backend_error)
            })
            .collect()
    }

    async fn insert_notification(
        &self,
        tx: &mut Transaction<'static, Any>,
        new: NewNotification,
        created_at: Timestamp,
    ) -> Result<Notification, StoreError> {
        let data = new
            .data
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(backend_error)?;
        let id: i64 = notifications_insert(
            self.backend,
            std::slice::from_ref(&new),
            vec![data],
            created_at,
            None,
        )
        .fetch_one(&mut **tx)
        .await
        .map_err(store_error)?
        .try_get(0)
        .map_err(store_error)?;
        Ok(Notification::from_new(
            NotificationId(to_u64(id)),
            new,
            created_at,
        ))
    }
}

/// Rows per multi-row statement: at up to 8 parameters a row, well under
/// SQLite's 32,766 and PostgreSQL's 65,535 parameters.
const ROWS_PER_STATEMENT: usize = 1_000;

impl SqlStore {
    /// [`adjust_unread`](Self::adjust_unread) for many recipients in one
    /// statement per 1,000. Rows are locked in user order (the map's), as
    /// every writer takes them, so concurrent batches cannot deadlock.
    async fn adjust_unread_many(
        &self,
        tx: &mut Transaction<'static, Any>,
        deltas: &BTreeMap<UserId, i64>,
    ) -> Result<BTreeMap<UserId, u64>, StoreError> {
        let deltas: Vec<(&UserId, &i64)> = deltas.iter().collect();
        let mut after = BTreeMap::new();
        for chunk in deltas.chunks(ROWS_PER_STATEMENT) {
            let returning = match self.backend {
                Backend::Postgres => " RETURNING user_id, unread_count",
                Backend::Sqlite => "",
            };
            let sql = format!(
                "INSERT INTO sse_recipients (user_id, unread_count) VALUES {} \
                 ON CONFLICT (user_id) DO UPDATE SET unread_count = sse_recipients.unread_count + excluded.unread_count{returning}",
                placeholders(self.backend, chunk.len(), 2)
            );
            // Only placeholders are formatted into the statement.
            let mut upsert = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (user, delta) in chunk {
                upsert = upsert.bind(user.as_str()).bind(**delta);
            }
            match self.backend {
                Backend::Postgres => {
                    for row in upsert.fetch_all(&mut **tx).await.map_err(store_error)? {
                        let user: String = row.try_get(0).map_err(store_error)?;
                        let count: i64 = row.try_get(1).map_err(store_error)?;
                        after.insert(UserId::from(user), to_u64(count));
                    }
                }
                Backend::Sqlite => {
                    upsert.execute(&mut **tx).await.map_err(store_error)?;
                    after.extend(unread_counts_sqlite(tx, chunk).await?);
                }
            }
        }
        Ok(after)
    }

    /// Inserts notifications (unread: the column's default), 1,000 rows a
    /// statement; returns them with their ids, in the order given.
    async fn insert_notifications(
        &self,
        tx: &mut Transaction<'static, Any>,
        new: Vec<NewNotification>,
        created_at: Timestamp,
    ) -> Result<Vec<Notification>, StoreError> {
        let mut stored = Vec::with_capacity(new.len());
        let mut rest = new.into_iter().peekable();
        while rest.peek().is_some() {
            let chunk: Vec<NewNotification> = rest.by_ref().take(ROWS_PER_STATEMENT).collect();
            let data = chunk
                .iter()
                .map(|new| new.data.as_ref().map(serde_json::to_string).transpose())
                .collect::<Result<Vec<_>, _>>()
                .map_err(backend_error)?;
            let mut ids = match self.backend {
                Backend::Postgres => {
                    insert_returning_ids_postgres(tx, &chunk, data, created_at).await?
                }
                Backend::Sqlite => insert_numbered_sqlite(tx, &chunk, data, created_at).await?,
            };
            if ids.len() != chunk.len() {
                return Err(StoreError::Backend(
                    format!(
                        "inserted {} notifications, got {} ids",
                        chunk.len(),
                        ids.len()
                    )
                    .into(),
                ));
            }
            // Ids grow in row order; RETURNING need not keep that order.
            ids.sort_unstable();
            stored.extend(chunk.into_iter().zip(ids).map(|(new, id)| {
                Notification::from_new(NotificationId(to_u64(id)), new, created_at)
            }));
        }
        Ok(stored)
    }
}

/// The multi-row insert of `chunk` (its `data` already JSON): under `ids`
/// when given, else `RETURNING` the ids the database gives.
fn notifications_insert<'q>(
    backend: Backend,
    chunk: &'q [NewNotification],
    data: Vec<Option<String>>,
    created_at: Timestamp,
    ids: Option<&[i64]>,
) -> Query<'q, Any, AnyArguments> {
    let (id_column, returning) = match ids {
        Some(_) => ("id, ", ""),
        None => ("", " RETURNING id"),
    };
    let sql = format!(
        "INSERT INTO sse_notifications ({id_column}user_id, title, message, kind, action_url, created_at, data) \
         VALUES {}{returning}",
        placeholders(backend, chunk.len(), 7 + usize::from(ids.is_some()))
    );
    // Only placeholders and column names are formatted into the statement.
    let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
    for (i, (new, data)) in chunk.iter().zip(data).enumerate() {
        if let Some(id) = ids.and_then(|ids| ids.get(i)) {
            insert = insert.bind(*id);
        }
        insert = insert
            .bind(new.user.as_str())
            .bind(new.title.as_str())
            .bind(new.message.as_str())
            .bind(new.kind.as_str())
            .bind(new.action_url.as_deref())
            .bind(created_at.as_millis())
            .bind(data);
    }
    insert
}

/// Inserts `chunk` and returns the ids PostgreSQL gave it.
async fn insert_returning_ids_postgres(
    tx: &mut Transaction<'static, Any>,
    chunk: &[NewNotification],
    data: Vec<Option<String>>,
    created_at: Timestamp,
) -> Result<Vec<i64>, StoreError> {
    let insert = notifications_insert(Backend::Postgres, chunk, data, created_at, None);
    let rows = insert.fetch_all(&mut **tx).await.map_err(store_error)?;
    rows.iter()
        .map(|row| row.try_get::<i64, _>(0))
        .collect::<Result<Vec<_>, _>>()
        .map_err(store_error)
}

/// Inserts `chunk` under ids this transaction numbers itself: one past
/// the largest id the table has ever given (`AUTOINCREMENT`'s counter, or
/// its largest row if the counter is missing), then on.
///
/// Why not `RETURNING id`, as on PostgreSQL: sqlx runs each SQLite
/// connection on a thread of its own and hands every returned row across
/// to the async task by itself, two context switches a row; a batch of
/// 1,000 spent more time in those than in SQLite. The numbering is safe
/// because the transaction began `IMMEDIATE`: no other writer runs until
/// it commits, and the insert fails (and the batch with it) rather than
/// overwrite if an id were taken.
async fn insert_numbered_sqlite(
    tx: &mut Transaction<'static, Any>,
    chunk: &[NewNotification],
    data: Vec<Option<String>>,
    created_at: Timestamp,
) -> Result<Vec<i64>, StoreError> {
    let last: i64 = sqlx::query_scalar(
        "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'sse_notifications'), 0), \
         COALESCE((SELECT MAX(id) FROM sse_notifications), 0))",
    )
    .fetch_one(&mut **tx)
    .await
    .map_err(store_error)?;
    let ids: Vec<i64> = (1..=chunk.len() as i64)
        .map(|offset| last.checked_add(offset))
        .collect::<Option<_>>()
        .ok_or_else(|| StoreError::Backend("notification ids are exhausted".into()))?;
    let insert = notifications_insert(Backend::Sqlite, chunk, data, created_at, Some(&ids));
    insert.execute(&mut **tx).await.map_err(store_error)?;
    Ok(ids)
}

/// The unread counts of `users`, read back as one JSON row for the reason
/// [`insert_numbered_sqlite`] gives.
async fn unread_counts_sqlite(
    tx: &mut Transaction<'static, Any>,
    users: &[(&UserId, &i64)],
) -> Result<Vec<(UserId, u64)>, StoreError> {
    let sql = format!(
        "SELECT json_group_array(json_array(user_id, unread_count)) FROM sse_recipients \
         WHERE user_id IN ({})",
        vec!["?"; users.len()].join(", ")
    );
    // Only placeholders are formatted into the statement.
    let mut select = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql));
    for (user, _) in users {
        select = select.bind(user.as_str());
    }
    let json = select.fetch_one(&mut **tx).await.map_err(store_error)?;
    let counts: Vec<(String, i64)> = serde_json::from_str(&json).map_err(backend_error)?;
    Ok(counts
        .into_iter()
        .map(|(user, count)| (UserId::from(user), to_u64(count)))
        .collect())
}

fn sorted_ids(ids: Vec<i64>) -> Vec<NotificationId> {
    let mut ids: Vec<NotificationId> = ids
        .into_iter()
        .map(|id| NotificationId(to_u64(id)))
        .collect();
    ids.sort_unstable();
    ids
}

#[async_trait]
impl NotificationStore for SqlStore {
    async fn create(&self, new: NewNotification) -> Result<Change, StoreError> {
        new.validate_with(&self.policy)?;
        let user = new.user.clone();
        let mut tx = self.begin().await?;
        let notification = self
            .insert_notification(&mut tx, new, Timestamp::now())
            .await?;
        let change = self
            .record(&mut tx, &user, ChangeKind::Created { notification }, 1)
            .await?;
        tx.commit().await.map_err(store_error)?;
        Ok(change)
    }

    /// One transaction for the whole batch: the notifications, one unread
    /// update per recipient (taken in a fixed order, so concurrent batches
    /// cannot deadlock) and one append of every change.
    async fn create_many(&self, new: Vec<NewNotification>) -> Result<Vec<Change>, StoreError> {
        for notification in &new {
            notification.validate_with(&self.policy)?;
        }
        if new.is_empty() {
            return Ok(Vec::new());
        }
        let mut per_user: BTreeMap<UserId, i64> = BTreeMap::new();
        for notification in &new {
            *per_user.entry(notification.user.clone()).or_default() += 1;
        }
        let mut tx = self.begin().await?;
        // Each recipient's count after the batch, counted back to before it.
        let mut unread = self.adjust_unread_many(&mut tx, &per_user).await?;
        for (user, added) in &per_user {
            if let Some(count) = unread.get_mut(user) {
                *count -= to_u64(*added);
            }
        }
        let stored = self
            .insert_notifications(&mut tx, new, Timestamp::now())
            .await?;
        let changes = stored
            .into_iter()
            .map(|notification| {
                let count = unread.entry(notification.user.clone()).or_default();
                *count += 1;
                (
                    notification.user.clone(),
                    ChangeKind::Created { notification },
                    *count,
                )
            })
            .collect();
        let changes = self.append_changes(&mut tx, changes).await?;
        tx.commit().await.map_err(store_error)?;
        Ok(changes)
    }

    async fn list(&self, user: &UserId, page: PageRequest) -> Result<Page, StoreError> {
        let before = page.before_id().map_or(i64::MAX, |id| to_i64(id.get()));
        let limit = i64::try_from(page.limit()).unwrap_or(100);
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM sse_notifications WHERE user_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
        )))
        .bind(user.as_str())
        .bind(before)
        .bind(limit + 1)
        .fetch_all(&self.reader)
        .await
        .map_err(store_error)?;
        let items = rows
            .iter()
            .map(notification)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_overfetch(items, page))
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
        let change = self
            .record(
                &mut tx,
                user,
                ChangeKind::Read {
                    ids: sorted_ids(ids),
                },
                delta,
            )
            .await?;
        tx.commit().await.map_err(store_error)?;
        Ok(Some(change))
    }

    async fn delete(&self, user: &UserId, id: NotificationId) -> Result<Change, StoreError> {
        let mut tx = self.begin().await?;
        let was_read: Option<i64> = sqlx::query_scalar(
            "DELETE FROM sse_notifications WHERE id = $1 AND user_id = $2 \
             RETURNING CAST(CASE WHEN read THEN 1 ELSE 0 END AS BIGINT)",
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
        let change = self
            .record(
                &mut tx,
                user,
                ChangeKind::Deleted {
                    ids: sorted_ids(ids),
                },
                0,
            )
            .await?;
        tx.commit().await.map_err(store_error)?;
        Ok(Some(change))
    }
}
