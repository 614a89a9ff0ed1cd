//! Which routes this node needs, counted by local stream: a thousand tabs
//! of one user are one subscription. Commands go to the transport in the
//! order each route's count crossed zero, from one task, subscriptions
//! queued meanwhile (a connect storm) in one call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::transport::{Route, Transport};

/// Routes subscribed together at most.
const BATCH: usize = 10_000;

pub(super) struct Interest {
    counts: Mutex<HashMap<Route, usize>>,
    commands: mpsc::UnboundedSender<Command>,
}

enum Command {
    /// Subscribe to these (possibly none) and acknowledge: the ack also
    /// means every earlier command is done.
    Subscribe(Vec<Route>, oneshot::Sender<()>),
    Unsubscribe(Vec<Route>),
}

/// Releases a stream's routes when it drops.
pub(super) struct Held {
    interest: Weak<Interest>,
    routes: Vec<Route>,
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(interest) = self.interest.upgrade() {
            interest.release(&self.routes);
        }
    }
}

impl Interest {
    /// The counts, and the task that carries their commands to `transport`
    /// (set once the transport exists).
    pub(super) fn new() -> (Arc<Self>, Runner) {
        let (commands, receiver) = mpsc::unbounded_channel();
        let interest = Arc::new(Self {
            counts: Mutex::new(HashMap::new()),
            commands,
        });
        (interest, Runner { receiver })
    }

    /// Counts a stream's `routes`; the receiver resolves once the new ones
    /// are subscribed (or the attempt failed: the link then reports a
    /// loss, and its regaining re-subscribes everything).
    pub(super) fn acquire(self: &Arc<Self>, routes: Vec<Route>) -> (Held, oneshot::Receiver<()>) {
        let (ack, acked) = oneshot::channel();
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let new: Vec<Route> = routes
            .iter()
            .filter(|route| {
                let count = counts.entry((*route).clone()).or_insert(0);
                *count += 1;
                *count == 1
            })
            .cloned()
            .collect();
        // Queued under the lock: the transport sees a route's subscribe and
        // unsubscribe in the order its count crossed zero.
        let _ = self.commands.send(Command::Subscribe(new, ack));
        drop(counts);
        let held = Held {
            interest: Arc::downgrade(self),
            routes,
        };
        (held, acked)
    }

    fn release(&self, routes: &[Route]) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let gone: Vec<Route> = routes
            .iter()
            .filter(|route| match counts.get_mut(*route) {
                Some(count) if *count > 1 => {
                    *count -= 1;
                    false
                }
                Some(_) => {
                    counts.remove(*route);
                    true
                }
                None => false,
            })
            .cloned()
            .collect();
        if !gone.is_empty() {
            let _ = self.commands.send(Command::Unsubscribe(gone));
        }
    }

    /// Every route some local stream needs.
    pub(super) fn routes(&self) -> Vec<Route> {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }

    /// Routes held (for leak checks).
    pub(super) fn len(&self) -> usize {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// Carries the commands to the transport, in order.
pub(super) struct Runner {
    receiver: mpsc::UnboundedReceiver<Command>,
}

impl Runner {
    pub(super) async fn run(mut self, transport: Arc<dyn Transport>, timeout: Duration) {
        while let Some(command) = self.receiver.recv().await {
            match command {
                Command::Subscribe(mut routes, ack) => {
                    // Subscriptions queued meanwhile go in the same call,
                    // up to the first unsubscription, which must follow.
                    let mut acks = vec![ack];
                    let mut then = None;
                    while routes.len() < BATCH {
                        match self.receiver.try_recv() {
                            Ok(Command::Subscribe(more, ack)) => {
                                routes.extend(more);
                                acks.push(ack);
                            }
                            Ok(other) => {
                                then = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    if !routes.is_empty() {
                        match tokio::time::timeout(timeout, transport.subscribe(&routes)).await {
                            Ok(Ok(())) => {}
                            Ok(Err(error)) => {
                                tracing::warn!(%error, "subscribing failed; the link catches up when it is back");
                            }
                            Err(_) => tracing::warn!(
                                "subscribing timed out; the link catches up when it is back"
                            ),
                        }
                    }
                    for ack in acks {
                        let _ = ack.send(());
                    }
                    if let Some(Command::Unsubscribe(routes)) = then {
                        unsubscribe(&*transport, &routes, timeout).await;
                    }
                }
                Command::Unsubscribe(routes) => unsubscribe(&*transport, &routes, timeout).await,
            }
        }
    }
}

async fn unsubscribe(transport: &dyn Transport, routes: &[Route], timeout: Duration) {
    match tokio::time::timeout(timeout, transport.unsubscribe(routes)).await {
        Ok(Ok(())) => {}
        // A route left subscribed only brings messages no one reads here.
        Ok(Err(error)) => tracing::debug!(%error, "unsubscribing failed"),
        Err(_) => tracing::debug!("unsubscribing timed out"),
    }
}
