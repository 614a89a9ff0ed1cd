//! [`SseBody`]: the response body, a live event stream or a short refusal.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use sse_core::{ConnectionId, Cursor, Principal, RecvError, StoreError, Subscription};
use sync_wrapper::SyncWrapper;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::WaitForCancellationFutureOwned;
use tracing::Span;

use crate::limits::Permit;
use crate::metrics::DisconnectCause;
use crate::replay::{self, CatchUp, Position};
use crate::service::Shared;

pin_project! {
    /// The body of a stream response.
    ///
    /// For an accepted request it is the live event stream: the prelude
    /// (`retry:` hint and `connected` event), any replayed events, then live
    /// events as the hub delivers them, heartbeat comments while idle, and a
    /// jittered `retry:` when the service shuts down. An event is encoded
    /// once and its bytes are shared by every connection; events that are
    /// ready together leave as one chunk (up to 16 KiB), so a burst costs
    /// one write rather than one per event.
    ///
    /// For a refused request it is the short plain-text reason.
    ///
    /// Dropping it (the client went away, a write failed) unregisters the
    /// connection from the hub and releases its connection-limit slot.
    pub struct SseBody {
        #[pin]
        kind: Kind,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind {
        Stream {
            #[pin]
            tick: Sleep,
            #[pin]
            shutdown: WaitForCancellationFutureOwned,
            state: StreamState,
        },
        Full {
            data: Option<Bytes>,
        },
    }
}

/// A store query in flight. `SyncWrapper` makes the body `Sync` (warp
/// requires it) without requiring the store's future to be: it is only
/// ever reached through `&mut`.
type CatchUpFuture = SyncWrapper<Pin<Box<dyn Future<Output = Result<CatchUp, StoreError>> + Send>>>;

/// Everything a live stream owns besides its two pinned futures.
pub(crate) struct StreamState {
    shared: Arc<Shared>,
    principal: Principal,
    /// `None` for a poll.
    id: Option<ConnectionId>,
    subscription: Option<Subscription>,
    pending: VecDeque<Bytes>,
    /// The log position the client stands at: every durable event
    /// addressed to it up to here was sent (replayed or live). Live durable
    /// events at or below it are skipped. Hubs deliver durable events in
    /// position order without gaps (see `sse_core::log`), so any other one
    /// is the next to send.
    watermark: Cursor,
    /// When the last chunk went out: a heartbeat follows `heartbeat` after
    /// it, never later (the stream announces that interval to clients).
    last_write: Instant,
    next_heartbeat: Option<Instant>,
    deadline: Option<Instant>,
    /// When the principal's credentials expire (see `Principal::expires_at`).
    expiry: Option<Instant>,
    last_delivery: Instant,
    catch_up: Option<CatchUpFuture>,
    /// The waker the shutdown future was last polled with.
    shutdown_waker: Option<Waker>,
    /// Set once the stream decided to end; it ends after `pending` drains.
    closing: Option<DisconnectCause>,
    finished: bool,
    connected_at: Instant,
    delivered: u64,
    _permit: Permit,
    span: Span,
}

/// What the connect step hands to the body.
pub(crate) struct Opened {
    pub(crate) shared: Arc<Shared>,
    pub(crate) principal: Principal,
    /// `None` for a poll: the prelude, and the response ends.
    pub(crate) subscription: Option<Subscription>,
    pub(crate) prelude: Vec<Bytes>,
    pub(crate) watermark: Cursor,
    pub(crate) permit: Permit,
    pub(crate) span: Span,
}

impl SseBody {
    pub(crate) fn full(text: impl Into<Bytes>) -> Self {
        Self {
            kind: Kind::Full {
                data: Some(text.into()),
            },
        }
    }

    pub(crate) fn stream(opened: Opened) -> Self {
        let Opened {
            shared,
            principal,
            subscription,
            prelude,
            watermark,
            permit,
            span,
        } = opened;
        let now = Instant::now();
        let config = &shared.config;
        let next_heartbeat = config.heartbeat.map(|every| now + every);
        let deadline = config.max_lifetime.map(|lifetime| {
            // Up to a tenth earlier, per stream: streams opened together
            // (a node's restart) end spread out.
            let key = subscription.as_ref().map(|s| s.id().get());
            now + shared.jittered_lifetime(lifetime, key)
        });
        // A wall-clock expiry becomes an instant on the stream's clock; one
        // already past (authenticated a moment ago) ends the stream at once.
        let expiry = principal.expires_at().map(|at| {
            now + at
                .duration_since(std::time::SystemTime::now())
                .unwrap_or_default()
        });
        let shutdown = shared.shutdown.wait_owned();
        let polling = subscription.is_none();
        let state = StreamState {
            id: subscription.as_ref().map(Subscription::id),
            principal,
            subscription,
            pending: prelude.into(),
            watermark,
            last_write: now,
            next_heartbeat,
            deadline,
            expiry,
            last_delivery: now,
            catch_up: None,
            shutdown_waker: None,
            closing: polling.then_some(DisconnectCause::Polled),
            finished: false,
            connected_at: now,
            delivered: 0,
            _permit: permit,
            span,
            shared,
        };
        let first_wake = state.next_wake(now);
        Self {
            kind: Kind::Stream {
                tick: tokio::time::sleep_until(first_wake),
                shutdown,
                state,
            },
        }
    }
}

impl Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.project().kind.project() {
            KindProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            KindProj::Stream {
                tick,
                shutdown,
                state,
            } => state
                .poll_next(cx, tick, shutdown)
                .map(|frame| frame.map(|bytes| Ok(Frame::data(bytes)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full { data } => data.is_none(),
            Kind::Stream { state, .. } => state.finished,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Kind::Stream { .. } => SizeHint::default(),
        }
    }
}

impl std::fmt::Debug for SseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Full { data } => f.debug_struct("SseBody::Full").field("data", data).finish(),
            Kind::Stream { state, .. } => f
                .debug_struct("SseBody::Stream")
                .field("connection", &state.id)
                .field("user", state.principal.user())
                .finish_non_exhaustive(),
        }
    }
}

