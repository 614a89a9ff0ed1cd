//! User code that panics (a store, an authenticator) is contained: the
//! request or stream it served fails; every other one goes on.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use common::SECOND;
use sse_conformance::client::Request;
use sse_conformance::server::TestServer;
use sse_core::{
    Change, CookieSessionAuthenticator, EventId, InMemoryHub, InMemorySessions, InMemoryStore,
    NewNotification, NotificationId, NotificationStore, Page, PageRequest, Principal, Replay,
    StoreError, UserId,
};
use sse_tower::{DisconnectCause, RejectCause, SseService};

/// An in-memory store whose `since` and `last_event_id` panic while armed.
#[derive(Clone)]
struct PanickyStore {
    inner: InMemoryStore,
    armed: Arc<AtomicBool>,
}

impl PanickyStore {
    fn check(&self) {
        if self.armed.load(Ordering::SeqCst) {
            panic!("bug in the adopter's store");
        }
    }
}

#[async_trait]
impl NotificationStore for PanickyStore {
    async fn create(&self, new: NewNotification) -> Result<Change, StoreError> {
        self.inner.create(new).await
    }
    async fn list(&self, user: &UserId, page: PageRequest) -> Result<Page, StoreError> {
        self.inner.list(user, page).await
    }
    async fn unread_count(&self, user: &UserId) -> Result<u64, StoreError> {
        self.inner.unread_count(user).await
    }
    async fn mark_read(
        &self,
        user: &UserId,
        id: NotificationId,
    ) -> Result<Option<Change>, StoreError> {
        self.inner.mark_read(user, id).await
    }
    async fn mark_all_read(&self, user: &UserId) -> Result<Option<Change>, StoreError> {
        self.inner.mark_all_read(user).await
    }
    async fn delete(&self, user: &UserId, id: NotificationId) -> Result<Change, StoreError> {
        self.inner.delete(user, id).await
    }
    async fn delete_all_read(&self, user: &UserId) -> Result<Option<Change>, StoreError> {
        self.inner.delete_all_read(user).await
    }
    async fn since(
        &self,
        principal: &Principal,
        after: EventId,
        limit: usize,
    ) -> Result<Replay, StoreError> {
        self.check();
        self.inner.since(principal, after, limit).await
    }
    async fn last_event_id(&self, principal: &Principal) -> Result<Option<EventId>, StoreError> {
        self.check();
        self.inner.last_event_id(principal).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_store_fails_only_the_streams_it_serves() {
    let sessions = InMemorySessions::new();
    sessions.insert("alice", Principal::new("alice"));
    sessions.insert("bob", Principal::new("bob"));
    let armed = Arc::new(AtomicBool::new(false));
    let store = PanickyStore {
        inner: InMemoryStore::new(),
        armed: armed.clone(),
    };
    let hub = InMemoryHub::new();
    let sse = SseService::builder(CookieSessionAuthenticator::new("sid", sessions))
        .store(store)
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
    // Connecting needs the store: 500, contained to this request.
    let refused = Request::get("/")
        .header("cookie", "sid=alice")
        .send(&server.authority())
        .await
        .unwrap();
    assert_eq!(refused.status(), 500);
    assert_eq!(sse.metrics().rejects(RejectCause::Panic), 1);
    // Catching up needs it too: only alice's stream, whose hub signalled a
    // gap, ends; bob's goes on.
    let gap = sse_core::Event::builder()
        .id("5")
        .data("x")
        .build()
        .unwrap();
    hub.deliver(&sse_core::Audience::user("alice"), &gap);
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
