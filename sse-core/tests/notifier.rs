//! The facade stores first, then publishes; a stored change is never lost.

use std::sync::Arc;

use async_trait::async_trait;
use sse_core::log::Replay;
use sse_core::{
    Audience, Event, EventLog, Hub, HubError, InMemoryHub, InMemoryLog, InMemoryStore,
    NewNotification, Notifier, NotifyError, Principal, Subscription,
};

struct DownHub;

#[async_trait]
impl Hub for DownHub {
    async fn subscribe(&self, _: &Principal, _: usize) -> Result<Subscription, HubError> {
        Err(HubError::Unavailable("down".into()))
    }
    async fn publish(&self, _: &Audience, _: &Event) -> Result<(), HubError> {
        Err(HubError::Unavailable("down".into()))
    }
    fn stats(&self) -> sse_core::HubStats {
        sse_core::HubStats::default()
    }
}

#[tokio::test]
async fn every_operation_publishes_its_change_to_the_user() {
    let hub = InMemoryHub::new();
    let store = InMemoryStore::new();
    let notifier = Notifier::with_store(Arc::new(store.clone()), Arc::new(hub.clone()));
    let start = store.head().await.unwrap().position();
    let mut tab = hub.subscribe(&Principal::new("bob"), 64).await.unwrap();
    let mut other = hub.subscribe(&Principal::new("eve"), 64).await.unwrap();

    let a = notifier
        .notify(NewNotification::new("bob", "a"))
        .await
        .unwrap();
    let b = notifier
        .notify(NewNotification::new("bob", "b"))
        .await
        .unwrap();
    assert!(notifier.mark_read(&"bob".into(), a.id).await.unwrap());
    assert!(!notifier.mark_read(&"bob".into(), a.id).await.unwrap());
    assert!(notifier.mark_all_read(&"bob".into()).await.unwrap());
    assert!(notifier.delete_all_read(&"bob".into()).await.unwrap());
    let c = notifier
        .notify(NewNotification::new("bob", "c"))
        .await
        .unwrap();
    notifier.delete(&"bob".into(), c.id).await.unwrap();
    let _ = b;

    let mut kinds = Vec::new();
    while let Some(event) = tab.try_recv().unwrap() {
        let text = String::from_utf8(event.frame().to_vec()).unwrap();
        let json = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
        let value: serde_json::Value = serde_json::from_str(json).unwrap();
        kinds.push((
            event.cursor().unwrap().position() - start,
            value["type"].as_str().unwrap().to_owned(),
            value["unreadCount"].as_u64().unwrap(),
        ));
    }
    assert_eq!(
        kinds,
        [
            (1, "created".into(), 1),
            (2, "created".into(), 2),
            (3, "read".into(), 1),
            (4, "read".into(), 0),
            (5, "deleted".into(), 0),
            (6, "created".into(), 1),
            (7, "deleted".into(), 0),
        ]
    );
    assert!(
        other.try_recv().unwrap().is_none(),
        "eve received bob's changes"
    );
}

#[tokio::test]
async fn a_failed_publish_still_leaves_the_change_stored() {
    let store = InMemoryStore::new();
    let start = store.head().await.unwrap();
    let notifier = Notifier::with_store(Arc::new(store.clone()), Arc::new(DownHub));
    let error = notifier
        .notify(NewNotification::new("bob", "hi"))
        .await
        .unwrap_err();
    let NotifyError::Publish { event, .. } = &error else {
        panic!("expected a publish error, got {error}");
    };
    assert!(
        error
            .to_string()
            .contains("streams receive it from the log")
    );
    let replay = store
        .since(&Principal::new("bob"), start, 10)
        .await
        .unwrap();
    assert_eq!(
        replay,
        Replay::Events {
            events: vec![event.clone()],
            head: event.cursor().unwrap()
        }
    );
}

#[tokio::test]
async fn invalid_input_is_neither_stored_nor_published() {
    let hub = InMemoryHub::new();
    let notifier = Notifier::with_store(Arc::new(InMemoryStore::new()), Arc::new(hub.clone()));
    let mut tab = hub.subscribe(&Principal::new("bob"), 4).await.unwrap();
    let error = notifier
        .notify(NewNotification::new("bob", ""))
        .await
        .unwrap_err();
    assert!(matches!(
        error,
        NotifyError::Store(sse_core::StoreError::Invalid { field: "title", .. })
    ));
    assert!(tab.try_recv().unwrap().is_none());
}

#[tokio::test]
async fn a_notifier_without_a_store_publishes_app_events_and_refuses_inbox_calls() {
    let hub = InMemoryHub::new();
    let log = InMemoryLog::new();
    let notifier = Notifier::new(Arc::new(log.clone()), Arc::new(hub.clone()));
    let mut member = hub
        .subscribe(&Principal::new("bob").with_groups(["acme"]), 8)
        .await
        .unwrap();
    let event = Event::builder()
        .event("job.progress")
        .json_data(&serde_json::json!({"done": 3}))
        .build()
        .unwrap();
    let stored = notifier
        .publish(&Audience::group("acme"), &event)
        .await
        .unwrap();
    assert_eq!(member.recv().await.unwrap(), stored);
    assert_eq!(stored.cursor(), Some(log.head().await.unwrap()));
    assert!(matches!(
        notifier.notify(NewNotification::new("bob", "x")).await,
        Err(NotifyError::NoInbox)
    ));
    // Session events are not durable: publish refuses them.
    assert!(matches!(
        notifier.publish(&Audience::session("s"), &event).await,
        Err(NotifyError::Store(_))
    ));
}

#[tokio::test]
async fn a_batch_tries_every_publish_and_says_which_failed() {
    let store = InMemoryStore::new();
    let notifier = Notifier::with_store(Arc::new(store.clone()), Arc::new(DownHub));
    let error = notifier
        .notify_many(vec![
            NewNotification::new("bob", "one"),
            NewNotification::new("eve", "two"),
            NewNotification::new("bob", "three"),
        ])
        .await
        .unwrap_err();
    let NotifyError::PublishMany { stored, failed, .. } = &error else {
        panic!("expected a batch publish error, got {error}");
    };
    assert_eq!(stored.len(), 3);
    assert_eq!(failed, &[0, 1, 2], "every publish was tried");
    assert!(error.to_string().contains("failed for 3 of them"));
}