/// Frames ready together are sent as one chunk up to this size.
const COALESCE_LIMIT: usize = 16 * 1024;

impl StreamState {
    /// The next chunk to write: every frame that is ready now, up to
    /// [`COALESCE_LIMIT`]. A burst then costs one chunk header and one
    /// write instead of one per event; a lone frame goes out as the shared
    /// encoded bytes, uncopied.
    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        mut tick: Pin<&mut Sleep>,
        mut shutdown: Pin<&mut WaitForCancellationFutureOwned>,
    ) -> Poll<Option<Bytes>> {
        let delivered_before = self.delivered;
        let first = match self.poll_frame(cx, tick.as_mut(), shutdown.as_mut()) {
            Poll::Ready(Some(frame)) => frame,
            other => return other,
        };
        let mut batch: Option<BytesMut> = None;
        while batch.as_ref().map_or(first.len(), BytesMut::len) < COALESCE_LIMIT {
            // `None` (the stream ended) is seen again on the next poll.
            let Poll::Ready(Some(next)) = self.poll_frame(cx, tick.as_mut(), shutdown.as_mut())
            else {
                break;
            };
            batch
                .get_or_insert_with(|| {
                    let mut batch = BytesMut::with_capacity(first.len() + next.len());
                    batch.extend_from_slice(&first);
                    batch
                })
                .extend_from_slice(&next);
        }
        if self.pending.is_empty() && self.pending.capacity() != 0 {
            // The prelude or a replay grew it; idle streams hold nothing.
            self.pending = VecDeque::new();
        }
        // Once per chunk, not per event: every stream shares this counter.
        self.shared
            .metrics
            .delivered(self.delivered - delivered_before);
        self.last_write = Instant::now();
        Poll::Ready(Some(batch.map_or(first, BytesMut::freeze)))
    }

    fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
        mut tick: Pin<&mut Sleep>,
        shutdown: Pin<&mut WaitForCancellationFutureOwned>,
    ) -> Poll<Option<Bytes>> {
        if self.finished {
            return Poll::Ready(None);
        }
        if self.closing.is_none() && self.shutdown_requested(cx, shutdown) {
            let retry = self.shared.jittered_shutdown_retry(self.id);
            self.close(DisconnectCause::Shutdown, Some(retry));
        }
        loop {
            if let Some(frame) = self.pending.pop_front() {
                return Poll::Ready(Some(frame));
            }
            if let Some(cause) = self.closing {
                self.finish(cause);
                return Poll::Ready(None);
            }
            if let Some(catch_up) = self.catch_up.as_mut() {
                match catch_up.get_mut().as_mut().poll(cx) {
                    Poll::Ready(Ok(caught_up)) => {
                        self.catch_up = None;
                        self.apply(caught_up);
                        continue;
                    }
                    Poll::Ready(Err(error)) => {
                        self.catch_up = None;
                        self.span.in_scope(|| {
                            tracing::warn!(%error, "catching up from the log failed; closing so the client reconnects")
                        });
                        // Spread the reconnects out: the log is struggling.
                        let retry = self.shared.jittered_shutdown_retry(self.id);
                        self.close(DisconnectCause::StoreError, Some(retry));
                        continue;
                    }
                    // Live events wait in the queue until the catch-up is
                    // sent, so they cannot overtake it.
                    Poll::Pending => {}
                }
            } else if let Some(frame) = self.poll_live(cx) {
                return Poll::Ready(Some(frame));
            } else if self.closing.is_some() || !self.pending.is_empty() || self.catch_up.is_some()
            {
                continue;
            }
            if tick.as_mut().poll(cx).is_ready() {
                let now = Instant::now();
                self.on_tick(now);
                tick.as_mut().reset(self.next_wake(now));
                continue;
            }
            return Poll::Pending;
        }
    }

    /// Whether the service is shutting down. Polling the shutdown future
    /// takes a lock that every stream shares, so it is polled only to
    /// register a waker this stream has not registered yet; otherwise the
    /// flag is read.
    fn shutdown_requested(
        &mut self,
        cx: &mut Context<'_>,
        shutdown: Pin<&mut WaitForCancellationFutureOwned>,
    ) -> bool {
        if self.shared.shutdown.is_started() {
            return true;
        }
        if self
            .shutdown_waker
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()))
        {
            return false;
        }
        self.shutdown_waker = Some(cx.waker().clone());
        Future::poll(shutdown, cx).is_ready()
    }

    /// Takes the next live event worth sending. Control outcomes (lag,
    /// close, missed events) update the state and return `None`.
    fn poll_live(&mut self, cx: &mut Context<'_>) -> Option<Bytes> {
        loop {
            let subscription = self.subscription.as_mut()?;
            let event = match subscription.poll_recv(cx) {
                Poll::Pending => return None,
                Poll::Ready(Ok(event)) => event,
                Poll::Ready(Err(RecvError::Missed)) => {
                    self.start_catch_up();
                    return None;
                }
                Poll::Ready(Err(RecvError::Lagged)) => {
                    self.close(DisconnectCause::Lagged, None);
                    return None;
                }
                Poll::Ready(Err(_)) => {
                    self.close(DisconnectCause::HubClosed, None);
                    return None;
                }
            };
            if event.is_disconnect() {
                self.close(DisconnectCause::Disconnected, None);
                return None;
            }
            if let Some(cursor) = event.cursor() {
                if cursor.epoch() != self.watermark.epoch() {
                    // The log's history was replaced: the catch-up answers
                    // with a reset to the new one.
                    self.start_catch_up();
                    return None;
                }
                if cursor.position() <= self.watermark.position() {
                    // Already sent, by replay or catch-up.
                    continue;
                }
                self.watermark = cursor;
                if let Some(revocation) = event.revocation() {
                    // A record for streams, never sent to a client.
                    if revocation.ends(self.principal.session()) {
                        self.close(DisconnectCause::Disconnected, None);
                        return None;
                    }
                    continue;
                }
            }
            self.delivered += 1;
            if self.shared.config.idle_timeout.is_some() {
                self.last_delivery = Instant::now();
            }
            return Some(event.into_frame());
        }
    }

    fn on_tick(&mut self, now: Instant) {
        if self.expiry.is_some_and(|expiry| now >= expiry) {
            // Come back at once: the client re-authenticates, with fresh
            // credentials or into a 401.
            let retry = self.shared.jittered_expiry_retry(self.id);
            self.close(DisconnectCause::CredentialsExpired, Some(retry));
            return;
        }
        if self.deadline.is_some_and(|deadline| now >= deadline) {
            let retry = self.shared.jittered_shutdown_retry(self.id);
            self.close(DisconnectCause::MaxLifetime, Some(retry));
            return;
        }
        if let Some(idle) = self.shared.config.idle_timeout
            && now.duration_since(self.last_delivery) >= idle
        {
            self.close(DisconnectCause::IdleTimeout, None);
            return;
        }
        if let (Some(every), Some(due)) = (self.shared.config.heartbeat, self.next_heartbeat)
            && now >= due
        {
            // Due `every` after the last write, not after the last tick
            // (which let silences reach twice the interval).
            let silent_until = self.last_write + every;
            if now >= silent_until {
                self.pending.push_back(self.shared.heartbeat.clone());
                self.shared.metrics.heartbeat();
                self.next_heartbeat = Some(now + every);
            } else {
                self.next_heartbeat = Some(silent_until);
            }
        }
    }

    fn next_wake(&self, now: Instant) -> Instant {
        let idle = self
            .shared
            .config
            .idle_timeout
            .map(|idle| self.last_delivery + idle);
        [self.next_heartbeat, self.deadline, self.expiry, idle]
            .into_iter()
            .flatten()
            .min()
            // Nothing to wake for: park the timer far away.
            .unwrap_or(now + Duration::from_secs(365 * 24 * 3600))
    }

    fn start_catch_up(&mut self) {
        let log = self.shared.notifier.log().clone();
        let principal = self.principal.clone();
        let position = Position::After(self.watermark);
        let limit = self.shared.config.replay_limit;
        self.catch_up = Some(SyncWrapper::new(Box::pin(async move {
            // A panicking log ends this stream, not the connection task.
            AssertUnwindSafe(replay::catch_up(&*log, &principal, position, limit))
                .catch_unwind()
                .await
                .unwrap_or_else(|_| Err(StoreError::Backend("the event log panicked".into())))
        })));
    }

    fn apply(&mut self, caught_up: CatchUp) {
        let CatchUp {
            frames,
            watermark,
            replayed,
            reset,
            revoked,
            ..
        } = caught_up;
        if reset
            || watermark.epoch() != self.watermark.epoch()
            || watermark.position() > self.watermark.position()
        {
            self.watermark = watermark;
        }
        self.pending.extend(frames);
        self.shared.metrics.replayed(replayed);
        if reset {
            self.shared.metrics.reset();
        }
        self.span.in_scope(|| {
            tracing::info!(
                replayed,
                reset,
                "caught up from the log after the hub missed events"
            )
        });
        if revoked {
            // Revoked while this stream was open: it ends after what it
            // was sent up to here.
            self.close(DisconnectCause::Disconnected, None);
        }
    }

    /// Decides to end: `retry` (if any) is sent after what is pending.
    fn close(&mut self, cause: DisconnectCause, retry: Option<Bytes>) {
        if self.closing.is_some() {
            return;
        }
        self.closing = Some(cause);
        self.catch_up = None;
        // Unregister now: nothing more will be read from the hub.
        self.subscription = None;
        self.pending.extend(retry);
    }

    fn finish(&mut self, cause: DisconnectCause) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.subscription = None;
        if self.id.is_some() {
            // A poll never joined.
            crate::presence::changed(&self.shared, &self.principal);
        }
        let seconds = self.connected_at.elapsed().as_secs_f64();
        self.shared.metrics.disconnected(cause, seconds);
        self.shared
            .metrics
            .hub(|| self.shared.notifier.hub().stats());
        self.shared.stream_ended.notify_waiters();
        let delivered = self.delivered;
        self.span.in_scope(|| {
            tracing::info!(
                cause = cause.as_str(),
                delivered,
                seconds,
                "event stream closed"
            )
        });
    }
}

impl Drop for StreamState {
    fn drop(&mut self) {
        // Any end the stream did not choose is the client going away, or a
        // stalled client whose queue the hub closed while the server could
        // not write to it (so the stream was never asked for data).
        let lagged = matches!(
            self.subscription.as_mut().map(Subscription::try_recv),
            Some(Err(RecvError::Lagged))
        );
        self.finish(if lagged {
            DisconnectCause::Lagged
        } else {
            DisconnectCause::ClientGone
        });
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_body_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<super::SseBody>();
    }
}
