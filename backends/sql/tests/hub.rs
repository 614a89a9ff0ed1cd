//! `PostgresHub`: the hub suites, large events, and nodes whose LISTEN
//! connections die or whose database goes away mid-stream, while clients
//! keep their streams and receive every stored notification once, in order.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sse_conformance::client::{Request, Response};
use sse_conformance::proxy::TcpProxy;
use sse_conformance::server::TestServer;
use sse_core::{
    Audience, CookieSessionAuthenticator, Event, Hub, InMemorySessions, NewNotification, Notifier,
    NotifyError, Principal,
};
use sse_sqlx::{PostgresHub, SqlStore};
use sse_tower::SseService;

const WAIT: Duration = Duration::from_secs(5);

/// A channel of this test's own, so tests running at once never hear
/// each other's events to everyone.
fn channel(name: &str) -> String {
    format!("sse_test_{name}_{}", std::process::id())
}

async fn hub(url: &str, channel: &str) -> PostgresHub {
    PostgresHub::builder(url)
        .channel(channel)
        .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(500))
        .timeout(Duration::from_secs(1))
        .ping_every(Duration::from_millis(500))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL is required (DATABASE_URL): {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_hub_passes_the_hub_suite() {
    let url = support::postgres_url();
    let channel = channel("suite");
    let report = sse_conformance::hub::check(|| hub(&url, &channel)).await;
    report.assert_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_hub_passes_the_multi_node_suite() {
    let url = support::postgres_url();
    let channel = channel("nodes");
    let report = sse_conformance::hub::check_nodes(|| hub(&url, &channel)).await;
    report.assert_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_over_the_notify_limit_travel_by_reference_byte_for_byte() {
    let url = support::postgres_url();
    let channel = channel("large");
    let a = hub(&url, &channel).await;
    let b = hub(&url, &channel).await;
    let mut on_b = b.subscribe(&Principal::new("large-u"), 16).await.unwrap();
    let big = "x".repeat(100_000);
    let sent = [
        Event::builder()
            .event("big")
            .data(big.as_str())
            .build()
            .unwrap(),
        Event::builder().data("small in between").build().unwrap(),
        Event::builder()
            .data(big.as_str())
            .conflate("big")
            .build()
            .unwrap(),
        Event::builder().data("nul \0 inside").build().unwrap(),
    ];
    for event in &sent {
        a.publish(&Audience::user("large-u"), event).await.unwrap();
    }
    for event in &sent {
        let got = tokio::time::timeout(WAIT, on_b.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.frame(), event.frame());
        assert_eq!(got.conflation_key(), event.conflation_key());
    }
}

// ---- two HTTP nodes over one database --------------------------------

struct Node {
    sse: SseService,
    hub: PostgresHub,
    server: TestServer,
}

fn sessions() -> InMemorySessions {
    let sessions = InMemorySessions::new();
    for user in ["alice", "bob"] {
        for tab in 0..3 {
            sessions.insert(
                format!("{user}-{tab}"),
                Principal::new(user).with_session(format!("{user}-{tab}")),
            );
        }
    }
    sessions
}

async fn node(hub_url: &str, channel: &str, store: &SqlStore) -> Node {
    let hub = hub(hub_url, channel).await;
    let sse = SseService::builder(CookieSessionAuthenticator::new("sid", sessions()))
        .notifier(&Notifier::with_store(
            Arc::new(store.clone()),
            Arc::new(hub.clone()),
        ))
        .queue_capacity(10_000)
        .replay_limit(10_000)
        .build();
    let server = TestServer::start(sse.clone()).await.unwrap();
    Node { sse, hub, server }
}

async fn open(node: &Node, sid: &str) -> Response {
    let mut stream = Request::get("/events")
        .header("cookie", format!("sid={sid}"))
        .send(&node.server.authority())
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(
        stream.next_event(WAIT).await.unwrap().event_type,
        "connected"
    );
    stream
}

fn position(event: &sse_conformance::parser::ParsedEvent) -> u64 {
    event
        .last_event_id
        .parse::<sse_core::Cursor>()
        .unwrap_or_else(|_| panic!("not a cursor: {:?}", event.last_event_id))
        .position()
}

fn title(event: &sse_conformance::parser::ParsedEvent) -> String {
    let data: serde_json::Value = serde_json::from_str(&event.data).unwrap();
    data["notification"]["title"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Creates `count` notifications for each user, one every few ms, while
/// `fault` runs; returns how many could not be published live.
async fn create_through(
    node: &Node,
    count: usize,
    fault: impl std::future::Future<Output = ()>,
) -> usize {
    let notifier = node.sse.notifier().clone();
    let creating = tokio::spawn(async move {
        let mut unpublished = 0;
        for i in 0..count {
            for user in ["alice", "bob"] {
                match notifier
                    .notify(NewNotification::new(user, format!("{user}:{i}")))
                    .await
                {
                    Ok(_) => {}
                    // Stored; delivered by the catch-up after reconnecting.
                    Err(NotifyError::Publish { .. }) => unpublished += 1,
                    Err(other) => panic!("the store failed: {other}"),
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        unpublished
    });
    fault.await;
    creating.await.unwrap()
}

async fn expect_all_in_order(streams: &mut [(&str, Response)], count: usize) {
    for (user, stream) in streams {
        let mut last = 0;
        for i in 0..count {
            let event = stream
                .next_event(Duration::from_secs(15))
                .await
                .unwrap_or_else(|e| {
                    panic!("{user}: notification {i} of {count} never arrived: {e}")
                });
            assert_eq!(
                title(&event),
                format!("{user}:{i}"),
                "{user}: lost, repeated or reordered"
            );
            assert!(
                position(&event) > last,
                "{user}: a position repeated or went back"
            );
            last = position(&event);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_listen_connections_are_killed_clients_catch_up() {
    const COUNT: usize = 80;
    let url = support::fresh_postgres_url("hub_kill").await;
    let store = SqlStore::connect(&url).await.unwrap();
    let channel = channel("kill");
    let a = node(&url, &channel, &store).await;
    let b = node(&url, &channel, &store).await;
    let mut streams = vec![
        ("alice", open(&a, "alice-0").await),
        ("bob", open(&b, "bob-0").await),
        ("alice", open(&b, "alice-1").await),
    ];
    let admin = sqlx::AnyPool::connect(&url).await.unwrap();
    create_through(&b, COUNT, async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let killed: Vec<sqlx::any::AnyRow> = sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND query LIKE 'LISTEN%'",
        )
        .fetch_all(&admin)
        .await
        .unwrap();
        assert!(
            killed.len() >= 2,
            "expected both nodes' LISTEN connections, killed {}",
            killed.len()
        );
    })
    .await;
    expect_all_in_order(&mut streams, COUNT).await;
    assert!(
        a.hub.reconnects() > 0 && b.hub.reconnects() > 0,
        "the hubs never saw their link come back"
    );
    assert_eq!(
        a.hub.local().subscriptions() + b.hub.local().subscriptions(),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_database_goes_away_and_returns_every_client_gets_everything_once_in_order() {
    const COUNT: usize = 120;
    let url = support::fresh_postgres_url("hub_outage").await;
    // The store talks to PostgreSQL directly; the hubs through a proxy we cut.
    let store = SqlStore::connect(&url).await.unwrap();
    let (scheme_user, rest) = url.split_once('@').unwrap();
    let (host, database) = rest.split_once('/').unwrap();
    let proxy = TcpProxy::start(host.to_owned()).await.unwrap();
    let through_proxy = format!("{scheme_user}@{}/{database}", proxy.addr());
    let channel = channel("outage");
    let a = node(&through_proxy, &channel, &store).await;
    let b = node(&through_proxy, &channel, &store).await;
    let mut streams = vec![
        ("alice", open(&a, "alice-0").await),
        ("bob", open(&b, "bob-0").await),
        ("alice", open(&b, "alice-1").await),
    ];

    let unpublished = create_through(&a, COUNT, async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        proxy.cut();
        let cut = Instant::now();
        while a.hub.is_connected() || b.hub.is_connected() {
            assert!(
                cut.elapsed() < Duration::from_secs(5),
                "the hubs did not notice the outage"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Down for a while: publishes meanwhile fail, and are caught up.
        tokio::time::sleep(Duration::from_millis(400)).await;
        proxy.restore();
    })
    .await;
    assert!(
        unpublished > 0,
        "the outage should have failed some live publishes"
    );
    expect_all_in_order(&mut streams, COUNT).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_channel_name_is_refused_with_what_to_use() {
    let error = PostgresHub::builder(support::postgres_url())
        .channel("Bad-Name")
        .connect()
        .await
        .unwrap_err();
    assert!(error.to_string().contains("sse_hub"), "{error}");
}
