//! With the `metrics` feature, the service's counters, gauges and
//! histograms reach the recorder the app installed, under the names the
//! Prometheus rendering uses.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use sse_conformance::client::Request;
use sse_conformance::server::TestServer;
use sse_core::{CookieSessionAuthenticator, InMemorySessions, NewNotification, Principal};
use sse_tower::SseService;

/// A metric's name, labels and value.
type Recorded = (String, Vec<(String, String)>, DebugValue);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_reach_the_installed_recorder() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let sessions = InMemorySessions::new();
    sessions.insert("alice", Principal::new("alice"));
    // The service registers its metrics with the recorder installed when
    // it is built.
    let sse = metrics::with_local_recorder(&recorder, || {
        SseService::builder(CookieSessionAuthenticator::new("sid", sessions)).build()
    });
    let server = TestServer::start(sse.clone()).await.unwrap();
    let mut stream = Request::get("/events")
        .header("cookie", "sid=alice")
        .send(&server.authority())
        .await
        .unwrap();
    stream.next_event(Duration::from_secs(2)).await.unwrap();
    sse.notifier()
        .notify(NewNotification::new("alice", "hi"))
        .await
        .unwrap();
    stream.next_event(Duration::from_secs(2)).await.unwrap();
    let refused = Request::get("/events")
        .send(&server.authority())
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    drop(stream);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while sse.metrics().active_connections > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the stream never closed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let values: Vec<Recorded> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let labels = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            (key.name().to_owned(), labels, value)
        })
        .collect();
    let get = |name: &str, label: Option<(&str, &str)>| {
        values
            .iter()
            .find(|(n, labels, _)| {
                n == name
                    && label.is_none_or(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, _, value)| value)
            .unwrap_or_else(|| panic!("{name} {label:?} was not recorded: {values:?}"))
    };
    assert_eq!(get("sse_connects_total", None), &DebugValue::Counter(1));
    assert_eq!(get("sse_delivered_total", None), &DebugValue::Counter(1));
    assert_eq!(
        get("sse_disconnects_total", Some(("cause", "client_gone"))),
        &DebugValue::Counter(1)
    );
    assert_eq!(
        get("sse_rejected_total", Some(("cause", "unauthenticated"))),
        &DebugValue::Counter(1)
    );
    assert_eq!(get("sse_published_total", None), &DebugValue::Counter(1));
    match get("sse_active_connections", None) {
        DebugValue::Gauge(value) => assert_eq!(value.into_inner(), 0.0),
        other => panic!("the active gauge is {other:?}"),
    }
    match get("sse_stream_duration_seconds", None) {
        DebugValue::Histogram(samples) => assert_eq!(samples.len(), 1),
        other => panic!("the duration histogram is {other:?}"),
    }
}
