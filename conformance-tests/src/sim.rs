//! A simulated broker for [`ClusterHub`] nodes in one process: it carries
//! their messages in memory, and a seeded [`Faults`] schedule drops,
//! delays, duplicates and reorders them, fails publishes, and cuts and
//! heals links. Used to check the multi-node protocol itself (every
//! engine runs it) without a broker; with [`Faults::none`] it is a
//! perfect broker, for the hub suites.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use sse_conformance::sim::{Faults, SimBroker};
//! let broker = SimBroker::new(7, Faults::none());
//! sse_conformance::hub::run_nodes(|| broker.node()).await;
//! # }
//! ```
//!
//! Every decision comes from one generator seeded with the broker's seed,
//! in the order the nodes ask: under tokio's paused clock on one thread, a
//! seed replays the same faults.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use sse_core::async_trait;
use sse_core::cluster::{ClusterHub, ClusterHubBuilder, Link, Route, Transport, TransportError};

/// What can go wrong on the simulated broker, and how often.
#[derive(Debug, Clone)]
pub struct Faults {
    /// Chance a delivery to one node is lost.
    pub drop: f64,
    /// Chance a delivery to one node happens twice.
    pub duplicate: f64,
    /// Longest delay of a delivery (each one drawn from zero to this, so
    /// messages overtake each other).
    pub max_delay: Duration,
    /// Chance a publish fails (the broker did not take it; half of those
    /// were delivered anyway, as when an answer is lost).
    pub publish_failure: f64,
    /// Chance the client reports dropping a delivery it lost (a
    /// slow-consumer signal), when it loses one.
    pub report_drop: f64,
}

impl Faults {
    /// A perfect broker: every message, once, in order, at once.
    pub fn none() -> Self {
        Self {
            drop: 0.0,
            duplicate: 0.0,
            max_delay: Duration::ZERO,
            publish_failure: 0.0,
            report_drop: 0.0,
        }
    }
}

/// A broker in memory; see the [module docs](self). Cloning gives another
/// handle to the same broker.
#[derive(Clone)]
pub struct SimBroker {
    state: Arc<Mutex<State>>,
}

struct State {
    rng: Rng,
    faults: Faults,
    nodes: Vec<Node>,
    deliveries: u64,
    dropped: u64,
}

struct Node {
    link: Link,
    channels: HashSet<String>,
    cut: bool,
}

/// One node's transport on a [`SimBroker`].
pub struct SimTransport {
    broker: SimBroker,
    node: usize,
}

impl SimBroker {
    /// A broker whose faults are drawn from `seed`.
    pub fn new(seed: u64, faults: Faults) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                rng: Rng(seed),
                faults,
                nodes: Vec::new(),
                deliveries: 0,
                dropped: 0,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a node on this broker, with short protocol timings.
    pub async fn node(&self) -> ClusterHub<SimTransport> {
        self.node_with(
            ClusterHubBuilder::new()
                .hello_wait(Duration::from_millis(20))
                .presence_flush(Duration::from_millis(5))
                .announce_every(Duration::from_millis(200)),
        )
        .await
    }

    /// Starts a node with `options`.
    pub async fn node_with(&self, options: ClusterHubBuilder) -> ClusterHub<SimTransport> {
        let broker = self.clone();
        let started = options
            .start(move |link| async move {
                let mut state = broker.lock();
                state.nodes.push(Node {
                    link,
                    channels: HashSet::new(),
                    cut: false,
                });
                let node = state.nodes.len() - 1;
                drop(state);
                Ok::<_, TransportError>(SimTransport { broker, node })
            })
            .await;
        match started {
            Ok(hub) => hub,
            Err(error) => panic!("a node on the simulated broker failed to start: {error}"),
        }
    }

    /// Cuts node `node` (by start order) off the broker: its publishes
    /// fail and nothing reaches it until [`heal`](Self::heal).
    pub fn cut(&self, node: usize) {
        let link = {
            let mut state = self.lock();
            let Some(n) = state.nodes.get_mut(node) else {
                return;
            };
            if n.cut {
                return;
            }
            n.cut = true;
            n.link.clone()
        };
        link.lost();
    }

    /// Reconnects node `node`: it subscribes everything it needs again and
    /// its link reports that it is back.
    pub fn heal(&self, node: usize) {
        let link = {
            let mut state = self.lock();
            let Some(n) = state.nodes.get_mut(node) else {
                return;
            };
            if !n.cut {
                return;
            }
            n.cut = false;
            n.channels = n.link.routes().iter().map(channel).collect();
            n.link.clone()
        };
        link.regained();
    }

