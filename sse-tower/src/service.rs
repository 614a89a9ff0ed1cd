//! [`SseService`]: the tower service that serves the event stream.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response};
use sse_core::{AuthRejection, ConnectionId, Event, Notifier, Principal, SessionAuthenticator};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::config::{Config, SseServiceBuilder};
use crate::limits::ConnectionLimits;
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::{SseBody, SseLayer, connect};

/// Serves `text/event-stream` notification streams.
///
/// Each request is authenticated, checked against the limits, subscribed to
/// the hub, caught up from the store (after `Last-Event-ID`) and answered
/// with a live [`SseBody`]. See the [crate docs](crate) for the exact
/// protocol. It answers any request it gets; mount it at a route (or use
/// [`SseService::layer`] to put it in front of another service at a path).
///
/// Cloning is cheap and every clone shares state (connections, limits,
/// metrics, shutdown).
///
/// ```
/// use sse_core::{CookieSessionAuthenticator, InMemorySessions};
/// use sse_tower::SseService;
/// use std::time::Duration;
///
/// let sessions = InMemorySessions::new();
/// let service = SseService::builder(CookieSessionAuthenticator::new("sid", sessions))
///     .heartbeat(Duration::from_secs(20))
///     .max_connections_per_user(8)
///     .build();
/// // `service.notifier()` is what handlers call to notify.
/// # let _ = service.notifier();
/// ```
#[derive(Clone)]
pub struct SseService {
    shared: Arc<Shared>,
}

/// State every clone of a service and every one of its streams shares.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) authenticator: Arc<dyn SessionAuthenticator>,
    pub(crate) notifier: Notifier,
    pub(crate) metrics: Metrics,
    pub(crate) limits: Arc<ConnectionLimits>,
    pub(crate) shutdown: Shutdown,
    pub(crate) heartbeat: Bytes,
    /// Woken whenever a stream ends, for [`SseService::closed`].
    pub(crate) stream_ended: tokio::sync::Notify,
    /// Join and leave events (see `presence`).
    pub(crate) announcer: crate::presence::Announcer,
    jitter: RandomState,
}

/// The service's shutdown signal. Streams check it on every frame, so the
/// check is an atomic load: the token's own `is_cancelled`, like a poll of
/// its future, takes a mutex that every stream would share. The token only
/// wakes streams that wait.
#[derive(Default)]
pub(crate) struct Shutdown {
    started: AtomicBool,
    token: CancellationToken,
}

impl Shutdown {
    pub(crate) fn start(&self) {
        // Set before waking the streams, so each sees it when woken.
        self.started.store(true, Ordering::SeqCst);
        self.token.cancel();
    }

    pub(crate) fn is_started(&self) -> bool {
        self.started.load(Ordering::SeqCst)
    }

    /// Resolves once [`start`](Self::start) is called; a stream polls it
    /// only to register its waker.
    pub(crate) fn wait_owned(&self) -> WaitForCancellationFutureOwned {
        self.token.clone().cancelled_owned()
    }
}

impl Shared {
    /// A `retry:` frame with a delay drawn from the shutdown range, spread
    /// by connection so clients do not all come back at once.
    pub(crate) fn jittered_shutdown_retry(&self, id: Option<ConnectionId>) -> Bytes {
        let range = &self.config.shutdown_retry;
        let span = (range.end - range.start).as_millis().max(1) as u64;
        let offset = self.jitter.hash_one(id.map(ConnectionId::get)) % span;
        Event::retry_hint(range.start + Duration::from_millis(offset)).into_frame()
    }

    /// A stream's lifetime: `lifetime`, less up to a tenth drawn from the
    /// stream's id.
    pub(crate) fn jittered_lifetime(&self, lifetime: Duration, id: Option<u128>) -> Duration {
        let tenth = lifetime / 10;
        let span = u64::try_from(tenth.as_millis()).unwrap_or(u64::MAX).max(1);
        lifetime - Duration::from_millis(self.jitter.hash_one(id) % span).min(tenth)
    }

