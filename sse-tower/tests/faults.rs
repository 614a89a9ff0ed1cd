//! User code that panics (a store, an authenticator) is contained: the
//! request or stream it served fails; every other one goes on.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use common::SECOND;
use sse_conformance::client::Request;
use sse_conformance::server::TestServer;
use sse_core::log::{LogRecord, Replay};
use sse_core::{
    Audience, CookieSessionAuthenticator, Cursor, Event, EventLog, InMemoryHub, InMemorySessions,
    InMemoryStore, NewNotification, Principal, StoreError,
};
use sse_tower::{DisconnectCause, RejectCause, SseService};

/// An in-memory log whose reads panic while armed.
#[derive(Clone)]
struct PanickyLog {
    inner: InMemoryStore,
    armed: Arc<AtomicBool>,
}

impl PanickyLog {
    fn check(&self) {
        if self.armed.load(Ordering::SeqCst) {
            panic!("bug in the adopter's log");
        }
    }
}

#[async_trait]
impl EventLog for PanickyLog {
    async fn append(&self, events: &[(Audience, Event)]) -> Result<Vec<Event>, StoreError> {
        self.inner.append(events).await
    }
    async fn since(
        &self,
        principal: &Principal,
        after: Cursor,
        limit: usize,
    ) -> Result<Replay, StoreError> {
        self.check();
        self.inner.since(principal, after, limit).await
    }
    async fn read(&self, after: Cursor, limit: usize) -> Result<Vec<LogRecord>, StoreError> {
        self.inner.read(after, limit).await
    }
    async fn head(&self) -> Result<Cursor, StoreError> {
        self.check();
        self.inner.head().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_store_fails_only_the_streams_it_serves() {
    let sessions = InMemorySessions::new();
    sessions.insert("alice", Principal::new("alice"));
    sessions.insert("bob", Principal::new("bob"));
    let armed = Arc::new(AtomicBool::new(false));
    let store = InMemoryStore::new();
    let log = PanickyLog {
        inner: store.clone(),
        armed: armed.clone(),
    };
    let hub = InMemoryHub::new();
    let sse = SseService::builder(CookieSessionAuthenticator::new("sid", sessions))
        .log(log)
        .inbox(store)
        .hub(hub.clone())
        .build();
    let server = TestServer::start(sse.clone()).await.unwrap();
    let open = |sid: &'static str| {
        let authority = server.authority();
        async move {
            let mut stream = Request::get("/")
                .header("cookie", format!("sid={sid}"))
                .send(&authority)
                .await
                .unwrap();
            assert_eq!(stream.status(), 200);
            assert_eq!(
                stream.next_event(SECOND).await.unwrap().event_type,
                "connected"
            );
            stream
        }
    };
    let mut alice = open("alice").await;
    let mut bob = open("bob").await;

    armed.store(true, Ordering::SeqCst);
    // Connecting needs the log: 500, contained to this request.
    let refused = Request::get("/")
        .header("cookie", "sid=alice")
        .send(&server.authority())
        .await
        .unwrap();
    assert_eq!(refused.status(), 500);
    assert_eq!(sse.metrics().rejects(RejectCause::Panic), 1);
    // Catching up needs it too: only alice's stream, whose hub signalled
    // missed events, ends; bob's goes on.
    hub.signal_missed(&Audience::user("alice"));
    assert!(
        alice.wait_for_end(SECOND).await.unwrap(),
        "alice's stream should end cleanly"
    );
    assert_eq!(sse.metrics().disconnects(DisconnectCause::StoreError), 1);
    armed.store(false, Ordering::SeqCst);
    sse.notifier()
        .notify(NewNotification::new("bob", "still fine"))
        .await
        .unwrap();
    assert!(
        bob.next_event(SECOND)
            .await
            .unwrap()
            .data
            .contains("still fine")
    );
    let _again = open("alice").await;
}