    /// Delivers `payload` on `route` to every node that subscribed to it,
    /// as a client the nodes do not know would (a forger with access to
    /// the broker).
    pub fn inject(&self, route: &Route, payload: Bytes) {
        let name = channel(route);
        let links: Vec<Link> = self
            .lock()
            .nodes
            .iter()
            .filter(|n| !n.cut && n.channels.contains(&name))
            .map(|n| n.link.clone())
            .collect();
        for link in links {
            link.receive(&name, payload.clone());
        }
    }

    /// Nodes started on this broker.
    pub fn nodes(&self) -> usize {
        self.lock().nodes.len()
    }

    /// Deliveries made, and deliveries dropped by a fault, so far.
    pub fn counts(&self) -> (u64, u64) {
        let state = self.lock();
        (state.deliveries, state.dropped)
    }

    /// Sets the faults from now on (`Faults::none()` to let the system
    /// settle before checking it).
    pub fn set_faults(&self, faults: Faults) {
        self.lock().faults = faults;
    }
}

/// The simulated broker's channel name of a route (injective: `Debug`
/// escapes every name).
fn channel(route: &Route) -> String {
    format!("{route:?}")
}

#[async_trait]
impl Transport for SimTransport {
    async fn publish(&self, route: &Route, payload: Bytes) -> Result<(), TransportError> {
        let name = channel(route);
        let mut state = self.broker.lock();
        if state.nodes.get(self.node).is_none_or(|n| n.cut) {
            return Err(TransportError::Unavailable("cut off the broker".into()));
        }
        let failure = state.faults.publish_failure;
        let (failed, delivered_anyway) = (state.rng.chance(failure), state.rng.chance(0.5));
        if failed && !delivered_anyway {
            return Err(TransportError::Unavailable("the publish failed".into()));
        }
        let mut deliveries = Vec::new();
        let faults = state.faults.clone();
        for index in 0..state.nodes.len() {
            if !state.nodes[index].channels.contains(&name) || state.nodes[index].cut {
                continue;
            }
            let link = state.nodes[index].link.clone();
            if state.rng.chance(faults.drop) {
                state.dropped += 1;
                if state.rng.chance(faults.report_drop) {
                    deliveries.push((Duration::ZERO, link, None));
                }
                continue;
            }
            let copies = if state.rng.chance(faults.duplicate) {
                2
            } else {
                1
            };
            for _ in 0..copies {
                let delay = state.rng.duration(faults.max_delay);
                deliveries.push((delay, link.clone(), Some(index)));
            }
        }
        state.deliveries += deliveries.len() as u64;
        drop(state);
        for (delay, link, to) in deliveries {
            let broker = self.broker.clone();
            let (name, payload) = (name.clone(), payload.clone());
            let deliver = move || match to {
                // Unless the node was cut meanwhile.
                Some(to) if broker.lock().nodes.get(to).is_some_and(|n| !n.cut) => {
                    link.receive(&name, payload);
                }
                Some(_) => {}
                None => link.dropped(),
            };
            if delay.is_zero() {
                deliver();
            } else {
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    deliver();
                });
            }
        }
        if failed {
            return Err(TransportError::Unavailable(
                "the publish failed (after it was delivered)".into(),
            ));
        }
        Ok(())
    }

    async fn subscribe(&self, routes: &[Route]) -> Result<(), TransportError> {
        let mut state = self.broker.lock();
        let Some(node) = state.nodes.get_mut(self.node) else {
            return Err(TransportError::Unavailable("no such node".into()));
        };
        if node.cut {
            return Err(TransportError::Unavailable("cut off the broker".into()));
        }
        node.channels.extend(routes.iter().map(channel));
        Ok(())
    }

    async fn unsubscribe(&self, routes: &[Route]) -> Result<(), TransportError> {
        let mut state = self.broker.lock();
        if let Some(node) = state.nodes.get_mut(self.node) {
            for route in routes {
                node.channels.remove(&channel(route));
            }
        }
        Ok(())
    }

    fn channel(&self, route: &Route) -> String {
        channel(route)
    }
}

/// A small seeded generator (splitmix64): enough for fault schedules.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    /// A duration in `0..=max`.
    pub fn duration(&mut self, max: Duration) -> Duration {
        let max = u64::try_from(max.as_micros()).unwrap_or(u64::MAX);
        Duration::from_micros(self.below(max.saturating_add(1)))
    }
}
