//! The event log on SQL: `sse_log` and its head row (see [`SqlStore`] for
//! why positions are dense and visible in order).

use async_trait::async_trait;
use bytes::Bytes;
use sqlx::any::AnyRow;
use sqlx::{Any, AssertSqlSafe, Row, Transaction};
use sse_core::log::{Epoch, LogRecord, Replay, check_appendable};
use sse_core::{Audience, Cursor, Event, EventLog, Principal, StoreError, Timestamp};

use crate::error::{backend_error, store_error};
use crate::store::{to_i64, to_u64};
use crate::{Backend, SqlStore};

/// Appends prune the log when their positions cross a multiple of this.
const PRUNE_EVERY: u64 = 128;

/// Rows per multi-row `INSERT` (4 parameters each, well under both
/// databases' limits).
const INSERT_CHUNK: usize = 500;

/// `rows` tuples of `width` placeholders for a multi-row statement:
/// `($1, $2), ($3, $4), ...` on PostgreSQL, `(?, ?), (?, ?), ...` on
/// SQLite, which binds `?` by position but looks each `$n` up by name (a
/// scan per placeholder: a 7,000-parameter statement took 300 ms to
/// prepare).
pub(crate) fn placeholders(backend: Backend, rows: usize, width: usize) -> String {
    let mut sql = String::with_capacity(rows * width * 5);
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 0..width {
            if column > 0 {
                sql.push_str(", ");
            }
            match backend {
                Backend::Sqlite => sql.push('?'),
                Backend::Postgres => {
                    sql.push('$');
                    sql.push_str(&(row * width + column + 1).to_string());
                }
            }
        }
        sql.push(')');
    }
    sql
}

/// The head row: the epoch, the newest position and how far the log was
/// pruned.
pub(crate) struct Head {
    pub(crate) epoch: Epoch,
    pub(crate) position: u64,
    pub(crate) pruned_through: u64,
}

fn head_of(row: &AnyRow) -> Result<Head, StoreError> {
    let epoch: String = row.try_get(0).map_err(store_error)?;
    Ok(Head {
        epoch: epoch.parse().map_err(|_| {
            StoreError::Backend(format!("sse_log_head holds no epoch: {epoch:?}").into())
        })?,
        position: to_u64(row.try_get(1).map_err(store_error)?),
        pruned_through: to_u64(row.try_get(2).map_err(store_error)?),
    })
}

fn no_head() -> StoreError {
    StoreError::Backend(
        "the event log has no head row: apply the migrations (with their data steps), see sse_sqlx::migrate"
            .into(),
    )
}

impl SqlStore {
    /// Appends `events` inside `tx`, a transaction of this store's
    /// ([`SqlStore::begin`]), so that they commit with whatever else the
    /// transaction writes — your own rows, say (see `sse_core::guide`).
    /// Returns each event with its audience and its position as `id:`:
    /// after the commit, hand them as they are to
    /// [`Notifier::deliver`](sse_core::Notifier::deliver) for live delivery.
    ///
    /// Call it last in the transaction: taking the positions locks the
    /// log's head row until the commit, so every other publisher waits for
    /// this transaction from then on.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use sse_core::{Audience, Event, InMemoryHub, Notifier};
    /// use sse_sqlx::SqlStore;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = SqlStore::connect("sqlite::memory:").await?;
    /// let notifier = Notifier::with_store(Arc::new(store.clone()), Arc::new(InMemoryHub::new()));
    /// let mut tx = store.begin().await?;
    /// // … your own INSERT / UPDATE statements on `&mut *tx` …
    /// let paid = Event::builder().event("invoice.paid").data("{\"id\":7}").build()?;
    /// let stored = store.append_in(&mut tx, &[(Audience::user("bob"), paid)]).await?;
    /// tx.commit().await?;
    /// assert!(stored[0].1.cursor().is_some());
    /// notifier.deliver(&stored).await?; // to bob's open streams
    /// # Ok(()) }
    /// ```
    pub async fn append_in(
        &self,
        tx: &mut Transaction<'static, Any>,
        events: &[(Audience, Event)],
    ) -> Result<Vec<(Audience, Event)>, StoreError> {
        let stored = self.append_events_in(tx, events).await?;
        Ok(events
            .iter()
            .map(|(audience, _)| audience.clone())
            .zip(stored)
            .collect())
    }

