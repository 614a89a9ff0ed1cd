use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use super::ring::{Ring, RingReader};
use super::sequencer::{CatchUp, Sequencer, Sink};
use super::{
    Hub, HubError, HubStats, Member, Presence, SendOutcome, Subscription, SubscriptionSender,
    channel,
};
use crate::sharded::Sharded;
use crate::{
    Audience, ConnectionId, Event, EventLog, GroupId, Principal, SessionId, Topic, UserId,
};

/// The default [`Hub`]: every connection of this process, indexed in memory.
///
/// Each subscription is indexed under its user, its session, each of its
/// groups and topics, and its connection id, in maps split into 64
/// independently locked shards. Publishing to a user, session, group, topic
/// or connection looks up one key and touches only the matching queues; a
/// publish to one user among 100,000 connections does not visit the other
/// 99,999. Events for [`Audience::Everyone`], a group or a topic go into
/// one shared, bounded ring per audience instead, which each subscription
/// reads at its own pace: such a publish writes the event once and wakes
/// only the subscriptions waiting for one (events with a [conflation
/// key](crate::EventBuilder::conflate) still go to each queue, where they
/// conflate). No lock is held across an await or while writing to a
/// socket: a publish only pushes into bounded queues and rings.
///
/// Durable events (those whose id is a log [`Cursor`](crate::Cursor)) are
/// delivered in log order without gaps: one held back until every position
/// below it was delivered, a missing position read from the attached log
/// after a short wait ([`InMemoryHub::gap_wait`], 100 ms). This is what
/// lets a stream's `Last-Event-ID` resume every audience it reads (see
/// [`crate::log`]); hubs over a broker get it by delivering through this
/// index.
///
/// Cloning gives another handle to the same hub.
///
/// ```
/// use sse_core::{Audience, Event, Hub, InMemoryHub, Principal};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let hub = InMemoryHub::new();
/// let mut alice = hub.subscribe(&Principal::new("alice"), 64).await?;
/// let mut bob = hub.subscribe(&Principal::new("bob"), 64).await?;
/// hub.publish(&Audience::user("bob"), &Event::json(&"for bob")?).await?;
/// assert!(bob.try_recv()?.is_some());
/// assert!(alice.try_recv()?.is_none());
/// drop((alice, bob));
/// assert_eq!(hub.index_entries(), 0);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct InMemoryHub {
    index: Arc<Index>,
}

struct Index {
    users: Sharded<UserId, Senders>,
    sessions: Sharded<SessionId, Senders>,
    groups: Sharded<GroupId, Senders>,
    topics: Sharded<Topic, Senders>,
    connections: Sharded<ConnectionId, SubscriptionSender>,
    /// What `Everyone`, each group and each topic with a local subscriber
    /// read (see [`super::ring`]).
    everyone: Arc<Ring>,
    group_rings: Sharded<GroupId, Arc<Ring>>,
    topic_rings: Sharded<Topic, Arc<Ring>>,
    /// Numbers every publish, before it is pushed anywhere.
    seq: AtomicU64,
    node: u64,
    next_id: AtomicU64,
    subscriptions: AtomicU64,
    published: AtomicU64,
    enqueued: AtomicU64,
    lagged: Arc<AtomicU64>,
    sequencer: Sequencer,
}

/// Removes a subscription from every index when the subscription drops.
struct Registration {
    index: Arc<Index>,
    principal: Principal,
    id: ConnectionId,
}

impl Default for InMemoryHub {
    fn default() -> Self {
        Self::new()
    }
}

impl InMemoryHub {
    /// An empty hub on a node with a random 64-bit id.
    ///
    /// Connection ids are this node id and a counter (see
    /// [`ConnectionId`]); hubs that span nodes claim a node id no other
    /// live node holds and use [`InMemoryHub::with_node_id`].
    pub fn new() -> Self {
        Self::with_node_id(random_node_id())
    }

    /// An empty hub whose connection ids carry `node`.
    ///
    /// ```
    /// use sse_core::{Hub, InMemoryHub, Principal};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), sse_core::HubError> {
    /// let hub = InMemoryHub::with_node_id(7);
    /// let subscription = hub.subscribe(&Principal::new("alice"), 8).await?;
    /// assert_eq!(subscription.id().node(), 7);
    /// # Ok(()) }
    /// ```
    pub fn with_node_id(node: u64) -> Self {
        let lagged = Arc::new(AtomicU64::new(0));
        Self {
            index: Arc::new(Index {
                users: Sharded::new(),
                sessions: Sharded::new(),
                groups: Sharded::new(),
                topics: Sharded::new(),
                connections: Sharded::new(),
                everyone: Arc::new(Ring::new(lagged.clone())),
                group_rings: Sharded::new(),
                topic_rings: Sharded::new(),
                seq: AtomicU64::new(1),
                node,
                next_id: AtomicU64::new(1),
                subscriptions: AtomicU64::new(0),
                published: AtomicU64::new(0),
                enqueued: AtomicU64::new(0),
                lagged,
                sequencer: Sequencer::new(DEFAULT_GAP_WAIT),
            }),
        }
    }

