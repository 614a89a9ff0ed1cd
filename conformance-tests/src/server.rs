//! Serves any tower HTTP service on `127.0.0.1:0` with hyper (HTTP/1.1 and
//! HTTP/2 with prior knowledge), for tests that talk real HTTP to it.
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use sse_conformance::server::TestServer;
//!
//! # #[tokio::main] async fn main() -> std::io::Result<()> {
//! let service = tower::service_fn(|_req: Request<hyper::body::Incoming>| async {
//!     Ok::<_, Infallible>(Response::new(http_body_util::Full::new(bytes::Bytes::from("hi"))))
//! });
//! let server = TestServer::start(service).await?;
//! let mut response = sse_conformance::client::Request::get("/").send(&server.addr().to_string()).await.unwrap();
//! assert_eq!(response.status(), 200);
//! server.stop().await;
//! # Ok(()) }
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A server running in the background until [`TestServer::stop`] or drop.
pub struct TestServer {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Binds `127.0.0.1:0` and serves `service` on every connection.
    pub async fn start<S, B>(service: S) -> std::io::Result<Self>
    where
        S: tower_service::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        Self::serve(listener, service, |_| {})
    }

    /// Serves `service` on an already bound listener, calling `on_accept`
    /// with each accepted socket (to set socket options).
    pub fn serve<S, B>(
        listener: TcpListener,
        service: S,
        on_accept: impl Fn(&TcpStream) + Send + 'static,
    ) -> std::io::Result<Self>
    where
        S: tower_service::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let addr = listener.local_addr()?;
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let builder = auto::Builder::new(TokioExecutor::new());
            let graceful = GracefulShutdown::new();
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    _ = stopped.changed() => break,
                };
                let Ok((socket, _)) = accepted else { continue };
                let _ = socket.set_nodelay(true);
                on_accept(&socket);
                let connection = builder
                    .serve_connection_with_upgrades(
                        TokioIo::new(socket),
                        TowerToHyperService::new(service.clone()),
                    )
                    .into_owned();
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    let _ = connection.await;
                });
            }
            // Give in-flight responses (streams ending with a retry hint) a
            // moment to finish, then drop what is left.
            let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
        });
        Ok(Self {
            addr,
            stop,
            task: Some(task),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `host:port`, as [`crate::client::Request::send`] takes it.
    pub fn authority(&self) -> String {
        self.addr.to_string()
    }

    /// Stops accepting, lets open connections finish (up to 5 s) and waits
    /// for the server task to end.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
