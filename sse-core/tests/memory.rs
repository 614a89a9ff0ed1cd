//! A hub's memory returns to where it was once its streams are gone,
//! whether or not anything was ever published: this binary counts every
//! byte it holds (its own global allocator), so a leak of a few bytes per
//! stream shows after a few hundred thousand streams.

use std::alloc::System;
use std::task::Poll;

use cap::Cap;
use sse_core::{Audience, Event, Hub, InMemoryHub, Principal, Subscription};

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

/// Streams opened in each run.
const STREAMS: usize = 300_000;
/// What a run may leave held: far less than a byte per stream.
const SLACK: usize = 64 * 1024;

/// Polls once, as a stream's task does before it parks.
async fn poll_once(subscription: &mut Subscription) {
    std::future::poll_fn(|cx| {
        let _ = subscription.poll_recv(cx);
        Poll::Ready(())
    })
    .await;
}

fn principal(n: usize) -> Principal {
    Principal::new(format!("user-{}", n % 1_000))
        .with_session(format!("session-{n}"))
        .with_groups([format!("org-{}", n % 10)])
        .with_topics(["deploys"])
}

/// Opens `STREAMS` streams, `open_at_once` at a time, each polled once
/// and dropped, with one stream open throughout; `publish` before each
/// batch closes. Returns the bytes held after, less those held before.
async fn churn(hub: &InMemoryHub, open_at_once: usize, publish: bool) -> isize {
    let resident = hub.subscribe(&principal(0), 16).await;
    let mut resident = resident.unwrap_or_else(|e| panic!("subscribe failed: {e}"));
    poll_once(&mut resident).await;
    let before = ALLOCATOR.allocated();
    let mut open = Vec::with_capacity(open_at_once);
    for n in 0..STREAMS {
        let mut subscription = hub
            .subscribe(&principal(n), 16)
            .await
            .unwrap_or_else(|e| panic!("subscribe failed: {e}"));
        poll_once(&mut subscription).await;
        open.push(subscription);
        if open.len() == open_at_once {
            if publish {
                let event = Event::builder()
                    .data("x")
                    .build()
                    .unwrap_or_else(|e| panic!("{e}"));
                hub.publish(&Audience::user("user-1"), &event)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
            }
            open.clear();
        }
    }
    drop(open);
    poll_once(&mut resident).await;
    let after = ALLOCATOR.allocated();
    drop(resident);
    after as isize - before as isize
}

/// One test: the allocator counts the whole process, so nothing may run
/// beside it.
#[tokio::test(flavor = "current_thread")]
async fn a_hub_keeps_nothing_of_streams_gone_broadcasts_or_not() {
    let hub = InMemoryHub::new();
    // The first run sizes the maps and the runtime; the next are measured.
    churn(&hub, 100, true).await;
    for (open_at_once, publish) in [(1, false), (100, false), (100, true)] {
        let grown = churn(&hub, open_at_once, publish).await;
        assert!(
            grown < SLACK as isize,
            "after {STREAMS} streams ({open_at_once} open at once, publishing: {publish}) the hub holds {grown} bytes more"
        );
    }
    assert_eq!(hub.index_entries(), 0);
}
