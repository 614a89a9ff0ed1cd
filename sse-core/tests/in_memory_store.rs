//! The in-memory log and store beyond what the generic suites cover.

use std::time::Duration;

use sse_core::log::Replay;
use sse_core::{
    Audience, Event, EventLog, InMemoryLog, InMemoryStore, NewNotification, NotificationStore,
    Principal, Retention,
};

#[tokio::test]
async fn events_older_than_max_age_are_gone() {
    let store = InMemoryStore::with_log(InMemoryLog::with_retention(
        Retention::unlimited().max_age(Duration::from_millis(50)),
    ));
    let start = store.head().await.unwrap();
    let old = store
        .create(NewNotification::new("u", "old"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(120)).await;
    let fresh = store
        .create(NewNotification::new("u", "fresh"))
        .await
        .unwrap();
    let principal = Principal::new("u");
    assert_eq!(
        store.since(&principal, start, 10).await.unwrap(),
        Replay::HistoryGone { head: fresh.cursor }
    );
    // The client that saw `old` misses nothing that was pruned.
    assert_eq!(
        store.since(&principal, old.cursor, 10).await.unwrap(),
        Replay::Events {
            events: vec![fresh.event().clone()],
            head: fresh.cursor
        }
    );
    // Pruning the log keeps the notifications themselves.
    assert_eq!(store.unread_count(&"u".into()).await.unwrap(), 2);
}

#[tokio::test]
async fn unknown_users_are_not_created_by_failed_operations() {
    let store = InMemoryStore::new();
    let start = store.head().await.unwrap();
    for i in 0..100 {
        let user = format!("ghost-{i}").into();
        assert!(store.mark_read(&user, 1.into()).await.is_err());
        assert!(store.delete(&user, 1.into()).await.is_err());
        assert!(store.mark_all_read(&user).await.unwrap().is_none());
    }
    assert_eq!(store.head().await.unwrap(), start);
}

#[tokio::test]
async fn a_replay_reads_every_durable_audience_of_the_principal_in_order() {
    let log = InMemoryLog::new();
    let start = log.head().await.unwrap();
    let event = |label: &str| Event::builder().event("e").data(label).build().unwrap();
    log.append(&[
        (Audience::user("bob"), event("mine")),
        (Audience::user("eve"), event("eve's")),
        (Audience::group("acme"), event("my group")),
        (Audience::group("other"), event("another group")),
        (Audience::topic("deploys"), event("my topic")),
        (Audience::Everyone, event("everyone")),
    ])
    .await
    .unwrap();
    let bob = Principal::new("bob")
        .with_groups(["acme"])
        .with_topics(["deploys"]);
    let Replay::Events { events, head } = log.since(&bob, start, 100).await.unwrap() else {
        panic!("history gone")
    };
    let labels: Vec<String> = events
        .iter()
        .map(|e| {
            String::from_utf8_lossy(e.frame())
                .lines()
                .find_map(|l| l.strip_prefix("data: ").map(str::to_owned))
                .unwrap()
        })
        .collect();
    assert_eq!(labels, ["mine", "my group", "my topic", "everyone"]);
    assert_eq!(head, log.head().await.unwrap());
    // Ephemeral audiences are refused, as are events with ids of their own.
    assert!(
        log.append(&[(Audience::session("s"), event("x"))])
            .await
            .is_err()
    );
    let with_id = Event::builder().id("7").data("x").build().unwrap();
    assert!(log.append(&[(Audience::Everyone, with_id)]).await.is_err());
    // A cursor from another history is gone, not replayed.
    let other = InMemoryLog::new().head().await.unwrap();
    assert!(matches!(
        log.since(&bob, other, 10).await.unwrap(),
        Replay::HistoryGone { .. }
    ));
}
