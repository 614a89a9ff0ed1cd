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
use support::{Node, node, open};

const WAIT: Duration = Duration::from_secs(5);

/// A node on Redis at `prefix` whose stream authenticates by cookie
/// against `sessions`, with `configure` applied to the stream's options.
async fn node_with<L: sse_core::SessionLookup>(
    prefix: &str,
    store: &RedisStore,
    sessions: L,
    configure: impl FnOnce(sse_tower::SseServiceBuilder) -> sse_tower::SseServiceBuilder,
) -> Node {
    let hub = support::required(
        RedisHub::builder(support::redis_url())
            .prefix(prefix)
            .connect()
            .await,
    );
    let builder = SseService::builder(CookieSessionAuthenticator::new("sid", sessions)).notifier(
        &Notifier::with_store(Arc::new(store.clone()), Arc::new(hub.clone())),
    );
    let sse = configure(builder).build();
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

fn position(event: &sse_conformance::parser::ParsedEvent) -> u64 {
    event
        .last_event_id
        .parse::<sse_core::Cursor>()
        .unwrap_or_else(|_| panic!("not a cursor: {:?}", event.last_event_id))
        .position()
}

use support::title;

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
        let mut last = 0;
        let mut titles = std::collections::BTreeSet::new();
        for _ in 1..=50u64 {
            let event = stream.next_event(WAIT).await.unwrap();
            assert!(
                title(&event).starts_with(&format!("{user}:")),
                "{user} received {}",
                title(&event)
            );
            let position = position(&event);
            assert!(
                position > last,
                "{user}: position {position} after {last}: events must arrive once, in order"
            );
            last = position;
            titles.insert(title(&event));
        }
        assert_eq!(titles.len(), 50, "{user}: a notification arrived twice");
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

/// Everything the process logs, at every level, for the leak test below.
fn captured_logs() -> Arc<std::sync::Mutex<Vec<u8>>> {
    use std::sync::{Mutex, OnceLock};
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || Writer(sink.clone()))
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        logs
    })
    .clone()
}

struct Writer(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credential_reaches_channel_names_logs_or_principals() {
    use sse_core::{Audience, SessionLookup};
    use sse_redis::RedisSessions;

    let logs = captured_logs();
    let prefix = support::prefix("secrets");
    let store = store(&prefix).await;
    let sessions = support::required(RedisSessions::connect(&support::redis_url(), &prefix).await);
    let credentials = [
        sessions
            .create(&sse_core::Principal::new("alice"))
            .await
            .unwrap(),
        sessions
            .create(&sse_core::Principal::new("alice"))
            .await
            .unwrap(),
        sessions
            .create(&sse_core::Principal::new("bob"))
            .await
            .unwrap(),
    ];
    let mut nodes = Vec::new();
    for _ in 0..2 {
        nodes.push(node_with(&prefix, &store, sessions.clone(), |b| b).await);
    }
    let mut streams = Vec::new();
    for (i, credential) in credentials.iter().enumerate() {
        let node = &nodes[i % 2];
        let mut stream = Request::get("/events")
            .header("cookie", format!("sid={credential}"))
            .send(&node.server.authority())
            .await
            .unwrap();
        assert_eq!(stream.status(), 200);
        stream.next_event(WAIT).await.unwrap();
        streams.push(stream);
    }
    nodes[1]
        .sse
        .notifier()
        .notify(NewNotification::new("alice", "hello"))
        .await
        .unwrap();
    assert_eq!(
        streams[0].next_event(WAIT).await.unwrap().event_type,
        "notification"
    );

    // What anyone with access to Redis sees.
    let admin = redis::Client::open(support::redis_url()).unwrap();
    let mut connection = admin.get_multiplexed_async_connection().await.unwrap();
    let channels: Vec<String> = redis::cmd("PUBSUB")
        .arg("CHANNELS")
        .arg(format!("{prefix}*"))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(channels.iter().any(|c| c.contains(":s:")), "{channels:?}");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut connection)
        .await
        .unwrap();

    // Logout on node A ends the session's stream on node B too.
    let principal = sessions.lookup(&credentials[1]).await.unwrap().unwrap();
    let debug = format!("{principal:?}");
    let removed = sessions.remove(&credentials[1]).await.unwrap().unwrap();
    nodes[0]
        .sse
        .notifier()
        .disconnect(&Audience::Session(removed.session().unwrap().clone()))
        .await
        .unwrap();
    assert!(streams[1].wait_for_end(WAIT).await.unwrap());

    let logged = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(!logged.is_empty(), "no logs were captured");
    for credential in &credentials {
        for (what, text) in [
            ("a Redis channel name", channels.join(" ")),
            ("a Redis key", keys.join(" ")),
            ("the logs", logged.clone()),
            ("a principal's Debug output", debug.clone()),
        ] {
            assert!(
                !text.contains(credential.as_str()),
                "a credential appears in {what}"
            );
        }
    }
}