    /// The `retry:` hint of a stream whose credentials expired: within a
    /// second (clients come back and authenticate again), spread so that
    /// tokens issued together do not reconnect together.
    pub(crate) fn jittered_expiry_retry(&self, id: Option<ConnectionId>) -> Bytes {
        let offset = self.jitter.hash_one(id.map(ConnectionId::get)) % 1_000;
        Event::retry_hint(Duration::from_millis(offset)).into_frame()
    }
}

impl SseService {
    /// Starts configuring a service that authenticates with `authenticator`.
    /// See [`SseServiceBuilder`] for the options and their defaults.
    pub fn builder(authenticator: impl SessionAuthenticator) -> SseServiceBuilder {
        SseServiceBuilder::new(Arc::new(authenticator))
    }

    pub(crate) fn from_parts(
        authenticator: Arc<dyn SessionAuthenticator>,
        notifier: Notifier,
        config: Config,
    ) -> Self {
        let limits = Arc::new(ConnectionLimits::new(
            config.max_connections,
            config.max_per_user,
        ));
        Self {
            shared: Arc::new(Shared {
                authenticator,
                notifier,
                metrics: Metrics::default(),
                limits,
                shutdown: Shutdown::default(),
                heartbeat: Event::comment("heartbeat").into_frame(),
                stream_ended: tokio::sync::Notify::new(),
                announcer: crate::presence::Announcer::default(),
                jitter: RandomState::new(),
                config,
            }),
        }
    }

    /// What handlers call to notify: stores, then publishes to this
    /// service's hub.
    pub fn notifier(&self) -> &Notifier {
        &self.shared.notifier
    }

    /// The authenticator, for handlers that need the caller's principal.
    pub fn authenticator(&self) -> &Arc<dyn SessionAuthenticator> {
        &self.shared.authenticator
    }

    /// Authenticates a request head the way streams are, with a panic in the
    /// authenticator turned into an error. Adapters use it for extractors.
    pub async fn authenticate(&self, request: &Parts) -> Result<Principal, AuthRejection> {
        connect::authenticate(&self.shared, request).await
    }

    /// A copy of the counters, with the hub's.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.shared
            .metrics
            .snapshot(self.shared.notifier.hub().stats())
    }

    /// Ends every open stream with a jittered `retry:` and refuses new ones
    /// with `503`. Call it when the server begins its graceful shutdown.
    pub fn shutdown(&self) {
        self.shared.shutdown.start();
    }

    /// Whether [`SseService::shutdown`] was called.
    pub fn is_shut_down(&self) -> bool {
        self.shared.shutdown.is_started()
    }

    /// Resolves once the service is shut down and its last stream has ended.
    pub async fn closed(&self) {
        self.shared.shutdown.token.cancelled().await;
        loop {
            // Registered before the check, so an end in between still wakes us.
            let ended = self.shared.stream_ended.notified();
            let mut ended = std::pin::pin!(ended);
            ended.as_mut().enable();
            if self.shared.metrics.active() == 0 {
                return;
            }
            ended.await;
        }
    }

    /// A [`Layer`](tower_layer::Layer) that serves this stream at `path` and
    /// passes every other request to the inner service.
    pub fn layer(&self, path: impl Into<String>) -> SseLayer {
        SseLayer::new(self.clone(), path)
    }
}

impl fmt::Debug for SseService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SseService")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl<B> tower_service::Service<Request<B>> for SseService {
    type Response = Response<SseBody>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The request body is never read: an event stream request has none.
        let (parts, _body) = request.into_parts();
        let shared = self.shared.clone();
        ResponseFuture {
            inner: Box::pin(async move { Ok(connect::open(shared, parts).await) }),
        }
    }
}

/// The future of [`SseService`]'s response: authentication, subscription
/// and replay happen here, before the first byte.
#[must_use = "futures do nothing unless polled"]
pub struct ResponseFuture {
    inner: Pin<Box<dyn Future<Output = Result<Response<SseBody>, Infallible>> + Send>>,
}

impl Future for ResponseFuture {
    type Output = Result<Response<SseBody>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
