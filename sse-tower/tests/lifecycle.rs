//! How streams end: slow consumers, churn, shutdown, logout, limits on
//! lifetime and idleness. Whatever the end, nothing is left registered.

mod common;

use std::time::{Duration, Instant};

use common::{SECOND, start, start_closing_stalled};
use sse_core::{Audience, Event};
use sse_tower::DisconnectCause;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_dropped_and_others_stay_on_time() {
    let f = start_closing_stalled(Duration::from_secs(1), |b| b.queue_capacity(8)).await;
    let stalled = f.open("alice").await;
    let mut healthy = f.open("alice-2").await;
    f.wait_for_active(2).await;

    // 64 KiB events fill the stalled client's socket buffers within a few
    // dozen; from then on the hub lags its queue (it never holds more than
    // 8 events) and the OS closes the connection after the 1 s stall timeout.
    let event = Event::builder()
        .event("bulk")
        .data("x".repeat(64 * 1024))
        .build()
        .unwrap();
    let mut worst = Duration::ZERO;
    let started = Instant::now();
    let mut published = 0;
    while f.hub.subscriptions() == 2 {
        assert!(
            published < 1_000 && started.elapsed() < Duration::from_secs(30),
            "the stalled connection was never dropped"
        );
        let sent = Instant::now();
        f.sse
            .notifier()
            .broadcast(&Audience::user("alice"), &event)
            .await
            .unwrap();
        let got = healthy.next_event(SECOND).await.unwrap();
        worst = worst.max(sent.elapsed());
        assert_eq!(got.event_type, "bulk");
        published += 1;
    }
    assert!(
        published >= 20,
        "dropped after only {published} events: the client had not stalled yet"
    );
    assert!(
        worst < Duration::from_millis(100),
        "the healthy client waited up to {worst:?} for an event"
    );

    f.wait_for_active(1).await;
    let m = f.sse.metrics();
    assert_eq!(
        m.disconnects(DisconnectCause::Lagged) + m.disconnects(DisconnectCause::ClientGone),
        1
    );
    f.notify("alice", "still here").await;
    let event = healthy.next_event(SECOND).await.unwrap();
    assert!(event.data.contains("still here"));
    drop(stalled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_connect_disconnect_cycles_leave_nothing_behind() {
    let f = start(|b| b).await;
    for i in 0..1_000 {
        let sid = ["alice", "alice-2", "bob", "carol"][i % 4];
        let stream = f.open(sid).await;
        if i % 50 == 0 {
            f.notify("alice", "churn").await;
        }
        if i % 2 == 0 {
            stream.abort();
        } else {
            drop(stream);
        }
    }
    f.wait_for_active(0).await;
    assert_eq!(
        f.hub.index_entries(),
        0,
        "hub keys outlived their connections"
    );
    let m = f.sse.metrics();
    assert_eq!(m.connects, 1_000);
    assert_eq!(m.disconnects(DisconnectCause::ClientGone), 1_000);
    // Every user can still connect (no limit slot leaked).
    let _again = f.open("alice").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_ends_every_stream_with_a_jittered_retry() {
    let f = start(|b| b.shutdown_retry(Duration::from_millis(1_000)..Duration::from_millis(6_000)))
        .await;
    let mut streams = Vec::new();
    for sid in ["alice", "alice-2", "bob", "carol", "alice", "bob"] {
        streams.push(f.open(sid).await);
    }
    f.sse.shutdown();
    let mut retries = Vec::new();
    for stream in &mut streams {
        match stream.next_item(SECOND).await.unwrap() {
            Some(sse_conformance::parser::Item::Retry(ms)) => retries.push(ms),
            other => panic!("expected a retry hint at shutdown, got {other:?}"),
        }
        assert!(
            stream.wait_for_end(SECOND).await.unwrap(),
            "the stream did not end after its retry hint"
        );
    }
    assert!(
        retries.iter().all(|ms| (1_000..6_000).contains(ms)),
        "{retries:?}"
    );
    let distinct: std::collections::HashSet<_> = retries.iter().collect();
    assert!(
        distinct.len() > 1,
        "retry hints should be spread out, got {retries:?}"
    );
    // New connections are refused while shutting down.
    let refused = f.request("alice").send(&f.addr()).await.unwrap();
    assert_eq!(refused.status(), 503);

    let closed = tokio::time::timeout(SECOND, f.sse.closed()).await;
    assert!(closed.is_ok(), "streams still open after shutdown");
    assert_eq!(f.sse.metrics().disconnects(DisconnectCause::Shutdown), 6);
    let stopped = Instant::now();
    let Fixture { server, .. } = f;
    server.stop().await;
    assert!(
        stopped.elapsed() < Duration::from_secs(2),
        "the server took {:?} to exit",
        stopped.elapsed()
    );
}

use common::Fixture;

#[tokio::test]
async fn disconnecting_a_session_ends_only_its_streams() {
    let f = start(|b| b).await;
    let mut first_session = f.open("alice").await;
    let mut second_session = f.open("alice-2").await;
    f.sse
        .notifier()
        .disconnect(&Audience::session("alice"))
        .await
        .unwrap();
    assert!(
        first_session.wait_for_end(SECOND).await.unwrap(),
        "the logged-out session's stream stayed open"
    );
    f.notify("alice", "after logout").await;
    let event = second_session.next_event(SECOND).await.unwrap();
    assert!(event.data.contains("after logout"));
    assert_eq!(
        f.sse.metrics().disconnects(DisconnectCause::Disconnected),
        1
    );
}

#[tokio::test]
async fn revoking_a_session_ends_only_its_streams_and_is_never_sent() {
    let f = start(|b| b).await;
    let mut first_session = f.open("alice").await;
    let mut second_session = f.open("alice-2").await;
    let notifier = f.sse.notifier();
    notifier
        .revoke(&"alice".into(), Some(&"alice".into()))
        .await
        .unwrap();
    assert!(
        first_session.wait_for_end(SECOND).await.unwrap(),
        "the revoked session's stream stayed open"
    );
    f.notify("alice", "after logout").await;
    let event = second_session.next_event(SECOND).await.unwrap();
    assert!(
        event.data.contains("after logout"),
        "the revocation record reached a client: {event:?}"
    );
    // Reconnecting from before the revocation replays past it: the new
    // stream authenticated after it, so it stays open, and the record is
    // not sent.
    let head = sse_core::EventLog::head(&f.store).await.unwrap();
    let before = head.epoch().at(0);
    let mut again = f
        .open_with(
            f.request("alice")
                .header("last-event-id", before.to_string()),
        )
        .await;
    let replayed = again.next_event(SECOND).await.unwrap();
    assert!(replayed.data.contains("after logout"), "{replayed:?}");
    assert!(
        !again
            .wait_for_end(Duration::from_millis(300))
            .await
            .unwrap()
    );
    // Revoking every session of the user ends the rest.
    notifier.revoke(&"alice".into(), None).await.unwrap();
    assert!(second_session.wait_for_end(SECOND).await.unwrap());
    assert!(again.wait_for_end(SECOND).await.unwrap());
    assert!(
        Event::builder()
            .event(sse_core::revocation::REVOCATION_EVENT)
            .data("{}")
            .build()
            .is_err(),
        "an app may not write revocation records by hand"
    );
}

#[tokio::test]
async fn max_lifetime_ends_the_stream_with_a_retry() {
    let f = start(|b| {
        b.max_lifetime(Duration::from_millis(200))
            .shutdown_retry(Duration::from_millis(10)..Duration::from_millis(20))
    })
    .await;
    let mut stream = f.open("alice").await;
    let started = Instant::now();
    match stream.next_item(SECOND).await.unwrap() {
        Some(sse_conformance::parser::Item::Retry(ms)) => assert!((10..20).contains(&ms)),
        other => panic!("expected a retry hint, got {other:?}"),
    }
    assert!(stream.wait_for_end(SECOND).await.unwrap());
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(f.sse.metrics().disconnects(DisconnectCause::MaxLifetime), 1);
}

#[tokio::test]
async fn streams_opened_together_reach_their_max_lifetime_spread_out() {
    let f = start(|b| b.max_lifetime(Duration::from_secs(1))).await;
    let mut streams = Vec::new();
    for _ in 0..12 {
        streams.push(f.open("bob").await);
    }
    let opened = Instant::now();
    let waiting: Vec<_> = streams
        .into_iter()
        .map(|mut stream| {
            tokio::spawn(async move {
                assert!(stream.wait_for_end(2 * SECOND).await.unwrap());
                opened.elapsed()
            })
        })
        .collect();
    let mut ends = Vec::new();
    for end in waiting {
        ends.push(end.await.unwrap());
    }
    let (first, last) = (ends.iter().min().unwrap(), ends.iter().max().unwrap());
    assert!(*first >= Duration::from_millis(850), "{ends:?}");
    assert!(
        *last - *first >= Duration::from_millis(20),
        "every stream ended at once: {ends:?}"
    );
}

#[tokio::test]
async fn a_stream_ends_when_its_credentials_expire_and_they_are_refused_after() {
    let f = start(|b| b).await;
    let expiry = std::time::SystemTime::now() + Duration::from_millis(400);
    f.sessions.insert(
        "short",
        sse_core::Principal::new("carol")
            .with_session("short")
            .with_expiry(expiry),
    );
    let mut stream = f.open("short").await;
    // Live until then.
    f.notify("carol", "before expiry").await;
    assert_eq!(
        stream.next_event(SECOND).await.unwrap().event_type,
        "notification"
    );
    // Then a retry hint within a second (so the client re-authenticates at
    // once), and the end.
    let ended = loop {
        match stream.next_item(SECOND).await.unwrap() {
            Some(sse_conformance::parser::Item::Retry(ms)) => break ms,
            Some(sse_conformance::parser::Item::Comment(_)) => {}
            other => panic!("expected a retry hint, got {other:?}"),
        }
    };
    assert!(ended < 1_000, "retry {ended} ms after expiry");
    assert!(
        std::time::SystemTime::now() >= expiry,
        "ended before expiry"
    );
    assert!(stream.wait_for_end(SECOND).await.unwrap());
    assert_eq!(
        f.sse
            .metrics()
            .disconnects(DisconnectCause::CredentialsExpired),
        1
    );
    // Reconnecting with the expired credentials is a 401.
    let again = f.request("short").send(&f.addr()).await.unwrap();
    assert_eq!(again.status(), 401);
}

#[tokio::test]
async fn an_idle_stream_is_closed_after_the_idle_timeout() {
    let f = start(|b| {
        b.idle_timeout(Duration::from_millis(300))
            .heartbeat(Duration::from_millis(50))
    })
    .await;
    let mut stream = f.open("alice").await;
    f.notify("alice", "activity").await;
    stream.next_event(SECOND).await.unwrap();
    let started = Instant::now();
    assert!(
        stream.wait_for_end(SECOND).await.unwrap(),
        "the idle stream stayed open"
    );
    let idle = started.elapsed();
    assert!(
        idle >= Duration::from_millis(250),
        "closed after only {idle:?}"
    );
    assert_eq!(f.sse.metrics().disconnects(DisconnectCause::IdleTimeout), 1);
}

#[tokio::test]
async fn compression_with_tower_http_defaults_does_not_buffer_the_stream() {
    use tower::Layer;
    let f = start(|b| b).await;
    let compressed = tower_http::compression::CompressionLayer::new().layer(f.sse.clone());
    let server = sse_conformance::server::TestServer::start(compressed)
        .await
        .unwrap();
    let mut stream = f
        .request("alice")
        .header("accept-encoding", "gzip")
        .send(&server.authority())
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(
        stream.header("content-encoding"),
        None,
        "text/event-stream must not be compressed"
    );
    assert_eq!(
        stream.next_event(SECOND).await.unwrap().event_type,
        "connected"
    );
    let sent = Instant::now();
    f.notify("alice", "through compression").await;
    let event = stream.next_event(SECOND).await.unwrap();
    assert!(event.data.contains("through compression"));
    assert!(
        sent.elapsed() < Duration::from_millis(50),
        "buffered for {:?}",
        sent.elapsed()
    );
}

#[tokio::test]
async fn the_layer_serves_the_stream_at_its_path_and_passes_the_rest() {
    use std::convert::Infallible;
    use tower::{Layer, service_fn};
    let f = start(|b| b).await;
    let inner = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
        let body = format!("inner saw {}", req.uri().path());
        Ok::<_, Infallible>(http::Response::new(http_body_util::Full::new(
            bytes::Bytes::from(body),
        )))
    });
    let app = f.sse.layer("/events").layer(inner);
    let server = sse_conformance::server::TestServer::start(app)
        .await
        .unwrap();
    let mut other = sse_conformance::client::Request::get("/api/x")
        .send(&server.authority())
        .await
        .unwrap();
    assert_eq!(
        other.read_to_end(SECOND).await.unwrap(),
        b"inner saw /api/x"
    );
    let mut stream = f.request("alice").send(&server.authority()).await.unwrap();
    assert_eq!(stream.header("content-type"), Some("text/event-stream"));
    assert_eq!(
        stream.next_event(SECOND).await.unwrap().event_type,
        "connected"
    );
}