/// Publishers on two nodes at once — to a user, her group and everyone —
/// while her client keeps dropping its connection and resuming on the
/// other node with its last id: she sees each of her events exactly once,
/// each audience's in order, positions always increasing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_audience_resumes_across_nodes_without_gap_or_duplicate() {
    use sse_core::{Audience, Event};
    const EACH: usize = 60;
    let prefix = support::prefix("audiences");
    let store = store(&prefix).await;
    let sessions = InMemorySessions::new();
    sessions.insert("dora", Principal::new("dora").with_groups(["acme"]));
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let node = node_with(&prefix, &store, sessions.clone(), |b| {
            b.queue_capacity(10_000).replay_limit(10_000)
        })
        .await;
        nodes.push(Arc::new(node));
    }
    let audiences = [
        (Audience::user("dora"), "u"),
        (Audience::group("acme"), "g"),
        (Audience::Everyone, "e"),
        (Audience::user("someone-else"), "x"),
        (Audience::group("globex"), "y"),
    ];
    // The client starts where the log stood before anything was published
    // (read before the publishers start, or it may already be past some).
    let start = sse_core::EventLog::head(&store).await.unwrap();
    let mut publishers = Vec::new();
    for (n, (audience, tag)) in audiences.iter().cloned().enumerate() {
        let node = nodes[n % 2].clone();
        publishers.push(tokio::spawn(async move {
            for i in 0..EACH {
                let event = Event::builder()
                    .event(tag)
                    .data(i.to_string())
                    .build()
                    .unwrap();
                node.sse
                    .notifier()
                    .publish(&audience, &event)
                    .await
                    .unwrap();
            }
        }));
    }
    let expected = EACH * 3;
    let mut received: std::collections::HashMap<String, Vec<usize>> = Default::default();
    let (mut total, mut last, mut connections) = (0, Some(start), 0);
    while total < expected {
        let node = &nodes[connections % 2];
        connections += 1;
        let mut request = Request::get("/events").header("cookie", "sid=dora");
        if let Some(last) = last {
            request = request.header("last-event-id", last.to_string());
        }
        let mut stream = request.send(&node.server.authority()).await.unwrap();
        assert_eq!(stream.status(), 200);
        assert_eq!(
            stream.next_event(WAIT).await.unwrap().event_type,
            "connected"
        );
        for _ in 0..(17 + (connections * 23) % 40) {
            let event = stream
                .next_event(Duration::from_secs(10))
                .await
                .unwrap_or_else(|e| {
                    let missing: Vec<(String, usize)> = ["u", "g", "e"]
                        .iter()
                        .flat_map(|t| {
                            let got = received.get(*t).cloned().unwrap_or_default();
                            (0..EACH)
                                .filter(move |i| !got.contains(i))
                                .map(move |i| (t.to_string(), i))
                        })
                        .collect();
                    panic!("after {total} of {expected}: {e}; missing {missing:?}, last {last:?}")
                });
            let cursor: sse_core::Cursor = event.last_event_id.parse().unwrap();
            if let Some(last) = last.filter(|l| *l != start) {
                assert!(cursor.position() > last.position(), "{cursor} after {last}");
            }
            last = Some(cursor);
            assert!(
                ["u", "g", "e"].contains(&event.event_type.as_str()),
                "{event:?}"
            );
            received
                .entry(event.event_type)
                .or_default()
                .push(event.data.parse().unwrap());
            total += 1;
            if total == expected {
                break;
            }
        }
    }
    for publisher in publishers {
        publisher.await.unwrap();
    }
    for tag in ["u", "g", "e"] {
        assert_eq!(
            received[tag],
            (0..EACH).collect::<Vec<_>>(),
            "{tag} after {connections} connections"
        );
    }
    assert!(connections >= 4);
}

