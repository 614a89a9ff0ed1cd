//! The shared, bounded ring through which [`InMemoryHub`](super::InMemoryHub)
//! fans events out to [`Audience::Everyone`](crate::Audience::Everyone), a
//! group or a topic.
//!
//! # Why a ring
//!
//! Pushing one event into 10,000 per-connection queues costs the publisher
//! a lock and a write in 10,000 cache lines that each connection's task
//! also touches: that was a fifth of the server's CPU in a fan-out. A ring
//! per audience holds each event once; every subscription of the audience
//! reads it at its own pace with a cursor of its own, and the publisher
//! only wakes the readers that are parked.
//!
//! # What it keeps
//!
//! - **Bounded.** The ring keeps the last `capacity` events, the largest
//!   queue capacity among its readers. A reader further behind than its own
//!   capacity (or behind the ring's window) is lagged, exactly like a
//!   per-connection queue that overflowed.
//! - **One publisher's order, across the queue and the rings.** Every
//!   publish takes a sequence number from one hub-wide counter *before*
//!   its event is pushed anywhere. A subscription delivers the smallest
//!   head among its queue and its rings, and only after reading every
//!   other source again once it has seen that head. An event `w` published
//!   before `c` by the same publisher was pushed before `c` was numbered,
//!   so when the reader has seen `c`, `w` (or something ahead of it, with
//!   a smaller number still) is visible at the head of its source, and is
//!   delivered first. Events of concurrent publishers arrive in the order
//!   of their numbers.
//! - **A stalled reader is closed at once.** A reader stuck in a socket
//!   write does not read, so it cannot notice its lag itself. Every
//!   `capacity / 2` pushes (the smallest capacity among its readers) its
//!   readers' positions are looked at (one load
//!   each, a fraction of a load per delivery) and those more than their
//!   capacity behind are lagged through their queue: their lag hook runs,
//!   as when a queue overflows. A group's or topic's ring keeps its
//!   readers' positions itself; every subscription reads `Everyone`, so
//!   that ring's positions live in the subscriptions' queues and the hub
//!   looks them up through its index of connections (no extra allocation
//!   per subscription).
//! - **Wake only who waits.** A reader parks by leaving its waker in the
//!   ring's list (once per wake-up: a reader still listed is not listed
//!   again); a push takes the whole list and wakes it outside the lock.
//!   Tail and list are read under the list's lock, so no wake is lost.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, Weak};
use std::task::Waker;

use super::SubscriptionSender;
use crate::Event;

/// Entries a reader copies out of the ring per read lock: enough to batch
/// a burst, small enough that an idle reader keeps little.
const BATCH: usize = 16;

/// One audience's recent events; see the module docs.
pub(crate) struct Ring {
    window: RwLock<Window>,
    /// The position the next entry gets; read without the lock to learn
    /// whether there is anything new.
    tail: AtomicU64,
    /// Entries kept: the largest capacity among the readers so far.
    capacity: AtomicUsize,
    /// The smallest capacity among the readers so far: the sweep runs
    /// every half of it.
    min_capacity: AtomicUsize,
    waiters: Mutex<Waiters>,
    readers: AtomicUsize,
    /// Every reader's position, for the sweep that lags stalled readers.
    positions: Mutex<Vec<Weak<Position>>>,
    /// The hub's count of lagged subscriptions.
    lagged: Arc<AtomicU64>,
}

/// Where one reader of a group's or topic's ring stands, seen by the
/// ring's sweep.
struct Position {
    /// The reader's next position to copy out of the ring.
    next: AtomicU64,
    /// Its subscription's queue, lagged through it.
    sender: SubscriptionSender,
}

/// Where a reader publishes its position for the sweep.
enum Tracker {
    /// In its queue (the `Everyone` ring; see the module docs).
    Queue(SubscriptionSender),
    /// In a [`Position`] the ring keeps.
    Ring(Arc<Position>),
}

struct Window {
    /// Position of `entries[0]`.
    first: u64,
    entries: VecDeque<Entry>,
}

#[derive(Clone)]
struct Entry {
    seq: u64,
    event: Event,
}

struct Waiters {
    /// Bumped each time a push takes the list, so a reader knows whether
    /// its slot is still there.
    generation: u64,
    wakers: Vec<Option<Waker>>,
    /// Readers listed (the `Some`s in `wakers`).
    parked: usize,
    /// Slots of `wakers` that readers left (dropped while parked): the
    /// next reader to park takes one, so the list holds at most as many
    /// slots as readers were ever parked at once since the last push, in
    /// an audience that is never pushed to as well.
    free: Vec<u32>,
    /// The list's previous allocation, reused instead of growing anew.
    spare: Vec<Option<Waker>>,
}

