//! A real hyper server on 127.0.0.1:0 serving an `SseService` with known
//! sessions, and helpers to talk raw HTTP to it.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use sse_conformance::client::{Request, Response};
use sse_conformance::server::TestServer;
use sse_core::{
    CookieSessionAuthenticator, InMemoryHub, InMemorySessions, InMemoryStore, NewNotification,
    Notification, Principal,
};
use sse_tower::{SseService, SseServiceBuilder};

pub const SECOND: Duration = Duration::from_secs(1);

pub struct Fixture {
    pub sse: SseService,
    pub server: TestServer,
    pub hub: InMemoryHub,
    pub store: InMemoryStore,
    pub sessions: InMemorySessions,
}

/// Sessions: `alice`, `alice-2` (a second session of alice), `bob`, and
/// `carol` (group `acme`, topics `news` and `ops`).
pub async fn start(configure: impl FnOnce(SseServiceBuilder) -> SseServiceBuilder) -> Fixture {
    start_with_store(InMemoryStore::new(), configure).await
}

pub async fn start_with_store(
    store: InMemoryStore,
    configure: impl FnOnce(SseServiceBuilder) -> SseServiceBuilder,
) -> Fixture {
    start_full(store, configure, None).await
}

/// Like [`start`], closing connections whose reader stalls for `stall`.
pub async fn start_closing_stalled(
    stall: Duration,
    configure: impl FnOnce(SseServiceBuilder) -> SseServiceBuilder,
) -> Fixture {
    start_full(InMemoryStore::new(), configure, Some(stall)).await
}

async fn start_full(
    store: InMemoryStore,
    configure: impl FnOnce(SseServiceBuilder) -> SseServiceBuilder,
    stall: Option<Duration>,
) -> Fixture {
    let sessions = InMemorySessions::new();
    sessions.insert("alice", Principal::new("alice").with_session("alice"));
    sessions.insert("alice-2", Principal::new("alice").with_session("alice-2"));
    sessions.insert("bob", Principal::new("bob").with_session("bob"));
    sessions.insert(
        "carol",
        Principal::new("carol")
            .with_session("carol")
            .with_groups(["acme"])
            .with_topics(["news", "ops"]),
    );
    let hub = InMemoryHub::new();
    let builder = SseService::builder(CookieSessionAuthenticator::new("sid", sessions.clone()))
        .hub(hub.clone())
        .store(store.clone());
    let sse = configure(builder).build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let server = TestServer::serve(listener, sse.clone(), move |socket| {
        if let Some(stall) = stall {
            sse_tower::socket::close_stalled_readers(socket, stall).expect("TCP_USER_TIMEOUT");
        }
    })
    .expect("serve");
    Fixture {
        sse,
        server,
        hub,
        store,
        sessions,
    }
}

impl Fixture {
    pub fn addr(&self) -> String {
        self.server.authority()
    }

    /// A GET of the stream as session `sid`.
    pub fn request(&self, sid: &str) -> Request {
        Request::get("/events").header("cookie", format!("sid={sid}"))
    }

    /// Opens a stream as `sid` and reads the `connected` event.
    pub async fn open(&self, sid: &str) -> Response {
        self.open_with(self.request(sid)).await
    }

    pub async fn open_with(&self, request: Request) -> Response {
        let mut stream = request.send(&self.addr()).await.expect("connect");
        assert_eq!(stream.status(), 200, "{stream:?}");
        let connected = stream.next_event(SECOND).await.expect("connected event");
        assert_eq!(connected.event_type, "connected");
        stream
    }

    pub async fn notify(&self, user: &str, title: &str) -> Notification {
        self.sse
            .notifier()
            .notify(NewNotification::new(user, title))
            .await
            .expect("notify")
    }

    /// Waits until the service reports `n` open streams and the hub `n`
    /// subscriptions.
    pub async fn wait_for_active(&self, n: u64) {
        for _ in 0..500 {
            let m = self.sse.metrics();
            if m.active_connections == n && self.hub.subscriptions() as u64 == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "expected {n} open streams; metrics say {}, hub holds {}",
            self.sse.metrics().active_connections,
            self.hub.subscriptions()
        );
    }
}

/// The JSON data of a parsed event.
pub fn json(event: &sse_conformance::parser::ParsedEvent) -> serde_json::Value {
    serde_json::from_str(&event.data).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", event.data))
}
