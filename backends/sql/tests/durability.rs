//! Data survives a restart, and a database outage is an error value (and a
//! 503 to stream clients), never a panic or a hang.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use sse_conformance::client::Request;
use sse_conformance::proxy::TcpProxy;
use sse_conformance::server::TestServer;
use sse_core::log::Replay;
use sse_core::{
    CookieSessionAuthenticator, EventLog, InMemorySessions, NewNotification, NotificationStore,
    Principal, StoreError,
};
use sse_sqlx::SqlStore;
use sse_tower::SseService;

fn unique(user: &str) -> String {
    format!("{user}-{}-{:?}", std::process::id(), Instant::now())
}

/// Writes, closes, reopens, and replays after an id both from the store and
/// through a real stream with `Last-Event-ID`.
async fn survives_a_restart(url: &str) {
    let user = unique("restart");
    let mut changes = Vec::new();
    {
        let store = SqlStore::connect(url).await.unwrap();
        for i in 0..5 {
            changes.push(
                store
                    .create(NewNotification::new(user.as_str(), format!("n{i}")))
                    .await
                    .unwrap(),
            );
        }
        let first = store
            .list(&user.as_str().into(), sse_core::PageRequest::first(10))
            .await
            .unwrap();
        changes.push(
            store
                .mark_read(&user.as_str().into(), first.items[0].id)
                .await
                .unwrap()
                .unwrap(),
        );
        store.close().await;
    }

    let store = SqlStore::connect(url).await.unwrap();
    assert_eq!(store.unread_count(&user.as_str().into()).await.unwrap(), 4);
    let Replay::Events { events, .. } = store
        .since(&Principal::new(user.as_str()), changes[1].cursor, 100)
        .await
        .unwrap()
    else {
        panic!("history lost across the restart");
    };
    let expected: Vec<_> = changes[2..].iter().map(|c| c.event().clone()).collect();
    assert_eq!(events, expected);

    let sessions = InMemorySessions::new();
    sessions.insert("sid", Principal::new(user.as_str()));
    let sse = SseService::builder(CookieSessionAuthenticator::new("sid", sessions))
        .store(store)
        .build();
    let server = TestServer::start(sse).await.unwrap();
    let mut stream = Request::get("/events")
        .header("cookie", "sid=sid")
        .header("last-event-id", changes[3].cursor.to_string())
        .send(&server.authority())
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(
        stream
            .next_event(Duration::from_secs(2))
            .await
            .unwrap()
            .event_type,
        "connected"
    );
    let replayed: Vec<String> = [
        stream.next_event(Duration::from_secs(2)).await.unwrap(),
        stream.next_event(Duration::from_secs(2)).await.unwrap(),
    ]
    .into_iter()
    .map(|e| e.last_event_id)
    .collect();
    assert_eq!(
        replayed,
        [changes[4].cursor.to_string(), changes[5].cursor.to_string()]
    );
}

#[tokio::test]
async fn sqlite_data_survives_a_restart() {
    survives_a_restart(&support::sqlite_url("restart")).await;
}