impl Ring {
    pub(crate) fn new(lagged: Arc<AtomicU64>) -> Self {
        Self {
            window: RwLock::new(Window {
                first: 0,
                entries: VecDeque::new(),
            }),
            tail: AtomicU64::new(0),
            capacity: AtomicUsize::new(1),
            min_capacity: AtomicUsize::new(usize::MAX),
            waiters: Mutex::new(Waiters {
                generation: 0,
                wakers: Vec::new(),
                parked: 0,
                free: Vec::new(),
                spare: Vec::new(),
            }),
            readers: AtomicUsize::new(0),
            positions: Mutex::new(Vec::new()),
            lagged,
        }
    }

    /// Readers currently registered.
    pub(crate) fn readers(&self) -> usize {
        self.readers.load(Ordering::Relaxed)
    }

    /// A reader for `sender`'s subscription that sees every event pushed
    /// from now on, lagged once more than its queue's capacity are pending
    /// for it. The ring keeps its position for the sweep unless
    /// `tracked_by_queue` (then whoever pushes sweeps the queues: see the
    /// module docs).
    pub(crate) fn reader(
        self: &Arc<Self>,
        sender: &SubscriptionSender,
        tracked_by_queue: bool,
    ) -> RingReader {
        let capacity = usize::try_from(sender.capacity()).unwrap_or(usize::MAX);
        self.capacity.fetch_max(capacity, Ordering::Relaxed);
        self.min_capacity.fetch_min(capacity, Ordering::Relaxed);
        let readers = self.readers.fetch_add(1, Ordering::Relaxed) + 1;
        let next = self.tail.load(Ordering::Acquire);
        let tracker = if tracked_by_queue {
            sender.set_ring_position(next);
            Tracker::Queue(sender.clone())
        } else {
            let position = Arc::new(Position {
                next: AtomicU64::new(next),
                sender: sender.clone(),
            });
            let mut positions = self
                .positions
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            // Gone readers leave a dead entry; clear them before they
            // outnumber the live ones.
            if positions.len() >= 2 * readers.max(16) {
                positions.retain(|position| position.strong_count() > 0);
            }
            positions.push(Arc::downgrade(&position));
            Tracker::Ring(position)
        };
        RingReader {
            next,
            ring: self.clone(),
            tracker,
            buffered: VecDeque::new(),
            parked: None,
        }
    }

    /// Appends `event`, numbered `seq`, and wakes the parked readers.
    /// Returns the new tail when it is time to lag the readers too far
    /// behind; those whose position the ring keeps are lagged already.
    pub(crate) fn push(&self, seq: u64, event: &Event) -> Option<u64> {
        let mut sweep = None;
        let mut list = {
            let mut window = self.window.write().unwrap_or_else(PoisonError::into_inner);
            let mut waiters = self.lock_waiters();
            // Every reader parked has read everything so far (a reader
            // parks only once it is caught up, and joins at the tail; a
            // push takes the list, under this lock, before the next push
            // looks): what the ring holds is needed by no one. Trimming it
            // here keeps an idle audience's ring at one event.
            if waiters.parked == self.readers() {
                window.first += window.entries.len() as u64;
                if window.entries.capacity() > BATCH {
                    window.entries = VecDeque::new();
                } else {
                    window.entries.clear();
                }
            }
            let position = window.first + window.entries.len() as u64;
            window.entries.push_back(Entry {
                seq,
                event: event.clone(),
            });
            let capacity = self.capacity.load(Ordering::Relaxed);
            while window.entries.len() > capacity {
                window.entries.pop_front();
                window.first += 1;
            }
            // Before the list is taken: a reader that parks after sees it.
            self.tail.store(position + 1, Ordering::Release);
            let every = (self.min_capacity.load(Ordering::Relaxed) / 2).max(1) as u64;
            if (position + 1).is_multiple_of(every) {
                sweep = Some(position + 1);
            }
            if waiters.wakers.is_empty() {
                Vec::new()
            } else {
                waiters.generation += 1;
                waiters.parked = 0;
                waiters.free.clear();
                let spare = std::mem::take(&mut waiters.spare);
                std::mem::replace(&mut waiters.wakers, spare)
            }
        };
        if !list.is_empty() {
            for waker in list.drain(..).flatten() {
                waker.wake();
            }
            let mut waiters = self.lock_waiters();
            if waiters.spare.capacity() < list.capacity() {
                waiters.spare = list;
            }
        }
        if let Some(tail) = sweep {
            self.lag_stalled_readers(tail);
        }
        sweep
    }