    /// How long a durable event waits for a missing position below it
    /// before the hub reads that position from the log (default 100 ms).
    /// Call it when building the hub, before cloning it.
    #[must_use]
    pub fn gap_wait(mut self, wait: Duration) -> Self {
        if let Some(index) = Arc::get_mut(&mut self.index) {
            index.sequencer = Sequencer::new(wait);
        }
        self
    }

    /// Gives the hub the log its durable events come from, to fill gaps
    /// in live delivery; see [`Hub::attach_log`].
    pub fn attach_log(&self, log: Arc<dyn EventLog>) {
        self.index.sequencer.attach(log);
    }

    /// Learns the log's head once, before the first connection registers
    /// (hubs built on this one call it in `subscribe`).
    pub async fn ready(&self) {
        self.index.sequencer.start().await;
    }

    /// Reads what the log has between what this node delivered and its
    /// head, and delivers it in order (after a lost link, dropped
    /// messages, or now and then on a quiet system; see the sequencer).
    pub(crate) async fn catch_up(&self) -> CatchUp {
        Sequencer::catch_up(&self.index).await
    }

    /// The log attached with [`InMemoryHub::attach_log`], if any.
    pub(crate) fn log(&self) -> Option<Arc<dyn EventLog>> {
        self.index.sequencer.log().cloned()
    }

    /// The node id every connection id of this hub carries.
    pub fn node_id(&self) -> u64 {
        self.index.node
    }

    /// Registers a subscription; the synchronous core of [`Hub::subscribe`].
    pub fn subscribe_now(&self, principal: &Principal, queue_capacity: usize) -> Subscription {
        let index = &self.index;
        let id = ConnectionId::new(index.node, index.next_id.fetch_add(1, Ordering::Relaxed));
        let registration = Registration {
            index: index.clone(),
            principal: principal.clone(),
            id,
        };
        let (sender, subscription) = channel(id, queue_capacity, registration);
        // The rings before the indexes: an event pushed to one of them from
        // now on is read, whatever this subscription's queue receives.
        let mut rings = Vec::with_capacity(principal.groups().len() + principal.topics().len());
        let everyone = index.everyone.reader(&sender, true);
        for group in principal.groups() {
            rings.push(index.join_ring(&index.group_rings, group, &sender));
        }
        for topic in principal.topics() {
            rings.push(index.join_ring(&index.topic_rings, topic, &sender));
        }
        let subscription = subscription.with_rings(everyone, rings);
        index.connections.write(&id).insert(id, sender.clone());
        add(&index.users, principal.user(), &sender);
        if let Some(session) = principal.session() {
            add(&index.sessions, session, &sender);
        }
        for group in principal.groups() {
            add(&index.groups, group, &sender);
        }
        for topic in principal.topics() {
            add(&index.topics, topic, &sender);
        }
        index.subscriptions.fetch_add(1, Ordering::Relaxed);
        subscription
    }

    /// Delivers `event` to every matching local queue; the synchronous core
    /// of [`Hub::publish`]. Hubs that receive events from elsewhere (a
    /// broker) use this to deliver locally. Durable events go through the
    /// sequencer (see the type's docs) and may be delivered a little later,
    /// in order.
    pub fn deliver(&self, audience: &Audience, event: &Event) {
        match event.cursor() {
            Some(cursor) => Sequencer::offer(&self.index, audience, event, cursor),
            None => {
                self.index.dispatch_now(audience, event);
            }
        }
    }
}

impl Sink for Index {
    fn dispatch(&self, audience: &Audience, event: &Event) {
        self.dispatch_now(audience, event);
    }

    fn signal_missed(&self) {
        self.connections.for_each_shard(|shard| {
            for sender in shard.values() {
                sender.signal_missed();
            }
        });
    }

    fn sequencer(&self) -> &Sequencer {
        &self.sequencer
    }
}

