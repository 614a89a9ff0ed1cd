//! InMemoryStore retention beyond what the generic store suite covers.

use std::time::Duration;

use sse_core::{
    EventId, InMemoryStore, NewNotification, NotificationStore, Principal, Replay, Retention,
};

#[tokio::test]
async fn changes_older_than_max_age_are_gone() {
    let store =
        InMemoryStore::with_retention(Retention::unlimited().max_age(Duration::from_millis(50)));
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
        store.since(&principal, EventId(0), 10).await.unwrap(),
        Replay::HistoryGone {
            latest: Some(fresh.id)
        }
    );
    // The client that saw `old` misses nothing that was pruned.
    assert_eq!(
        store.since(&principal, old.id, 10).await.unwrap(),
        Replay::Changes(vec![fresh.clone()])
    );
    // Pruning the log keeps the notifications themselves.
    assert_eq!(store.unread_count(&"u".into()).await.unwrap(), 2);
}

#[tokio::test]
async fn unknown_users_are_not_created_by_failed_operations() {
    let store = InMemoryStore::new();
    for i in 0..100 {
        let user = format!("ghost-{i}").into();
        assert!(store.mark_read(&user, 1.into()).await.is_err());
        assert!(store.delete(&user, 1.into()).await.is_err());
        assert!(store.mark_all_read(&user).await.unwrap().is_none());
    }
    let principal = Principal::new("ghost-1");
    assert_eq!(store.last_event_id(&principal).await.unwrap(), None);
}
