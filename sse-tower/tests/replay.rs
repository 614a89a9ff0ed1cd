//! Last-Event-ID replay: nothing missed, nothing twice, in order — also
//! while notifications keep being published during the reconnect.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{SECOND, json, start, start_with_store};
use sse_conformance::client::{ClientError, Request};
use sse_core::{
    Audience, Cursor, Event, EventLog, InMemoryLog, InMemoryStore, NewNotification,
    NotificationStore, Retention,
};

fn created_title(event: &sse_conformance::parser::ParsedEvent) -> String {
    json(event)["notification"]["title"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn cursor(event: &sse_conformance::parser::ParsedEvent) -> Cursor {
    event
        .last_event_id
        .parse()
        .unwrap_or_else(|_| panic!("not a cursor: {:?}", event.last_event_id))
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
        assert_eq!(cursor(&event).position(), cursor(&last).position() + 1 + i);
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
    let start = f.store.head().await.unwrap();
    for i in 0..3 {
        f.notify("alice", &format!("n{i}")).await;
    }
    let mut stream = f
        .open_with(
            Request::get(format!("/events?lastEventId={}", start.next()))
                .header("cookie", "sid=alice"),
        )
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
async fn an_id_older_than_retention_gets_a_reset_with_the_head_as_id() {
    let store = InMemoryStore::with_log(InMemoryLog::with_retention(
        Retention::unlimited().max_events(3),
    ));
    let f = start_with_store(store, |b| b).await;
    let start = f.store.head().await.unwrap();
    for i in 0..10 {
        f.notify("alice", &format!("n{i}")).await;
    }
    let head = f.store.head().await.unwrap();
    let mut stream = f
        .open_with(
            f.request("alice")
                .header("last-event-id", start.epoch().at(2).to_string()),
        )
        .await;
    let reset = stream.next_event(SECOND).await.unwrap();
    assert_eq!(reset.event_type, "reset");
    assert_eq!(json(&reset)["reason"], "history-gone");
    assert_eq!(
        cursor(&reset),
        head,
        "the reset carries the cursor to resume from"
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
        .open_with(f.request("alice").header(
            "last-event-id",
            head.epoch().at(head.position() - 1).to_string(),
        ))
        .await;
    assert_eq!(created_title(&ok.next_event(SECOND).await.unwrap()), "n9");
}

#[tokio::test]
async fn an_id_from_another_history_gets_a_reset() {
    // E.g. the in-memory log restarted: the client's cursor names another
    // epoch, or a position beyond the head.
    let f = start(|b| b).await;
    f.notify("alice", "only").await;
    let head = f.store.head().await.unwrap();
    for stale in [
        InMemoryLog::new().head().await.unwrap().epoch().at(1),
        head.epoch().at(head.position() + 500),
    ] {
        let mut stream = f
            .open_with(
                f.request("alice")
                    .header("last-event-id", stale.to_string()),
            )
            .await;
        let reset = stream.next_event(SECOND).await.unwrap();
        assert_eq!(
            (reset.event_type.as_str(), cursor(&reset)),
            ("reset", head),
            "{stale}"
        );
    }
    // An id of another form (from before cursors, say) too.
    let mut old = f
        .open_with(f.request("alice").header("last-event-id", "7"))
        .await;
    let reset = old.next_event(SECOND).await.unwrap();
    assert_eq!(json(&reset)["reason"], "invalid-last-event-id");
}

#[tokio::test]
async fn a_gap_over_the_replay_limit_gets_a_reset() {
    let f = start(|b| b.replay_limit(5)).await;
    let start = f.store.head().await.unwrap();
    for i in 0..20 {
        f.notify("alice", &format!("n{i}")).await;
    }
    let mut stream = f
        .open_with(
            f.request("alice")
                .header("last-event-id", start.to_string()),
        )
        .await;
    let reset = stream.next_event(SECOND).await.unwrap();
    assert_eq!(reset.event_type, "reset");
    assert_eq!(json(&reset)["reason"], "replay-limit");
    assert_eq!(cursor(&reset), f.store.head().await.unwrap());
    let mut within = f
        .open_with(f.request("alice").header(
            "last-event-id",
            start.epoch().at(start.position() + 15).to_string(),
        ))
        .await;
    assert_eq!(
        created_title(&within.next_event(SECOND).await.unwrap()),
        "n15"
    );
}

#[tokio::test]
async fn the_connected_event_carries_where_the_client_starts() {
    let f = start(|b| b).await;
    f.notify("alice", "before").await;
    let head = f.store.head().await.unwrap();
    // A fresh client starts at the head: a reconnect with that id, even
    // if nothing else arrived, misses nothing published in between.
    let mut fresh = f.request("alice").send(&f.addr()).await.unwrap();
    let connected = fresh.next_event(SECOND).await.unwrap();
    assert_eq!(connected.event_type, "connected");
    assert_eq!(cursor(&connected), head);
    drop(fresh);
    f.notify("alice", "while away").await;
    let mut back = f
        .open_with(
            f.request("alice")
                .header("last-event-id", &connected.last_event_id),
        )
        .await;
    assert_eq!(
        created_title(&back.next_event(SECOND).await.unwrap()),
        "while away"
    );
}

/// Group, topic and everyone events are replayed like a user's own, and a
/// principal replays only the audiences it reads.
#[tokio::test]
async fn every_durable_audience_is_replayed_to_its_members_only() {
    let f = start(|b| b).await;
    let start = f.store.head().await.unwrap();
    let event = |name: &str| Event::builder().event(name).data(name).build().unwrap();
    let notifier = f.sse.notifier();
    for (audience, name) in [
        (Audience::group("acme"), "announcement"),
        (Audience::group("globex"), "not-carols-group"),
        (Audience::topic("news"), "news"),
        (Audience::topic("payroll"), "not-carols-topic"),
        (Audience::Everyone, "maintenance"),
        (Audience::user("carol"), "carols-own"),
        (Audience::user("alice"), "alices-own"),
    ] {
        notifier.publish(&audience, &event(name)).await.unwrap();
    }
    // Carol is in group acme and may read news and ops.
    let mut carol = f
        .open_with(
            f.request("carol")
                .header("last-event-id", start.to_string()),
        )
        .await;
    let mut names = Vec::new();
    for _ in 0..4 {
        names.push(carol.next_event(SECOND).await.unwrap().event_type);
    }
    assert_eq!(names, ["announcement", "news", "maintenance", "carols-own"]);
    let mut alice = f
        .open_with(
            f.request("alice")
                .header("last-event-id", start.to_string()),
        )
        .await;
    let mut names = Vec::new();
    for _ in 0..2 {
        names.push(alice.next_event(SECOND).await.unwrap().event_type);
    }
    assert_eq!(names, ["maintenance", "alices-own"]);
    // And nothing else is pending for either.
    f.notify("carol", "marker").await;
    assert_eq!(
        carol.next_event(SECOND).await.unwrap().event_type,
        "notification"
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
async fn when_the_hub_missed_events_the_stream_catches_up_from_the_log() {
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
    use sse_core::Hub;
    let f = start(|b| b).await;
    let mut stream = f.open("alice").await;
    // Two writers: both stored, the second published first.
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
        .publish(&Audience::user("alice"), second.event())
        .await
        .unwrap();
    f.hub
        .publish(&Audience::user("alice"), first.event())
        .await
        .unwrap();
    let a = stream.next_event(SECOND).await.unwrap();
    let b = stream.next_event(SECOND).await.unwrap();
    assert_eq!(
        (created_title(&a), cursor(&a)),
        ("first".to_owned(), first.cursor)
    );
    assert_eq!(
        (created_title(&b), cursor(&b)),
        ("second".to_owned(), second.cursor)
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
        let mut last = 0;
        for _ in 0..(WRITERS * EACH) {
            let event = tab.next_event(Duration::from_secs(5)).await.unwrap();
            let position = cursor(&event).position();
            assert!(
                position > last,
                "tab {t}: position {position} after {last}: repeated or reordered"
            );
            last = position;
        }
    }
    // Nothing was skipped either: the log holds exactly these.
    assert_eq!(f.store.log().len(), WRITERS * EACH);
}

/// Four publishers at once — to carol, to her group, to a topic she reads,
/// to everyone — and noise to others, while carol's client keeps dropping
/// its connection and resuming with its last id: across all her
/// connections she sees each of her events exactly once, each audience's
/// in order, positions always increasing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_audience_resumes_without_gap_or_duplicate_under_concurrent_publishers() {
    const EACH: usize = 200;
    let f = Arc::new(start(|b| b.queue_capacity(4_096).replay_limit(10_000)).await);
    let mut first = Some(f.open("carol").await);
    let audiences = [
        (Audience::user("carol"), "u", true),
        (Audience::group("acme"), "g", true),
        (Audience::topic("news"), "t", true),
        (Audience::Everyone, "e", true),
        (Audience::user("bob"), "bob", false),
        (Audience::group("globex"), "globex", false),
        (Audience::topic("payroll"), "payroll", false),
    ];
    let mut publishers = Vec::new();
    for (audience, tag, _) in audiences.clone() {
        let f = f.clone();
        publishers.push(tokio::spawn(async move {
            for i in 0..EACH {
                let event = Event::builder()
                    .event(tag)
                    .data(i.to_string())
                    .build()
                    .unwrap();
                f.sse.notifier().publish(&audience, &event).await.unwrap();
                if i % 20 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    let expected = EACH * audiences.iter().filter(|(_, _, mine)| *mine).count();
    let mut received: std::collections::HashMap<String, Vec<usize>> = Default::default();
    let mut total = 0;
    let mut last: Option<Cursor> = None;
    let mut reconnects = 0;
    while total < expected {
        let mut stream = match first.take() {
            Some(stream) => stream,
            None => {
                let mut request = f.request("carol");
                if let Some(last) = last {
                    request = request.header("last-event-id", last.to_string());
                }
                f.open_with(request).await
            }
        };
        reconnects += 1;
        for _ in 0..(29 + (reconnects * 41) % 120) {
            let event = stream
                .next_event(Duration::from_secs(5))
                .await
                .unwrap_or_else(|e| panic!("after {total} of {expected}: {e}"));
            let position = cursor(&event);
            if let Some(last) = last {
                assert!(
                    position.position() > last.position(),
                    "position {position} after {last}: a duplicate or a reordering"
                );
            }
            last = Some(position);
            assert!(
                ["u", "g", "t", "e"].contains(&event.event_type.as_str()),
                "carol received {:?}, addressed to someone else",
                event.event_type
            );
            received
                .entry(event.event_type.clone())
                .or_default()
                .push(event.data.parse().unwrap());
            total += 1;
            if total == expected {
                break;
            }
        }
        if reconnects % 2 == 0 {
            stream.abort();
        }
    }
    for publisher in publishers {
        publisher.await.unwrap();
    }
    for tag in ["u", "g", "t", "e"] {
        assert_eq!(
            received[tag],
            (0..EACH).collect::<Vec<_>>(),
            "{tag}: a gap, a duplicate or a reordering after {reconnects} reconnects"
        );
    }
    assert!(reconnects >= 5, "only {reconnects} connections");
}

#[tokio::test]
async fn a_poll_gets_what_the_log_has_after_its_cursor_then_ends_without_joining() {
    let f = start(|b| b).await;
    let mut stream = f.open("alice").await;
    f.notify("alice", "one").await;
    let seen = stream.next_event(SECOND).await.unwrap();
    assert_eq!(created_title(&seen), "one");
    drop(stream);
    f.wait_for_active(0).await;
    f.notify("alice", "two").await;
    f.notify("alice", "three").await;
    let mut poll = Request::get("/events?poll=1")
        .header("cookie", "sid=alice")
        .header("last-event-id", &seen.last_event_id)
        .send(&f.addr())
        .await
        .unwrap();
    assert_eq!(poll.status(), 200);
    assert!(
        poll.wait_for_end(SECOND).await.unwrap(),
        "the poll did not end after the replay"
    );
    let events: Vec<_> = sse_conformance::parser::parse(poll.body())
        .into_iter()
        .filter_map(|item| match item {
            sse_conformance::parser::Item::Event(event) => Some(event),
            _ => None,
        })
        .collect();
    assert_eq!(events[0].event_type, "connected");
    assert_eq!(json(&events[0])["poll"], true);
    let titles: Vec<String> = events[1..].iter().map(created_title).collect();
    assert_eq!(titles, ["two", "three"]);
    // It never subscribed: nothing registered, no stream left counted.
    assert_eq!(f.hub.subscriptions(), 0);
    assert_eq!(f.sse.metrics().active_connections, 0);
}
