//! Cross-node delivery latency: a notification created through node B
//! (store + hub publish) until its bytes are read by a client connected to
//! node A, over loopback, on Redis (`RedisHub` + `RedisStore`), on
//! PostgreSQL alone (`PostgresHub` + `SqlStore`) and on NATS (`NatsHub`
//! with the Redis store, so only the hub differs from the Redis row). Same-node delivery with
//! the in-memory hub is measured the same way for comparison.
//!
//! `cargo run --release -p sse-benches --bin cross-node [-- COUNT]`
//! (Redis on REDIS_URL, default redis://127.0.0.1:6379; PostgreSQL on
//! DATABASE_URL, in a database of its own).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use sse_benches::percentile;
use sse_conformance::client::{Request, Response};
use sse_conformance::server::TestServer;
use sse_core::{
    CookieSessionAuthenticator, Hub, InMemoryHub, InMemorySessions, NewNotification, Notifier,
    Principal,
};
use sse_nats::NatsHub;
use sse_redis::{RedisHub, RedisStore};
use sse_sqlx::{PostgresHub, SqlStore};
use sse_tower::SseService;

struct Node {
    sse: SseService,
    _server: TestServer,
    authority: String,
}

async fn node<S: sse_core::EventLog + sse_core::NotificationStore>(
    store: Arc<S>,
    hub: Arc<dyn Hub>,
) -> Node {
    let sessions = InMemorySessions::new();
    sessions.insert("alice", Principal::new("bench-alice"));
    let sse = SseService::builder(CookieSessionAuthenticator::new("sid", sessions))
        .notifier(&Notifier::with_store(store, hub))
        .build();
    let server = TestServer::start(sse.clone()).await.unwrap();
    let authority = server.authority();
    Node {
        sse,
        _server: server,
        authority,
    }
}

async fn open(node: &Node) -> Response {
    let mut stream = Request::get("/events")
        .header("cookie", "sid=alice")
        .send(&node.authority)
        .await
        .unwrap();
    stream.next_event(Duration::from_secs(2)).await.unwrap();
    stream
}

async fn measure(sender: &Node, stream: &mut Response, count: usize) -> Vec<Duration> {
    let mut latencies = Vec::with_capacity(count);
    for i in 0..count {
        let sent = Instant::now();
        sender
            .sse
            .notifier()
            .notify(NewNotification::new("bench-alice", format!("n{i}")))
            .await
            .unwrap();
        stream.next_event(Duration::from_secs(2)).await.unwrap();
        latencies.push(sent.elapsed());
    }
    latencies
}

