//! [`ClusterHub`]: a [`Hub`] over any [`Transport`].

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Notify, mpsc};

use super::core::{Core, Started, Timing};
use super::interest::{Held, Interest};
use super::presence::{Announcement, Book};
use super::transport::{Link, Route, Transport, TransportError};
use super::wire::Envelope;
use crate::{
    Audience, Event, EventLog, Hub, HubError, HubStats, InMemoryHub, Member, Presence, Principal,
    Subscription, UserId,
};

/// A [`Hub`] that spans every node on one broker, through the engine's
/// [`Transport`]; see the [module docs](super) for the protocol.
///
/// Each node keeps its connections in an [`InMemoryHub`] and delivers
/// what the broker brings through it. Cloning gives another handle to the
/// same hub; its background tasks end when the last handle is dropped.
pub struct ClusterHub<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for ClusterHub<T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<T> {
    core: Arc<Core>,
    transport: Arc<T>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl<T> Drop for Inner<T> {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        // Say goodbye, so other nodes stop counting this one at once.
        let goodbye = Announcement::Gone {
            node: self.core.node(),
            incarnation: self.core.incarnation,
        };
        let core = self.core.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { core.announce(&goodbye).await });
        }
    }
}

/// Options for a [`ClusterHub`]: `ClusterHubBuilder::new()`, then
/// [`start`](ClusterHubBuilder::start).
#[derive(Debug, Clone)]
#[must_use = "call `start` to start the hub"]
pub struct ClusterHubBuilder {
    presence_flush: Duration,
    announce_every: Duration,
    head_poll: Option<Duration>,
    timeout: Duration,
    hello_wait: Duration,
    gap_wait: Duration,
}

impl Default for ClusterHubBuilder {
    fn default() -> Self {
        Self {
            presence_flush: Duration::from_millis(100),
            announce_every: Duration::from_secs(5),
            head_poll: Some(Duration::from_secs(1)),
            timeout: Duration::from_secs(2),
            hello_wait: Duration::from_millis(200),
            gap_wait: Duration::from_millis(100),
        }
    }
}

/// How many announce intervals a node counts for without a word.
const LEASE_ANNOUNCES: u32 = 6;

impl ClusterHubBuilder {
    /// The default options.
    pub fn new() -> Self {
        Self::default()
    }

    /// How long a change in this node's streams may wait before other
    /// nodes hear of it (100 ms; changes meanwhile go together).
    pub fn presence_flush(mut self, every: Duration) -> Self {
        self.presence_flush = every;
        self
    }

    /// How often a node renews its presence lease (5 s); a node counts
    /// for six of these after its last word.
    pub fn announce_every(mut self, every: Duration) -> Self {
        self.announce_every = every.max(Duration::from_millis(10));
        self
    }

    /// How often a quiet node reads the log's head to deliver committed
    /// events whose publish never came (1 s; `None`: only after the link
    /// was lost or dropped messages).
    pub fn head_poll(mut self, every: Option<Duration>) -> Self {
        self.head_poll = every.map(|e| e.max(Duration::from_millis(10)));
        self
    }

    /// How long a publish, a subscription or an announcement waits on the
    /// broker (2 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long a starting node listens for the ids of live nodes before
    /// it picks its own (200 ms).
    pub fn hello_wait(mut self, wait: Duration) -> Self {
        self.hello_wait = wait;
        self
    }

    /// How long a durable event waits for a missing position below it
    /// before the position is read from the log (100 ms).
    pub fn gap_wait(mut self, wait: Duration) -> Self {
        self.gap_wait = wait;
        self
    }

