//! Cross-node delivery latency: a notification created through node B
//! (store + Redis publish) until its bytes are read by a client connected
//! to node A, over loopback. Same-node delivery with the in-memory hub is
//! measured the same way for comparison.
//!
//! `cargo run --release -p sse-benches --bin cross-node [-- COUNT]`
//! (Redis on REDIS_URL, default redis://127.0.0.1:6379).
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
use sse_redis::{RedisHub, RedisStore};
use sse_tower::SseService;

struct Node {
    sse: SseService,
    _server: TestServer,
    authority: String,
}

async fn node(store: Arc<RedisStore>, hub: Arc<dyn Hub>) -> Node {
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
    let mut on_a = open(&a).await;
    measure(&b, &mut on_a, 100).await; // warm up
    let cross = measure(&b, &mut on_a, count).await;
    // "Is alice online?", asked of node B while her stream is on node A:
    // one script call summing the other nodes' counts.
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

    let local = node(store, Arc::new(InMemoryHub::new())).await;
    let mut on_local = open(&local).await;
    measure(&local, &mut on_local, 100).await;
    let same = measure(&local, &mut on_local, count).await;
    println!("| path | events | p50 | p99 | p99.9 | max |");
    println!("| --- | --- | --- | --- | --- | --- |");
    row("node B → Redis → node A → client (Redis store)", cross);
    row("one node, in-memory hub (Redis store)", same);
    row(
        "`Hub::presence` of a user on another node (RedisHub)",
        asked,
    );
}
