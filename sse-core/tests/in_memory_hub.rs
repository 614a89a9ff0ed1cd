//! InMemoryHub behaviour users rely on beyond the generic hub suite:
//! nothing left behind after churn, and exact targeting for arbitrary
//! principals and audiences under concurrent publishers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use sse_core::{Audience, ConnectionId, Event, Hub, InMemoryHub, Principal, RecvError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_subscribe_drop_cycles_leave_no_entry() {
    let hub = InMemoryHub::new();
    let mut workers = Vec::new();
    for w in 0..4 {
        let hub = hub.clone();
        workers.push(tokio::spawn(async move {
            for i in 0..2_500 {
                let principal = Principal::new(format!("user-{}", i % 100))
                    .with_session(format!("session-{w}-{i}"))
                    .with_groups([format!("group-{}", i % 7), "everyone-group".to_owned()])
                    .with_topics([format!("topic-{}", i % 3)]);
                let subscription = hub.subscribe(&principal, 4).await.unwrap();
                if i % 3 == 0 {
                    hub.publish(&Audience::group("everyone-group"), &Event::comment("x"))
                        .await
                        .unwrap();
                }
                drop(subscription);
            }
        }));
    }
    for worker in workers {
        worker.await.unwrap();
    }
    assert_eq!(hub.subscriptions(), 0);
    assert_eq!(
        hub.index_entries(),
        0,
        "a key outlived its last subscription"
    );
    assert_eq!(hub.stats().subscriptions, 0);
}

#[tokio::test]
async fn a_full_subscriber_never_blocks_publish() {
    let hub = InMemoryHub::new();
    let principal = Principal::new("slow");
    let mut stuck = hub.subscribe(&principal, 2).await.unwrap();
    let mut healthy = hub.subscribe(&principal, 10_000).await.unwrap();
    let publishing = async {
        for i in 0..5_000 {
            let event = Event::builder()
                .id(i.to_string())
                .data("x")
                .build()
                .unwrap();
            hub.publish(&Audience::user("slow"), &event).await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(5), publishing)
        .await
        .expect("publish waited on a subscriber that does not read");
    assert_eq!(stuck.recv().await.unwrap_err(), RecvError::Lagged);
    for i in 0..5_000 {
        let event = healthy.recv().await.unwrap();
        assert_eq!(event.id(), Some(i.to_string().as_str()));
    }
    assert_eq!(hub.stats().lagged, 1);
}

#[test]
fn publishing_to_one_user_touches_only_their_queues() {
    let hub = InMemoryHub::new();
    let subscriptions: Vec<_> = (0..10_000)
        .map(|i| hub.subscribe_now(&Principal::new(format!("u{i}")), 1))
        .collect();
    hub.deliver(&Audience::user("u42"), &Event::comment("x"));
    assert_eq!(hub.stats().enqueued, 1);
    drop(subscriptions);
    assert_eq!(hub.index_entries(), 0);
}

#[derive(Debug, Clone)]
struct Conn {
    user: u8,
    session: u8,
    groups: Vec<u8>,
    topics: Vec<u8>,
}

#[derive(Debug, Clone)]
enum Target {
    User(u8),
    Session(u8),
    Group(u8),
    Topic(u8),
    Connection(usize),
    Everyone,
}

fn conn() -> impl Strategy<Value = Conn> {
    (
        0u8..4,
        0u8..6,
        prop::collection::vec(0u8..3, 0..3),
        prop::collection::vec(0u8..3, 0..3),
    )
        .prop_map(|(user, session, groups, topics)| Conn {
            user,
            session,
            groups,
            topics,
        })
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        (0u8..5).prop_map(Target::User),
        (0u8..7).prop_map(Target::Session),
        (0u8..4).prop_map(Target::Group),
        (0u8..4).prop_map(Target::Topic),
        (0usize..12).prop_map(Target::Connection),
        Just(Target::Everyone),
    ]
}

fn principal(c: &Conn) -> Principal {
    Principal::new(format!("u{}", c.user))
        .with_session(format!("s{}", c.session))
        .with_groups(c.groups.iter().map(|g| format!("g{g}")))
        .with_topics(c.topics.iter().map(|t| format!("t{t}")))
}

