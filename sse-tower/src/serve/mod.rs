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
//!   [`max_connections`](Serve::max_connections) it answers a few more
//!   ([`busy_connections`](Serve::busy_connections), 64) with `503` and
//!   `Retry-After: 1` at once, then stops accepting (new clients wait in
//!   the kernel's backlog) instead of running out of file descriptors.
//! - **Bounds the time to send a request head**
//!   ([`header_read_timeout`](Serve::header_read_timeout), 10 s): a
//!   connection that sends nothing, or its head one byte at a time, is
//!   closed. Bound request *bodies* with a timeout around your handlers
//!   (tower-http's `TimeoutLayer`): they are read by your extractors, not
//!   by the server.
//! - **Bounds idle connections on every protocol**
//!   ([`idle_timeout`](Serve::idle_timeout), the header timeout by
//!   default): a connection with no request in flight, between keep-alive
//!   requests or on HTTP/2 after its streams ended, is shut down (HTTP/2
//!   with a `GOAWAY`). HTTP/2 connections also get keep-alive pings, a cap
//!   on concurrent streams and on header size ([`Http2`]).
//! - **Closes stalled readers at once**: each HTTP/1 request carries a
//!   [`ConnectionCloser`](crate::ConnectionCloser), so a stream whose client stopped reading is
//!   closed the moment its queue overflows; the operating system closes
//!   any other stalled connection after
//!   [`close_stalled_readers`](Serve::close_stalled_readers) (30 s).
//! - **Writes event streams directly**: a connection's first request,
//!   when it is an HTTP/1.1 `GET` with `Accept: text/event-stream` (what
//!   `EventSource` sends) and no body, is read by `serve` itself and its
//!   response body written straight to the socket, each frame from the
//!   bytes the stream already holds. hyper, which serves every other
//!   request, keeps an 8 KiB read buffer and an 8 KiB write buffer per
//!   connection for as long as it is open; an idle stream served directly
//!   holds neither (BENCHMARKS.md, "Memory per idle connection"). After a
//!   direct response, a keep-alive connection goes to hyper.
//!   [`streams_through_hyper`](Serve::streams_through_hyper) turns it off.
//! - **Is as strict as hyper on both paths**: an HTTP/1.1 request without
//!   exactly one valid `Host` gets `400` and a close (RFC 9112 §3.2, which
//!   hyper leaves to the app); a head the direct writer hands to hyper
//!   half read keeps its deadline; after a direct response the connection
//!   speaks HTTP/1.1 only (prior knowledge starts a connection, RFC 9113
//!   §3.3); the direct writer frames every response as hyper does
//!   (`Content-Length`, `Connection: close`, a 1xx becomes `500`), which
//!   `tests/differential.rs` checks against hyper byte for byte.
//! - **Closes lingering** (RFC 9112 §9.6): it shuts its side first and
//!   drains what the client still sends for a moment, so a client that
//!   writes a whole refused body before reading gets its `413`, not a
//!   reset.
//! - Sets `TCP_NODELAY` (events are small and latency matters), serves
//!   HTTP/1.1 and HTTP/2 (prior knowledge), and on graceful shutdown stops
//!   accepting, lets in-flight requests finish and waits for every
//!   connection to close.
//!
//! Each request also carries the peer's address as a [`RemoteAddr`]
//! extension. The service gets requests with a [`RequestBody`]: an axum
//! `Router`, a `warp::service` and an [`SseService`](crate::SseService)
//! take any body type.

mod body;
mod busy;
mod direct;
mod host;
mod http2;
mod hyper;
mod idle;
mod linger;
mod rewind;
#[cfg(feature = "tls")]
mod tls;

use std::convert::Infallible;
use std::error::Error as StdError;
use std::future::{Future, IntoFuture};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tower_service::Service;

pub use body::RequestBody;
pub use http2::Http2;
#[cfg(feature = "tls")]
pub use tls::{Tls, TlsError};

use self::direct::{Limits, Outcome};
use self::hyper::{HyperConnection, Protocols, Start};
use self::rewind::Rewind;

