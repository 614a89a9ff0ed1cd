//! A TCP proxy that a test can cut and restore, to see how a service
//! behaves when its database or broker goes away.
//!
//! ```no_run
//! # #[tokio::main] async fn main() -> std::io::Result<()> {
//! use sse_conformance::proxy::TcpProxy;
//! let proxy = TcpProxy::start("127.0.0.1:5432").await?;
//! let url = format!("postgres://postgres@{}/test", proxy.addr());
//! // … connect through `url`, then:
//! proxy.cut();      // every connection through it drops; new ones are refused
//! proxy.restore();  // new connections go through again
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Forwards connections from a loopback port to `upstream` until cut.
pub struct TcpProxy {
    addr: SocketAddr,
    upstream: Arc<std::sync::Mutex<String>>,
    up: Arc<AtomicBool>,
    generation: watch::Sender<u64>,
    task: JoinHandle<()>,
}

impl TcpProxy {
    /// Listens on `127.0.0.1:0` and forwards to `upstream` (`host:port`).
    pub async fn start(upstream: impl Into<String>) -> std::io::Result<Self> {
        let upstream = Arc::new(std::sync::Mutex::new(upstream.into()));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let up = Arc::new(AtomicBool::new(true));
        let (generation, _) = watch::channel(0u64);
        let task = {
            let up = up.clone();
            let upstream = upstream.clone();
            let generation = generation.clone();
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    if !up.load(Ordering::SeqCst) {
                        // Refused: close at once.
                        drop(client);
                        continue;
                    }
                    let upstream = upstream
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .clone();
                    let mut cut = generation.subscribe();
                    tokio::spawn(async move {
                        let Ok(server) = TcpStream::connect(&upstream).await else {
                            return;
                        };
                        let (mut client, mut server) = (client, server);
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                            _ = cut.changed() => {
                                // Reset both sides, as a crashed peer or a
                                // pulled cable would.
                                let _ = client.set_zero_linger();
                                let _ = server.set_zero_linger();
                            }
                        }
                    });
                }
            })
        };
        Ok(Self {
            addr,
            upstream,
            up,
            generation,
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

    /// Forwards new connections to `upstream` from now on (a failover
    /// behind a stable address); open ones stay where they are.
    pub fn redirect(&self, upstream: impl Into<String>) {
        *self
            .upstream
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = upstream.into();
    }

    /// Accepts and forwards new connections again.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}