#[tokio::test]
async fn postgres_data_survives_a_restart() {
    survives_a_restart(&support::fresh_postgres_url("restart").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_is_an_error_and_a_503_then_recovers() {
    let url = support::fresh_postgres_url("outage").await;
    let upstream = url
        .split('@')
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let proxy = TcpProxy::start(upstream.clone()).await.unwrap();
    let through_proxy = url.replace(&upstream, &proxy.addr().to_string());
    let store = SqlStore::builder(&through_proxy)
        .acquire_timeout(Duration::from_secs(1))
        .connect()
        .await
        .unwrap();
    let user = unique("outage");
    let start = store.head().await.unwrap();
    let committed = store
        .create(NewNotification::new(user.as_str(), "before"))
        .await
        .unwrap();

    let sessions = InMemorySessions::new();
    sessions.insert("sid", Principal::new(user.as_str()));
    let sse = SseService::builder(CookieSessionAuthenticator::new("sid", sessions))
        .store(store.clone())
        .build();
    let server = TestServer::start(sse).await.unwrap();

    proxy.cut();
    let started = Instant::now();
    let error = store
        .create(NewNotification::new(user.as_str(), "during"))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the outage took {:?} to surface",
        started.elapsed()
    );
    let mut refused = Request::get("/events")
        .header("cookie", "sid=sid")
        .header("last-event-id", start.to_string())
        .send(&server.authority())
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    assert!(refused.header("retry-after").is_some());
    let body = String::from_utf8(
        refused
            .read_to_end(Duration::from_secs(2))
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    assert!(body.contains("unavailable"), "{body}");

    proxy.restore();
    let mut recovered = None;
    for _ in 0..50 {
        match store.unread_count(&user.as_str().into()).await {
            Ok(count) => {
                recovered = Some(count);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert_eq!(
        recovered,
        Some(1),
        "the store did not recover, or lost what was committed"
    );
    let Replay::Events { events, .. } = store
        .since(&Principal::new(user.as_str()), start, 10)
        .await
        .unwrap()
    else {
        panic!("history gone after the outage");
    };
    assert_eq!(events, vec![committed.event().clone()]);
}

#[tokio::test]
async fn connecting_to_nothing_is_a_typed_error() {
    let error = SqlStore::builder("postgres://postgres@127.0.0.1:1/test")
        .acquire_timeout(Duration::from_secs(1))
        .connect()
        .await
        .unwrap_err();
    assert!(
        matches!(error, sse_sqlx::SqlStoreError::Connect { .. }),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("check that the database is running")
    );
    let error = SqlStore::connect("mysql://x").await.unwrap_err();
    assert!(matches!(
        error,
        sse_sqlx::SqlStoreError::UnsupportedUrl { .. }
    ));
}

/// The store fails while streams are open: a stream that needs it (here,
/// to catch up after its hub missed events) ends cleanly with a retry
/// hint; reconnecting gets 503 until the database is back; then everything
/// committed is replayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_mid_stream_closes_cleanly_503s_then_replays_everything() {
    use sse_conformance::parser::Item;
    use sse_core::InMemoryHub;

    let url = support::fresh_postgres_url("outage_mid_stream").await;
    let upstream = url
        .split('@')
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let proxy = TcpProxy::start(upstream.clone()).await.unwrap();
    let store = SqlStore::builder(url.replace(&upstream, &proxy.addr().to_string()))
        .acquire_timeout(Duration::from_secs(1))
        .connect()
        .await
        .unwrap();
    let user = unique("mid-stream");
    let sessions = InMemorySessions::new();
    sessions.insert("sid", Principal::new(user.as_str()));
    let hub = InMemoryHub::new();
    let sse = SseService::builder(CookieSessionAuthenticator::new("sid", sessions))
        .store(store.clone())
        .hub(hub.clone())
        .build();
    let server = TestServer::start(sse.clone()).await.unwrap();
    let mut stream = Request::get("/events")
        .header("cookie", "sid=sid")
        .send(&server.authority())
        .await
        .unwrap();
    assert_eq!(
        stream
            .next_event(Duration::from_secs(2))
            .await
            .unwrap()
            .event_type,
        "connected"
    );
    for i in 0..3 {
        sse.notifier()
            .notify(NewNotification::new(user.as_str(), format!("live {i}")))
            .await
            .unwrap();
    }
    let mut last_seen = String::new();
    for _ in 0..3 {
        last_seen = stream
            .next_event(Duration::from_secs(2))
            .await
            .unwrap()
            .last_event_id;
    }
    // Committed but never delivered live (its publish was lost).
    store
        .create(NewNotification::new(
            user.as_str(),
            "committed before the outage",
        ))
        .await
        .unwrap();

    proxy.cut();
    hub.signal_missed_all();
    let mut retry = None;
    loop {
        match stream.next_item(Duration::from_secs(5)).await.unwrap() {
            Some(Item::Retry(ms)) => retry = Some(ms),
            Some(other) => panic!("expected a retry hint and the end, got {other:?}"),
            None => break,
        }
    }
    assert!(retry.is_some(), "the stream ended without a retry hint");
    assert!(stream.ended(), "the stream was not ended cleanly");
    assert_eq!(
        sse.metrics()
            .disconnects(sse_tower::DisconnectCause::StoreError),
        1
    );

    let authority = server.authority();
    let request = Request::get("/events")
        .header("cookie", "sid=sid")
        .header("last-event-id", last_seen.clone());
    let reconnect = || request.send(&authority);
    let refused = reconnect().await.unwrap();
    assert_eq!(refused.status(), 503);
    assert!(refused.header("retry-after").is_some());

    proxy.restore();
    let mut resumed = None;
    for _ in 0..50 {
        let attempt = reconnect().await.unwrap();
        if attempt.status() == 200 {
            resumed = Some(attempt);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut resumed = resumed.expect("the stream never came back after the database did");
    assert_eq!(
        resumed
            .next_event(Duration::from_secs(2))
            .await
            .unwrap()
            .event_type,
        "connected"
    );
    let replayed = resumed.next_event(Duration::from_secs(2)).await.unwrap();
    assert!(
        replayed.data.contains("committed before the outage"),
        "{replayed:?}"
    );
}
