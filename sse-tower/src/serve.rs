//! [`serve`]: run a tower service (an axum `Router`, a warp filter through
//! `warp::service`) on a TCP listener with the limits a public server that
//! holds long-lived event streams needs.
//!
//! ```no_run
//! use std::convert::Infallible;
//! use std::time::Duration;
//! use sse_core::{CookieSessionAuthenticator, InMemorySessions};
//! use sse_tower::SseService;
//!
//! # async fn run() -> std::io::Result<()> {
//! let sse = SseService::builder(CookieSessionAuthenticator::new("sid", InMemorySessions::new())).build();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! let stopping = sse.clone();
//! sse_tower::serve(listener, sse.clone())
//!     .max_connections(20_000)
//!     .header_read_timeout(Duration::from_secs(10))
//!     .with_graceful_shutdown(async move {
//!         let _ = tokio::signal::ctrl_c().await;
//!         stopping.shutdown(); // streams end with a jittered retry
//!     })
//!     .await
//! # }
//! ```
//!
//! What it does that `axum::serve` and `warp::serve` do not:
//!
//! - **Caps connections before they cost anything**: past
//!   [`max_connections`](Serve::max_connections) it stops accepting (new
//!   clients wait in the kernel's backlog) instead of running out of file
//!   descriptors, so a flood of idle sockets cannot starve `/healthz`.
//! - **Bounds the time to send a request head**
//!   ([`header_read_timeout`](Serve::header_read_timeout), 10 s): a
//!   connection that sends nothing, or its head one byte at a time, or
//!   idles between keep-alive requests, is closed. Bound request *bodies*
//!   with a timeout around your handlers (tower-http's `TimeoutLayer`):
//!   they are read by your extractors, not by the server.
//! - **Closes stalled readers at once**: each HTTP/1 request carries a
//!   [`ConnectionCloser`], so a stream whose client stopped reading is
//!   closed the moment its queue overflows; the operating system closes
//!   any other stalled connection after
//!   [`close_stalled_readers`](Serve::close_stalled_readers) (30 s).
//! - Sets `TCP_NODELAY` (events are small and latency matters), serves
//!   HTTP/1.1 and HTTP/2 (prior knowledge), and on graceful shutdown stops
//!   accepting, lets in-flight requests finish and waits for every
//!   connection to close.
//!
//! Each request also carries the peer's address as a [`RemoteAddr`]
//! extension.

use std::convert::Infallible;
use std::error::Error as StdError;
use std::future::{Future, IntoFuture};
use std::io;
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
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tower_service::Service;

use crate::ConnectionCloser;

/// The peer's address, put into every request's extensions by [`serve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteAddr(pub SocketAddr);

/// Serves `service` on `listener`; see the [module docs](self). Await it
/// (it runs until the graceful shutdown completes, or forever).
pub fn serve<S>(listener: TcpListener, service: S) -> Serve<S> {
    Serve {
        listener,
        service,
        max_connections: 100_000,
        header_read_timeout: Duration::from_secs(10),
        stalled_reader_timeout: Some(Duration::from_secs(30)),
        http1_only: false,
        max_read_buffer: None,
        shutdown: None,
    }
}

type Signal = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A server being configured; see [`serve`]. Await it to run.
#[must_use = "a server does nothing until awaited"]
pub struct Serve<S> {
    listener: TcpListener,
    service: S,
    max_connections: usize,
    header_read_timeout: Duration,
    stalled_reader_timeout: Option<Duration>,
    http1_only: bool,
    max_read_buffer: Option<usize>,
    shutdown: Option<Signal>,
}

impl<S> Serve<S> {
    /// Open connections at most (default 100,000). Keep it under the
    /// process's open-files limit, less what the rest of the app needs.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = max.clamp(1, u32::MAX as usize);
        self
    }

    /// How long a client may take to send a request head, and how long an
    /// idle keep-alive connection stays open (default 10 s).
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Closes a connection whose written data stays unacknowledged this
    /// long (`TCP_USER_TIMEOUT`; default 30 s; `None` leaves the system's
    /// default). See [`socket::close_stalled_readers`](crate::socket::close_stalled_readers).
    pub fn close_stalled_readers(mut self, after: Option<Duration>) -> Self {
        self.stalled_reader_timeout = after;
        self
    }

    /// Caps each HTTP/1 connection's read buffer at `bytes` (at least
    /// 8 KiB; hyper's default lets it grow to about 400 KiB).
    ///
    /// An event stream keeps its connection's read buffer for as long as
    /// it is open, and hyper doubles the buffer whenever a read fills it,
    /// so most idle streams hold 16 KiB after their request head; capped at
    /// 8 KiB, they hold 8. Request heads must then fit in the cap (larger
    /// ones are refused); bodies are streamed through it, whatever their
    /// size.
    pub fn max_read_buffer(mut self, bytes: usize) -> Self {
        self.max_read_buffer = Some(bytes.max(8 * 1024));
        self
    }

    /// Serves HTTP/1 only (no HTTP/2 prior knowledge).
    ///
    /// Each connection's task is then hyper's HTTP/1 connection alone,
    /// about half the size of one that can also speak HTTP/2; with
    /// [`max_read_buffer`](Serve::max_read_buffer), this is the smallest
    /// an idle stream gets (see BENCHMARKS.md, "Memory per idle
    /// connection"). Behind a proxy that speaks HTTP/1.1 to its upstream
    /// (nginx, most load balancers) nothing is lost.
    pub fn http1_only(mut self) -> Self {
        self.http1_only = true;
        self
    }

    /// Stops gracefully when `signal` resolves: stops accepting, lets
    /// in-flight requests finish and waits for every connection to close.
    /// Call [`SseService::shutdown`](crate::SseService::shutdown) in the
    /// signal so that streams end (with a jittered `retry:`).
    pub fn with_graceful_shutdown(
        mut self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> Self {
        self.shutdown = Some(Box::pin(signal));
        self
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

impl<S> std::fmt::Debug for Serve<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serve")
            .field("max_connections", &self.max_connections)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("stalled_reader_timeout", &self.stalled_reader_timeout)
            .field("http1_only", &self.http1_only)
            .finish_non_exhaustive()
    }
}