    /// [`append_in`](Self::append_in), the events alone.
    pub(crate) async fn append_events_in(
        &self,
        tx: &mut Transaction<'static, Any>,
        events: &[(Audience, Event)],
    ) -> Result<Vec<Event>, StoreError> {
        check_appendable(events)?;
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let count = events.len() as u64;
        // Taking the positions locks the head row until commit: appenders
        // commit one after another, in position order.
        let row = sqlx::query(
            "UPDATE sse_log_head SET pos = pos + $1 WHERE id = 1 RETURNING epoch, pos, pruned_through",
        )
        .bind(to_i64(count))
        .fetch_optional(&mut **tx)
        .await
        .map_err(store_error)?
        .ok_or_else(no_head)?;
        let head = head_of(&row)?;
        let first = head.position - count + 1;
        let at = Timestamp::now().as_millis();
        let mut stored = Vec::with_capacity(events.len());
        let mut rows = Vec::with_capacity(events.len());
        for (offset, (audience, event)) in events.iter().enumerate() {
            let position = first + offset as u64;
            let event = event
                .with_cursor(head.epoch.at(position))
                .map_err(backend_error)?;
            let frame = std::str::from_utf8(event.frame())
                .map_err(backend_error)?
                .to_owned();
            rows.push((position, audience.key().unwrap_or_default(), frame));
            stored.push(event);
        }
        for chunk in rows.chunks(INSERT_CHUNK) {
            let sql = format!(
                "INSERT INTO sse_log (pos, audience, at, frame) VALUES {}",
                placeholders(self.backend, chunk.len(), 4)
            );
            // Only placeholders are formatted into the statement.
            let mut insert = sqlx::query(AssertSqlSafe(sql));
            for (position, audience, frame) in chunk {
                insert = insert
                    .bind(to_i64(*position))
                    .bind(audience.as_str())
                    .bind(at)
                    .bind(frame.as_str());
            }
            insert.execute(&mut **tx).await.map_err(store_error)?;
        }
        let crosses = (first - 1) / PRUNE_EVERY != head.position / PRUNE_EVERY;
        if crosses
            && (self.retention.events_limit().is_some() || self.retention.age_limit().is_some())
        {
            self.prune_in(tx, &head).await?;
        }
        Ok(stored)
    }

    /// Deletes what the retention no longer keeps; returns how many events.
    /// Appends do it as they go; run it periodically with an age limit and
    /// little traffic.
    pub async fn prune(&self) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        let row = sqlx::query("SELECT epoch, pos, pruned_through FROM sse_log_head WHERE id = 1")
            .fetch_optional(&mut *tx)
            .await
            .map_err(store_error)?
            .ok_or_else(no_head)?;
        let deleted = self.prune_in(&mut tx, &head_of(&row)?).await?;
        tx.commit().await.map_err(store_error)?;
        Ok(deleted)
    }

    async fn prune_in(
        &self,
        tx: &mut Transaction<'static, Any>,
        head: &Head,
    ) -> Result<u64, StoreError> {
        let floor = self.floor(&mut **tx, head).await?;
        if floor <= head.pruned_through {
            return Ok(0);
        }
        let deleted = sqlx::query("DELETE FROM sse_log WHERE pos <= $1")
            .bind(to_i64(floor))
            .execute(&mut **tx)
            .await
            .map_err(store_error)?
            .rows_affected();
        sqlx::query("UPDATE sse_log_head SET pruned_through = $1 WHERE id = 1")
            .bind(to_i64(floor))
            .execute(&mut **tx)
            .await
            .map_err(store_error)?;
        Ok(deleted)
    }

    /// The highest position the retention no longer keeps (whether or not
    /// it was deleted yet): replays from below it are `HistoryGone`.
    async fn floor<'c, E>(&self, executor: E, head: &Head) -> Result<u64, StoreError>
    where
        E: sqlx::Executor<'c, Database = Any>,
    {
        let mut floor = head.pruned_through;
        if let Some(max) = self.retention.events_limit() {
            floor = floor.max(head.position.saturating_sub(max));
        }
        if let Some(age) = self.retention.age_limit() {
            let cutoff =
                Timestamp::now().as_millis() - i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
            let expired: Option<i64> =
                sqlx::query_scalar("SELECT MAX(pos) FROM sse_log WHERE at < $1 AND pos > $2")
                    .bind(cutoff)
                    .bind(to_i64(head.pruned_through))
                    .fetch_one(executor)
                    .await
                    .map_err(store_error)?;
            floor = floor.max(expired.map_or(0, to_u64));
        }
        Ok(floor)
    }

    async fn head_row(&self) -> Result<Head, StoreError> {
        let row = sqlx::query("SELECT epoch, pos, pruned_through FROM sse_log_head WHERE id = 1")
            .fetch_optional(&self.reader)
            .await
            .map_err(store_error)?
            .ok_or_else(no_head)?;
        head_of(&row)
    }
}