fn audience(t: &Target, ids: &[ConnectionId]) -> Audience {
    match t {
        Target::User(u) => Audience::user(format!("u{u}")),
        Target::Session(s) => Audience::session(format!("s{s}")),
        Target::Group(g) => Audience::group(format!("g{g}")),
        Target::Topic(t) => Audience::topic(format!("t{t}")),
        Target::Connection(i) => Audience::Connection(
            ids.get(*i)
                .copied()
                .unwrap_or(ConnectionId::new(u64::MAX, u64::MAX)),
        ),
        Target::Everyone => Audience::Everyone,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random principals, random audiences, four concurrent publishers:
    /// every connection receives exactly the events whose audience matches
    /// it, and nothing else.
    #[test]
    fn every_connection_gets_exactly_its_events(
        conns in prop::collection::vec(conn(), 1..12),
        publishes in prop::collection::vec(prop::collection::vec(target(), 0..30), 4),
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
        runtime.block_on(async {
            let hub = Arc::new(InMemoryHub::new());
            let principals: Vec<Principal> = conns.iter().map(principal).collect();
            let mut subs = Vec::new();
            for p in &principals {
                subs.push(hub.subscribe(p, 1_000).await.unwrap());
            }
            let ids: Arc<Vec<ConnectionId>> = Arc::new(subs.iter().map(|s| s.id()).collect());
            let mut tasks = Vec::new();
            for (publisher, targets) in publishes.iter().cloned().enumerate() {
                let hub = hub.clone();
                let ids = ids.clone();
                tasks.push(tokio::spawn(async move {
                    for (i, t) in targets.iter().enumerate() {
                        let label = format!("{publisher}-{i}");
                        let event = Event::builder().data(label).build().unwrap();
                        hub.publish(&audience(t, &ids), &event).await.unwrap();
                    }
                }));
            }
            for task in tasks {
                task.await.unwrap();
            }
            for (index, (sub, p)) in subs.iter_mut().zip(&principals).enumerate() {
                let mut expected = HashSet::new();
                for (publisher, targets) in publishes.iter().enumerate() {
                    for (i, t) in targets.iter().enumerate() {
                        let hit = match t {
                            Target::Connection(c) => *c == index,
                            other => audience(other, &ids).matches(p),
                        };
                        if hit {
                            expected.insert(format!("{publisher}-{i}"));
                        }
                    }
                }
                let mut got = HashSet::new();
                let mut order: HashMap<String, usize> = HashMap::new();
                while let Some(event) = sub.try_recv().unwrap() {
                    let text = String::from_utf8(event.frame().to_vec()).unwrap();
                    let label = text.trim_start_matches("data: ").trim_end().to_owned();
                    let (publisher, seq) = label.split_once('-').unwrap();
                    let seq: usize = seq.parse().unwrap();
                    if let Some(prev) = order.insert(publisher.to_owned(), seq) {
                        assert!(seq > prev, "publisher {publisher} reordered: {prev} then {seq}");
                    }
                    assert!(got.insert(label.clone()), "{label} delivered twice to connection {index}");
                }
                assert_eq!(got, expected, "connection {index} ({p:?})");
            }
        });
    }
}

#[tokio::test]
async fn closing_tabs_in_any_order_keeps_the_others_reachable() {
    let hub = InMemoryHub::new();
    let principal = Principal::new("tabs").with_session("s");
    let mut tabs: Vec<_> = (0..3)
        .map(|_| Some(hub.subscribe_now(&principal, 8)))
        .collect();
    for closing in [1, 0, 2] {
        tabs[closing] = None;
        for audience in [Audience::user("tabs"), Audience::session("s")] {
            hub.publish(&audience, &Event::comment("after close"))
                .await
                .unwrap();
            for tab in tabs.iter_mut().flatten() {
                assert!(
                    tab.try_recv().unwrap().is_some(),
                    "{audience:?} missed an open tab"
                );
            }
        }
    }
    assert_eq!(hub.index_entries(), 0);
}

mod durable_order {
    use std::sync::Arc;
    use std::time::Duration;

    use sse_core::{
        Audience, Event, EventLog, Hub, InMemoryHub, InMemoryLog, Principal, RecvError,
    };

    async fn stored(log: &InMemoryLog, audiences: &[Audience]) -> Vec<Event> {
        let events: Vec<(Audience, Event)> = audiences
            .iter()
            .map(|a| (a.clone(), Event::builder().data("x").build().unwrap()))
            .collect();
        log.append(&events).await.unwrap()
    }

    async fn positions(sub: &mut sse_core::Subscription, n: usize) -> Vec<u64> {
        let mut got = Vec::new();
        for _ in 0..n {
            let event = tokio::time::timeout(Duration::from_secs(2), sub.recv())
                .await
                .expect("an event")
                .expect("no error");
            got.push(event.cursor().unwrap().position());
        }
        got
    }

    #[tokio::test]
    async fn durable_events_published_out_of_order_arrive_in_order() {
        let log = InMemoryLog::new();
        let hub = InMemoryHub::new();
        hub.attach_log(Arc::new(log.clone()));
        let bob = Principal::new("bob").with_groups(["acme"]);
        let mut sub = hub.subscribe(&bob, 64).await.unwrap();
        let events = stored(
            &log,
            &[
                Audience::user("bob"),
                Audience::group("acme"),
                Audience::user("bob"),
            ],
        )
        .await;
        // Three publishers finish in the reverse order of their appends.
        hub.publish(&Audience::user("bob"), &events[2])
            .await
            .unwrap();
        hub.publish(&Audience::group("acme"), &events[1])
            .await
            .unwrap();
        hub.publish(&Audience::user("bob"), &events[0])
            .await
            .unwrap();
        let start = events[0].cursor().unwrap().position();
        assert_eq!(positions(&mut sub, 3).await, [start, start + 1, start + 2]);
    }

    #[tokio::test]
    async fn a_position_that_never_arrives_is_read_from_the_log() {
        let log = InMemoryLog::new();
        let hub = InMemoryHub::new().gap_wait(Duration::from_millis(20));
        hub.attach_log(Arc::new(log.clone()));
        let mut sub = hub.subscribe(&Principal::new("bob"), 64).await.unwrap();
        let events = stored(&log, &[Audience::user("bob"), Audience::Everyone]).await;
        // The publisher of the first event crashed before publishing it.
        hub.publish(&Audience::Everyone, &events[1]).await.unwrap();
        let start = events[0].cursor().unwrap().position();
        assert_eq!(positions(&mut sub, 2).await, [start, start + 1]);
    }

    #[tokio::test]
    async fn without_a_log_a_lost_position_makes_streams_catch_up() {
        let hub = InMemoryHub::new().gap_wait(Duration::from_millis(20));
        let log = InMemoryLog::new();
        let mut sub = hub.subscribe(&Principal::new("bob"), 64).await.unwrap();
        let events = stored(
            &log,
            &[
                Audience::user("bob"),
                Audience::user("bob"),
                Audience::user("bob"),
            ],
        )
        .await;
        hub.publish(&Audience::user("bob"), &events[0])
            .await
            .unwrap();
        hub.publish(&Audience::user("bob"), &events[2])
            .await
            .unwrap();
        let first = tokio::time::timeout(Duration::from_secs(2), sub.recv())
            .await
            .unwrap();
        assert_eq!(first.unwrap(), events[0]);
        let second = tokio::time::timeout(Duration::from_secs(2), sub.recv())
            .await
            .unwrap();
        assert_eq!(second, Err(RecvError::Missed));
        let third = tokio::time::timeout(Duration::from_secs(2), sub.recv())
            .await
            .unwrap();
        assert_eq!(third.unwrap(), events[2]);
    }

    #[tokio::test]
    async fn a_hub_started_after_events_were_logged_skips_none_a_stream_needs() {
        let log = InMemoryLog::new();
        let early = stored(&log, &[Audience::user("bob"), Audience::user("bob")]).await;
        let hub = InMemoryHub::new();
        hub.attach_log(Arc::new(log.clone()));
        let mut sub = hub.subscribe(&Principal::new("bob"), 64).await.unwrap();
        // A late publish of an event from before this subscription (it was
        // in the stream's replay) is dropped; later ones arrive in order,
        // even when the first of them is published last.
        let later = stored(&log, &[Audience::user("bob"), Audience::user("bob")]).await;
        hub.publish(&Audience::user("bob"), &early[1])
            .await
            .unwrap();
        hub.publish(&Audience::user("bob"), &later[1])
            .await
            .unwrap();
        hub.publish(&Audience::user("bob"), &later[0])
            .await
            .unwrap();
        let start = later[0].cursor().unwrap().position();
        assert_eq!(positions(&mut sub, 2).await, [start, start + 1]);
    }
}
