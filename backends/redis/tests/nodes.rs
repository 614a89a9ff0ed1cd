//! Two server instances sharing Redis: delivery across nodes, isolation
//! across nodes, and what happens when Redis goes away and comes back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sse_conformance::client::{Request, Response};
use sse_conformance::proxy::TcpProxy;
use sse_conformance::server::TestServer;
use sse_core::{
    CookieSessionAuthenticator, Hub, InMemorySessions, NewNotification, Notifier, NotifyError,
    Principal,
};
use sse_redis::{RedisHub, RedisStore};
use sse_tower::SseService;

const WAIT: Duration = Duration::from_secs(5);

struct Node {
    sse: SseService,
    hub: RedisHub,
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

async fn node(hub_url: &str, prefix: &str, store: &RedisStore) -> Node {
    let hub = support::required(
        RedisHub::builder(hub_url)
            .prefix(prefix)
            .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(500))
            .timeout(Duration::from_secs(1))
            .ping_every(Duration::from_secs(1))
            .connect()
            .await,
    );
    let sse = SseService::builder(CookieSessionAuthenticator::new("sid", sessions()))
        .notifier(&Notifier::new(
            Arc::new(store.clone()),
            Arc::new(hub.clone()),
        ))
        .queue_capacity(10_000)
        .replay_limit(10_000)
        .build();
    let server = TestServer::start(sse.clone()).await.unwrap();
    Node { sse, hub, server }
}

async fn store(prefix: &str) -> RedisStore {
    support::required(
        RedisStore::builder(support::redis_url())
            .prefix(prefix)
            .connect()
            .await,
    )
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

fn title(event: &sse_conformance::parser::ParsedEvent) -> String {
    let data: serde_json::Value = serde_json::from_str(&event.data).unwrap();
    data["notification"]["title"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_created_on_node_b_reaches_a_client_on_node_a_within_100ms() {
    let prefix = support::prefix("cross-node");
    let store = store(&prefix).await;
    let a = node(&support::redis_url(), &prefix, &store).await;
    let b = node(&support::redis_url(), &prefix, &store).await;
    let mut on_a = open(&a, "alice-0").await;
    let mut worst = Duration::ZERO;
    for i in 0..50 {
        let sent = Instant::now();
        b.sse
            .notifier()
            .notify(NewNotification::new("alice", format!("n{i}")))
            .await
            .unwrap();
        let event = on_a.next_event(WAIT).await.unwrap();
        worst = worst.max(sent.elapsed());
        assert_eq!(title(&event), format!("n{i}"));
    }
    assert!(
        worst < Duration::from_millis(100),
        "cross-node delivery took up to {worst:?}"
    );
    // One Redis channel per audience served, not per connection.
    let _more = (open(&a, "alice-1").await, open(&a, "alice-2").await);
    assert_eq!(
        a.hub.channels(),
        4,
        "alice's user channel and 3 session channels"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolation_holds_across_nodes_under_concurrent_publishing() {
    let prefix = support::prefix("isolation");
    let store = store(&prefix).await;
    let a = Arc::new(node(&support::redis_url(), &prefix, &store).await);
    let b = Arc::new(node(&support::redis_url(), &prefix, &store).await);
    let mut streams = vec![
        ("alice", open(&a, "alice-0").await),
        ("alice", open(&b, "alice-1").await),
        ("bob", open(&a, "bob-0").await),
        ("bob", open(&b, "bob-1").await),
    ];
    let mut writers = Vec::new();
    for (w, node) in [a.clone(), b.clone(), a.clone(), b.clone()]
        .into_iter()
        .enumerate()
    {
        writers.push(tokio::spawn(async move {
            for i in 0..25 {
                let to = if (i + w) % 2 == 0 { "alice" } else { "bob" };
                node.sse
                    .notifier()
                    .notify(NewNotification::new(to, format!("{to}:{w}:{i}")))
                    .await
                    .unwrap();
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    for (user, stream) in &mut streams {
        for expected_id in 1..=50u64 {
            let event = stream.next_event(WAIT).await.unwrap();
            assert!(
                title(&event).starts_with(&format!("{user}:")),
                "{user} received {}",
                title(&event)
            );
            assert_eq!(
                event.last_event_id,
                expected_id.to_string(),
                "{user}: ids must arrive once, in order"
            );
        }
    }
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
            assert_eq!(event.last_event_id, (i + 1).to_string());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_redis_goes_away_and_returns_every_client_gets_everything_once_in_order() {
    const COUNT: usize = 120;
    let prefix = support::prefix("outage");
    // The store talks to Redis directly; the hubs through a proxy we cut.
    let store = store(&prefix).await;
    let upstream = support::redis_url()
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_owned();
    let proxy = TcpProxy::start(upstream).await.unwrap();
    let through_proxy = format!("redis://{}", proxy.addr());
    let a = node(&through_proxy, &prefix, &store).await;
    let b = node(&through_proxy, &prefix, &store).await;
    let mut streams = vec![
        ("alice", open(&a, "alice-0").await),
        ("bob", open(&b, "bob-0").await),
        ("alice", open(&b, "alice-1").await),
    ];

    let unpublished = create_through(&a, COUNT, async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        proxy.cut();
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(
            !a.hub.is_connected() && !b.hub.is_connected(),
            "the hubs did not notice the outage"
        );
        proxy.restore();
    })
    .await;
    assert!(
        unpublished > 0,
        "the outage should have failed some live publishes"
    );
    expect_all_in_order(&mut streams, COUNT).await;
    assert!(a.hub.reconnects() >= 1 && b.hub.reconnects() >= 1);
    assert!(
        a.sse.metrics().replayed + b.sse.metrics().replayed > 0,
        "nothing was caught up from the store"
    );
    assert_eq!(
        a.sse.metrics().active_connections + b.sse.metrics().active_connections,
        3,
        "browser connections were dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_redis_kills_the_subscriber_connections_clients_catch_up() {
    const COUNT: usize = 80;
    let prefix = support::prefix("client-kill");
    let store = store(&prefix).await;
    let a = node(&support::redis_url(), &prefix, &store).await;
    let b = node(&support::redis_url(), &prefix, &store).await;
    let mut streams = vec![
        ("alice", open(&a, "alice-0").await),
        ("bob", open(&b, "bob-0").await),
    ];
    let admin = redis::Client::open(support::redis_url()).unwrap();
    create_through(&b, COUNT, async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut connection = admin.get_multiplexed_async_connection().await.unwrap();
        let killed: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("pubsub")
            .query_async(&mut connection)
            .await
            .unwrap();
        assert!(
            killed >= 2,
            "expected both nodes' subscriber connections, killed {killed}"
        );
    })
    .await;
    expect_all_in_order(&mut streams, COUNT).await;
    assert!(a.hub.reconnects() >= 1 && b.hub.reconnects() >= 1);
    assert!(a.hub.local().subscriptions() + b.hub.local().subscriptions() == 2);
    let _ = a.hub.stats();
}