/// The longest request head the direct stream writer reads before it
/// leaves the request to hyper, unless
/// [`max_read_buffer`](Serve::max_read_buffer) says less.
const DIRECT_MAX_HEAD: usize = 16 * 1024;

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
        idle_timeout: None,
        http1_only: false,
        http2: Http2::default(),
        max_read_buffer: None,
        direct_streams: true,
        busy_connections: 64,
        #[cfg(feature = "tls")]
        tls: None,
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
    idle_timeout: Option<Duration>,
    http1_only: bool,
    http2: Http2,
    max_read_buffer: Option<usize>,
    direct_streams: bool,
    busy_connections: usize,
    #[cfg(feature = "tls")]
    tls: Option<Tls>,
    shutdown: Option<Signal>,
}

/// What an accepted connection holds: a slot to be served in, or one of
/// the few past the cap that only answer `503`.
enum Slot {
    Serve(tokio::sync::OwnedSemaphorePermit),
    Busy(tokio::sync::OwnedSemaphorePermit),
}

impl<S> Serve<S> {
    /// Open connections at most (default 100,000). Keep it under the
    /// process's open-files limit, less what the rest of the app needs.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = max.clamp(1, u32::MAX as usize);
        self
    }

    /// Connections past [`max_connections`](Serve::max_connections) that
    /// are still accepted, only to be answered `503 Service Unavailable`
    /// with `Retry-After: 1` and closed (default 64; `0`: none, new
    /// clients wait in the kernel's backlog for a slot).
    ///
    /// Over HTTP/1.1 each open stream is a connection, so a server at its
    /// cap would otherwise leave a health check or a new stream hanging
    /// until a connection closes; with these slots it hears at once that
    /// the server is full (`EventSource` retries after its `retry:`; the
    /// shared client backs off with jitter). Each holds a socket for at
    /// a few seconds.
    pub fn busy_connections(mut self, slots: usize) -> Self {
        self.busy_connections = slots.min(u32::MAX as usize);
        self
    }

    /// How long a client may take to send a request head, and how long an
    /// idle keep-alive connection stays open (default 10 s).
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// How long a connection with no request in flight stays open, on
    /// HTTP/1.1 (between keep-alive requests) and on HTTP/2 alike
    /// (default: the [`header_read_timeout`](Serve::header_read_timeout),
    /// 10 s). An HTTP/2 connection is then shut down with a `GOAWAY`, so a
    /// client that opened one and went quiet does not hold a connection
    /// slot.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = Some(timeout.max(Duration::from_millis(1)));
        self
    }

    /// HTTP/2 settings ([`Http2`]: concurrent streams, keep-alive pings,
    /// header size, windows), for connections that speak it.
    pub fn http2(mut self, http2: Http2) -> Self {
        self.http2 = http2;
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

    /// Serves event streams through hyper like every other request,
    /// instead of writing them directly (see the [module docs](self)).
    /// Each idle stream then holds hyper's two buffers.
    pub fn streams_through_hyper(mut self) -> Self {
        self.direct_streams = false;
        self
    }

    /// Serves HTTPS with this certificate (feature `tls`; see [`Tls`]):
    /// HTTP/2 and HTTP/1.1 by ALPN, the handshake bounded by the
    /// [`header_read_timeout`](Serve::header_read_timeout).
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: Tls) -> Self {
        self.tls = Some(tls);
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

    fn tls_configured(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.tls.is_some();
        #[cfg(not(feature = "tls"))]
        false
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
            .field("idle_timeout", &self.idle_timeout)
            .field("http1_only", &self.http1_only)
            .field("http2", &self.http2)
            .field("max_read_buffer", &self.max_read_buffer)
            .field("direct_streams", &self.direct_streams)
            .field("busy_connections", &self.busy_connections)
            .field("tls", &self.tls_configured())
            .finish_non_exhaustive()
    }
}

