use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;

use super::{Cursor, Epoch, EventLog, LogRecord, Replay, Retention, check_appendable};
use crate::{Audience, Event, Principal, StoreError, Timestamp};

/// The default [`EventLog`]: the history in process memory.
///
/// Appends take one lock, briefly (no await inside), which is what makes
/// positions dense and visible in order. Each durable audience keeps the
/// positions of its events in its own index, so a replay visits only the
/// principal's events, never the whole history.
///
/// Everything is lost when the process exits; a new log has a new epoch,
/// so clients holding a cursor from before get a `reset` rather than
/// unrelated events. Use `sse-sqlx` or `sse-redis` to persist. Cloning
/// gives another handle to the same log.
///
/// ```
/// use sse_core::{Audience, Event, EventLog, InMemoryLog, Retention};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let log = InMemoryLog::with_retention(Retention::default().max_events(1_000));
/// let stored = log.append(&[(Audience::Everyone, Event::json(&"deploy done")?)]).await?;
/// assert_eq!(stored[0].cursor(), Some(log.head().await?));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct InMemoryLog {
    inner: Arc<Inner>,
}

struct Inner {
    epoch: Epoch,
    retention: Retention,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The newest position (0 when nothing was appended).
    head: u64,
    /// Every position up to this one is no longer kept.
    pruned_through: u64,
    /// Positions `pruned_through + 1 ..= head`, in order.
    records: VecDeque<Stored>,
    /// Each durable audience's positions, ascending.
    by_audience: HashMap<String, VecDeque<u64>>,
}

struct Stored {
    audience: Audience,
    key: String,
    event: Event,
    at: Timestamp,
}

impl Default for InMemoryLog {
    fn default() -> Self {
        Self::new()
    }
}

impl InMemoryLog {
    /// An empty log with the default [`Retention`] and a fresh epoch.
    pub fn new() -> Self {
        Self::with_retention(Retention::default())
    }

