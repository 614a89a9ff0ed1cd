//! A TCP proxy that a test can cut, silence and restore, to see how a
//! service behaves when its database or broker goes away.
//!
//! ```no_run
//! # #[tokio::main] async fn main() -> std::io::Result<()> {
//! use sse_conformance::proxy::TcpProxy;
//! let proxy = TcpProxy::start("127.0.0.1:5432").await?;
//! let url = format!("postgres://postgres@{}/test", proxy.addr());
//! // … connect through `url`, then:
//! proxy.cut();      // every connection through it drops; new ones are refused
//! proxy.restore();  // new connections go through again
//! proxy.stall();    // connections stay open, but no byte moves (a black hole)
//! proxy.unstall();  // bytes flow again
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Forwards connections from a loopback port to `upstream` until cut.
pub struct TcpProxy {
    addr: SocketAddr,
    upstream: Arc<Mutex<String>>,
    up: Arc<AtomicBool>,
    generation: watch::Sender<u64>,
    stalled: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl TcpProxy {
    /// Listens on `127.0.0.1:0` and forwards to `upstream` (`host:port`).
    pub async fn start(upstream: impl Into<String>) -> std::io::Result<Self> {
        let upstream = Arc::new(Mutex::new(upstream.into()));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let up = Arc::new(AtomicBool::new(true));
        let (generation, _) = watch::channel(0u64);
        let (stalled, _) = watch::channel(false);
        let task = {
            let (up, upstream) = (up.clone(), upstream.clone());
            let (generation, stalled) = (generation.clone(), stalled.clone());
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    if !up.load(Ordering::SeqCst) {
                        // Refused: close at once.
                        drop(client);
                        continue;
                    }
                    let upstream = upstream
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .clone();
                    let mut cut = generation.subscribe();
                    let stalled = stalled.subscribe();
                    tokio::spawn(async move {
                        let Ok(server) = TcpStream::connect(&upstream).await else {
                            return;
                        };
                        let (client_read, client_write) = client.into_split();
                        let (server_read, server_write) = server.into_split();
                        let mut both = tokio::task::JoinSet::new();
                        both.spawn(pump(client_read, server_write, stalled.clone()));
                        both.spawn(pump(server_read, client_write, stalled));
                        tokio::select! {
                            _ = both.join_next() => {}
                            _ = cut.changed() => {}
                        }
                        // Dropping the halves closes both sides at once,
                        // as a crashed peer or a pulled cable would.
                        both.abort_all();
                    });
                }
            })
        };
        Ok(Self {
            addr,
            upstream,
            up,
            generation,
            stalled,
            task,
        })
    }

    /// The address to connect to instead of the upstream.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops every open connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Accepts and forwards new connections again.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }

    /// Keeps every connection open but moves no byte, either way, on open
    /// and new connections alike, until [`unstall`](Self::unstall): the
    /// network silently loses the broker.
    pub fn stall(&self) {
        self.stalled.send_replace(true);
    }

    /// Moves bytes again (what was held is delivered).
    pub fn unstall(&self) {
        self.stalled.send_replace(false);
    }

    /// Forwards new connections to `upstream` from now on (a failover
    /// behind a stable address); open ones stay where they are.
    pub fn redirect(&self, upstream: impl Into<String>) {
        *self.upstream.lock().unwrap_or_else(PoisonError::into_inner) = upstream.into();
    }
}

/// Copies `from` to `to`, holding bytes while stalled.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut stalled: watch::Receiver<bool>,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        if stalled.wait_for(|s| !*s).await.is_err() {
            return;
        }
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if stalled.wait_for(|s| !*s).await.is_err() {
            return;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}