impl Index {
    /// Pushes `event` into every matching queue; returns how many accepted it.
    fn dispatch_now(&self, audience: &Audience, event: &Event) -> usize {
        let index = self;
        index.published.fetch_add(1, Ordering::Relaxed);
        // Numbered before it is pushed anywhere: see `super::ring`.
        let seq = index.seq.fetch_add(1, Ordering::Relaxed);
        // An event that may conflate needs each reader's own queue.
        let shared = event.conflation_key().is_none() || event.cursor().is_some();
        let mut tally = Tally::default();
        match audience {
            Audience::User(user) => send_all(&index.users, user, seq, event, &mut tally),
            Audience::Session(session) => {
                send_all(&index.sessions, session, seq, event, &mut tally);
            }
            Audience::Group(group) if shared => {
                push_to_ring(&index.group_rings, group, seq, event, &mut tally);
            }
            Audience::Group(group) => send_all(&index.groups, group, seq, event, &mut tally),
            Audience::Topic(topic) if shared => {
                push_to_ring(&index.topic_rings, topic, seq, event, &mut tally);
            }
            Audience::Topic(topic) => send_all(&index.topics, topic, seq, event, &mut tally),
            Audience::Connection(id) => {
                if let Some(sender) = index.connections.read(id).get(id) {
                    tally.record(sender.try_send_numbered(seq, event));
                }
            }
            Audience::Everyone if shared => {
                tally.queued += index.everyone.readers();
                if let Some(tail) = index.everyone.push(seq, event) {
                    // Stalled readers of `Everyone`: their positions are in
                    // their queues (see `super::ring`).
                    index.connections.for_each_shard(|shard| {
                        for sender in shard.values() {
                            if sender.is_behind(tail) && sender.lag() {
                                tally.lagged += 1;
                            }
                        }
                    });
                }
            }
            Audience::Everyone => index.connections.for_each_shard(|shard| {
                for sender in shard.values() {
                    tally.record(sender.try_send_numbered(seq, event));
                }
            }),
        }
        if tally.queued > 0 {
            index
                .enqueued
                .fetch_add(tally.queued as u64, Ordering::Relaxed);
        }
        if tally.lagged > 0 {
            index
                .lagged
                .fetch_add(tally.lagged as u64, Ordering::Relaxed);
        }
        tally.queued
    }
}

impl Index {
    /// A reader of `key`'s ring, made when `key` gets its first local
    /// subscriber (the shard's lock orders it with the last one leaving).
    fn join_ring<K: Hash + Eq + Clone>(
        &self,
        rings: &Sharded<K, Arc<Ring>>,
        key: &K,
        sender: &SubscriptionSender,
    ) -> RingReader {
        let mut shard = rings.write(key);
        let ring = shard
            .entry(key.clone())
            .or_insert_with(|| Arc::new(Ring::new(self.lagged.clone())));
        ring.reader(sender, false)
    }
}

impl InMemoryHub {
    /// Signals [`RecvError::Missed`](super::RecvError::Missed) to every
    /// subscription, for hubs whose upstream was interrupted.
    pub fn signal_missed_all(&self) {
        self.index.signal_missed();
    }

    /// Signals [`RecvError::Missed`](super::RecvError::Missed) to the
    /// subscriptions of one audience (whose upstream channel, say, was
    /// interrupted): their streams catch up from the log.
    pub fn signal_missed(&self, audience: &Audience) {
        let index = &self.index;
        let signal = |senders: &Senders| {
            for sender in senders.as_slice() {
                sender.signal_missed();
            }
        };
        match audience {
            Audience::User(key) => index.users.read(key).get(key).map(signal),
            Audience::Session(key) => index.sessions.read(key).get(key).map(signal),
            Audience::Group(key) => index.groups.read(key).get(key).map(signal),
            Audience::Topic(key) => index.topics.read(key).get(key).map(signal),
            Audience::Connection(id) => index
                .connections
                .read(id)
                .get(id)
                .map(|sender| sender.signal_missed()),
            Audience::Everyone => {
                index.signal_missed();
                Some(())
            }
        };
    }

    /// This node's open subscriptions of `audience`: the exact, synchronous
    /// core of [`Hub::presence`] (one index lookup; `Everyone` counts every
    /// subscription).
    pub fn local_presence(&self, audience: &Audience) -> u64 {
        let index = &self.index;
        let count = |senders: Option<&Senders>| senders.map_or(0, |s| s.as_slice().len());
        let streams = match audience {
            Audience::User(key) => count(index.users.read(key).get(key)),
            Audience::Session(key) => count(index.sessions.read(key).get(key)),
            Audience::Group(key) => count(index.groups.read(key).get(key)),
            Audience::Topic(key) => count(index.topics.read(key).get(key)),
            Audience::Connection(id) => usize::from(index.connections.read(id).contains_key(id)),
            Audience::Everyone => index.connections.len(),
        };
        streams as u64
    }

