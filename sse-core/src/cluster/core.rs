//! The protocol's state on one node, and what it does with what the link
//! brings: the half of [`ClusterHub`](super::ClusterHub) that transports
//! reach through their [`Link`](super::Link).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Notify, mpsc};

use super::interest::Interest;
use super::presence::{Announcement, Book, PREFIX, Reply};
use super::transport::{Route, Transport};
use super::wire::Envelope;
use crate::InMemoryHub;
use crate::hub::sequencer::CatchUp;

/// The node's id and its local index, once the start-up hello decided it.
pub(super) struct Started {
    pub(super) node: u64,
    pub(super) local: InMemoryHub,
}

/// Settings the background tasks read.
#[derive(Debug, Clone)]
pub(super) struct Timing {
    pub(super) presence_flush: Duration,
    pub(super) announce_every: Duration,
    pub(super) lease: Duration,
    pub(super) head_poll: Option<Duration>,
    pub(super) timeout: Duration,
}

pub(super) struct Core {
    pub(super) incarnation: u64,
    pub(super) started: OnceLock<Started>,
    pub(super) transport: OnceLock<Arc<dyn Transport>>,
    pub(super) book: Book,
    pub(super) interest: Arc<Interest>,
    pub(super) timing: Timing,
    pub(super) connected: AtomicBool,
    pub(super) reconnects: AtomicU64,
    pub(super) published: AtomicU64,
    pub(super) refused: AtomicU64,
    /// Catch up from the log now (the link came back, messages dropped).
    pub(super) catch_up: Notify,
    /// Presence replies for the announcer to send.
    pub(super) replies: mpsc::UnboundedSender<Reply>,
}

impl Core {
    pub(super) fn node(&self) -> u64 {
        self.started.get().map_or(0, |s| s.node)
    }

    fn own(&self) -> Option<(u64, u64)> {
        self.started.get().map(|s| (s.node, self.incarnation))
    }

    /// A message from the link: an event for the local index, or presence.
    pub(super) fn receive(&self, channel: &str, payload: Bytes) {
        if payload.starts_with(PREFIX) {
            match Announcement::decode(&payload) {
                Some(announcement) => match self.book.apply(announcement, self.own()) {
                    Reply::Nothing => {}
                    reply => {
                        let _ = self.replies.send(reply);
                    }
                },
                None => self.refuse("a presence message that does not decode"),
            }
            return;
        }
        let (Some(started), Some(transport)) = (self.started.get(), self.transport.get()) else {
            return;
        };
        let envelope = match Envelope::decode(payload) {
            Ok(envelope) => envelope,
            Err(error) => {
                self.refuse(&error.to_string());
                return;
            }
        };
        let route = if envelope.event.cursor().is_some() && envelope.audience.is_durable() {
            Route::Durable
        } else {
            Route::of(&envelope.audience)
        };
        if transport.channel(&route) != channel {
            self.refuse("an envelope on a channel that does not carry its audience");
            return;
        }
        if let crate::Audience::Connection(id) = &envelope.audience
            && id.node() != started.node
        {
            return;
        }
        started.local.deliver(&envelope.audience, &envelope.event);
    }

    fn refuse(&self, why: &str) {
        // Counted, and logged now and then: a flood must not flood the logs.
        let refused = self.refused.fetch_add(1, Ordering::Relaxed);
        if refused.is_power_of_two() {
            tracing::warn!(
                why,
                refused = refused + 1,
                "ignoring a message from the broker"
            );
        }
    }

    pub(super) fn link_lost(&self) {
        if self.connected.swap(false, Ordering::SeqCst) {
            tracing::warn!("lost the broker; reconnecting");
        }
    }

    pub(super) fn link_regained(&self) {
        self.connected.store(true, Ordering::SeqCst);
        self.reconnects.fetch_add(1, Ordering::SeqCst);
        tracing::info!("the broker is back; catching up from the log");
        self.resync();
    }

    pub(super) fn link_dropped(&self) {
        tracing::warn!("the broker's client dropped messages; catching up from the log");
        self.resync();
    }

    /// After messages may have been missed: durable events from the log,
    /// presence from every node.
    fn resync(&self) {
        self.catch_up.notify_one();
        let _ = self.replies.send(Reply::AskAll);
    }

    /// Catches up from the log when told to, and every `head_poll` on a
    /// quiet system; retries while the log cannot be read.
    pub(super) async fn run_catch_up(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let told = match self.timing.head_poll {
                Some(every) => tokio::select! {
                    () = self.catch_up.notified() => true,
                    () = tokio::time::sleep(every) => false,
                },
                None => {
                    self.catch_up.notified().await;
                    true
                }
            };
            let Some(started) = self.started.get() else {
                continue;
            };
            if !told && started.local.log().is_none() {
                continue;
            }
            loop {
                match started.local.catch_up().await {
                    CatchUp::Failed => {
                        // The log's link may be noticing the outage later
                        // than the broker's: try again before giving up on
                        // nothing (streams stay open meanwhile).
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                        if !told {
                            break;
                        }
                    }
                    _ => {
                        backoff = Duration::from_millis(100);
                        break;
                    }
                }
            }
        }
    }

    /// Sends this node's presence: changes (batched), lease renewals,
    /// whole tallies when asked.
    pub(super) async fn run_announcer(
        self: Arc<Self>,
        mut replies: mpsc::UnboundedReceiver<Reply>,
    ) {
        let mut alive = tokio::time::interval(self.timing.announce_every);
        alive.tick().await;
        loop {
            tokio::select! {
                () = self.book.changed() => {
                    tokio::time::sleep(self.timing.presence_flush).await;
                    if let Some(changes) = self.book.take_changes(self.node(), self.incarnation, self.timing.lease) {
                        self.announce(&changes).await;
                    }
                }
                _ = alive.tick() => {
                    let alive = self.book.alive(self.node(), self.incarnation, self.timing.lease);
                    self.announce(&alive).await;
                }
                reply = replies.recv() => match reply {
                    Some(Reply::Tally) => {
                        for part in self.book.tally(self.node(), self.incarnation, self.timing.lease) {
                            self.announce(&part).await;
                        }
                    }
                    Some(Reply::AskFor(node)) => {
                        self.announce(&Announcement::Hello { node: self.node(), to: Some(node) }).await;
                    }
                    Some(Reply::AskAll) => {
                        self.announce(&Announcement::Hello { node: self.node(), to: None }).await;
                    }
                    Some(Reply::Nothing) => {}
                    None => return,
                },
            }
        }
    }

    pub(super) async fn announce(&self, announcement: &Announcement) {
        let Some(transport) = self.transport.get() else {
            return;
        };
        let sent = tokio::time::timeout(
            self.timing.timeout,
            transport.publish(&Route::Control, announcement.encode()),
        )
        .await;
        if !matches!(sent, Ok(Ok(()))) {
            // Others notice the skipped number and ask again.
            tracing::debug!("announcing presence failed");
        }
    }
}
