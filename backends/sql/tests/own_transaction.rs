//! Events appended in the app's own transaction (`SqlStore::append_in`):
//! they commit with the app's rows or not at all, and what `append_in`
//! returns is what `Notifier::deliver` takes, reaching the audience's open
//! stream and no one else's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use sse_core::log::Replay;
use sse_core::{Audience, Cursor, Event, EventLog, Hub, InMemoryHub, Notifier, Principal};
use sse_sqlx::SqlStore;

async fn commits_with_the_app_and_delivers_what_it_returns(url: &str) {
    let store = SqlStore::connect(url).await.unwrap();
    let mut tx = store.begin().await.unwrap();
    sqlx::query("CREATE TABLE IF NOT EXISTS app_invoices (id BIGINT PRIMARY KEY, paid INTEGER)")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let hub = InMemoryHub::new();
    let notifier = Notifier::with_store(Arc::new(store.clone()), Arc::new(hub.clone()));
    // Unique per run, so that the PostgreSQL table may keep old rows.
    let id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let (bob, eve) = (format!("bob-{id}"), format!("eve-{id}"));
    let mut bobs = hub
        .subscribe(&Principal::new(bob.as_str()), 8)
        .await
        .unwrap();
    let mut eves = hub
        .subscribe(&Principal::new(eve.as_str()), 8)
        .await
        .unwrap();
    let before = store.head().await.unwrap();

    // Rolled back: neither the row nor the event is kept.
    let mut tx = store.begin().await.unwrap();
    sqlx::query("INSERT INTO app_invoices (id, paid) VALUES ($1, 1)")
        .bind(id)
        .execute(&mut *tx)
        .await
        .unwrap();
    let paid = Event::builder()
        .event("invoice.paid")
        .data("rolled back")
        .build()
        .unwrap();
    store
        .append_in(&mut tx, &[(Audience::user(bob.as_str()), paid)])
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert!(
        events_since(&store, &bob, before).await.is_empty(),
        "a rolled back event was kept"
    );

    // Committed: both, and the returned pairs go to `deliver` as they are.
    let mut tx = store.begin().await.unwrap();
    sqlx::query("INSERT INTO app_invoices (id, paid) VALUES ($1, 1)")
        .bind(id)
        .execute(&mut *tx)
        .await
        .unwrap();
    let paid = Event::builder()
        .event("invoice.paid")
        .data("invoice 7")
        .build()
        .unwrap();
    let stored = store
        .append_in(&mut tx, &[(Audience::user(bob.as_str()), paid)])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(stored[0].0, Audience::user(bob.as_str()));
    let position: Cursor = stored[0].1.cursor().expect("a position as id");
    notifier.deliver(&stored).await.unwrap();
    let live = tokio::time::timeout(Duration::from_secs(2), bobs.recv())
        .await
        .expect("delivered within 2 s")
        .unwrap();
    assert_eq!(live.cursor(), Some(position));
    assert!(String::from_utf8_lossy(live.frame()).contains("invoice 7"));
    assert!(eves.try_recv().unwrap().is_none(), "eve got bob's event");
    // And replay has it too, in the same position.
    let replayed = events_since(&store, &bob, before).await;
    assert_eq!(replayed.len(), 1);
    assert_eq!(replayed[0].cursor(), Some(position));
}

async fn events_since(store: &SqlStore, user: &str, after: Cursor) -> Vec<Event> {
    match store.since(&Principal::new(user), after, 10).await.unwrap() {
        Replay::Events { events, .. } => events,
        other => panic!("no replay: {other:?}"),
    }
}

#[tokio::test]
async fn sqlite_transaction_commits_events_with_the_apps_rows() {
    commits_with_the_app_and_delivers_what_it_returns(&support::sqlite_url("own-tx")).await;
}

#[tokio::test]
async fn postgres_transaction_commits_events_with_the_apps_rows() {
    commits_with_the_app_and_delivers_what_it_returns(&support::postgres_url()).await;
}