    /// This node's users with streams in `audience`, and how many: the
    /// audience's connections matched against the user index. It scans
    /// every user with a stream here (for a group, a topic or a session),
    /// as a listing of who is online must.
    pub fn local_members(&self, audience: &Audience) -> BTreeMap<UserId, u64> {
        let index = &self.index;
        let mut members = BTreeMap::new();
        let ids = |senders: Option<&Senders>| -> HashSet<ConnectionId> {
            senders.map_or_else(HashSet::new, |s| {
                s.as_slice().iter().map(SubscriptionSender::id).collect()
            })
        };
        let of = match audience {
            Audience::User(user) => {
                let streams = index
                    .users
                    .read(user)
                    .get(user)
                    .map_or(0, |s| s.as_slice().len());
                if streams > 0 {
                    members.insert(user.clone(), streams as u64);
                }
                return members;
            }
            Audience::Everyone => None,
            Audience::Session(key) => Some(ids(index.sessions.read(key).get(key))),
            Audience::Group(key) => Some(ids(index.groups.read(key).get(key))),
            Audience::Topic(key) => Some(ids(index.topics.read(key).get(key))),
            Audience::Connection(_) => return members,
        };
        if of.as_ref().is_some_and(HashSet::is_empty) {
            return members;
        }
        index.users.for_each_shard(|shard| {
            for (user, senders) in shard {
                let streams = match &of {
                    None => senders.as_slice().len(),
                    Some(ids) => senders
                        .as_slice()
                        .iter()
                        .filter(|sender| ids.contains(&sender.id()))
                        .count(),
                };
                if streams > 0 {
                    members.insert(user.clone(), streams as u64);
                }
            }
        });
        members
    }

    /// Subscriptions currently registered.
    pub fn subscriptions(&self) -> usize {
        self.index.connections.len()
    }

    /// Keys held across all indexes (users, sessions, groups, topics,
    /// connections, and the rings of groups and topics). Zero once every subscription is dropped: leak tests
    /// assert on it.
    pub fn index_entries(&self) -> usize {
        let index = &self.index;
        index.users.len()
            + index.sessions.len()
            + index.groups.len()
            + index.topics.len()
            + index.connections.len()
            + index.group_rings.len()
            + index.topic_rings.len()
    }
}

#[async_trait]
impl Hub for InMemoryHub {
    async fn subscribe(
        &self,
        principal: &Principal,
        queue_capacity: usize,
    ) -> Result<Subscription, HubError> {
        self.ready().await;
        Ok(self.subscribe_now(principal, queue_capacity))
    }

    async fn publish(&self, audience: &Audience, event: &Event) -> Result<(), HubError> {
        self.deliver(audience, event);
        Ok(())
    }

    fn attach_log(&self, log: Arc<dyn EventLog>) {
        InMemoryHub::attach_log(self, log);
    }

    async fn presence(&self, audience: &Audience) -> Result<Presence, HubError> {
        Ok(Presence::new(self.local_presence(audience)))
    }

    async fn members(
        &self,
        audience: &Audience,
        after: Option<&UserId>,
        limit: usize,
    ) -> Result<Vec<Member>, HubError> {
        Ok(super::members_page(
            self.local_members(audience),
            after,
            limit,
        ))
    }

    fn stats(&self) -> HubStats {
        let index = &self.index;
        HubStats {
            subscriptions: index.subscriptions.load(Ordering::Relaxed),
            published: index.published.load(Ordering::Relaxed),
            enqueued: index.enqueued.load(Ordering::Relaxed),
            lagged: index.lagged.load(Ordering::Relaxed),
        }
    }
}

impl std::fmt::Debug for InMemoryHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryHub")
            .field("subscriptions", &self.subscriptions())
            .finish_non_exhaustive()
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let index = &self.index;
        let id = self.id;
        index.connections.write(&id).remove(&id);
        remove(&index.users, self.principal.user(), id);
        if let Some(session) = self.principal.session() {
            remove(&index.sessions, session, id);
        }
        for group in self.principal.groups() {
            remove(&index.groups, group, id);
            leave_ring(&index.group_rings, group);
        }
        for topic in self.principal.topics() {
            remove(&index.topics, topic, id);
            leave_ring(&index.topic_rings, topic);
        }
        index.subscriptions.fetch_sub(1, Ordering::Relaxed);
    }
}