    /// An empty log keeping `retention` worth of history.
    pub fn with_retention(retention: Retention) -> Self {
        Self {
            inner: Arc::new(Inner {
                epoch: Epoch::random(),
                retention,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// This log's history name.
    pub fn epoch(&self) -> Epoch {
        self.inner.epoch
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics under this lock; recover rather than spread a poison.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// [`EventLog::append`] without the `async`: for stores that append
    /// while holding a lock of their own (it must not be held across an
    /// await), as [`InMemoryStore`](crate::InMemoryStore) does.
    pub fn append_now(&self, events: &[(Audience, Event)]) -> Result<Vec<Event>, StoreError> {
        check_appendable(events)?;
        let now = Timestamp::now();
        let mut state = self.lock();
        let mut stored = Vec::with_capacity(events.len());
        for (audience, event) in events {
            let position = state.head + 1;
            let event = event
                .with_cursor(self.inner.epoch.at(position))
                .map_err(|e| StoreError::Backend(Box::new(e)))?;
            // Durable audiences always have a key (checked above).
            let key = audience.key().unwrap_or_default();
            state
                .by_audience
                .entry(key.clone())
                .or_default()
                .push_back(position);
            state.records.push_back(Stored {
                audience: audience.clone(),
                key,
                event: event.clone(),
                at: now,
            });
            state.head = position;
            stored.push(event);
        }
        state.prune(&self.inner.retention, now);
        Ok(stored)
    }

    /// How many events are kept now.
    pub fn len(&self) -> usize {
        self.lock().records.len()
    }

    /// Whether no event is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl State {
    fn prune(&mut self, retention: &Retention, now: Timestamp) {
        while let Some(front) = self.records.front() {
            let over_count = retention
                .events_limit()
                .is_some_and(|max| self.records.len() as u64 > max);
            let too_old = retention
                .age_limit()
                .is_some_and(|age| front.at.older_than(age, now));
            if !(over_count || too_old) {
                break;
            }
            let position = self.pruned_through + 1;
            if let Some(gone) = self.records.pop_front()
                && let Some(positions) = self.by_audience.get_mut(&gone.key)
            {
                if positions.front() == Some(&position) {
                    positions.pop_front();
                }
                if positions.is_empty() {
                    self.by_audience.remove(&gone.key);
                }
            }
            self.pruned_through = position;
        }
    }

    fn record(&self, position: u64) -> Option<&Stored> {
        let index = position.checked_sub(self.pruned_through + 1)?;
        self.records.get(usize::try_from(index).ok()?)
    }
}

#[async_trait]
impl EventLog for InMemoryLog {
    async fn append(&self, events: &[(Audience, Event)]) -> Result<Vec<Event>, StoreError> {
        self.append_now(events)
    }

    async fn since(
        &self,
        principal: &Principal,
        after: Cursor,
        limit: usize,
    ) -> Result<Replay, StoreError> {
        let mut state = self.lock();
        state.prune(&self.inner.retention, Timestamp::now());
        let head = self.inner.epoch.at(state.head);
        if after.epoch() != self.inner.epoch
            || after.position() > state.head
            || after.position() < state.pruned_through
        {
            return Ok(Replay::HistoryGone { head });
        }
        // Each audience's positions after `after`, merged in order.
        let mut lists: Vec<std::collections::vec_deque::Iter<'_, u64>> = principal
            .durable_audiences()
            .filter_map(|audience| state.by_audience.get(&audience.key()?))
            .map(|positions| {
                let start = positions.partition_point(|p| *p <= after.position());
                positions.range(start..)
            })
            .collect();
        let mut heads: Vec<Option<u64>> = lists.iter_mut().map(|l| l.next().copied()).collect();
        let mut events = Vec::new();
        while events.len() < limit {
            let Some((i, position)) = heads
                .iter()
                .enumerate()
                .filter_map(|(i, p)| p.map(|p| (i, p)))
                .min_by_key(|(_, p)| *p)
            else {
                break;
            };
            heads[i] = lists[i].next().copied();
            if let Some(stored) = state.record(position) {
                events.push(stored.event.clone());
            }
        }
        let more = heads.iter().any(Option::is_some);
        let head = match (more, events.last().and_then(Event::cursor)) {
            (true, Some(last)) => last,
            _ => head,
        };
        Ok(Replay::Events { events, head })
    }

    async fn read(&self, after: Cursor, limit: usize) -> Result<Vec<LogRecord>, StoreError> {
        let state = self.lock();
        if after.epoch() != self.inner.epoch {
            return Ok(Vec::new());
        }
        let first = after.position().max(state.pruned_through) + 1;
        Ok((first..=state.head)
            .take(limit)
            .filter_map(|position| state.record(position))
            .map(|stored| LogRecord {
                audience: stored.audience.clone(),
                event: stored.event.clone(),
            })
            .collect())
    }

    async fn head(&self) -> Result<Cursor, StoreError> {
        Ok(self.inner.epoch.at(self.lock().head))
    }
}

impl std::fmt::Debug for InMemoryLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryLog")
            .field("epoch", &self.inner.epoch)
            .field("retention", &self.inner.retention)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u32) -> Event {
        Event::json(&n).unwrap()
    }

    #[tokio::test]
    async fn retention_by_count_prunes_the_oldest_and_their_index_entries() {
        let log = InMemoryLog::with_retention(Retention::unlimited().max_events(3));
        let start = log.head().await.unwrap();
        for n in 0..5 {
            log.append(&[(Audience::user(format!("u{n}")), event(n))])
                .await
                .unwrap();
        }
        assert_eq!(log.len(), 3);
        assert_eq!(log.lock().by_audience.len(), 3);
        let gone = log.since(&Principal::new("u4"), start, 10).await.unwrap();
        assert!(matches!(gone, Replay::HistoryGone { .. }));
        let kept = log
            .since(&Principal::new("u4"), start.epoch().at(2), 10)
            .await
            .unwrap();
        assert!(matches!(kept, Replay::Events { ref events, .. } if events.len() == 1));
        let records = log.read(start, 10).await.unwrap();
        assert_eq!(records.len(), 3);
        assert_eq!(records[0].cursor().map(Cursor::position), Some(3));
    }

    #[tokio::test]
    async fn a_limited_replay_ends_at_its_last_event() {
        let log = InMemoryLog::new();
        let start = log.head().await.unwrap();
        for n in 0..5 {
            log.append(&[(Audience::Everyone, event(n))]).await.unwrap();
        }
        let Replay::Events { events, head } =
            log.since(&Principal::new("x"), start, 2).await.unwrap()
        else {
            panic!("history gone")
        };
        assert_eq!(events.len(), 2);
        assert_eq!(head.position(), 2);
    }
}