    /// Lags the readers more than their capacity behind `tail` (see the
    /// module docs), outside every lock of the ring.
    fn lag_stalled_readers(&self, tail: u64) {
        let behind: Vec<Arc<Position>> = {
            let mut positions = self
                .positions
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            positions.retain(|position| position.strong_count() > 0);
            positions
                .iter()
                .filter_map(Weak::upgrade)
                .filter(|position| {
                    let behind = tail.saturating_sub(position.next.load(Ordering::Relaxed));
                    behind > position.sender.capacity()
                })
                .collect()
        };
        for position in behind {
            if position.sender.lag() {
                self.lagged.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn lock_waiters(&self) -> MutexGuard<'_, Waiters> {
        // No code panics while holding this lock; recover rather than spread a poison.
        self.waiters.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One subscription's cursor in a [`Ring`].
pub(crate) struct RingReader {
    ring: Arc<Ring>,
    /// Position of the next entry to copy out of the ring.
    next: u64,
    /// Where `next` is published for the sweep.
    tracker: Tracker,
    /// Entries copied out, not yet delivered.
    buffered: VecDeque<Entry>,
    /// The waiter list's generation and slot this reader's waker is in.
    parked: Option<(u64, u32)>,
}

/// The reader fell behind the ring's window or its own capacity.
pub(crate) struct Lagged;

impl RingReader {
    /// The sequence number of the next event, copying a batch out of the
    /// ring when nothing is buffered.
    pub(crate) fn head(&mut self) -> Result<Option<u64>, Lagged> {
        if let Some(entry) = self.buffered.front() {
            return Ok(Some(entry.seq));
        }
        let tail = self.ring.tail.load(Ordering::Acquire);
        if tail == self.next {
            return Ok(None);
        }
        if tail - self.next > self.sender().capacity() {
            return Err(Lagged);
        }
        let window = self
            .ring
            .window
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(from) = self.next.checked_sub(window.first) else {
            return Err(Lagged);
        };
        let from = usize::try_from(from).unwrap_or(usize::MAX);
        self.buffered.extend(
            window
                .entries
                .range(from.min(window.entries.len())..)
                .take(BATCH)
                .cloned(),
        );
        drop(window);
        self.next += self.buffered.len() as u64;
        match &self.tracker {
            Tracker::Queue(sender) => sender.set_ring_position(self.next),
            Tracker::Ring(position) => position.next.store(self.next, Ordering::Relaxed),
        }
        Ok(self.buffered.front().map(|entry| entry.seq))
    }

    fn sender(&self) -> &SubscriptionSender {
        match &self.tracker {
            Tracker::Queue(sender) => sender,
            Tracker::Ring(position) => &position.sender,
        }
    }

    /// Counts this reader's subscription as lagged in the hub's stats
    /// (once: by whoever closed it, the reader or the sweep).
    pub(crate) fn count_lag(&self) {
        self.ring.lagged.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes the event [`RingReader::head`] returned.
    pub(crate) fn pop(&mut self) -> Option<Event> {
        let entry = self.buffered.pop_front()?;
        if self.buffered.is_empty() && self.buffered.capacity() > 4 {
            // A burst grew the buffer; an idle reader keeps a small one.
            self.buffered = VecDeque::new();
        }
        Some(entry.event)
    }

    /// Leaves `waker` to be woken by the next push; `false` (and not
    /// parked) when there is something to read already.
    pub(crate) fn park(&mut self, waker: &Waker) -> bool {
        if !self.buffered.is_empty() {
            return false;
        }
        let ring = self.ring.clone();
        let mut waiters = ring.lock_waiters();
        if ring.tail.load(Ordering::Acquire) != self.next {
            return false;
        }
        if let Some((generation, slot)) = self.parked
            && generation == waiters.generation
            && let Some(listed) = waiters.wakers.get_mut(slot as usize)
        {
            match listed {
                Some(listed) if listed.will_wake(waker) => {}
                _ => *listed = Some(waker.clone()),
            }
            return true;
        }
        let slot = match waiters.free.pop() {
            Some(slot) => {
                if let Some(listed) = waiters.wakers.get_mut(slot as usize) {
                    *listed = Some(waker.clone());
                }
                slot
            }
            None => {
                let Ok(slot) = u32::try_from(waiters.wakers.len()) else {
                    return false; // four billion parked readers: poll again instead
                };
                waiters.wakers.push(Some(waker.clone()));
                slot
            }
        };
        self.parked = Some((waiters.generation, slot));
        waiters.parked += 1;
        true
    }

    /// Takes this reader's waker out of the list, if it is still there,
    /// and leaves its slot to the next reader that parks. Once no reader is
    /// listed the list's memory goes too: an audience that is never pushed
    /// to (an app that never broadcasts) keeps nothing for readers gone.
    fn unpark(&mut self) {
        if let Some((generation, slot)) = self.parked.take() {
            let mut waiters = self.ring.lock_waiters();
            if generation == waiters.generation
                && let Some(listed) = waiters.wakers.get_mut(slot as usize)
                && listed.take().is_some()
            {
                waiters.parked -= 1;
                if waiters.parked == 0 {
                    // No slot of this generation is held by a listed
                    // reader: a new generation may start from nothing.
                    waiters.generation += 1;
                    waiters.wakers = Vec::new();
                    waiters.free = Vec::new();
                    waiters.spare = Vec::new();
                } else {
                    waiters.free.push(slot);
                }
            }
        }
    }
}

impl Drop for RingReader {
    fn drop(&mut self) {
        self.unpark();
        self.ring.readers.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> Arc<Ring> {
        Arc::new(Ring::new(Arc::default()))
    }

    /// A sender whose subscription stays alive for the test.
    fn sender(capacity: usize) -> SubscriptionSender {
        let (sender, subscription) =
            super::super::channel(crate::ConnectionId::new(0, 1), capacity, ());
        std::mem::forget(subscription);
        sender
    }

    fn event(n: u64) -> Event {
        Event::builder().data(n.to_string()).build().unwrap()
    }

    fn data(event: Event) -> String {
        String::from_utf8_lossy(event.frame()).trim_end().to_owned()
    }

    #[test]
    fn each_reader_reads_at_its_own_pace_from_where_it_joined() {
        let ring = ring();
        let mut early = ring.reader(&sender(8), false);
        ring.push(1, &event(1));
        let mut late = ring.reader(&sender(8), false);
        ring.push(2, &event(2));
        assert_eq!(early.head().ok(), Some(Some(1)));
        assert_eq!(data(early.pop().unwrap()), "data: 1");
        assert_eq!(early.head().ok(), Some(Some(2)));
        assert_eq!(data(early.pop().unwrap()), "data: 2");
        assert_eq!(early.head().ok(), Some(None));
        assert_eq!(late.head().ok(), Some(Some(2)));
        assert_eq!(ring.readers(), 2);
        drop((early, late));
        assert_eq!(ring.readers(), 0);
    }

    #[test]
    fn a_reader_further_behind_than_its_capacity_lags() {
        let ring = ring();
        let mut small = ring.reader(&sender(2), false);
        let mut large = ring.reader(&sender(4), false);
        for n in 0..3 {
            ring.push(n, &event(n));
        }
        assert!(small.head().is_err());
        assert_eq!(large.head().ok(), Some(Some(0)));
        for _ in 0..3 {
            large.pop();
        }
        for n in 3..7 {
            ring.push(n, &event(n));
        }
        assert_eq!(large.head().ok(), Some(Some(3))); // four pending: at capacity
        for _ in 0..4 {
            large.pop();
        }
        for n in 7..12 {
            ring.push(n, &event(n));
        }
        assert!(large.head().is_err()); // five pending: lagged
    }

    #[test]
    fn a_push_wakes_parked_readers_once_and_forgets_dropped_ones() {
        let ring = ring();
        let woken = Arc::new(AtomicUsize::new(0));
        let waker = counting_waker(woken.clone());
        let mut reader = ring.reader(&sender(8), false);
        let mut gone = ring.reader(&sender(8), false);
        assert!(reader.park(&waker));
        assert!(reader.park(&waker)); // still listed: not listed twice
        assert!(gone.park(&waker));
        drop(gone);
        ring.push(1, &event(1));
        assert_eq!(woken.load(Ordering::SeqCst), 1);
        assert!(!reader.park(&waker)); // something to read: not parked
        ring.push(2, &event(2));
        assert_eq!(woken.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn once_every_reader_is_caught_up_the_ring_keeps_only_the_newest_event() {
        let ring = ring();
        let waker = counting_waker(Arc::default());
        let mut reader = ring.reader(&sender(64), false);
        for n in 0..10 {
            ring.push(n, &event(n));
        }
        assert_eq!(ring.window.read().unwrap().entries.len(), 10);
        while reader.head().ok().flatten().is_some() {
            reader.pop();
        }
        assert!(reader.park(&waker));
        ring.push(10, &event(10));
        assert_eq!(ring.window.read().unwrap().entries.len(), 1);
        assert_eq!(reader.head().ok(), Some(Some(10)));
        // A reader that joined and never parked keeps the window.
        let _idle = ring.reader(&sender(64), false);
        reader.pop();
        assert!(reader.park(&waker));
        ring.push(11, &event(11));
        assert_eq!(ring.window.read().unwrap().entries.len(), 2);
    }

    #[test]
    fn a_reader_that_stops_reading_is_lagged_by_the_sweep_and_its_hook_runs() {
        let ring = ring();
        let (stalled_sender, mut stalled) =
            super::super::channel(crate::ConnectionId::new(0, 2), 4, ());
        let hooked = Arc::new(AtomicUsize::new(0));
        let count = hooked.clone();
        stalled.on_lagged(move || {
            count.fetch_add(1, Ordering::SeqCst);
        });
        let _stalled_reader = ring.reader(&stalled_sender, false);
        let mut healthy = ring.reader(&sender(4), false);
        for n in 0..6 {
            ring.push(n, &event(n));
            while healthy.head().ok().flatten().is_some() {
                healthy.pop();
            }
        }
        // Five behind a capacity of four: found by the sweep every 2 pushes.
        assert_eq!(hooked.load(Ordering::SeqCst), 1);
        assert!(stalled_sender.is_closed());
        assert_eq!(ring.lagged.load(Ordering::Relaxed), 1);
        assert_eq!(stalled.try_recv(), Err(super::super::RecvError::Lagged));
    }

    #[test]
    fn readers_that_park_and_go_leave_nothing_behind_without_a_push() {
        let ring = ring();
        let waker = counting_waker(Arc::default());
        // One stream stays open (and parked) the whole time, as in an app
        // that never broadcasts; 100,000 others come, park and go.
        let mut resident = ring.reader(&sender(8), false);
        assert!(resident.park(&waker));
        let senders: Vec<SubscriptionSender> = (0..4).map(|_| sender(8)).collect();
        for n in 0..100_000 {
            let mut passing = ring.reader(&senders[n % 4], false);
            assert!(passing.park(&waker));
        }
        {
            let waiters = ring.lock_waiters();
            assert_eq!(waiters.parked, 1);
            assert!(waiters.wakers.len() <= 2, "{} slots", waiters.wakers.len());
        }
        // Several parked at once, then all gone.
        let mut many: Vec<RingReader> = (0..64)
            .map(|n| ring.reader(&senders[n % 4], false))
            .collect();
        for reader in &mut many {
            assert!(reader.park(&waker));
        }
        drop(many);
        drop(resident);
        let waiters = ring.lock_waiters();
        assert_eq!(waiters.parked, 0);
        assert_eq!(waiters.wakers.capacity() + waiters.free.capacity(), 0);
    }

    #[test]
    fn a_reused_slot_is_woken_and_counted_once() {
        let ring = ring();
        let woken = Arc::new(AtomicUsize::new(0));
        let waker = counting_waker(woken.clone());
        let mut first = ring.reader(&sender(8), false);
        let mut second = ring.reader(&sender(8), false);
        let mut third = ring.reader(&sender(8), false);
        assert!(first.park(&waker));
        assert!(second.park(&waker));
        drop(second); // its slot is free
        assert!(third.park(&waker)); // and taken
        assert_eq!(ring.lock_waiters().wakers.len(), 2);
        assert_eq!(ring.lock_waiters().parked, 2);
        ring.push(1, &event(1));
        assert_eq!(woken.load(Ordering::SeqCst), 2);
        // Both caught up: the push trimmed nothing they need.
        assert_eq!(first.head().ok(), Some(Some(1)));
        assert_eq!(third.head().ok(), Some(Some(1)));
    }

    fn counting_waker(count: Arc<AtomicUsize>) -> Waker {
        struct Count(Arc<AtomicUsize>);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        Waker::from(Arc::new(Count(count)))
    }
}