const DEFAULT_GAP_WAIT: Duration = Duration::from_millis(100);

#[derive(Default)]
struct Tally {
    queued: usize,
    lagged: usize,
}

impl Tally {
    fn record(&mut self, outcome: SendOutcome) {
        match outcome {
            SendOutcome::Queued => self.queued += 1,
            SendOutcome::Lagged => self.lagged += 1,
            SendOutcome::Closed => {}
        }
    }
}

/// The senders indexed under one key. Most users and sessions have a single
/// connection, so one sender is held inline: at a million subscriptions a
/// `Vec` per key would cost two allocations more per connection. `Many` is
/// boxed to keep every map entry two words smaller.
enum Senders {
    One(SubscriptionSender),
    #[allow(clippy::box_collection)]
    Many(Box<Vec<SubscriptionSender>>),
}

impl Senders {
    fn as_slice(&self) -> &[SubscriptionSender] {
        match self {
            Senders::One(sender) => std::slice::from_ref(sender),
            Senders::Many(senders) => senders.as_slice(),
        }
    }

    fn push(&mut self, sender: SubscriptionSender) {
        *self = match std::mem::replace(self, Senders::Many(Box::default())) {
            Senders::One(first) => Senders::Many(Box::new(vec![first, sender])),
            Senders::Many(mut senders) => {
                senders.push(sender);
                Senders::Many(senders)
            }
        };
    }

    /// Removes the sender for `id`; true when none is left.
    fn remove(&mut self, id: ConnectionId) -> bool {
        match self {
            Senders::One(sender) => sender.id() == id,
            Senders::Many(senders) => {
                if let Some(at) = senders.iter().position(|s| s.id() == id) {
                    senders.swap_remove(at);
                }
                if senders.len() == 1 {
                    if let Some(last) = senders.pop() {
                        *self = Senders::One(last);
                    }
                    return false;
                }
                senders.is_empty()
            }
        }
    }
}

fn add<K: Hash + Eq + Clone>(map: &Sharded<K, Senders>, key: &K, sender: &SubscriptionSender) {
    let mut shard = map.write(key);
    match shard.get_mut(key) {
        Some(senders) => senders.push(sender.clone()),
        None => {
            shard.insert(key.clone(), Senders::One(sender.clone()));
        }
    }
}

fn remove<K: Hash + Eq>(map: &Sharded<K, Senders>, key: &K, id: ConnectionId) {
    let mut shard = map.write(key);
    if shard.get_mut(key).is_some_and(|senders| senders.remove(id)) {
        shard.remove(key);
    }
}

fn send_all<K: Hash + Eq>(
    map: &Sharded<K, Senders>,
    key: &K,
    seq: u64,
    event: &Event,
    tally: &mut Tally,
) {
    if let Some(senders) = map.read(key).get(key) {
        for sender in senders.as_slice() {
            tally.record(sender.try_send_numbered(seq, event));
        }
    }
}

fn push_to_ring<K: Hash + Eq>(
    rings: &Sharded<K, Arc<Ring>>,
    key: &K,
    seq: u64,
    event: &Event,
    tally: &mut Tally,
) {
    // Out of the shard's lock before waking anyone.
    let ring = rings.read(key).get(key).cloned();
    if let Some(ring) = ring {
        tally.queued += ring.readers();
        // The ring lags its own stalled readers (and counts them).
        let _ = ring.push(seq, event);
    }
}

/// Drops `key`'s ring once its last reader is gone. The subscription's
/// readers drop before its registration, so this sees them gone.
fn leave_ring<K: Hash + Eq>(rings: &Sharded<K, Arc<Ring>>, key: &K) {
    let mut shard = rings.write(key);
    if shard.get(key).is_some_and(|ring| ring.readers() == 0) {
        shard.remove(key);
    }
}

/// 64 bits from the operating system's generator. Should it fail (it does
/// not on supported platforms), a randomly keyed hash of the process id and
/// the time still gives distinct nodes distinct ids in practice.
pub(crate) fn random_node_id() -> u64 {
    let mut bytes = [0u8; 8];
    match getrandom::fill(&mut bytes) {
        Ok(()) => u64::from_le_bytes(bytes),
        Err(_) => RandomState::new().hash_one((std::process::id(), std::time::SystemTime::now())),
    }
}
