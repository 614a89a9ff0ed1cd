//! Delivers durable events to a node's connections in log order, without
//! gaps: the node-level half of the argument in [`crate::log`].
//!
//! Durable events reach a node out of order (two publishers, two nodes, a
//! broker) and, rarely, not at all (a publisher crashed between appending
//! and publishing, a broker dropped a message, the link was down). The
//! sequencer holds an event back until every position below it was
//! delivered; a position that has not arrived after a short wait is read
//! from the log, or, without a log, skipped with a
//! [`RecvError::Missed`](super::RecvError::Missed) to every connection so
//! streams catch up from their own log. So each connection receives
//! durable events in position order, and a stream's watermark always means
//! "everything addressed to me up to here".
//!
//! Two things are read from the log besides gaps:
//!
//! - **Its head.** [`Sequencer::catch_up`] reads everything between what
//!   was delivered and the log's head, and delivers it in order: after the
//!   broker's link was lost and regained, after the client dropped
//!   messages, and now and then on a quiet system (a committed event whose
//!   publish failed, or whose publisher died after its commit, reaches
//!   live streams this way, not only on their next reconnect). One read
//!   per node serves every stream; only a gap too long to read at once is
//!   left to each stream ([`RecvError::Missed`](super::RecvError::Missed)).
//! - **What a position above its head means.** A message that claims a
//!   position the log has not written (a forged frame on a broker anyone
//!   can publish to, or a message from another log) is never taken as
//!   proof that the positions below it are lost: a gap is skipped only
//!   when the log has moved past it, and a pending position still beyond
//!   the head after [`UNSEEN_CHECKS`] looks is dropped.
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
/// The longest stretch a catch-up reads itself; past it every stream
/// replays what it is missing on its own.
const MAX_CATCH_UP: u64 = 20_000;
/// How many times a gap is looked at while the log's head is below the
/// positions waiting above it, before those are dropped as not the log's.
pub(super) const UNSEEN_CHECKS: u32 = 10;

pub(super) struct Sequencer {
    state: Mutex<State>,
    log: OnceLock<Arc<dyn EventLog>>,
    started: tokio::sync::OnceCell<()>,
    /// One catch-up at a time.
    catching_up: tokio::sync::Mutex<()>,
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
    /// Reading the log's head to learn where delivery starts.
    starting: bool,
    /// Looks at the current gap that found the log's head below it.
    unseen_checks: u32,
}

/// Delivers events to the node's connections; the index of an
/// `InMemoryHub`.
pub(super) trait Sink: Send + Sync + 'static {
    fn dispatch(&self, audience: &Audience, event: &Event);
    fn signal_missed(&self);
    fn sequencer(&self) -> &Sequencer;
}

/// What a [`Sequencer::catch_up`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CatchUp {
    /// Everything up to the log's head was delivered (or was already).
    Delivered,
    /// The log could not be read; nothing changed.
    Failed,
    /// Too much was missing: every stream was told to replay by itself.
    LeftToStreams,
    /// No log is attached: every stream was told to replay by itself.
    NoLog,
}

