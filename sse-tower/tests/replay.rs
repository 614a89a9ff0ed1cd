//! Last-Event-ID replay: nothing missed, nothing twice, in order — also
//! while notifications keep being published during the reconnect.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{SECOND, json, start, start_with_store};
use sse_conformance::client::{ClientError, Request};
use sse_core::{InMemoryStore, NewNotification, NotificationStore, Retention};

fn created_title(event: &sse_conformance::parser::ParsedEvent) -> String {
    json(event)["notification"]["title"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn events_published_while_disconnected_arrive_once_in_order() {
    let f = start(|b| b).await;
    let mut stream = f.open("alice").await;
    f.notify("alice", "before-1").await;
    f.notify("alice", "before-2").await;
    let seen = stream.next_event(SECOND).await.unwrap();
    let last = stream.next_event(SECOND).await.unwrap();
    assert_eq!(created_title(&last), "before-2");
    drop(stream);

    for i in 0..5 {
        f.notify("alice", &format!("missed-{i}")).await;
    }
    f.notify("bob", "not for alice").await;

    let mut again = f
        .open_with(
            f.request("alice")
                .header("last-event-id", &last.last_event_id),
        )
        .await;
    for i in 0..5 {
        let event = again.next_event(SECOND).await.unwrap();
        assert_eq!(created_title(&event), format!("missed-{i}"));
        assert_eq!(event.last_event_id, (3 + i).to_string());
    }
    f.notify("alice", "live").await;
    let live = again.next_event(SECOND).await.unwrap();
    assert_eq!(
        created_title(&live),
        "live",
        "a replayed event was sent twice or the live one was lost"
    );
    assert_eq!(f.sse.metrics().replayed, 5);
    let _ = seen;
}

#[tokio::test]
async fn the_query_fallback_resumes_like_the_header() {
    let f = start(|b| b).await;
    for i in 0..3 {
        f.notify("alice", &format!("n{i}")).await;
    }
    let mut stream = f
        .open_with(Request::get("/events?lastEventId=1").header("cookie", "sid=alice"))
        .await;
    assert_eq!(
        created_title(&stream.next_event(SECOND).await.unwrap()),
        "n1"
    );
    assert_eq!(
        created_title(&stream.next_event(SECOND).await.unwrap()),
        "n2"
    );
}

#[tokio::test]
async fn an_id_older_than_retention_gets_a_reset_with_the_newest_id() {
    let store = InMemoryStore::with_retention(Retention::unlimited().max_changes_per_user(3));
    let f = start_with_store(store, |b| b).await;
    for i in 0..10 {
        f.notify("alice", &format!("n{i}")).await;
    }
    let mut stream = f
        .open_with(f.request("alice").header("last-event-id", "2"))
        .await;
    let reset = stream.next_event(SECOND).await.unwrap();
    assert_eq!(reset.event_type, "reset");
    assert_eq!(json(&reset)["reason"], "history-gone");
    assert_eq!(
        reset.last_event_id, "10",
        "the reset carries the id to resume from"
    );
    // Nothing already covered by the reset follows; the next live one does.
    f.notify("alice", "after").await;
    assert_eq!(
        created_title(&stream.next_event(SECOND).await.unwrap()),
        "after"
    );
    assert_eq!(f.sse.metrics().resets, 1);

    // Within retention, replay still works.
    let mut ok = f
        .open_with(f.request("alice").header("last-event-id", "9"))
        .await;
    assert_eq!(created_title(&ok.next_event(SECOND).await.unwrap()), "n9");
}

#[tokio::test]
async fn an_id_from_another_history_gets_a_reset() {
    // E.g. the in-memory store restarted: the client's id is above the newest.
    let f = start(|b| b).await;
    f.notify("alice", "only").await;
    let mut stream = f
        .open_with(f.request("alice").header("last-event-id", "500"))
        .await;
    let reset = stream.next_event(SECOND).await.unwrap();
    assert_eq!(
        (reset.event_type.as_str(), reset.last_event_id.as_str()),
        ("reset", "1")
    );
    // A user with no history at all gets an empty id: the client starts fresh.
    let mut bob = f
        .open_with(f.request("bob").header("last-event-id", "7"))
        .await;
    let reset = bob.next_event(SECOND).await.unwrap();
    assert_eq!(
        (reset.event_type.as_str(), reset.last_event_id.as_str()),
        ("reset", "")
    );
}

#[tokio::test]
async fn a_gap_over_the_replay_limit_gets_a_reset() {
    let f = start(|b| b.replay_limit(5)).await;
    for i in 0..20 {
        f.notify("alice", &format!("n{i}")).await;
    }
    let mut stream = f
        .open_with(f.request("alice").header("last-event-id", "3"))
        .await;
    let reset = stream.next_event(SECOND).await.unwrap();
    assert_eq!(reset.event_type, "reset");
    assert_eq!(json(&reset)["reason"], "replay-limit");
    assert_eq!(reset.last_event_id, "20");
    let mut within = f
        .open_with(f.request("alice").header("last-event-id", "15"))
        .await;
    assert_eq!(
        created_title(&within.next_event(SECOND).await.unwrap()),
        "n15"
    );
}

/// A client that keeps disconnecting (cleanly and abruptly) and resuming
/// with its last id, while notifications are published without pause:
/// across all its connections it sees every notification exactly once, in
/// order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_gap_and_no_duplicate_while_publishing_during_reconnects() {
    const TOTAL: usize = 1_000;
    let f = Arc::new(start(|b| b.queue_capacity(2_048).replay_limit(10_000)).await);
    let done = Arc::new(AtomicBool::new(false));
    // The first connection exists before anything is published: a fresh
    // client is owed only what comes after it connected.
    let mut first = Some(f.open("alice").await);
    let publisher = {
        let f = f.clone();
        let done = done.clone();
        tokio::spawn(async move {
            for i in 0..TOTAL {
                f.notify("alice", &format!("{i}")).await;
                if i % 10 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            done.store(true, Ordering::SeqCst);
        })
    };

    let mut received: Vec<usize> = Vec::new();
    let mut last_id = String::new();
    let mut reconnects = 0;
    while received.len() < TOTAL {
        let mut stream = match first.take() {
            Some(stream) => stream,
            None => {
                let mut request = f.request("alice");
                if !last_id.is_empty() {
                    request = request.header("last-event-id", &last_id);
                }
                f.open_with(request).await
            }
        };
        reconnects += 1;
        // Read a varying number of events, then drop the connection.
        let budget = 37 + (reconnects * 53) % 150;
        for _ in 0..budget {
            match stream.next_event(Duration::from_secs(5)).await {
                Ok(event) => {
                    assert_eq!(event.event_type, "notification", "unexpected {event:?}");
                    received.push(created_title(&event).parse().unwrap());
                    last_id = event.last_event_id.clone();
                }
                Err(ClientError::Timeout(_)) if done.load(Ordering::SeqCst) => {
                    let mut sorted = received.clone();
                    sorted.sort_unstable();
                    sorted.dedup();
                    let missing: Vec<usize> = (0..TOTAL)
                        .filter(|i| sorted.binary_search(i).is_err())
                        .take(10)
                        .collect();
                    panic!(
                        "publishing ended and nothing more arrives: {} received ({} distinct), first missing {missing:?}, last id {last_id:?}, after {reconnects} reconnects",
                        received.len(),
                        sorted.len()
                    );
                }
                Err(e) => panic!("stream failed: {e}"),
            }
            if received.len() == TOTAL {
                break;
            }
        }
        if reconnects % 2 == 0 {
            stream.abort();
        } else {
            drop(stream);
        }
    }
    publisher.await.unwrap();
    let expected: Vec<usize> = (0..TOTAL).collect();
    assert_eq!(
        received.len(),
        TOTAL,
        "duplicates or losses after {reconnects} reconnects"
    );
    assert_eq!(
        received, expected,
        "gap, duplicate or reordering after {reconnects} reconnects"
    );
    assert!(
        reconnects >= 5,
        "the test should reconnect several times, did {reconnects}"
    );
}

#[tokio::test]
async fn when_the_hub_missed_events_the_stream_catches_up_from_the_store() {
    let f = start(|b| b).await;
    let mut stream = f.open("alice").await;
    f.notify("alice", "live-1").await;
    assert_eq!(
        created_title(&stream.next_event(SECOND).await.unwrap()),
        "live-1"
    );

    // Stored while the hub was cut off from its upstream: never published.
    for i in 0..3 {
        f.store
            .create(NewNotification::new("alice", format!("missed-{i}")))
            .await
            .unwrap();
    }
    f.hub.signal_missed_all();
    for i in 0..3 {
        let event = stream.next_event(SECOND).await.unwrap();
        assert_eq!(created_title(&event), format!("missed-{i}"));
    }
    f.notify("alice", "live-2").await;
    assert_eq!(
        created_title(&stream.next_event(SECOND).await.unwrap()),
        "live-2"
    );
    assert_eq!(f.sse.metrics().replayed, 3);
}

#[tokio::test]
async fn changes_published_out_of_order_arrive_in_order() {
    use sse_core::{Audience, Hub};
    let f = start(|b| b).await;
    let mut stream = f.open("alice").await;
    // Two writers: ids 1 and 2 are committed, but 2 is published first.
    let first = f
        .store
        .create(NewNotification::new("alice", "first"))
        .await
        .unwrap();
    let second = f
        .store
        .create(NewNotification::new("alice", "second"))
        .await
        .unwrap();
    f.hub
        .publish(&Audience::user("alice"), &second.to_event().unwrap())
        .await
        .unwrap();
    f.hub
        .publish(&Audience::user("alice"), &first.to_event().unwrap())
        .await
        .unwrap();
    let a = stream.next_event(SECOND).await.unwrap();
    let b = stream.next_event(SECOND).await.unwrap();
    assert_eq!(
        (created_title(&a), a.last_event_id.as_str()),
        ("first".to_owned(), "1")
    );
    assert_eq!(
        (created_title(&b), b.last_event_id.as_str()),
        ("second".to_owned(), "2")
    );
    f.notify("alice", "third").await;
    assert_eq!(
        created_title(&stream.next_event(SECOND).await.unwrap()),
        "third"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_notifiers_for_one_user_reach_every_tab_exactly_once_in_order() {
    const WRITERS: usize = 8;
    const EACH: usize = 100;
    let f = Arc::new(start(|b| b.queue_capacity(4_096)).await);
    let mut tabs = [f.open("alice").await, f.open("alice-2").await];
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let f = f.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..EACH {
                f.notify("alice", &format!("{w}-{i}")).await;
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    for (t, tab) in tabs.iter_mut().enumerate() {
        for expected in 1..=(WRITERS * EACH) {
            let event = tab.next_event(Duration::from_secs(5)).await.unwrap();
            assert_eq!(
                event.last_event_id,
                expected.to_string(),
                "tab {t}: an id was skipped, repeated or reordered"
            );
        }
    }
}
