//! The bounded queue between a hub and one connection.

use std::any::Any;
use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use super::ring::{Lagged, RingReader};
use crate::{ConnectionId, Event};

/// One connection's live feed from a [`Hub`](crate::Hub).
///
/// # Semantics
///
/// - **Bounded.** The queue holds at most the capacity given at subscribe
///   time. Publishers never wait: when a publish finds the queue full, the
///   subscription becomes *lagged*, its queued events are dropped, and the
///   next receive returns [`RecvError::Lagged`]. After that the subscription
///   is closed and receives return [`RecvError::Closed`]. A lagged
///   connection catches up from the store on its next connect, so nothing
///   is lost; it only stops holding memory for a reader that cannot keep up.
/// - **Shared rings.** A subscription from [`InMemoryHub`](crate::InMemoryHub)
///   (and the hubs built on it) also reads the hub's rings: events for
///   [`Everyone`](crate::Audience::Everyone), and for each of its groups
///   and topics, are kept once per audience and read by each subscription
///   at its own pace instead of being copied into every queue. More than
///   `capacity` unread events in one ring lag the subscription just as a
///   full queue does: a reader finds it out when it next receives, and a
///   reader that stopped receiving (stalled on its socket) is found by the
///   ring, which checks its readers' positions every half of the
///   smallest capacity among them, in events; either way the [`on_lagged`](Subscription::on_lagged) hook
///   runs at that moment.
/// - **Ordered**, exactly as follows:
///   - Durable events (those with a log position) arrive in position
///     order, each once, on every node (the hub's sequencer holds one back
///     until every position below it was delivered).
///   - Events one publisher hands to one [`InMemoryHub`](crate::InMemoryHub)
///     arrive in the order it handed them over, whatever audiences they went
///     to: every publish is numbered before it is pushed anywhere, and a
///     receive takes the smallest number among the queue and the rings (the
///     argument is in the hub's `ring` module). Across nodes, ephemeral
///     events keep one publisher's order when the broker delivers in order
///     on one connection (one Redis, NATS, PostgreSQL); on a Redis Cluster
///     two ephemeral events to audiences on different shards may arrive in
///     either order.
///   - A durable event held back for a missing position below it may be
///     overtaken by an ephemeral event published after it.
///   - Events of concurrent publishers interleave in some order.
/// - **Conflated.** An event with a [conflation
///   key](crate::EventBuilder::conflate) removes the undelivered event with
///   the same key from the queue, then is queued at the back. What a
///   receiver gets is still a subsequence of what was sent, in order; an
///   event is skipped only if a newer one with its key was sent before it
///   was received. Stored events (with a log position) never conflate.
/// - **Missed.** A hub that loses its upstream (a Redis connection, say)
///   reports [`RecvError::Missed`] once it is back: events published
///   meanwhile may not have arrived, and the receiver should catch up from
///   the store. `Missed` is not terminal; receiving continues.
/// - **Closed by the hub.** After [`SubscriptionSender::close`] the
///   receiver gets what its queue still holds (no more ring events), then
///   [`RecvError::Closed`].
/// - **Unregister on drop.** Dropping the subscription removes it from the
///   hub's indexes; nothing is left behind for a gone connection.
///
/// It is also a [`Stream`](futures_core::Stream) of `Result<Event, RecvError>`
/// that ends after `Lagged` or `Closed`.
///
/// ```
/// use sse_core::{Audience, Event, Hub, InMemoryHub, Principal};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let hub = InMemoryHub::new();
/// let mut subscription = hub.subscribe(&Principal::new("alice"), 16).await?;
/// hub.publish(&Audience::user("alice"), &Event::json(&"hi")?).await?;
/// let event = subscription.recv().await?;
/// assert_eq!(&event.frame()[..], b"data: \"hi\"\n\n");
/// # Ok(()) }
/// ```
pub struct Subscription {
    queue: Arc<Queue>,
    terminated: bool,
    /// The hub's shared rings this subscription reads besides its queue:
    /// `Everyone` (held inline: every hub subscription reads it), then its
    /// groups' and topics'. None for a [`channel`].
    everyone: Option<RingReader>,
    rings: Vec<RingReader>,
    // Declared after `queue`: dropped last, so the hub unregisters a queue
    // this side has already closed.
    _guard: Box<dyn Any + Send + Sync>,
}

