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
use tower_service::Service;

use super::http2::Http2;
use super::idle::{Activity, Tracked, TrackedBody};
use super::rewind::Rewind;
use super::{RemoteAddr, RequestBody};
use crate::ConnectionCloser;

/// How hyper serves connections: HTTP/1.1 and HTTP/2 (prior knowledge), or
/// HTTP/1.1 alone.
pub(super) enum Protocols {
    Auto(auto::Builder<TokioExecutor>),
    Http1(http1::Builder),
}

impl Protocols {
    pub(super) fn new(
        http1_only: bool,
        header_read_timeout: Duration,
        max_read_buffer: Option<usize>,
        http2: &Http2,
    ) -> Self {
        if http1_only {
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout);
            if let Some(bytes) = max_read_buffer {
                builder.max_buf_size(bytes);
            }
            return Self::Http1(builder);
        }
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout);
        if let Some(bytes) = max_read_buffer {
            builder.http1().max_buf_size(bytes);
        }
        http2.apply(&mut builder);
        Self::Auto(builder)
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
    ///
    /// Two spawns, not one future that matches: a task is as large as its
    /// largest state, and HTTP/2's would size every HTTP/1 connection's.
    pub(super) fn spawn(
        self,
        protocols: &Arc<Protocols>,
        io: Rewind,
        addr: SocketAddr,
        permit: OwnedSemaphorePermit,
    ) {
        let protocols = protocols.clone();
        match &*protocols {
            Protocols::Http1(_) => {
                tokio::spawn(async move {
                    if let Protocols::Http1(builder) = &*protocols {
                        let (service, closer, activity) = self.with_connection(addr);
                        let connection = builder
                            .serve_connection(TokioIo::new(io), service)
                            .with_upgrades();
                        self.drive(connection, closer, activity).await;
                    }
                    drop(permit);
                });
            }
            Protocols::Auto(_) => {
                tokio::spawn(async move {
                    if let Protocols::Auto(builder) = &*protocols {
                        let (service, closer, activity) = self.with_connection(addr);
                        let connection =
                            builder.serve_connection_with_upgrades(TokioIo::new(io), service);
                        self.drive(connection, closer, activity).await;
                    }
                    drop(permit);
                });
            }
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
    /// a request in flight for the idle timeout, or a graceful shutdown has
    /// drained it.
    async fn drive<C: Served>(
        mut self,
        connection: C,
        closer: ConnectionCloser,
        activity: Activity,
    ) {
        let mut connection = std::pin::pin!(connection);
        let idle = activity.idle_for(self.idle_timeout);
        let mut idle = std::pin::pin!(idle);
        // After a graceful shutdown, a peer that never reads the `GOAWAY`
        // (or the last bytes) does not hold the connection for long.
        let hard_stop = tokio::time::sleep(Duration::MAX);
        let mut hard_stop = std::pin::pin!(hard_stop);
        let mut stopping_hard = false;
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

/// How long an idle connection has to close after its graceful shutdown.
const IDLE_GRACE: Duration = Duration::from_secs(1);

/// A hyper connection future that can be shut down gracefully.
trait Served: Future<Output = Result<(), Self::Failure>> {
    type Failure: std::fmt::Display;

    fn shut_down(self: Pin<&mut Self>);
}

impl<S, B> Served for auto::UpgradeableConnection<'_, TokioIo<Rewind>, S, TokioExecutor>
where
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

impl<S, B> Served for http1::UpgradeableConnection<TokioIo<Rewind>, S>
where
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