    /// Starts a node: `connect` gets the [`Link`] its transport reports
    /// to and returns the connected transport; the node then says hello,
    /// picks an id no live node holds and subscribes to the routes every
    /// node reads. The hub is live when this returns.
    pub async fn start<T, F, Fut, E>(self, connect: F) -> Result<ClusterHub<T>, E>
    where
        T: Transport,
        F: FnOnce(Link) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: From<TransportError>,
    {
        let (interest, runner) = Interest::new();
        let (replies, replies_rx) = mpsc::unbounded_channel();
        let core = Arc::new(Core {
            incarnation: random_u64(),
            started: OnceLock::new(),
            transport: OnceLock::new(),
            book: Book::new(),
            interest,
            timing: Timing {
                presence_flush: self.presence_flush,
                announce_every: self.announce_every,
                lease: self.announce_every * LEASE_ANNOUNCES,
                head_poll: self.head_poll,
                timeout: self.timeout,
            },
            connected: AtomicBool::new(true),
            reconnects: AtomicU64::new(0),
            published: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            catch_up: Notify::new(),
            replies,
        });
        let transport = Arc::new(
            connect(Link {
                core: Arc::downgrade(&core),
            })
            .await?,
        );
        let as_dyn: Arc<dyn Transport> = transport.clone();
        let _ = core.transport.set(as_dyn.clone());
        let timeout = self.timeout;
        let confirm = |routes: Vec<Route>| {
            let transport = transport.clone();
            async move {
                match tokio::time::timeout(timeout, transport.subscribe(&routes)).await {
                    Ok(result) => result,
                    Err(_) => Err(TransportError::Unavailable(
                        "the broker did not confirm a subscription in time".into(),
                    )),
                }
            }
        };
        // Hear who is live, then take an id none of them holds.
        confirm(vec![Route::Control]).await?;
        core.announce(&Announcement::Hello { node: 0, to: None })
            .await;
        tokio::time::sleep(self.hello_wait).await;
        let taken = core.book.heard();
        let node = loop {
            let candidate = random_u64();
            if candidate != 0 && !taken.contains(&candidate) {
                break candidate;
            }
        };
        let local = InMemoryHub::with_node_id(node).gap_wait(self.gap_wait);
        let _ = core.started.set(Started { node, local });
        confirm(vec![Route::Durable, Route::Everyone, Route::Node(node)]).await?;
        // An empty first tally: the others know this node from now on.
        for part in core.book.tally(node, core.incarnation, core.timing.lease) {
            core.announce(&part).await;
        }
        let tasks = vec![
            tokio::spawn(runner.run(as_dyn, self.timeout)),
            tokio::spawn(core.clone().run_announcer(replies_rx)),
            tokio::spawn(core.clone().run_catch_up()),
        ];
        Ok(ClusterHub {
            inner: Arc::new(Inner {
                core,
                transport,
                tasks,
            }),
        })
    }
}

impl<T: Transport> ClusterHub<T> {
    fn started(&self) -> &Started {
        // `start` sets it before a `ClusterHub` exists.
        self.inner
            .core
            .started
            .get()
            .unwrap_or_else(|| unreachable!("a ClusterHub exists only once started"))
    }

    /// This node's id: the high half of every connection id it hands out,
    /// and no other live node's.
    pub fn node_id(&self) -> u64 {
        self.started().node
    }

    /// The engine's transport.
    pub fn transport(&self) -> &T {
        &self.inner.transport
    }

    /// This node's connections.
    pub fn local(&self) -> &InMemoryHub {
        &self.started().local
    }

    /// Whether the link to the broker is up (as the transport last said).
    pub fn is_connected(&self) -> bool {
        self.inner.core.connected.load(Ordering::SeqCst)
    }

    /// How many times the link was regained after being lost.
    pub fn reconnects(&self) -> u64 {
        self.inner.core.reconnects.load(Ordering::SeqCst)
    }

    /// Routes this node subscribed to for its streams (besides the ones
    /// every node reads). Zero when it serves no one.
    pub fn routes(&self) -> usize {
        self.inner.core.interest.len()
    }

    /// Every route this node needs now, for a transport re-subscribing
    /// after a reconnect: its streams' and the ones every node reads.
    pub fn all_routes(&self) -> Vec<Route> {
        all_routes(&self.inner.core)
    }

    /// Messages from the broker that were refused (not an envelope, or on a
    /// channel that does not carry their audience).
    pub fn refused(&self) -> u64 {
        self.inner.core.refused.load(Ordering::Relaxed)
    }

    /// Online users of `audience` with their streams, on every node (as
    /// [`Hub::presence`] counts them).
    pub fn members(&self, audience: &Audience) -> BTreeMap<UserId, u64> {
        let mut members = BTreeMap::new();
        self.inner.core.book.local_members(audience, &mut members);
        self.inner.core.book.remote_members(audience, &mut members);
        members
    }
}

/// Every route `core`'s node needs now.
pub(super) fn all_routes(core: &Core) -> Vec<Route> {
    let mut routes = core.interest.routes();
    routes.extend([Route::Control, Route::Durable, Route::Everyone]);
    if let Some(started) = core.started.get() {
        routes.push(Route::Node(started.node));
    }
    routes
}

impl Link {
    /// Every route the node needs now (for re-subscribing after a
    /// reconnect): its streams' and the ones every node reads.
    pub fn routes(&self) -> Vec<Route> {
        self.core
            .upgrade()
            .map(|core| all_routes(&core))
            .unwrap_or_default()
    }
}