/// An administrator revokes one session by its id: its streams end on
/// every node, its credential is refused from then on, and the user's
/// other session keeps streaming.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_session_ends_its_streams_on_every_node() {
    use sse_core::{Audience, SessionLookup};
    use sse_redis::RedisSessions;

    let prefix = support::prefix("revoke");
    let store = store(&prefix).await;
    let sessions = support::required(RedisSessions::connect(&support::redis_url(), &prefix).await);
    let revoked = sessions
        .create(&sse_core::Principal::new("alice"))
        .await
        .unwrap();
    let kept = sessions
        .create(&sse_core::Principal::new("alice"))
        .await
        .unwrap();
    let mut nodes = Vec::new();
    for _ in 0..2 {
        nodes.push(node_with(&prefix, &store, sessions.clone(), |b| b).await);
    }
    async fn connect_as(authority: String, credential: String) -> Response {
        Request::get("/events")
            .header("cookie", format!("sid={credential}"))
            .send(&authority)
            .await
            .unwrap()
    }
    let authorities: Vec<String> = nodes.iter().map(|n| n.server.authority()).collect();
    let connect = |node: usize, credential: &str| {
        connect_as(authorities[node].clone(), credential.to_owned())
    };
    let mut doomed = Vec::new();
    for node in 0..2 {
        let mut stream = connect(node, &revoked).await;
        assert_eq!(stream.status(), 200);
        stream.next_event(WAIT).await.unwrap();
        doomed.push(stream);
    }
    let mut survivor = connect(1, &kept).await;
    survivor.next_event(WAIT).await.unwrap();

    let session = sessions
        .lookup(&revoked)
        .await
        .unwrap()
        .unwrap()
        .session()
        .unwrap()
        .clone();
    assert!(sessions.revoke(&session).await.unwrap());
    nodes[0]
        .sse
        .notifier()
        .disconnect(&Audience::Session(session))
        .await
        .unwrap();
    for stream in &mut doomed {
        assert!(
            stream.wait_for_end(WAIT).await.unwrap(),
            "a revoked stream stayed open"
        );
    }
    for node in 0..2 {
        assert_eq!(connect(node, &revoked).await.status(), 401);
    }
    nodes[0]
        .sse
        .notifier()
        .notify(NewNotification::new("alice", "still here"))
        .await
        .unwrap();
    assert_eq!(
        survivor.next_event(WAIT).await.unwrap().event_type,
        "notification"
    );
}

/// Presence across nodes, and a node that dies without a word: its
/// streams stop counting once its lease runs out (six pings), not never.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_streams_leave_presence_within_its_lease() {
    use sse_core::{Audience, Hub, Principal};

    let prefix = support::prefix("presence-crash");
    let node = || async {
        support::required(
            RedisHub::builder(support::redis_url())
                .prefix(&prefix)
                .ping_every(Duration::from_millis(200))
                .presence_flush(Duration::from_millis(20))
                .connect()
                .await,
        )
    };
    let survivor = node().await;
    let doomed = node().await;
    let alice = Audience::user("alice");
    let kept = survivor
        .subscribe(&Principal::new("alice"), 8)
        .await
        .unwrap();
    let lost = doomed.subscribe(&Principal::new("alice"), 8).await.unwrap();
    let presence = |hub: &RedisHub| {
        let hub = hub.clone();
        let alice = alice.clone();
        async move { hub.presence(&alice).await.unwrap().streams }
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while presence(&survivor).await != 2 {
        assert!(
            Instant::now() < deadline,
            "the other node's stream never counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The node dies: its tasks stop, nothing is cleaned up in Redis.
    std::mem::forget(lost);
    drop(doomed);
    let died = Instant::now();
    while presence(&survivor).await != 1 {
        assert!(
            died.elapsed() < Duration::from_secs(5),
            "a dead node's stream still counts after 5 s (its lease is 1.2 s)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let gone_after = died.elapsed();
    println!("a dead node's stream left presence after {gone_after:?}");
    drop(kept);
    assert_eq!(presence(&survivor).await, 0);
}