impl<S, B> IntoFuture for Serve<S>
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    type Output = io::Result<()>;
    type IntoFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

impl<S, B> Serve<S>
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    async fn run(self) -> io::Result<()> {
        let Serve {
            listener,
            service,
            max_connections,
            header_read_timeout,
            stalled_reader_timeout,
            http1_only,
            max_read_buffer,
            shutdown,
        } = self;
        let protocols = Arc::new(Protocols::new(
            http1_only,
            header_read_timeout,
            max_read_buffer,
        ));
        let permits = Arc::new(Semaphore::new(max_connections));
        let (stop, stopping) = watch::channel(false);
        let mut shutdown = shutdown.unwrap_or_else(|| Box::pin(std::future::pending()));
        loop {
            let permit = tokio::select! {
                biased;
                () = &mut shutdown => break,
                permit = permits.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    // The semaphore is never closed.
                    Err(_) => break,
                },
            };
            let (socket, addr) = tokio::select! {
                biased;
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        accept_failed(error).await;
                        continue;
                    }
                },
            };
            configure(&socket, stalled_reader_timeout);
            let connection = Connection {
                service: service.clone(),
                stopping: stopping.clone(),
                header_read_timeout,
            };
            // Two spawns, not one future that matches: a task is as large
            // as its largest state, and HTTP/2's would size every HTTP/1
            // connection's task.
            match &*protocols {
                Protocols::Http1(_) => {
                    let protocols = protocols.clone();
                    tokio::spawn(async move {
                        if let Protocols::Http1(builder) = &*protocols {
                            connection.run_http1(builder, socket, addr).await;
                        }
                        drop(permit);
                    });
                }
                Protocols::Auto(_) => {
                    let protocols = protocols.clone();
                    tokio::spawn(async move {
                        if let Protocols::Auto(builder) = &*protocols {
                            connection.run_auto(builder, socket, addr).await;
                        }
                        drop(permit);
                    });
                }
            }
        }
        drop(listener);
        let _ = stop.send(true);
        // Every connection holds a permit until it is closed.
        let _ = permits.acquire_many(max_connections as u32).await;
        Ok(())
    }
}

fn configure(socket: &TcpStream, stalled_reader_timeout: Option<Duration>) {
    if let Err(error) = socket.set_nodelay(true) {
        tracing::debug!(%error, "could not set TCP_NODELAY");
    }
    if let Some(after) = stalled_reader_timeout
        && let Err(error) = crate::socket::close_stalled_readers(socket, after)
    {
        tracing::debug!(%error, "could not set TCP_USER_TIMEOUT");
    }
}

/// Errors from `accept` that concern one connection are skipped; others
/// (out of file descriptors) are waited out, so the loop does not spin.
async fn accept_failed(error: io::Error) {
    use io::ErrorKind::*;
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset | Interrupted | WouldBlock
    ) {
        return;
    }
    tracing::warn!(%error, "accepting a connection failed; retrying in 100 ms");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// How connections are served: HTTP/1.1 and HTTP/2 (prior knowledge), or
/// HTTP/1.1 alone.
enum Protocols {
    Auto(auto::Builder<TokioExecutor>),
    Http1(http1::Builder),
}

impl Protocols {
    fn new(
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

struct Connection<S> {
    service: S,
    stopping: watch::Receiver<bool>,
    header_read_timeout: Duration,
}

impl<S, B> Connection<S>
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    async fn run_auto(
        self,
        builder: &auto::Builder<TokioExecutor>,
        socket: TcpStream,
        addr: SocketAddr,
    ) {
        let (service, closer, started) = self.with_connection(addr);
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(socket), service);
        self.drive(connection, closer, started).await;
    }

    async fn run_http1(self, builder: &http1::Builder, socket: TcpStream, addr: SocketAddr) {
        let (service, closer, started) = self.with_connection(addr);
        let connection = builder
            .serve_connection(TokioIo::new(socket), service)
            .with_upgrades();
        self.drive(connection, closer, started).await;
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

impl<S, B> Served for auto::UpgradeableConnection<'_, TokioIo<TcpStream>, S, TokioExecutor>
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

impl<S, B> Served for http1::UpgradeableConnection<TokioIo<TcpStream>, S>
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

/// Adds the connection's extensions to each request.
#[derive(Clone)]
struct WithConnection<S> {
    inner: S,
    closer: ConnectionCloser,
    addr: RemoteAddr,
    started: Arc<AtomicBool>,
}

impl<S, B> Service<Request<B>> for WithConnection<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        self.started.store(true, Ordering::Relaxed);
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