/// The routes a stream of `principal` reads besides the shared ones.
fn routes_of(principal: &Principal) -> Vec<Route> {
    let mut routes = vec![Route::Audience(Audience::User(principal.user().clone()))];
    routes.extend(
        principal
            .session()
            .map(|s| Route::Audience(Audience::Session(s.clone()))),
    );
    routes.extend(
        principal
            .groups()
            .iter()
            .map(|g| Route::Audience(Audience::Group(g.clone()))),
    );
    routes.extend(
        principal
            .topics()
            .iter()
            .map(|t| Route::Audience(Audience::Topic(t.clone()))),
    );
    routes
}

/// Releases a stream's routes and presence when it drops.
struct Guard {
    _held: Held,
    core: Arc<Core>,
    principal: Principal,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.core.book.local_change(&self.principal, false);
    }
}

#[async_trait]
impl<T: Transport> Hub for ClusterHub<T> {
    async fn subscribe(
        &self,
        principal: &Principal,
        queue_capacity: usize,
    ) -> Result<Subscription, HubError> {
        let core = &self.inner.core;
        let local = self.local();
        local.ready().await;
        let subscription = local.subscribe_now(principal, queue_capacity);
        let (held, acked) = core.interest.acquire(routes_of(principal));
        core.book.local_change(principal, true);
        let subscription = subscription.with_guard(Guard {
            _held: held,
            core: core.clone(),
            principal: principal.clone(),
        });
        // Once acknowledged, the broker delivers the stream's routes. While
        // the broker is down the attempt fails at once: the link's return
        // re-subscribes and catches up.
        match tokio::time::timeout(core.timing.timeout, acked).await {
            Ok(Ok(())) => Ok(subscription),
            Ok(Err(_)) => Err(HubError::Rejected("the hub is shutting down".into())),
            Err(_) => {
                tracing::warn!(
                    "the broker did not confirm a subscription in time; it catches up on reconnect"
                );
                Ok(subscription)
            }
        }
    }

    async fn publish(&self, audience: &Audience, event: &Event) -> Result<(), HubError> {
        let core = &self.inner.core;
        let payload = Envelope::new(audience.clone(), event.clone())
            .try_encode()
            .map_err(|e| HubError::Rejected(e.to_string()))?;
        let route = if event.cursor().is_some() && audience.is_durable() {
            Route::Durable
        } else {
            Route::of(audience)
        };
        let sent = tokio::time::timeout(
            core.timing.timeout,
            self.inner.transport.publish(&route, payload),
        )
        .await;
        match sent {
            Ok(Ok(())) => {
                core.published.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Ok(Err(TransportError::Refused(why))) => Err(HubError::Rejected(why)),
            Ok(Err(TransportError::Unavailable(error))) => Err(HubError::Unavailable(error)),
            Err(_) => Err(HubError::Unavailable(
                "the broker did not take the message in time".into(),
            )),
        }
    }

    fn stats(&self) -> HubStats {
        let mut stats = self.local().stats();
        stats.published = self.inner.core.published.load(Ordering::Relaxed);
        stats
    }

    fn attach_log(&self, log: Arc<dyn EventLog>) {
        self.local().attach_log(log);
    }

    /// This node's exact count plus every other live node's as last
    /// announced (within [`presence_flush`](ClusterHubBuilder::presence_flush));
    /// answered from memory. A node that died stops counting when its
    /// lease ends (six [`announce_every`](ClusterHubBuilder::announce_every),
    /// 30 s by default). A connection on another node is not answered
    /// ([`HubError::Unsupported`]).
    async fn presence(&self, audience: &Audience) -> Result<Presence, HubError> {
        let local = self.local().local_presence(audience);
        match audience {
            Audience::Connection(id) if id.node() == self.node_id() => Ok(Presence::new(local)),
            Audience::Connection(_) => Err(HubError::Unsupported(
                "presence of another node's connection",
            )),
            other => Ok(Presence::new(
                local + self.inner.core.book.remote_count(other),
            )),
        }
    }

    /// [`members`](ClusterHub::members), one page: this node's exact
    /// streams plus every other live node's as last announced.
    async fn members(
        &self,
        audience: &Audience,
        after: Option<&UserId>,
        limit: usize,
    ) -> Result<Vec<Member>, HubError> {
        if matches!(audience, Audience::Connection(_)) {
            return Err(HubError::Unsupported("members of a connection"));
        }
        Ok(crate::hub::members_page(
            self.members(audience),
            after,
            limit,
        ))
    }
}

impl<T> std::fmt::Debug for ClusterHub<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterHub")
            .field("node", &format_args!("{:016x}", self.inner.core.node()))
            .field(
                "connected",
                &self.inner.core.connected.load(Ordering::Relaxed),
            )
            .finish_non_exhaustive()
    }
}

/// 64 bits from the operating system's generator.
fn random_u64() -> u64 {
    crate::hub::random_node_id()
}
