//! Delivers durable events to a node's connections in log order, without
//! gaps: the node-level half of the argument in [`crate::log`].
//!
//! Durable events reach a node out of order (two publishers, two nodes, a
//! broker) and, rarely, not at all (a publisher crashed between appending
//! and publishing, a broker dropped a message). The sequencer holds an
//! event back until every position below it was delivered; a position that
//! has not arrived after a short wait is read from the log, or, without a
//! log, skipped with a [`RecvError::Missed`](super::RecvError::Missed) to
//! every connection so streams catch up from their own log. So each
//! connection receives durable events in position order, and a stream's
//! watermark always means "everything addressed to me up to here".
//!
//! Dispatching happens outside the lock: whoever finds the next position
//! ready takes every consecutive event and delivers them, while events
//! offered meanwhile wait in `pending` for that same dispatcher.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::Duration;

use crate::log::{Cursor, Epoch, EventLog};
use crate::{Audience, Event};

/// How many missing positions are read from the log at once.
const FILL_BATCH: usize = 1_000;

pub(super) struct Sequencer {
    state: Mutex<State>,
    log: OnceLock<Arc<dyn EventLog>>,
    started: tokio::sync::OnceCell<()>,
    gap_wait: Duration,
}

#[derive(Default)]
struct State {
    epoch: Option<Epoch>,
    /// The next position to deliver; `None` until the start is known.
    next: Option<u64>,
    pending: BTreeMap<u64, (Audience, Event)>,
    dispatching: bool,
    resolving: bool,
}

/// Delivers events to the node's connections; the index of an
/// `InMemoryHub`.
pub(super) trait Sink: Send + Sync + 'static {
    fn dispatch(&self, audience: &Audience, event: &Event);
    fn signal_missed(&self);
    fn sequencer(&self) -> &Sequencer;
}

impl Sequencer {
    pub(super) fn new(gap_wait: Duration) -> Self {
        Self {
            state: Mutex::new(State::default()),
            log: OnceLock::new(),
            started: tokio::sync::OnceCell::new(),
            gap_wait,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn attach(&self, log: Arc<dyn EventLog>) {
        // The first log wins: a hub serves one history.
        let _ = self.log.set(log);
    }

    /// Learns where the log's history stands before the first connection
    /// registers, so that no position a connection still needs is taken
    /// for already delivered. Without a log (or while it is unreachable)
    /// the first event offered sets the start.
    pub(super) async fn start(&self) {
        let Some(log) = self.log.get() else { return };
        let _ = self
            .started
            .get_or_try_init(|| async {
                let head = log.head().await.map_err(|error| {
                    tracing::warn!(%error, "reading the log head failed; starting from the first event seen");
                })?;
                let mut state = self.lock();
                if state.next.is_none() {
                    state.epoch = Some(head.epoch());
                    state.next = Some(head.position() + 1);
                    let next = head.position() + 1;
                    state.pending.retain(|position, _| *position >= next);
                }
                Ok::<(), ()>(())
            })
            .await;
    }

    /// Takes a durable event at `cursor` and delivers, in order, whatever
    /// it makes ready.
    pub(super) fn offer<S: Sink>(
        sink: &Arc<S>,
        audience: &Audience,
        event: &Event,
        cursor: Cursor,
    ) {
        let this = sink.sequencer();
        let mut state = this.lock();
        match state.epoch {
            Some(epoch) if epoch == cursor.epoch() => {}
            Some(_) => {
                // Another history (the log was replaced): whatever a stream
                // held is meaningless now; they all catch up from the log.
                tracing::warn!(
                    "durable events from another log epoch arrived; streams catch up from the log"
                );
                *state = State {
                    epoch: Some(cursor.epoch()),
                    next: Some(cursor.position()),
                    ..State::default()
                };
                drop(state);
                sink.signal_missed();
                state = this.lock();
            }
            None => state.epoch = Some(cursor.epoch()),
        }
        let next = *state.next.get_or_insert(cursor.position());
        if cursor.position() < next {
            return;
        }
        state
            .pending
            .insert(cursor.position(), (audience.clone(), event.clone()));
        Self::drain(sink, state);
    }

    /// Dispatches every consecutive event from `next`, unless another
    /// thread already is; arms the gap resolver if a gap remains.
    fn drain<'a, S: Sink>(sink: &'a Arc<S>, mut state: MutexGuard<'a, State>) {
        let this = sink.sequencer();
        if state.dispatching {
            return;
        }
        state.dispatching = true;
        loop {
            let mut ready = Vec::new();
            while let Some(next) = state.next {
                match state.pending.remove(&next) {
                    Some(item) => {
                        ready.push(item);
                        state.next = Some(next + 1);
                    }
                    None => break,
                }
            }
            if ready.is_empty() {
                break;
            }
            drop(state);
            for (audience, event) in &ready {
                sink.dispatch(audience, event);
            }
            state = this.lock();
        }
        state.dispatching = false;
        if !state.pending.is_empty()
            && !state.resolving
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            state.resolving = true;
            let gap = state.next;
            runtime.spawn(Self::resolve(Arc::downgrade(sink), gap));
        }
    }

    /// After the grace period, fills a gap that is still there from the log
    /// (or skips it, telling every connection to catch up).
    async fn resolve<S: Sink>(sink: Weak<S>, gap: Option<u64>) {
        let wait = match sink.upgrade() {
            Some(sink) => sink.sequencer().gap_wait,
            None => return,
        };
        tokio::time::sleep(wait).await;
        let Some(sink) = sink.upgrade() else { return };
        let this = sink.sequencer();
        let (missing, epoch) = {
            let mut state = this.lock();
            let first_pending = state.pending.keys().next().copied();
            match (state.next, first_pending, state.epoch) {
                (Some(next), Some(first), Some(epoch)) if Some(next) == gap && first > next => {
                    (next..first, epoch)
                }
                _ => {
                    // Filled meanwhile, or moved on: look again if needed.
                    state.resolving = false;
                    Self::drain(&sink, state);
                    return;
                }
            }
        };
        let mut filled = false;
        if let Some(log) = this.log.get() {
            let count = usize::try_from(missing.end - missing.start).unwrap_or(FILL_BATCH);
            match log
                .read(epoch.at(missing.start - 1), count.min(FILL_BATCH))
                .await
            {
                Ok(records) => {
                    filled = records
                        .first()
                        .and_then(|r| r.cursor())
                        .is_some_and(|c| c.position() == missing.start);
                    for record in records {
                        if let Some(cursor) = record.cursor() {
                            let mut state = this.lock();
                            if state.next.is_some_and(|next| cursor.position() >= next) {
                                state
                                    .pending
                                    .insert(cursor.position(), (record.audience, record.event));
                            }
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "filling a gap in live delivery from the log failed");
                }
            }
        }
        let mut state = this.lock();
        state.resolving = false;
        let first_pending = state.pending.keys().next().copied();
        if let (false, Some(next), Some(first)) = (filled, state.next, first_pending)
            && next == missing.start
            && first > next
        {
            // Lost for good (pruned, or no log): move on to what did
            // arrive, and let every stream catch up from its own log.
            tracing::warn!(
                from = next,
                to = first - 1,
                "positions never arrived; streams catch up from the log"
            );
            state.next = Some(first);
            drop(state);
            sink.signal_missed();
            state = this.lock();
        }
        Self::drain(&sink, state);
    }
}