fn row(label: &str, mut latencies: Vec<Duration>) {
    latencies.sort_unstable();
    let us = |d: Duration| d.as_micros();
    println!(
        "| {label} | {} | {} µs | {} µs | {} µs | {} µs |",
        latencies.len(),
        us(percentile(&latencies, 0.50)),
        us(percentile(&latencies, 0.99)),
        us(percentile(&latencies, 0.999)),
        us(latencies.last().copied().unwrap_or_default())
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(2_000);
    let redis = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let prefix = format!("bench:{}:", std::process::id());

    let store: Arc<RedisStore> = Arc::new(
        RedisStore::builder(&redis)
            .prefix(&prefix)
            .connect()
            .await
            .unwrap(),
    );
    let a = node(
        store.clone(),
        Arc::new(
            RedisHub::builder(&redis)
                .prefix(&prefix)
                .connect()
                .await
                .unwrap(),
        ),
    )
    .await;
    let b = node(
        store.clone(),
        Arc::new(
            RedisHub::builder(&redis)
                .prefix(&prefix)
                .connect()
                .await
                .unwrap(),
        ),
    )
    .await;
    let store_for_nats = store.clone();
    let (cross, asked) = across(&a, &b, count).await;
    let local = node(store, Arc::new(InMemoryHub::new())).await;
    let same = along(&local, count).await;

    let postgres = sse_benches::fresh_postgres_url("cross_node").await;
    let store = Arc::new(SqlStore::connect(&postgres).await.unwrap());
    let a = node(
        store.clone(),
        Arc::new(PostgresHub::connect(&postgres).await.unwrap()),
    )
    .await;
    let b = node(
        store.clone(),
        Arc::new(PostgresHub::connect(&postgres).await.unwrap()),
    )
    .await;
    let (pg_cross, pg_asked) = across(&a, &b, count).await;
    let local = node(store, Arc::new(InMemoryHub::new())).await;
    let pg_same = along(&local, count).await;
    let pg_rate = throughput(
        &PostgresHub::connect(&postgres).await.unwrap(),
        &PostgresHub::connect(&postgres).await.unwrap(),
        count * 5,
    )
    .await;
    let nats = sse_benches::nats_url();
    let nats_prefix = format!("bench{}", std::process::id());
    let nats_hub = || async {
        NatsHub::builder(&nats)
            .prefix(&nats_prefix)
            .connect()
            .await
            .unwrap()
    };
    let a = node(store_for_nats.clone(), Arc::new(nats_hub().await)).await;
    let b = node(store_for_nats.clone(), Arc::new(nats_hub().await)).await;
    let (nats_cross, nats_asked) = across(&a, &b, count).await;
    let nats_rate = throughput(&nats_hub().await, &nats_hub().await, count * 5).await;
    let redis_rate = throughput(
        &RedisHub::builder(&redis)
            .prefix(&prefix)
            .connect()
            .await
            .unwrap(),
        &RedisHub::builder(&redis)
            .prefix(&prefix)
            .connect()
            .await
            .unwrap(),
        count * 5,
    )
    .await;

    println!("| path | events | p50 | p99 | p99.9 | max |");
    println!("| --- | --- | --- | --- | --- | --- |");
    row("node B → Redis → node A → client (Redis store)", cross);
    row("one node, in-memory hub (Redis store)", same);
    row(
        "`Hub::presence` of a user on another node (RedisHub)",
        asked,
    );
    row(
        "node B → PostgreSQL NOTIFY → node A → client (PostgreSQL store)",
        pg_cross,
    );
    row("one node, in-memory hub (PostgreSQL store)", pg_same);
    row(
        "`Hub::presence` of a user on another node (PostgresHub)",
        pg_asked,
    );
    row("node B → NATS → node A → client (Redis store)", nats_cross);
    row(
        "`Hub::presence` of a user on another node (NatsHub)",
        nats_asked,
    );
    println!();
    println!("| hub | ephemeral events published one after another, received on another node |");
    println!("| --- | --- |");
    println!("| RedisHub | {redis_rate:.0}/s |");
    println!("| PostgresHub | {pg_rate:.0}/s |");
    println!("| NatsHub | {nats_rate:.0}/s |");
}

/// Events per second from one publisher on `from` to a subscriber on `to`,
/// each publish awaited, until the last is received.
async fn throughput<H: Hub>(from: &H, to: &H, count: usize) -> f64 {
    let mut subscription = to
        .subscribe(&Principal::new("bench-rate"), count + 1)
        .await
        .unwrap();
    let event = sse_core::Event::builder().data("x").build().unwrap();
    let audience = sse_core::Audience::user("bench-rate");
    let started = Instant::now();
    for _ in 0..count {
        from.publish(&audience, &event).await.unwrap();
    }
    for _ in 0..count {
        tokio::time::timeout(Duration::from_secs(10), subscription.recv())
            .await
            .unwrap()
            .unwrap();
    }
    count as f64 / started.elapsed().as_secs_f64()
}

/// Latency from node B to a client on node A, and of asking node B whether
/// the user (streaming on node A) is online.
async fn across(a: &Node, b: &Node, count: usize) -> (Vec<Duration>, Vec<Duration>) {
    let mut on_a = open(a).await;
    measure(b, &mut on_a, 100).await; // warm up
    let cross = measure(b, &mut on_a, count).await;
    // Presence is mirrored within the hub's flush interval.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut asked = Vec::with_capacity(count);
    let hub_b = b.sse.notifier().hub().clone();
    for _ in 0..count {
        let started = Instant::now();
        let presence = hub_b
            .presence(&sse_core::Audience::user("bench-alice"))
            .await
            .unwrap();
        asked.push(started.elapsed());
        assert_eq!(presence.streams, 1);
    }
    (cross, asked)
}

/// Latency on one node with the in-memory hub.
async fn along(node: &Node, count: usize) -> Vec<Duration> {
    let mut stream = open(node).await;
    measure(node, &mut stream, 100).await;
    measure(node, &mut stream, count).await
}
