//! `NatsHub` against the NATS server on `NATS_URL` (default
//! `nats://127.0.0.1:4222`): the hub suites, and two HTTP nodes whose link
//! to NATS is cut mid-stream while clients keep their streams and receive
//! every stored notification once, in order.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use sse_conformance::client::{Request, Response};
use sse_conformance::proxy::TcpProxy;
use sse_conformance::server::TestServer;
use sse_core::{
    CookieSessionAuthenticator, InMemorySessions, InMemoryStore, NewNotification, Notifier,
    NotifyError, Principal,
};
use sse_nats::NatsHub;
use sse_tower::SseService;

const WAIT: Duration = Duration::from_secs(5);

fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// A subject prefix of this test's own.
fn prefix(name: &str) -> String {
    format!("t{}{name}", std::process::id())
}

async fn hub(url: &str, prefix: &str) -> NatsHub {
    NatsHub::builder(url)
        .prefix(prefix)
        .reconnect_backoff_max(Duration::from_millis(200))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("NATS is required (NATS_URL): {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_hub_passes_the_hub_suite() {
    let url = nats_url();
    let prefix = prefix("suite");
    sse_conformance::hub::check(|| hub(&url, &prefix))
        .await
        .assert_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_hub_passes_the_multi_node_suite() {
    let url = nats_url();
    let prefix = prefix("nodes");
    sse_conformance::hub::check_nodes(|| hub(&url, &prefix))
        .await
        .assert_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_prefix_is_refused_with_what_to_use() {
    let error = NatsHub::builder(nats_url())
        .prefix("a.b")
        .connect()
        .await
        .unwrap_err();
    assert!(error.to_string().contains("sse"), "{error}");
}

struct Node {
    sse: SseService,
    hub: NatsHub,
    _server: TestServer,
    authority: String,
}

async fn node(url: &str, prefix: &str, store: &Arc<InMemoryStore>) -> Node {
    let hub = hub(url, prefix).await;
    let sessions = InMemorySessions::new();
    for user in ["alice", "bob"] {
        for tab in 0..2 {
            sessions.insert(
                format!("{user}-{tab}"),
                Principal::new(user).with_session(format!("{user}-{tab}")),
            );
        }
    }
    let sse = SseService::builder(CookieSessionAuthenticator::new("sid", sessions))
        .notifier(&Notifier::with_store(store.clone(), Arc::new(hub.clone())))
        .queue_capacity(10_000)
        .replay_limit(10_000)
        .build();
    let server = TestServer::start(sse.clone()).await.unwrap();
    let authority = server.authority();
    Node {
        sse,
        hub,
        _server: server,
        authority,
    }
}

async fn open(node: &Node, sid: &str) -> Response {
    let mut stream = Request::get("/events")
        .header("cookie", format!("sid={sid}"))
        .send(&node.authority)
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(
        stream.next_event(WAIT).await.unwrap().event_type,
        "connected"
    );
    stream
}

fn title(event: &sse_conformance::parser::ParsedEvent) -> String {
    let data: serde_json::Value = serde_json::from_str(&event.data).unwrap();
    data["notification"]["title"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_nats_goes_away_and_returns_every_client_gets_everything_once_in_order() {
    const COUNT: usize = 120;
    let upstream = nats_url()
        .trim_start_matches("nats://")
        .trim_end_matches('/')
        .to_owned();
    let proxy = TcpProxy::start(upstream).await.unwrap();
    let through_proxy = format!("nats://{}", proxy.addr());
    let prefix = prefix("outage");
    let store = Arc::new(InMemoryStore::new());
    let a = node(&through_proxy, &prefix, &store).await;
    let b = node(&through_proxy, &prefix, &store).await;
    let mut streams = vec![
        ("alice", open(&a, "alice-0").await),
        ("bob", open(&b, "bob-0").await),
        ("alice", open(&b, "alice-1").await),
    ];
    let notifier = a.sse.notifier().clone();
    let creating = tokio::spawn(async move {
        for i in 0..COUNT {
            for user in ["alice", "bob"] {
                match notifier
                    .notify(NewNotification::new(user, format!("{user}:{i}")))
                    .await
                {
                    Ok(_) | Err(NotifyError::Publish { .. }) => {}
                    Err(other) => panic!("the store failed: {other}"),
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    proxy.cut();
    let cut = Instant::now();
    while a.hub.is_connected() || b.hub.is_connected() {
        assert!(
            cut.elapsed() < Duration::from_secs(10),
            "the hubs did not notice the outage"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    proxy.restore();
    creating.await.unwrap();
    for (user, stream) in &mut streams {
        for i in 0..COUNT {
            let event = stream
                .next_event(Duration::from_secs(15))
                .await
                .unwrap_or_else(|e| {
                    panic!("{user}: notification {i} of {COUNT} never arrived: {e}")
                });
            assert_eq!(
                title(&event),
                format!("{user}:{i}"),
                "{user}: lost, repeated or reordered"
            );
        }
    }
    assert!(
        a.hub.reconnects() > 0 && b.hub.reconnects() > 0,
        "the hubs never saw their link come back"
    );
    assert_eq!(
        a.sse.metrics().active_connections + b.sse.metrics().active_connections,
        3,
        "browser connections were dropped"
    );
}