/// Why [`Subscription::recv`] returned no event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecvError {
    /// The queue overflowed because this receiver fell behind; the
    /// subscription is closed. Reconnect and replay from the store.
    #[error(
        "the subscriber fell behind and its bounded queue overflowed; reconnect and replay from the store"
    )]
    Lagged,
    /// Events may have been missed while the hub was disconnected from its
    /// upstream; catch up from the store. Receiving continues afterwards.
    #[error(
        "the hub lost its upstream for a while; events may have been missed, catch up from the store"
    )]
    Missed,
    /// The hub closed the subscription.
    #[error("the hub closed the subscription")]
    Closed,
}

/// The hub's side of a [`Subscription`]: pushes events into its queue.
///
/// Hub implementations keep these in their indexes. Cloning is cheap.
#[derive(Clone)]
pub struct SubscriptionSender {
    queue: Arc<Queue>,
}

/// What [`SubscriptionSender::try_send`] did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendOutcome {
    /// The event is queued.
    Queued,
    /// The queue was full: the subscription is now lagged and closed, and
    /// the event was not queued.
    Lagged,
    /// The subscription was already closed (or lagged); nothing was queued.
    Closed,
}

struct Queue {
    id: ConnectionId,
    capacity: usize,
    /// The subscription's position in its hub's `Everyone` ring, where
    /// the hub's sweep for stalled readers looks (see `super::ring`).
    ring_position: AtomicU64,
    /// Set (under the lock) by every sender-side change: an event, a
    /// lag, a miss, a close. A subscription that reads rings checks it
    /// before taking the lock, so a fan-out does not lock each queue twice
    /// per event for nothing. Cleared, under the lock, by the receiver
    /// that found nothing to act on.
    attention: AtomicBool,
    state: Mutex<State>,
}

struct State {
    /// Each event with the number the hub gave its publish (0 outside a
    /// hub), by which it is merged with the rings' events.
    events: VecDeque<(u64, Event)>,
    waker: Option<Waker>,
    status: Status,
    missed: bool,
    on_lagged: Option<LagHook>,
}

/// Run once, by the publisher, when the queue overflows.
type LagHook = Box<dyn FnOnce() + Send>;

impl State {
    /// Marks the subscription lagged (an overflow, or a ring's sweep):
    /// queued events go; the hook is returned to run outside the lock.
    fn lag(&mut self) -> Option<LagHook> {
        self.status = Status::Lagged;
        self.events = VecDeque::new();
        self.on_lagged.take()
    }
}