fn event_of(frame: String) -> Result<Event, StoreError> {
    Event::from_encoded(Bytes::from(frame)).map_err(backend_error)
}

#[async_trait]
impl EventLog for SqlStore {
    async fn append(&self, events: &[(Audience, Event)]) -> Result<Vec<Event>, StoreError> {
        let mut tx = self.begin().await?;
        let stored = self.append_events_in(&mut tx, events).await?;
        tx.commit().await.map_err(store_error)?;
        Ok(stored)
    }

    async fn since(
        &self,
        principal: &Principal,
        after: Cursor,
        limit: usize,
    ) -> Result<Replay, StoreError> {
        let head = self.head_row().await?;
        let head_cursor = head.epoch.at(head.position);
        if after.epoch() != head.epoch || after.position() > head.position {
            return Ok(Replay::HistoryGone { head: head_cursor });
        }
        if after.position() < self.floor(&self.reader, &head).await? {
            return Ok(Replay::HistoryGone { head: head_cursor });
        }
        let keys: Vec<String> = principal
            .durable_audiences()
            .filter_map(|audience| audience.key())
            .collect();
        let placeholders: Vec<String> = (0..keys.len()).map(|i| format!("${}", i + 4)).collect();
        let sql = format!(
            "SELECT pos, frame FROM sse_log WHERE pos > $1 AND pos <= $2 AND audience IN ({}) ORDER BY pos LIMIT $3",
            placeholders.join(", ")
        );
        // Only placeholders are formatted into the statement.
        let mut query = sqlx::query(AssertSqlSafe(sql))
            .bind(to_i64(after.position()))
            .bind(to_i64(head.position))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX));
        for key in &keys {
            query = query.bind(key.as_str());
        }
        let rows = query.fetch_all(&self.reader).await.map_err(store_error)?;
        let full = rows.len() >= limit;
        let mut events = Vec::with_capacity(rows.len());
        for row in rows {
            events.push(event_of(row.try_get(1).map_err(store_error)?)?);
        }
        let head = match (full, events.last().and_then(Event::cursor)) {
            (true, Some(last)) => last,
            _ => head_cursor,
        };
        Ok(Replay::Events { events, head })
    }

    async fn read(&self, after: Cursor, limit: usize) -> Result<Vec<LogRecord>, StoreError> {
        let head = self.head_row().await?;
        if after.epoch() != head.epoch {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT pos, audience, frame FROM sse_log WHERE pos > $1 ORDER BY pos LIMIT $2",
        )
        .bind(to_i64(after.position()))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.reader)
        .await
        .map_err(store_error)?;
        let mut records = Vec::with_capacity(rows.len());
        for row in rows {
            let key: String = row.try_get(1).map_err(store_error)?;
            let audience = Audience::from_key(&key).ok_or_else(|| {
                StoreError::Backend(format!("sse_log holds an unknown audience {key:?}").into())
            })?;
            records.push(LogRecord {
                audience,
                event: event_of(row.try_get(2).map_err(store_error)?)?,
            });
        }
        Ok(records)
    }

    async fn head(&self) -> Result<Cursor, StoreError> {
        let head = self.head_row().await?;
        Ok(head.epoch.at(head.position))
    }
}
