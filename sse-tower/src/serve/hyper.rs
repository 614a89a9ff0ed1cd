//! Connections served by hyper: every request that the direct stream
//! writer (`direct.rs`) does not take, and HTTP/2.

use std::convert::Infallible;
use std::error::Error as StdError;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Version};
use http_body::Body;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio::time::Instant;
use tower_service::Service;

use super::host;
use super::http2::Http2;
use super::idle::{Activity, Tracked, TrackedBody};
use super::rewind::{Rewind, Transport};
use super::{RemoteAddr, RequestBody};
use crate::ConnectionCloser;

/// How hyper serves connections: HTTP/1.1 always, and HTTP/2 (prior
/// knowledge, or negotiated over TLS) unless turned off.
pub(super) struct Protocols {
    http1: http1::Builder,
    /// `None`: HTTP/1 only.
    auto: Option<auto::Builder<TokioExecutor>>,
    /// `auto`, for connections that negotiated `h2` (no sniffing).
    http2: Option<auto::Builder<TokioExecutor>>,
}

/// Which protocols a connection handed to hyper may speak.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Start {
    /// At its first byte: HTTP/1.1, or HTTP/2 by prior knowledge.
    Fresh,
    /// HTTP/1.1 only: after a response the direct writer sent (prior
    /// knowledge starts a connection, RFC 9113 §3.3, and this one already
    /// carried a request), or over TLS without ALPN `h2`.
    Http1,
    /// HTTP/2 only: negotiated by ALPN over TLS.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    Http2,
}

impl Protocols {
    pub(super) fn new(
        http1_only: bool,
        header_read_timeout: Duration,
        max_read_buffer: Option<usize>,
        http2: &Http2,
    ) -> Self {
        let mut http1 = http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout);
        if let Some(bytes) = max_read_buffer {
            http1.max_buf_size(bytes);
        }
        let auto = (!http1_only).then(|| {
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout);
            if let Some(bytes) = max_read_buffer {
                builder.http1().max_buf_size(bytes);
            }
            http2.apply(&mut builder);
            builder
        });
        let http2 = auto.clone().map(auto::Builder::http2_only);
        Self { http1, auto, http2 }
    }
}

/// One connection on its way to hyper.
pub(super) struct HyperConnection<S> {
    pub(super) service: S,
    pub(super) stopping: watch::Receiver<bool>,
    /// How long it may go with no request in flight (see `idle.rs`).
    pub(super) idle_timeout: Duration,
}