impl<S, B> IntoFuture for Serve<S>
where
    S: Service<Request<RequestBody>, Response = Response<B>, Error = Infallible>
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
    S: Service<Request<RequestBody>, Response = Response<B>, Error = Infallible>
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
            idle_timeout,
            http1_only,
            http2,
            max_read_buffer,
            direct_streams,
            busy_connections,
            #[cfg(feature = "tls")]
            tls,
            shutdown,
        } = self;
        #[cfg(feature = "tls")]
        let tls = match tls {
            Some(tls) => Some(Arc::new(
                tls.acceptors(!http1_only).map_err(io::Error::other)?,
            )),
            None => None,
        };
        let protocols = Arc::new(Protocols::new(
            http1_only,
            header_read_timeout,
            max_read_buffer,
            &http2,
        ));
        let idle_timeout = idle_timeout.unwrap_or(header_read_timeout);
        let limits = Arc::new(Limits {
            header_read_timeout,
            max_head: max_read_buffer.unwrap_or(DIRECT_MAX_HEAD),
        });
        let permits = Arc::new(Semaphore::new(max_connections));
        let busy_permits = Arc::new(Semaphore::new(busy_connections));
        let (stop, stopping) = watch::channel(false);
        let mut shutdown = shutdown.unwrap_or_else(|| Box::pin(std::future::pending()));
        loop {
            // A slot to serve in, or else one to say "busy" from; with
            // neither, new clients wait in the kernel's backlog.
            let slot = tokio::select! {
                biased;
                () = &mut shutdown => break,
                permit = permits.clone().acquire_owned() => permit.map(Slot::Serve),
                permit = busy_permits.clone().acquire_owned(), if busy_connections > 0 => {
                    permit.map(Slot::Busy)
                }
            };
            // The semaphores are never closed.
            let Ok(slot) = slot else { break };
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
            let permit = match slot {
                Slot::Serve(permit) => permit,
                // A connection may have closed while this one was accepted.
                Slot::Busy(busy) => match permits.clone().try_acquire_owned() {
                    Ok(permit) => permit,
                    Err(_) => {
                        let _ = socket.set_nodelay(true);
                        #[cfg(feature = "tls")]
                        if let Some(tls) = &tls {
                            let acceptor = tls.busy.clone();
                            tokio::spawn(async move {
                                let handshake = acceptor.accept(socket);
                                let timeout = tls::BUSY_HANDSHAKE;
                                if let Ok(Ok(stream)) =
                                    tokio::time::timeout(timeout, handshake).await
                                {
                                    busy::refuse(stream, busy).await;
                                }
                            });
                            continue;
                        }
                        tokio::spawn(busy::refuse(socket, busy));
                        continue;
                    }
                },
            };
            configure(&socket, stalled_reader_timeout);
            let mut connection = HyperConnection {
                service: service.clone(),
                stopping: stopping.clone(),
                idle_timeout,
            };
            #[cfg(feature = "tls")]
            if let Some(tls) = &tls {
                let (acceptor, protocols) = (tls.serving.clone(), protocols.clone());
                tokio::spawn(async move {
                    let handshake = acceptor.accept(socket);
                    let Ok(Ok(stream)) = tokio::time::timeout(header_read_timeout, handshake).await
                    else {
                        return; // the permit goes with the task
                    };
                    let start = if tls::negotiated_h2(&stream) {
                        Start::Http2
                    } else {
                        Start::Http1
                    };
                    let io = Rewind::new(Bytes::new(), stream);
                    connection.spawn(&protocols, io, start, None, addr, permit);
                });
                continue;
            }
            if !direct_streams {
                let io = Rewind::new(Bytes::new(), socket);
                connection.spawn(&protocols, io, Start::Fresh, None, addr, permit);
                continue;
            }
            let (protocols, limits) = (protocols.clone(), limits.clone());
            tokio::spawn(async move {
                let outcome = direct::first_request(
                    connection.service.clone(),
                    socket,
                    addr,
                    &mut connection.stopping,
                    &limits,
                )
                .await;
                if let Outcome::HandOff {
                    socket,
                    read,
                    start,
                    head_deadline,
                } = outcome
                {
                    let io = Rewind::new(read, socket);
                    connection.spawn(&protocols, io, start, head_deadline, addr, permit);
                }
            });
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
