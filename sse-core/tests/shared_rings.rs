//! What a subscription promises now that `Everyone`, groups and topics
//! are read from shared rings beside the connection's own queue: each
//! publisher's order across all of them, under concurrent readers and
//! publishers; lag for a reader behind the ring; conflation kept.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sse_core::{Audience, Event, Hub, InMemoryHub, Principal, RecvError};

const PUBLISHERS: usize = 4;
const PER_PUBLISHER: usize = 3_000;

/// Publisher `p`'s `n`th event goes to this audience.
fn audience(p: usize, n: usize) -> Audience {
    match (n + p) % 6 {
        0 => Audience::Everyone,
        1 => Audience::user(format!("u{}", n % 4)),
        2 => Audience::group(format!("g{}", n % 2)),
        3 => Audience::topic("t"),
        4 => Audience::session(format!("s{}", n % 8)),
        _ => Audience::Everyone,
    }
}

fn principal(i: usize) -> Principal {
    let mut principal = Principal::new(format!("u{}", i % 4)).with_session(format!("s{i}"));
    if i.is_multiple_of(2) {
        principal = principal.with_groups([format!("g{}", i % 4 / 2)]);
    }
    if i.is_multiple_of(3) {
        principal = principal.with_topics(["t"]);
    }
    principal
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_publishers_order_holds_across_queue_and_rings_under_concurrency() {
    let hub = InMemoryHub::new();
    let principals: Vec<Principal> = (0..8).map(principal).collect();
    let mut readers = Vec::new();
    for p in &principals {
        let mut subscription = hub.subscribe(p, 100_000).await.unwrap();
        let expected: Vec<(usize, usize)> = (0..PUBLISHERS)
            .flat_map(|publisher| (0..PER_PUBLISHER).map(move |n| (publisher, n)))
            .filter(|&(publisher, n)| audience(publisher, n).matches(p))
            .collect();
        readers.push(tokio::spawn(async move {
            let mut last: HashMap<usize, usize> = HashMap::new();
            let mut got = 0;
            while got < expected.len() {
                let event = tokio::time::timeout(Duration::from_secs(10), subscription.recv())
                    .await
                    .expect("an event never arrived")
                    .unwrap();
                let text = String::from_utf8(event.frame().to_vec()).unwrap();
                let (publisher, n) = text
                    .trim_start_matches("data: ")
                    .trim_end()
                    .split_once('-')
                    .unwrap();
                let (publisher, n): (usize, usize) =
                    (publisher.parse().unwrap(), n.parse().unwrap());
                if let Some(previous) = last.insert(publisher, n) {
                    assert!(n > previous, "publisher {publisher}: {previous} then {n}");
                }
                got += 1;
                // Let publishers run ahead sometimes, so both the queue and
                // the rings hold several events when the merge reads them.
                if got % 97 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            // Exactly what matched: nothing more is pending.
            assert!(subscription.try_recv().unwrap().is_none());
            got
        }));
    }
    let mut publishers = Vec::new();
    for publisher in 0..PUBLISHERS {
        let hub = hub.clone();
        publishers.push(tokio::spawn(async move {
            for n in 0..PER_PUBLISHER {
                let event = Event::builder()
                    .data(format!("{publisher}-{n}"))
                    .build()
                    .unwrap();
                hub.publish(&audience(publisher, n), &event).await.unwrap();
                if n % 50 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    for publisher in publishers {
        publisher.await.unwrap();
    }
    let mut total = 0;
    for reader in readers {
        total += reader.await.unwrap();
    }
    assert!(
        total > PUBLISHERS * PER_PUBLISHER,
        "every reader got its share"
    );
    assert_eq!(hub.stats().lagged, 0);
}

#[tokio::test]
async fn a_reader_behind_the_everyone_ring_lags_and_the_others_go_on() {
    let hub = InMemoryHub::new();
    let mut stuck = hub.subscribe(&Principal::new("slow"), 2).await.unwrap();
    let hooked = Arc::new(AtomicBool::new(false));
    let flag = hooked.clone();
    stuck.on_lagged(move || flag.store(true, Ordering::SeqCst));
    let mut healthy = hub
        .subscribe(&Principal::new("fast").with_groups(["g"]), 10_000)
        .await
        .unwrap();
    for i in 0..5_000u32 {
        let event = Event::builder().data(i.to_string()).build().unwrap();
        let audience = if i.is_multiple_of(2) {
            Audience::Everyone
        } else {
            Audience::group("g")
        };
        hub.publish(&audience, &event).await.unwrap();
    }
    assert_eq!(stuck.recv().await.unwrap_err(), RecvError::Lagged);
    assert!(hooked.load(Ordering::SeqCst), "the lag hook ran");
    assert_eq!(stuck.recv().await.unwrap_err(), RecvError::Closed);
    for i in 0..5_000 {
        let event = healthy.recv().await.unwrap();
        assert_eq!(&event.frame()[..], format!("data: {i}\n\n").as_bytes());
    }
    assert_eq!(hub.stats().lagged, 1);
    // Everyone: two readers, the group: one.
    assert_eq!(hub.stats().enqueued, 2_500 * 2 + 2_500);
}

#[tokio::test]
async fn a_parked_reader_is_woken_by_a_ring_and_sees_later_queue_events_after() {
    let hub = InMemoryHub::new();
    let mut subscription = hub
        .subscribe(&Principal::new("ada").with_topics(["news"]), 8)
        .await
        .unwrap();
    let waiter = tokio::spawn(async move {
        let mut got = Vec::new();
        for _ in 0..3 {
            let event = subscription.recv().await.unwrap();
            got.push(String::from_utf8(event.frame().to_vec()).unwrap());
        }
        got
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    for (audience, data) in [
        (Audience::topic("news"), "1"),
        (Audience::user("ada"), "2"),
        (Audience::Everyone, "3"),
    ] {
        let event = Event::builder().data(data).build().unwrap();
        hub.publish(&audience, &event).await.unwrap();
    }
    let got = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("the parked reader was not woken")
        .unwrap();
    assert_eq!(got, ["data: 1\n\n", "data: 2\n\n", "data: 3\n\n"]);
}

#[tokio::test]
async fn keyed_events_to_everyone_still_conflate_in_each_queue() {
    let hub = InMemoryHub::new();
    let mut subscription = hub.subscribe(&Principal::new("ada"), 3).await.unwrap();
    for n in 0..100 {
        for key in ["a", "b"] {
            let event = Event::builder()
                .data(format!("{key}{n}"))
                .conflate(key)
                .build()
                .unwrap();
            hub.publish(&Audience::Everyone, &event).await.unwrap();
        }
    }
    let mut got = Vec::new();
    while let Some(event) = subscription.try_recv().unwrap() {
        got.push(String::from_utf8(event.frame().to_vec()).unwrap());
    }
    assert_eq!(got, ["data: a99\n\n", "data: b99\n\n"]);
}

#[tokio::test]
async fn a_group_ring_lives_while_the_group_has_a_subscriber_here() {
    let hub = InMemoryHub::new();
    let first = hub
        .subscribe(&Principal::new("a").with_groups(["g"]), 8)
        .await
        .unwrap();
    let mut second = hub
        .subscribe(&Principal::new("b").with_groups(["g"]), 8)
        .await
        .unwrap();
    drop(first);
    hub.publish(&Audience::group("g"), &Event::comment("still here"))
        .await
        .unwrap();
    assert!(second.try_recv().unwrap().is_some());
    drop(second);
    assert_eq!(hub.index_entries(), 0);
    // A publish to a group nobody here reads holds nothing.
    hub.publish(&Audience::group("g"), &Event::comment("no one"))
        .await
        .unwrap();
    assert_eq!(hub.index_entries(), 0);
}

#[tokio::test]
async fn a_reader_that_never_reads_again_is_lagged_by_publishes_and_its_hook_runs() {
    for audience in [
        Audience::Everyone,
        Audience::group("g"),
        Audience::topic("t"),
    ] {
        let hub = InMemoryHub::new();
        let principal = Principal::new("ada").with_groups(["g"]).with_topics(["t"]);
        let mut stalled = hub.subscribe(&principal, 4).await.unwrap();
        let hooked = Arc::new(AtomicBool::new(false));
        let flag = hooked.clone();
        stalled.on_lagged(move || flag.store(true, Ordering::SeqCst));
        let mut healthy = hub.subscribe(&principal, 64).await.unwrap();
        let mut published = 0;
        // The stalled subscription is never polled: only publishes can
        // find it behind (a server's lag hook then closes its socket).
        while !hooked.load(Ordering::SeqCst) {
            assert!(published < 64, "{audience:?}: never lagged");
            hub.publish(&audience, &Event::comment("x")).await.unwrap();
            assert!(healthy.try_recv().unwrap().is_some());
            published += 1;
        }
        assert!(
            published > 4,
            "{audience:?}: lagged at {published}, within capacity"
        );
        assert_eq!(hub.stats().lagged, 1, "{audience:?}");
        assert_eq!(stalled.recv().await.unwrap_err(), RecvError::Lagged);
        assert_eq!(hub.stats().lagged, 1, "{audience:?}: counted once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_broadcasts_reach_every_parked_reader_without_a_spurious_lag() {
    const PER_PUBLISHER: usize = 5_000;
    let hub = InMemoryHub::new();
    let mut readers = Vec::new();
    for i in 0..6 {
        let mut subscription = hub
            .subscribe(&Principal::new(format!("r{i}")), 4 * PER_PUBLISHER)
            .await
            .unwrap();
        readers.push(tokio::spawn(async move {
            // Parks between events, so pushes race the parking list.
            for _ in 0..4 * PER_PUBLISHER {
                tokio::time::timeout(Duration::from_secs(10), subscription.recv())
                    .await
                    .expect("a broadcast never arrived")
                    .expect("a reader that keeps up was lagged");
            }
        }));
    }
    let mut publishers = Vec::new();
    for _ in 0..4 {
        let hub = hub.clone();
        publishers.push(tokio::spawn(async move {
            for n in 0..PER_PUBLISHER {
                hub.publish(&Audience::Everyone, &Event::comment("b"))
                    .await
                    .unwrap();
                if n % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    for task in publishers.into_iter().chain(readers) {
        task.await.unwrap();
    }
    assert_eq!(hub.stats().lagged, 0);
}