impl<S, B> HyperConnection<S>
where
    S: Service<Request<RequestBody>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    /// Serves `io` in a task of its own, holding `permit` until it closes.
    /// A fresh connection whose first request has not begun by
    /// `head_deadline` is closed then: hyper's head timer would start over
    /// on the bytes the direct writer already read.
    ///
    /// Two spawns, not one future that matches: a task is as large as its
    /// largest state, and HTTP/2's would size every HTTP/1 connection's.
    pub(super) fn spawn<T: Transport>(
        self,
        protocols: &Arc<Protocols>,
        io: Rewind<T>,
        start: Start,
        head_deadline: Option<Instant>,
        addr: SocketAddr,
        permit: OwnedSemaphorePermit,
    ) {
        let protocols = protocols.clone();
        let auto = match start {
            Start::Fresh => protocols.auto.is_some(),
            Start::Http2 => protocols.http2.is_some(),
            Start::Http1 => false,
        };
        if auto {
            tokio::spawn(async move {
                let builder = match start {
                    Start::Http2 => &protocols.http2,
                    _ => &protocols.auto,
                };
                if let Some(builder) = builder {
                    let (service, closer, activity) = self.with_connection(addr);
                    let connection =
                        builder.serve_connection_with_upgrades(TokioIo::new(io), service);
                    self.drive(connection, closer, activity, head_deadline)
                        .await;
                }
                drop(permit);
            });
        } else {
            tokio::spawn(async move {
                let (service, closer, activity) = self.with_connection(addr);
                let connection = protocols
                    .http1
                    .serve_connection(TokioIo::new(io), service)
                    .with_upgrades();
                self.drive(connection, closer, activity, head_deadline)
                    .await;
                drop(permit);
            });
        }
    }

    fn with_connection(
        &self,
        addr: SocketAddr,
    ) -> (
        TowerToHyperService<WithConnection<S>>,
        ConnectionCloser,
        Activity,
    ) {
        let closer = ConnectionCloser::new();
        let activity = Activity::new();
        let service = TowerToHyperService::new(WithConnection {
            inner: self.service.clone(),
            closer: closer.clone(),
            addr: RemoteAddr(addr),
            activity: activity.clone(),
        });
        (service, closer, activity)
    }

    /// Runs `connection` until it ends, its closer fires, it goes without
    /// a request in flight for the idle timeout, its first request has not
    /// begun by `head_deadline`, or a graceful shutdown has drained it.
    async fn drive<C: Served>(
        mut self,
        connection: C,
        closer: ConnectionCloser,
        activity: Activity,
        head_deadline: Option<Instant>,
    ) {
        let mut connection = std::pin::pin!(connection);
        let idle = activity.idle_for(self.idle_timeout);
        let mut idle = std::pin::pin!(idle);
        // After a graceful shutdown, a peer that never reads the `GOAWAY`
        // (or the last bytes) does not hold the connection for long.
        let hard_stop = tokio::time::sleep_until(far_future());
        let mut hard_stop = std::pin::pin!(hard_stop);
        let mut stopping_hard = false;
        let first_head = tokio::time::sleep_until(head_deadline.unwrap_or_else(far_future));
        let mut first_head = std::pin::pin!(first_head);
        let mut awaiting_head = head_deadline.is_some();
        let mut draining = *self.stopping.borrow();
        if draining {
            connection.as_mut().shut_down();
        }
        loop {
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%error, "connection ended with an error");
                    }
                    return;
                }
                () = closer.closed() => return,
                () = &mut idle, if !stopping_hard => {
                    connection.as_mut().shut_down();
                    hard_stop.as_mut().reset(tokio::time::Instant::now() + IDLE_GRACE);
                    stopping_hard = true;
                }
                () = &mut hard_stop, if stopping_hard => return,
                () = &mut first_head, if awaiting_head => {
                    if !activity.ever_started() {
                        return;
                    }
                    awaiting_head = false;
                }
                changed = self.stopping.changed(), if !draining => {
                    if changed.is_err() || *self.stopping.borrow() {
                        draining = true;
                        connection.as_mut().shut_down();
                    }
                }
            }
        }
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}

/// How long an idle connection has to close after its graceful shutdown.
const IDLE_GRACE: Duration = Duration::from_secs(1);

/// A hyper connection future that can be shut down gracefully.
trait Served: Future<Output = Result<(), Self::Failure>> {
    type Failure: std::fmt::Display;

    fn shut_down(self: Pin<&mut Self>);
}

impl<T, S, B> Served for auto::UpgradeableConnection<'_, TokioIo<Rewind<T>>, S, TokioExecutor>
where
    T: Transport,
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>>,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    type Failure = Box<dyn StdError + Send + Sync>;

    fn shut_down(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<T, S, B> Served for http1::UpgradeableConnection<TokioIo<Rewind<T>>, S>
where
    T: Transport,
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: Body + 'static,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    type Failure = hyper::Error;

    fn shut_down(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// Adds the connection's extensions to each request, gives the service
/// the body type it serves, and counts the request in flight until its
/// response body is dropped.
#[derive(Clone)]
struct WithConnection<S> {
    inner: S,
    closer: ConnectionCloser,
    addr: RemoteAddr,
    activity: Activity,
}

impl<S, B> Service<Request<Incoming>> for WithConnection<S>
where
    S: Service<Request<RequestBody>, Response = Response<B>>,
{
    type Response = Response<TrackedBody<B>>;
    type Error = S::Error;
    type Future = Tracked<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Incoming>) -> Self::Future {
        let in_flight = self.activity.start();
        if !host::is_valid(request.version(), request.headers()) {
            // RFC 9112 §3.2; the answer says `Connection: close`, so
            // hyper closes after it as after its own `400`s.
            return Tracked::answered(host::bad_request(), in_flight);
        }
        let mut request = request.map(RequestBody::from);
        let extensions = request.extensions_mut();
        extensions.insert(self.addr);
        if request.version() <= Version::HTTP_11 {
            // HTTP/2 multiplexes streams on one connection: never close it
            // for one of them.
            request.extensions_mut().insert(self.closer.clone());
        }
        Tracked::new(self.inner.call(request), in_flight)
    }
}