impl Sequencer {
    pub(super) fn new(gap_wait: Duration) -> Self {
        Self {
            state: Mutex::new(State::default()),
            log: OnceLock::new(),
            started: tokio::sync::OnceCell::new(),
            catching_up: tokio::sync::Mutex::new(()),
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

    pub(super) fn log(&self) -> Option<&Arc<dyn EventLog>> {
        self.log.get()
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
                    retain_above(&mut state.pending, head);
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
            Some(_) if this.log.get().is_some() => {
                // Another history, says a message: only the log can say so.
                // Ask it; the event itself comes from the log if it is real.
                drop(state);
                Self::spawn_verify_epoch(sink);
                return;
            }
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
            // With a log, the log's head decides (see below).
            None if this.log.get().is_some() => {}
            None => state.epoch = Some(cursor.epoch()),
        }
        if state.next.is_none() && this.log.get().is_some() {
            // Where delivery starts comes from the log, never from a
            // message (which anyone who can publish could forge): keep it
            // until the log's head is known.
            state
                .pending
                .insert(cursor.position(), (audience.clone(), event.clone()));
            if !state.starting
                && let Ok(runtime) = tokio::runtime::Handle::try_current()
            {
                state.starting = true;
                let sink = Arc::downgrade(sink);
                runtime.spawn(async move {
                    let Some(sink) = sink.upgrade() else { return };
                    let this = sink.sequencer();
                    this.start().await;
                    let mut state = this.lock();
                    state.starting = false;
                    Self::drain(&sink, state);
                });
            }
            return;
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

    /// Reads the log's head: if its epoch is not the one delivered, the
    /// history was replaced and every stream catches up from the log.
    fn spawn_verify_epoch<S: Sink>(sink: &Arc<S>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let sink = Arc::downgrade(sink);
        runtime.spawn(async move {
            let Some(sink) = sink.upgrade() else { return };
            let this = sink.sequencer();
            let Some(log) = this.log.get() else { return };
            let Ok(head) = log.head().await else { return };
            let mut state = this.lock();
            if state.epoch.is_some_and(|epoch| epoch != head.epoch()) {
                tracing::warn!("the log's history was replaced; streams catch up from it");
                *state = State {
                    epoch: Some(head.epoch()),
                    next: Some(head.position() + 1),
                    ..State::default()
                };
                drop(state);
                sink.signal_missed();
            } else {
                tracing::warn!("a durable event from another log's history arrived; dropped");
            }
        });
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
                        state.unseen_checks = 0;
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
    /// (or skips it once the log has moved past it, telling every
    /// connection to catch up).
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
        let Some(log) = this.log.get() else {
            // No log to read it from: move on to what did arrive, and let
            // every stream catch up from its own log.
            let mut state = this.lock();
            state.resolving = false;
            if state.next == Some(missing.start) {
                tracing::warn!(
                    from = missing.start,
                    to = missing.end - 1,
                    "positions never arrived; streams catch up from the log"
                );
                state.next = Some(missing.end);
                drop(state);
                sink.signal_missed();
                state = this.lock();
            }
            Self::drain(&sink, state);
            return;
        };
        // The head first, then the read: a position the head already
        // covered that the read then lacks is gone for good (pruned); a
        // head below the gap means the log has written nothing there yet,
        // whatever waits above it. (Read the other way round, an append
        // between the two would pass for a pruned position.)
        let head = match log.head().await {
            Ok(head) => head,
            Err(error) => {
                tracing::warn!(%error, "reading the log head to fill a gap failed");
                let mut state = this.lock();
                state.resolving = false;
                Self::drain(&sink, state);
                return;
            }
        };
        if head.epoch() == epoch && head.position() < missing.start {
            let mut state = this.lock();
            state.resolving = false;
            if state.next == Some(missing.start) {
                // Look again, and drop what waits once it has stayed
                // beyond the head long enough.
                state.unseen_checks += 1;
                if state.unseen_checks >= UNSEEN_CHECKS {
                    let dropped = state.pending.len();
                    state.pending.clear();
                    state.unseen_checks = 0;
                    tracing::warn!(
                        dropped,
                        head = head.position(),
                        "durable events claimed positions the log never wrote (forged, or another log's); dropped"
                    );
                }
            }
            Self::drain(&sink, state);
            return;
        }
        let count = usize::try_from(missing.end - missing.start).unwrap_or(FILL_BATCH);
        let read = log
            .read(epoch.at(missing.start - 1), count.min(FILL_BATCH))
            .await;
        let filled = match read {
            Ok(records) => {
                let filled = records
                    .first()
                    .and_then(|r| r.cursor())
                    .is_some_and(|c| c.position() == missing.start);
                Self::take_records(this, records);
                filled
            }
            Err(error) => {
                tracing::warn!(%error, "filling a gap in live delivery from the log failed");
                let mut state = this.lock();
                state.resolving = false;
                Self::drain(&sink, state);
                return;
            }
        };
        let mut state = this.lock();
        state.resolving = false;
        let first_pending = state.pending.keys().next().copied();
        if let (false, Some(next), Some(first)) = (filled, state.next, first_pending)
            && next == missing.start
            && first > next
        {
            // The head covered it, the read lacks it: pruned, or a new
            // epoch. Move on to what did arrive, and let every stream catch
            // up from its log.
            tracing::warn!(
                from = next,
                to = first - 1,
                "positions are gone from the log; streams catch up from it"
            );
            state.next = Some(first);
            state.unseen_checks = 0;
            drop(state);
            sink.signal_missed();
            state = this.lock();
        }
        Self::drain(&sink, state);
    }

    /// Queues what the log returned, above what was delivered.
    fn take_records(this: &Sequencer, records: Vec<crate::log::LogRecord>) {
        let mut state = this.lock();
        for record in records {
            if let Some(cursor) = record.cursor()
                && state.epoch == Some(cursor.epoch())
                && state.next.is_some_and(|next| cursor.position() >= next)
            {
                state
                    .pending
                    .insert(cursor.position(), (record.audience, record.event));
            }
        }
    }

    /// Reads everything between what was delivered and the log's head and
    /// delivers it in order (see the module docs).
    pub(super) async fn catch_up<S: Sink>(sink: &Arc<S>) -> CatchUp {
        let this = sink.sequencer();
        let Some(log) = this.log.get() else {
            sink.signal_missed();
            return CatchUp::NoLog;
        };
        let _one = this.catching_up.lock().await;
        let head = match log.head().await {
            Ok(head) => head,
            Err(error) => {
                tracing::warn!(%error, "reading the log head to catch up failed");
                return CatchUp::Failed;
            }
        };
        let next = {
            let mut state = this.lock();
            match (state.epoch, state.next) {
                (Some(epoch), Some(next)) if epoch == head.epoch() => next,
                (None, _) | (_, None) => {
                    // Nothing delivered yet: start at the head.
                    state.epoch = Some(head.epoch());
                    state.next = Some(head.position() + 1);
                    retain_above(&mut state.pending, head);
                    Self::drain(sink, state);
                    return CatchUp::Delivered;
                }
                _ => {
                    // The log has a new history.
                    *state = State {
                        epoch: Some(head.epoch()),
                        next: Some(head.position() + 1),
                        ..State::default()
                    };
                    drop(state);
                    sink.signal_missed();
                    return CatchUp::LeftToStreams;
                }
            }
        };
        if head.position() < next {
            return CatchUp::Delivered;
        }
        if head.position() - next >= MAX_CATCH_UP {
            let mut state = this.lock();
            if state.next == Some(next) {
                state.next = Some(head.position() + 1);
                state
                    .pending
                    .retain(|position, _| *position > head.position());
            }
            drop(state);
            sink.signal_missed();
            return CatchUp::LeftToStreams;
        }
        let mut after = head.epoch().at(next - 1);
        while after.position() < head.position() {
            let records = match log.read(after, FILL_BATCH).await {
                Ok(records) => records,
                Err(error) => {
                    tracing::warn!(%error, "catching up from the log failed");
                    return CatchUp::Failed;
                }
            };
            let Some(last) = records.last().and_then(|r| r.cursor()) else {
                break;
            };
            Self::take_records(this, records);
            Self::drain(sink, this.lock());
            if last.position() <= after.position() {
                break;
            }
            after = last;
        }
        CatchUp::Delivered
    }
}

/// Keeps the events waiting after `head` in `head`'s history.
fn retain_above(pending: &mut BTreeMap<u64, (Audience, Event)>, head: Cursor) {
    pending.retain(|position, (_, event)| {
        *position > head.position() && event.cursor().is_some_and(|c| c.epoch() == head.epoch())
    });
}
