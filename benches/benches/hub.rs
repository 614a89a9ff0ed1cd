//! Micro-benchmarks: encoding an event, and publishing to one user among
//! 1 / 1,000 / 100,000 subscribers of the in-memory hub.
//! `cargo bench -p sse-benches --bench hub`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use divan::Bencher;
use sse_core::{
    Audience, Change, ChangeKind, Event, InMemoryHub, Notification, NotificationId, Principal,
    Subscription, Timestamp,
};

fn main() {
    divan::main();
}

mod encode {
    use super::*;

    #[divan::bench]
    fn small_json() -> Event {
        Event::json(divan::black_box(
            &serde_json::json!({"type": "ping", "n": 1}),
        ))
        .unwrap()
    }

    #[divan::bench]
    fn change_event() -> Event {
        let notification = Notification::from_new(
            NotificationId(42),
            sse_core::NewNotification::new("bob", "Build finished")
                .message("main is green")
                .kind("ci")
                .action_url("/builds/42"),
            Timestamp::from_millis(1_763_900_000_000),
        );
        let kind = ChangeKind::Created { notification };
        Change::encode(divan::black_box(&kind), 3).unwrap()
    }

    #[divan::bench]
    fn one_kib_multiline() -> Event {
        let data = "line of text that goes on\n".repeat(40);
        Event::builder()
            .id("12345")
            .event("notification")
            .data(divan::black_box(data))
            .build()
            .unwrap()
    }

    #[divan::bench]
    fn clone_for_a_recipient(bencher: Bencher<'_, '_>) {
        let event = Event::builder().data("x".repeat(4096)).build().unwrap();
        bencher.bench_local(|| divan::black_box(&event).clone());
    }
}

/// Publishes to one user (a random one when there are many), then takes
/// the event from that user's queue so queues stay short: the figure is
/// publish plus one receive.
#[divan::bench(args = [1, 1_000, 100_000])]
fn publish_to_one_user_among(bencher: Bencher<'_, '_>, subscribers: usize) {
    let hub = InMemoryHub::new();
    let subscriptions: Vec<Subscription> = (0..subscribers)
        .map(|i| hub.subscribe_now(&Principal::new(format!("u{i}")), 16))
        .collect();
    let audiences: Vec<Audience> = (0..subscribers)
        .map(|i| Audience::user(format!("u{i}")))
        .collect();
    let event = Event::builder()
        .id("1")
        .event("notification")
        .data("{\"type\":\"created\"}")
        .build()
        .unwrap();
    let mut subscriptions = subscriptions;
    let mut next = 0usize;
    bencher.bench_local(|| {
        next = (next * 7919 + 13) % subscribers;
        hub.deliver(&audiences[next], &event);
        subscriptions[next].try_recv().unwrap()
    });
}

/// `Hub::presence` of one user among 100,000 subscriptions: the index
/// lookup a per-request "is this user online?" costs on one node.
#[divan::bench]
fn presence_of_one_user_among_100_000(bencher: Bencher<'_, '_>) {
    let hub = InMemoryHub::new();
    let _subscriptions: Vec<Subscription> = (0..100_000)
        .map(|i| hub.subscribe_now(&Principal::new(format!("u{}", i % 50_000)), 16))
        .collect();
    let audiences: Vec<Audience> = (0..50_000)
        .map(|i| Audience::user(format!("u{i}")))
        .collect();
    let mut next = 0usize;
    bencher.bench_local(|| {
        next = (next * 7919 + 13) % audiences.len();
        hub.local_presence(divan::black_box(&audiences[next]))
    });
}
