//! The in-memory hub at 1,000,000 subscriptions (no sockets): memory per
//! subscription (RSS delta / subscriptions, principals included) and the
//! time to publish to one user among them.
//! `cargo run --release -p sse-benches --bin hub-scale [-- COUNT]`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use sse_benches::{percentile, rss_kib};
use sse_core::{Audience, Event, Hub, InMemoryHub, Principal};

fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let hub = InMemoryHub::new();
    // The audiences to publish to are built first, so only the hub's share
    // (subscriptions, principals, indexes) is in the delta.
    let audiences: Vec<Audience> = (0..count)
        .map(|i| Audience::user(format!("user-{i}")))
        .collect();
    let mut subscriptions = Vec::with_capacity(count);
    let before = rss_kib(std::process::id());
    let started = Instant::now();
    for i in 0..count {
        subscriptions.push(hub.subscribe_now(
            &Principal::new(format!("user-{i}")).with_session(format!("s-{i}")),
            16,
        ));
    }
    let subscribe_time = started.elapsed();
    let after = rss_kib(std::process::id());
    let per_subscription = (after - before) as f64 * 1024.0 / count as f64;

    let event = Event::builder()
        .id("1")
        .event("notification")
        .data("{\"type\":\"created\"}")
        .build()
        .unwrap();
    let mut times = Vec::with_capacity(count);
    // Every user once, in a scattered order (7919 is prime, so i * 7919
    // walks all residues): a queue never fills, nothing is dropped.
    for i in 0..count {
        let next = (i * 7919 + 13) % count;
        let started = Instant::now();
        hub.deliver(&audiences[next], &event);
        times.push(started.elapsed());
    }
    times.sort_unstable();
    println!(
        "| subscriptions | subscribe all | memory per subscription | publish to one user p50 | p99 | p99.9 |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    println!(
        "| {count} | {:.2} s | {per_subscription:.0} B | {:.1?} | {:.1?} | {:.1?} |",
        subscribe_time.as_secs_f64(),
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        percentile(&times, 0.999)
    );
    assert_eq!(hub.stats().enqueued as usize, count);
    drop(subscriptions);
    assert_eq!(hub.index_entries(), 0);
}
