//! Connections served by hyper: every request that the direct stream
//! writer (`direct.rs`) does not take, and HTTP/2.

use std::convert::Infallible;
use std::error::Error as StdError;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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
        Self::Auto(builder)
    }
}

/// One connection on its way to hyper.
pub(super) struct HyperConnection<S> {
    pub(super) service: S,
    pub(super) stopping: watch::Receiver<bool>,
    pub(super) header_read_timeout: Duration,
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
                        let (service, closer, started) = self.with_connection(addr);
                        let connection = builder
                            .serve_connection(TokioIo::new(io), service)
                            .with_upgrades();
                        self.drive(connection, closer, started).await;
                    }
                    drop(permit);
                });
            }
            Protocols::Auto(_) => {
                tokio::spawn(async move {
                    if let Protocols::Auto(builder) = &*protocols {
                        let (service, closer, started) = self.with_connection(addr);
                        let connection =
                            builder.serve_connection_with_upgrades(TokioIo::new(io), service);
                        self.drive(connection, closer, started).await;
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
        Arc<AtomicBool>,
    ) {
        let closer = ConnectionCloser::new();
        let started = Arc::new(AtomicBool::new(false));
        let service = TowerToHyperService::new(WithConnection {
            inner: self.service.clone(),
            closer: closer.clone(),
            addr: RemoteAddr(addr),
            started: started.clone(),
        });
        (service, closer, started)
    }

    /// Runs `connection` until it ends, its closer fires, no request
    /// arrives in time, or a graceful shutdown has drained it.
    async fn drive<C: Served>(
        mut self,
        connection: C,
        closer: ConnectionCloser,
        started: Arc<AtomicBool>,
    ) {
        let mut connection = std::pin::pin!(connection);
        // HTTP/1 heads are bounded by hyper's header timer once it knows
        // the protocol; this bounds the wait for the first bytes that tell.
        let first_request = tokio::time::sleep(self.header_read_timeout);
        let mut first_request = std::pin::pin!(first_request);
        let mut awaiting_first_request = true;
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
                () = &mut first_request, if awaiting_first_request => {
                    // The precondition is read when `select!` starts, which
                    // may be before the request arrived: check again.
                    if !started.load(Ordering::Relaxed) {
                        return;
                    }
                    awaiting_first_request = false;
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

/// Adds the connection's extensions to each request, and gives the
/// service the body type it serves.
#[derive(Clone)]
struct WithConnection<S> {
    inner: S,
    closer: ConnectionCloser,
    addr: RemoteAddr,
    started: Arc<AtomicBool>,
}

impl<S> Service<Request<Incoming>> for WithConnection<S>
where
    S: Service<Request<RequestBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Incoming>) -> Self::Future {
        self.started.store(true, Ordering::Relaxed);
        let mut request = request.map(RequestBody::from);
        let extensions = request.extensions_mut();
        extensions.insert(self.addr);
        if request.version() <= Version::HTTP_11 {
            // HTTP/2 multiplexes streams on one connection: never close it
            // for one of them.
            request.extensions_mut().insert(self.closer.clone());
        }
        self.inner.call(request)
    }
}
