//! The `sse_tower::serve` test harness: a server on 127.0.0.1:0 with two
//! cookie sessions, in each of its modes.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::future::IntoFuture;
use std::time::{Duration, Instant};

use sse_conformance::client::Request;
use sse_core::{CookieSessionAuthenticator, InMemoryHub, InMemorySessions, Principal};
use sse_tower::SseService;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

pub const SECOND: Duration = Duration::from_secs(1);

pub struct Server {
    pub sse: SseService,
    pub hub: InMemoryHub,
    pub addr: String,
    pub stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub done: tokio::task::JoinHandle<std::io::Result<()>>,
}

pub async fn start(
    configure: impl FnOnce(sse_tower::Serve<SseService>) -> sse_tower::Serve<SseService>,
) -> Server {
    let sessions = InMemorySessions::new();
    for user in ["alice", "bob"] {
        sessions.insert(user, Principal::new(user));
    }
    let hub = InMemoryHub::new();
    let sse = SseService::builder(CookieSessionAuthenticator::new("sid", sessions))
        .hub(hub.clone())
        .queue_capacity(8)
        .without_heartbeat()
        .build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let stopping = sse.clone();
    let server =
        configure(sse_tower::serve(listener, sse.clone())).with_graceful_shutdown(async move {
            let _ = stopped.await;
            stopping.shutdown();
        });
    let done = tokio::spawn(server.into_future());
    Server {
        sse,
        hub,
        addr,
        stop: Some(stop),
        done,
    }
}

/// How a test's server serves: event streams written directly or through
/// hyper, HTTP/2 allowed or HTTP/1.1 alone.
#[derive(Debug, Clone, Copy)]
pub struct Mode {
    pub direct: bool,
    pub http1_only: bool,
}

pub const MODES: [Mode; 4] = [
    Mode {
        direct: true,
        http1_only: false,
    },
    Mode {
        direct: true,
        http1_only: true,
    },
    Mode {
        direct: false,
        http1_only: false,
    },
    Mode {
        direct: false,
        http1_only: true,
    },
];

/// [`start`] in `mode`.
pub async fn start_on(
    mode: Mode,
    configure: impl FnOnce(sse_tower::Serve<SseService>) -> sse_tower::Serve<SseService>,
) -> Server {
    start(|s| {
        let s = configure(s);
        let s = if mode.http1_only { s.http1_only() } else { s };
        if mode.direct {
            s
        } else {
            s.streams_through_hyper()
        }
    })
    .await
}

/// A stream request as `EventSource` sends it.
pub fn stream_request() -> Request {
    Request::get("/events").header("accept", "text/event-stream")
}

/// Reads until the peer closes; `Err` if it is still open after `limit`.
pub async fn closed_within(socket: &mut TcpStream, limit: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(
            limit.saturating_sub(started.elapsed()),
            socket.read(&mut buf),
        )
        .await
        {
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(started.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => return Err(format!("still open after {limit:?}")),
        }
    }
}