/// After a lag, with the queue's lock released: the receiver is woken to
/// see it, then the hook runs.
fn wake_then_run(waker: Option<Waker>, hook: Option<LagHook>) {
    if let Some(waker) = waker {
        waker.wake();
    }
    if let Some(hook) = hook {
        hook();
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Status {
    Open,
    Lagged,
    Closed,
}

/// Creates a subscription and the sender a hub keeps to feed it.
///
/// `capacity` bounds the queue (at least 1). `guard` is dropped with the
/// subscription: a hub gives a value whose `Drop` removes the sender from
/// its indexes.
///
/// ```
/// use sse_core::hub::{channel, SendOutcome};
/// use sse_core::{ConnectionId, Event};
///
/// let (sender, subscription) = channel(ConnectionId::new(0, 1), 1, ());
/// let event = Event::comment("x");
/// assert_eq!(sender.try_send(&event), SendOutcome::Queued);
/// assert_eq!(sender.try_send(&event), SendOutcome::Lagged);
/// drop(subscription);
/// assert_eq!(sender.try_send(&event), SendOutcome::Closed);
/// ```
pub fn channel(
    id: ConnectionId,
    capacity: usize,
    guard: impl Any + Send + Sync,
) -> (SubscriptionSender, Subscription) {
    let queue = Arc::new(Queue {
        id,
        capacity: capacity.max(1),
        ring_position: AtomicU64::new(0),
        attention: AtomicBool::new(false),
        state: Mutex::new(State {
            events: VecDeque::new(),
            waker: None,
            status: Status::Open,
            missed: false,
            on_lagged: None,
        }),
    });
    let sender = SubscriptionSender {
        queue: queue.clone(),
    };
    let subscription = Subscription {
        queue,
        terminated: false,
        everyone: None,
        rings: Vec::new(),
        _guard: Box::new(guard),
    };
    (sender, subscription)
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, State> {
        // No code panics while holding this lock; recover rather than spread a poison.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The lock, for a sender-side change the receiver must see.
    fn lock_to_change(&self) -> MutexGuard<'_, State> {
        let state = self.lock();
        self.attention.store(true, Ordering::Relaxed);
        state
    }
}

impl SubscriptionSender {
    /// The connection this sender feeds.
    pub fn id(&self) -> ConnectionId {
        self.queue.id
    }

    /// Queues `event` without waiting; see [`SendOutcome`].
    pub fn try_send(&self, event: &Event) -> SendOutcome {
        self.try_send_numbered(0, event)
    }

    /// Queues `event`, published as number `seq` of its hub (see
    /// [`ring`](super::ring) for the order this keeps).
    pub(crate) fn try_send_numbered(&self, seq: u64, event: &Event) -> SendOutcome {
        let mut state = self.queue.lock_to_change();
        if state.status != Status::Open {
            return SendOutcome::Closed;
        }
        // Latest value wins: an undelivered event with the same key leaves
        // the queue, so a reader that falls behind a progress stream keeps
        // one event per key instead of lagging. Keys are rare; the scan is
        // over one bounded queue.
        if let Some(key) = event.conflation_key()
            && event.cursor().is_none()
            && let Some(at) = state
                .events
                .iter()
                .position(|(_, queued)| queued.conflation_key() == Some(key))
        {
            state.events.remove(at);
        }
        let (outcome, hook) = if state.events.len() >= self.queue.capacity {
            (SendOutcome::Lagged, state.lag())
        } else {
            state.events.push_back((seq, event.clone()));
            (SendOutcome::Queued, None)
        };
        let waker = state.waker.take();
        drop(state);
        wake_then_run(waker, hook);
        outcome
    }

    /// The queue's capacity.
    pub(crate) fn capacity(&self) -> u64 {
        self.queue.capacity as u64
    }

    /// Records the subscription's position in the `Everyone` ring.
    pub(crate) fn set_ring_position(&self, next: u64) {
        self.queue.ring_position.store(next, Ordering::Relaxed);
    }

    /// Whether the subscription is more than its capacity behind `tail`
    /// of the `Everyone` ring.
    pub(crate) fn is_behind(&self, tail: u64) -> bool {
        tail.saturating_sub(self.queue.ring_position.load(Ordering::Relaxed)) > self.capacity()
    }

    /// Lags the subscription from outside its queue (a ring's sweep found
    /// it too far behind): queued events are dropped, the lag hook runs and
    /// the receiver gets [`RecvError::Lagged`]. `false` if it was no longer
    /// open.
    pub(crate) fn lag(&self) -> bool {
        let mut state = self.queue.lock_to_change();
        if state.status != Status::Open {
            return false;
        }
        let hook = state.lag();
        let waker = state.waker.take();
        drop(state);
        wake_then_run(waker, hook);
        true
    }

    /// Tells the receiver that events may have been missed (see
    /// [`RecvError::Missed`]).
    pub fn signal_missed(&self) {
        let mut state = self.queue.lock_to_change();
        if state.status != Status::Open {
            return;
        }
        state.missed = true;
        let waker = state.waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Closes the subscription: the receiver gets its queued events, then
    /// [`RecvError::Closed`].
    pub fn close(&self) {
        let mut state = self.queue.lock_to_change();
        if state.status == Status::Open {
            state.status = Status::Closed;
        }
        let waker = state.waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Whether the subscription no longer accepts events.
    pub fn is_closed(&self) -> bool {
        self.queue.lock().status != Status::Open
    }
}

impl fmt::Debug for SubscriptionSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscriptionSender")
            .field("id", &self.queue.id)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// The connection id the hub assigned.
    pub fn id(&self) -> ConnectionId {
        self.queue.id
    }

    /// Adds `guard` to what is dropped with this subscription (after the
    /// hub's own guard). Hubs built on another hub use it to release their
    /// own resources, such as a broker subscription's reference count.
    pub fn with_guard(mut self, guard: impl Any + Send + Sync) -> Self {
        let inner = std::mem::replace(&mut self._guard, Box::new(()));
        self._guard = Box::new((inner, guard));
        self
    }

    /// Runs `hook` once, on the publisher's thread, at the moment the queue
    /// overflows (see [`RecvError::Lagged`]).
    ///
    /// A receiver that stopped reading because its socket is full is not
    /// polled, so it would notice the lag only when the socket drains;
    /// servers use this to close such a connection at once (see
    /// `sse_tower::ConnectionCloser`). The hook must not block.
    pub fn on_lagged(&mut self, hook: impl FnOnce() + Send + 'static) {
        let mut state = self.queue.lock();
        if state.status == Status::Lagged {
            drop(state);
            hook();
        } else {
            state.on_lagged = Some(Box::new(hook));
        }
    }

    /// Receives the next event, waiting for one if the queue is empty.
    pub async fn recv(&mut self) -> Result<Event, RecvError> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Takes the next event if one is queued, without waiting.
    ///
    /// Returns `Ok(None)` when the queue is empty and open.
    pub fn try_recv(&mut self) -> Result<Option<Event>, RecvError> {
        if !self.reads_rings() {
            let mut state = self.queue.lock();
            return take(&mut state, &mut self.terminated);
        }
        self.take_merged()
    }

    /// Polls for the next event; the building block of [`Subscription::recv`].
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Event, RecvError>> {
        loop {
            let mut state = if !self.reads_rings() {
                let mut state = self.queue.lock();
                match take(&mut state, &mut self.terminated) {
                    Ok(Some(event)) => return Poll::Ready(Ok(event)),
                    Err(error) => return Poll::Ready(Err(error)),
                    Ok(None) => state,
                }
            } else {
                match self.take_merged() {
                    Ok(Some(event)) => return Poll::Ready(Ok(event)),
                    Err(error) => return Poll::Ready(Err(error)),
                    Ok(None) => {}
                }
                // Nothing anywhere: park on every ring, then on the queue.
                // Each source is checked again under the lock its pushes
                // take, so an event that lands meanwhile is not missed.
                if !self.rings_mut().all(|ring| ring.park(cx.waker())) {
                    continue;
                }
                let state = self.queue.lock();
                if state.missed || state.status != Status::Open || !state.events.is_empty() {
                    continue;
                }
                state
            };
            match &state.waker {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                _ => state.waker = Some(cx.waker().clone()),
            }
            return Poll::Pending;
        }
    }

    /// Sets the rings the subscription reads besides its queue.
    pub(crate) fn with_rings(mut self, everyone: RingReader, rings: Vec<RingReader>) -> Self {
        self.everyone = Some(everyone);
        self.rings = rings;
        self
    }

    fn reads_rings(&self) -> bool {
        self.everyone.is_some() || !self.rings.is_empty()
    }

    fn rings_mut(&mut self) -> impl Iterator<Item = &mut RingReader> {
        self.everyone.iter_mut().chain(self.rings.iter_mut())
    }

    /// The next event among the queue and the rings: the one with the
    /// smallest number, taken only once every source was read again after
    /// seeing it (why this keeps each publisher's order: [`super::ring`]).
    fn take_merged(&mut self) -> Result<Option<Event>, RecvError> {
        const QUEUE: usize = usize::MAX;
        let mut candidate: Option<(u64, usize)> = None;
        loop {
            let mut least = if self.queue.attention.load(Ordering::Acquire) {
                let mut state = self.queue.lock();
                if state.missed || state.status != Status::Open {
                    // Missed first; a lagged or closed subscription reads
                    // no ring, only what its queue still holds.
                    return take(&mut state, &mut self.terminated);
                }
                let head = state.events.front().map(|(seq, _)| (*seq, QUEUE));
                if head.is_none() {
                    self.queue.attention.store(false, Ordering::Relaxed);
                }
                head
            } else {
                // Nothing changed on the sender's side since the queue was
                // last found empty and open. (Seeing a ring event `c`
                // makes any queue change made before `c` was numbered
                // visible here: the `Ring` docs' argument, with this flag
                // in place of the lock.)
                None
            };
            let mut lagged = None;
            for (at, ring) in self.rings_mut().enumerate() {
                match ring.head() {
                    Ok(Some(seq)) if least.is_none_or(|(least, _)| seq < least) => {
                        least = Some((seq, at));
                    }
                    Ok(_) => {}
                    Err(Lagged) => {
                        lagged = Some(at);
                        break;
                    }
                }
            }
            if let Some(at) = lagged {
                return Err(self.lagged_behind_ring(at));
            }
            if least == candidate {
                break;
            }
            candidate = least;
        }
        Ok(match candidate {
            None => None,
            Some((_, QUEUE)) => return take(&mut self.queue.lock(), &mut self.terminated),
            Some((_, at)) => self.rings_mut().nth(at).and_then(RingReader::pop),
        })
    }

    /// Ends the subscription as an overflowing queue would: the lag hook
    /// runs, the receiver gets `Lagged`, then nothing.
    fn lagged_behind_ring(&mut self, at: usize) -> RecvError {
        self.terminated = true;
        let hook = {
            let mut state = self.queue.lock();
            if state.status == Status::Open
                && let Some(ring) = self.everyone.iter().chain(&self.rings).nth(at)
            {
                ring.count_lag();
            }
            state.status = Status::Closed;
            state.events = VecDeque::new();
            state.on_lagged.take()
        };
        self.everyone = None;
        self.rings.clear();
        if let Some(hook) = hook {
            hook();
        }
        RecvError::Lagged
    }
}

/// Takes what the receiver sees next, under the queue's lock.
fn take(state: &mut State, terminated: &mut bool) -> Result<Option<Event>, RecvError> {
    if state.missed {
        state.missed = false;
        return Err(RecvError::Missed);
    }
    match state.status {
        Status::Lagged => {
            state.status = Status::Closed;
            *terminated = true;
            Err(RecvError::Lagged)
        }
        Status::Open | Status::Closed => match state.events.pop_front() {
            Some((_, event)) => {
                if state.events.is_empty() && state.events.capacity() > 32 {
                    // A burst grew the buffer; give the memory back once drained.
                    state.events = VecDeque::new();
                }
                Ok(Some(event))
            }
            None if state.status == Status::Closed => {
                *terminated = true;
                Err(RecvError::Closed)
            }
            None => Ok(None),
        },
    }
}

impl futures_core::Stream for Subscription {
    type Item = Result<Event, RecvError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.terminated {
            return Poll::Ready(None);
        }
        match this.poll_recv(cx) {
            Poll::Ready(Err(RecvError::Closed)) => Poll::Ready(None),
            other => other.map(Some),
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut state = self.queue.lock();
        state.status = Status::Closed;
        state.events = VecDeque::new();
        state.waker = None;
        state.on_lagged = None;
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.queue.id)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    fn event(n: u64) -> Event {
        Event::builder()
            .id(format!("abcdefgh.{n}"))
            .data("x")
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn overflow_lags_then_closes() {
        let (tx, mut rx) = channel(ConnectionId::new(0, 1), 2, ());
        assert_eq!(tx.try_send(&event(1)), SendOutcome::Queued);
        assert_eq!(tx.try_send(&event(2)), SendOutcome::Queued);
        assert_eq!(tx.try_send(&event(3)), SendOutcome::Lagged);
        assert_eq!(tx.try_send(&event(4)), SendOutcome::Closed);
        assert!(tx.is_closed());
        assert_eq!(rx.recv().await, Err(RecvError::Lagged));
        assert_eq!(rx.recv().await, Err(RecvError::Closed));
        assert!(rx.next().await.is_none());
    }

    #[test]
    fn the_lag_hook_runs_once_at_overflow() {
        let (tx, mut rx) = channel(ConnectionId::new(0, 1), 1, ());
        let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = runs.clone();
        rx.on_lagged(move || {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        });
        tx.try_send(&event(1));
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 0);
        assert_eq!(tx.try_send(&event(2)), SendOutcome::Lagged);
        tx.try_send(&event(3));
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    fn keyed(key: &str, data: &str) -> Event {
        Event::builder().data(data).conflate(key).build().unwrap()
    }

    fn drain(rx: &mut Subscription) -> Vec<String> {
        std::iter::from_fn(|| rx.try_recv().unwrap())
            .map(|e| String::from_utf8_lossy(e.frame()).trim_end().to_owned())
            .collect()
    }

    #[test]
    fn a_keyed_event_replaces_its_undelivered_predecessor_and_keeps_order() {
        let (tx, mut rx) = channel(ConnectionId::new(0, 1), 3, ());
        for n in 0..1000 {
            assert_eq!(
                tx.try_send(&keyed("a", &format!("a{n}"))),
                SendOutcome::Queued
            );
            if n == 500 {
                tx.try_send(&Event::builder().data("plain").build().unwrap());
            }
            assert_eq!(
                tx.try_send(&keyed("b", &format!("b{n}"))),
                SendOutcome::Queued
            );
        }
        // A full queue of 3 never lagged: one event per key plus the plain one.
        assert_eq!(drain(&mut rx), ["data: plain", "data: a999", "data: b999"]);
        // Once delivered, an event is not taken back.
        tx.try_send(&keyed("a", "a1000"));
        assert_eq!(drain(&mut rx), ["data: a1000"]);
    }

    #[test]
    fn stored_and_unkeyed_events_never_conflate() {
        let (tx, mut rx) = channel(ConnectionId::new(0, 1), 8, ());
        let stored = keyed("a", "1")
            .with_cursor("abcdefgh.1".parse().unwrap())
            .unwrap();
        tx.try_send(&stored);
        tx.try_send(&keyed("a", "2"));
        tx.try_send(&keyed("a", "3"));
        tx.try_send(&Event::builder().data("4").build().unwrap());
        tx.try_send(&Event::builder().data("4").build().unwrap());
        assert_eq!(
            drain(&mut rx),
            ["id: abcdefgh.1\ndata: 1", "data: 3", "data: 4", "data: 4"]
        );
    }

    #[tokio::test]
    async fn close_delivers_queued_events_first() {
        let (tx, rx) = channel(ConnectionId::new(0, 1), 8, ());
        tx.try_send(&event(1));
        tx.try_send(&event(2));
        tx.close();
        let got: Vec<_> = rx.collect().await;
        let ids: Vec<_> = got
            .into_iter()
            .map(|r| r.unwrap().cursor().unwrap().position())
            .collect();
        assert_eq!(ids, [1, 2]);
    }

    #[tokio::test]
    async fn missed_is_reported_once_and_receiving_continues() {
        let (tx, mut rx) = channel(ConnectionId::new(0, 1), 8, ());
        tx.signal_missed();
        tx.try_send(&event(5));
        assert_eq!(rx.recv().await, Err(RecvError::Missed));
        assert_eq!(rx.recv().await.unwrap().cursor().unwrap().position(), 5);
    }

    #[tokio::test]
    async fn a_waiting_receiver_is_woken() {
        let (tx, mut rx) = channel(ConnectionId::new(0, 1), 8, ());
        let waiter = tokio::spawn(async move { rx.recv().await });
        tokio::task::yield_now().await;
        tx.try_send(&event(1));
        assert!(waiter.await.unwrap().is_ok());
    }

    #[test]
    fn dropping_the_guard_runs_with_the_subscription() {
        struct Flag(Arc<std::sync::atomic::AtomicBool>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (tx, rx) = channel(ConnectionId::new(0, 1), 1, Flag(dropped.clone()));
        drop(rx);
        assert!(dropped.load(std::sync::atomic::Ordering::SeqCst));
        assert_eq!(tx.try_send(&event(1)), SendOutcome::Closed);
    }
}
