//! Headers, first bytes, delivery latency, heartbeats and every refusal,
//! read as raw bytes from a real server.

mod common;

use std::time::{Duration, Instant};

use common::{SECOND, json, start};
use sse_conformance::client::Request;
use sse_conformance::parser::Item;
use sse_core::{Audience, Event};

#[tokio::test]
async fn headers_and_first_bytes_arrive_before_any_notification() {
    let f = start(|b| b).await;
    let mut stream = f.request("alice").send(&f.addr()).await.unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.header("content-type"), Some("text/event-stream"));
    assert_eq!(
        stream.header("cache-control"),
        Some("no-cache, no-transform")
    );
    assert_eq!(stream.header("x-accel-buffering"), Some("no"));
    assert_eq!(stream.header("content-length"), None);
    assert_eq!(stream.header("connection"), None);
    assert_eq!(stream.header("transfer-encoding"), Some("chunked"));

    // Nothing has been published: the first bytes must come anyway.
    let first = stream.next_item(SECOND).await.unwrap().unwrap();
    let latency = stream.first_byte_latency().unwrap();
    assert!(
        latency < Duration::from_millis(100),
        "first byte took {latency:?}"
    );
    assert_eq!(first, Item::Retry(3000));
    let head = sse_core::EventLog::head(&f.store).await.unwrap();
    let prefix = format!("retry: 3000\nid: {head}\nevent: connected\ndata: {{\"connectionId\":\"");
    assert!(
        stream.body().starts_with(prefix.as_bytes()),
        "{:?}",
        String::from_utf8_lossy(stream.body())
    );
    let Some(Item::Event(connected)) = stream.next_item(SECOND).await.unwrap() else {
        panic!("expected the connected event");
    };
    assert_eq!(connected.event_type, "connected");
    assert_eq!(json(&connected)["heartbeatMs"], 15_000);
    assert_eq!(
        json(&connected)["user"],
        "alice",
        "the stream says whose it is"
    );
    assert_eq!(
        connected.last_event_id,
        head.to_string(),
        "a fresh client starts at the log's head"
    );
}

#[tokio::test]
async fn a_notification_arrives_within_50ms() {
    let f = start(|b| b).await;
    let mut stream = f.open("alice").await;
    for round in 0..20 {
        let sent = Instant::now();
        let notification = f.notify("alice", &format!("n{round}")).await;
        let event = stream.next_event(SECOND).await.unwrap();
        let latency = sent.elapsed();
        assert!(
            latency < Duration::from_millis(50),
            "round {round}: delivery took {latency:?}"
        );
        assert_eq!(event.event_type, "notification");
        let data = json(&event);
        assert_eq!(data["type"], "created");
        assert_eq!(data["notification"]["id"], notification.id.get());
        assert_eq!(data["notification"]["title"], format!("n{round}"));
        assert_eq!(data["unreadCount"], round + 1);
        assert_eq!(
            event
                .last_event_id
                .parse::<sse_core::Cursor>()
                .unwrap()
                .position(),
            round + 1
        );
    }
}

#[tokio::test]
async fn heartbeats_arrive_on_the_interval_when_idle() {
    let f = start(|b| b.heartbeat(Duration::from_millis(100))).await;
    let mut stream = f.open("alice").await;
    let started = Instant::now();
    let mut heartbeats = 0;
    while heartbeats < 3 {
        match stream.next_item(Duration::from_millis(300)).await.unwrap() {
            Some(Item::Comment(text)) => {
                assert_eq!(text, " heartbeat");
                heartbeats += 1;
            }
            other => panic!("expected a heartbeat comment, got {other:?}"),
        }
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(250),
        "3 heartbeats in {elapsed:?} on a 100 ms interval"
    );
    assert!(
        elapsed < Duration::from_millis(900),
        "3 heartbeats took {elapsed:?} on a 100 ms interval"
    );
    assert!(f.sse.metrics().heartbeats >= 3);
}

/// No silence is longer than the interval the stream announces, whenever
/// the last event went out (heartbeats once came a whole tick after the
/// tick that saw an event: up to twice the interval).
#[tokio::test]
async fn no_silence_outlasts_the_heartbeat_interval() {
    let every = Duration::from_millis(200);
    let f = start(|b| b.heartbeat(every)).await;
    let mut stream = f.open("alice").await;
    // Events at odd moments between the ticks, then silence.
    for wait in [30, 170, 60, 110] {
        tokio::time::sleep(Duration::from_millis(wait)).await;
        f.notify("alice", "now").await;
    }
    let mut last = Instant::now();
    let mut longest = Duration::ZERO;
    let mut heartbeats = 0;
    while heartbeats < 4 {
        let item = stream.next_item(SECOND).await.unwrap().unwrap();
        let now = Instant::now();
        longest = longest.max(now - last);
        last = now;
        if matches!(item, Item::Comment(_)) {
            heartbeats += 1;
        }
    }
    assert!(
        longest < every + Duration::from_millis(60),
        "a silence of {longest:?} on a {every:?} heartbeat"
    );
}

#[tokio::test]
async fn a_busy_stream_skips_heartbeats() {
    let f = start(|b| b.heartbeat(Duration::from_millis(100))).await;
    let mut stream = f.open("alice").await;
    for i in 0..15 {
        f.notify("alice", &format!("n{i}")).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut comments = 0;
    for _ in 0..15 {
        loop {
            match stream.next_item(SECOND).await.unwrap().unwrap() {
                Item::Comment(_) => comments += 1,
                Item::Event(_) => break,
                Item::Retry(_) => {}
            }
        }
    }
    assert!(
        comments <= 1,
        "{comments} heartbeats on a stream that sent an event every 20 ms"
    );
}

#[tokio::test]
async fn unauthenticated_requests_get_401_and_open_nothing() {
    let f = start(|b| b).await;
    for request in [
        Request::get("/events"),
        Request::get("/events").header("cookie", "sid=unknown"),
        Request::get("/events").header("cookie", format!("sid={}", "x".repeat(8_000))),
        Request::get("/events").header("cookie", b"sid=\xff\xfe".as_slice()),
    ] {
        let mut response = request.send(&f.addr()).await.unwrap();
        assert_eq!(response.status(), 401);
        assert_eq!(
            response.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
        let body = String::from_utf8(response.read_to_end(SECOND).await.unwrap().to_vec()).unwrap();
        assert!(
            body.contains("session"),
            "the 401 body should say why: {body:?}"
        );
    }
    assert_eq!(f.sse.metrics().auth_failures(), 4);
    assert_eq!(f.hub.subscriptions(), 0);
}

#[tokio::test]
async fn other_methods_get_405_with_allow() {
    let f = start(|b| b).await;
    for method in ["POST", "PUT", "DELETE", "HEAD", "OPTIONS"] {
        let mut response = Request::new(method, "/events")
            .header("cookie", "sid=alice")
            .send(&f.addr())
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "{method}");
        assert_eq!(response.header("allow"), Some("GET"));
        if method != "HEAD" {
            let body = response.read_to_end(SECOND).await.unwrap();
            assert_eq!(body, b"the event stream only answers GET\n");
        }
    }
}

#[tokio::test]
async fn origins_outside_the_allow_list_get_403() {
    let f = start(|b| {
        b.allowed_origins(
            ["https://app.example", "http://localhost:3000/"].map(|o| o.parse().unwrap()),
        )
    })
    .await;
    // Another site, the same host over another scheme or port, an opaque
    // origin, junk, and two Origin headers (whatever they say).
    for origins in [
        &["https://evil.example"][..],
        &["http://app.example"],
        &["https://app.example:8443"],
        &["null"],
        &["app.example"],
        &["https://app.example", "https://app.example"],
        &["https://app.example", "https://evil.example"],
    ] {
        let mut request = f.request("alice");
        for origin in origins {
            request = request.header("origin", *origin);
        }
        let denied = request.send(&f.addr()).await.unwrap();
        assert_eq!(denied.status(), 403, "{origins:?}");
    }
    for origin in [
        "https://app.example",
        "HTTPS://App.Example:443",
        "http://localhost:3000",
    ] {
        let allowed = f
            .request("alice")
            .header("origin", origin)
            .send(&f.addr())
            .await
            .unwrap();
        assert_eq!(allowed.status(), 200, "{origin}");
    }
    // Same-origin requests carry no Origin header.
    assert_eq!(
        f.request("alice").send(&f.addr()).await.unwrap().status(),
        200
    );
}

#[tokio::test]
async fn topics_narrow_and_forbidden_topics_get_403() {
    let f = start(|b| b).await;
    let mut forbidden = Request::get("/events?topic=news&topic=payroll")
        .header("cookie", "sid=carol")
        .send(&f.addr())
        .await
        .unwrap();
    assert_eq!(forbidden.status(), 403);
    let body = String::from_utf8(forbidden.read_to_end(SECOND).await.unwrap().to_vec()).unwrap();
    assert!(body.contains("payroll"), "{body}");

    let mut news_only = f
        .open_with(Request::get("/events?topic=news").header("cookie", "sid=carol"))
        .await;
    let mut all_topics = f.open("carol").await;
    for topic in ["ops", "news"] {
        let event = Event::builder().event("topic").data(topic).build().unwrap();
        f.sse
            .notifier()
            .broadcast(&Audience::topic(topic), &event)
            .await
            .unwrap();
    }
    assert_eq!(news_only.next_event(SECOND).await.unwrap().data, "news");
    assert_eq!(all_topics.next_event(SECOND).await.unwrap().data, "ops");
    assert_eq!(all_topics.next_event(SECOND).await.unwrap().data, "news");
}

#[tokio::test]
async fn past_the_per_user_limit_gets_429_with_retry_after() {
    let f = start(|b| b.max_connections_per_user(2)).await;
    let _a = f.open("alice").await;
    let _b = f.open("alice-2").await;
    let mut third = f.request("alice").send(&f.addr()).await.unwrap();
    assert_eq!(third.status(), 429);
    assert_eq!(third.header("retry-after"), Some("5"));
    let body = String::from_utf8(third.read_to_end(SECOND).await.unwrap().to_vec()).unwrap();
    assert!(body.contains("too many open event streams"), "{body}");
    // Another user is unaffected.
    let _bob = f.open("bob").await;
    // Closing one of alice's streams frees a slot.
    drop(_a);
    for _ in 0..100 {
        if f.request("alice").send(&f.addr()).await.unwrap().status() == 200 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("alice's slot was not released after her stream closed");
}

#[tokio::test]
async fn past_the_global_limit_gets_503_with_retry_after() {
    let f = start(|b| b.max_connections(2)).await;
    let _a = f.open("alice").await;
    let _b = f.open("bob").await;
    let refused = f.request("carol").send(&f.addr()).await.unwrap();
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.header("retry-after"), Some("5"));
}

#[tokio::test]
async fn a_panicking_authenticator_is_contained_to_its_request() {
    use sse_core::{AuthRejection, FnAuthenticator, Principal};
    let auth = FnAuthenticator::new(|parts| {
        if parts.headers.contains_key("x-boom") {
            panic!("bug in the adopter's authenticator");
        }
        Ok::<_, AuthRejection>(Principal::new("alice"))
    });
    let sse = sse_tower::SseService::builder(auth).build();
    let server = sse_conformance::server::TestServer::start(sse.clone())
        .await
        .unwrap();
    let boom = Request::get("/")
        .header("x-boom", "1")
        .send(&server.authority())
        .await
        .unwrap();
    assert_eq!(boom.status(), 500);
    let mut fine = Request::get("/").send(&server.authority()).await.unwrap();
    assert_eq!(fine.status(), 200);
    assert_eq!(
        fine.next_event(SECOND).await.unwrap().event_type,
        "connected"
    );
    assert_eq!(sse.metrics().rejects(sse_tower::RejectCause::Panic), 1);
}

#[tokio::test]
async fn a_session_store_outage_gets_503() {
    use async_trait::async_trait;
    use sse_core::auth::BoxError;
    use sse_core::{CookieSessionAuthenticator, Principal, SessionLookup};

    struct Down;
    #[async_trait]
    impl SessionLookup for Down {
        async fn lookup(&self, _: &str) -> Result<Option<Principal>, BoxError> {
            Err("connection refused".into())
        }
    }
    let sse = sse_tower::SseService::builder(CookieSessionAuthenticator::new("sid", Down)).build();
    let server = sse_conformance::server::TestServer::start(sse)
        .await
        .unwrap();
    let response = Request::get("/")
        .header("cookie", "sid=x")
        .send(&server.authority())
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.header("retry-after").is_some());
}

#[tokio::test]
async fn oversized_and_malformed_headers_never_panic() {
    let f = start(|b| b).await;
    let huge = "9".repeat(64 * 1024);
    for value in [
        huge.as_bytes(),
        b"\xff\xfe\xfd".as_slice(),
        b"12abc",
        b"-5",
        b"7 8",
    ] {
        let mut stream = f
            .open_with(f.request("alice").header("last-event-id", value))
            .await;
        let reset = stream.next_event(SECOND).await.unwrap();
        assert_eq!(
            reset.event_type,
            "reset",
            "Last-Event-ID {:?}",
            String::from_utf8_lossy(&value[..value.len().min(20)])
        );
        assert_eq!(json(&reset)["reason"], "invalid-last-event-id");
    }
    // A 64 KiB cookie header is refused, not fatal.
    let response = Request::get("/events")
        .header("cookie", format!("sid={}", "a".repeat(64 * 1024)))
        .send(&f.addr())
        .await
        .unwrap();
    assert!(
        matches!(response.status(), 401 | 431),
        "{}",
        response.status()
    );
    assert_eq!(f.open("alice").await.status(), 200);
}

#[tokio::test]
async fn the_connected_event_names_any_user_id_as_valid_json() {
    let f = start(|b| b).await;
    let odd = "a\"b\\c</script>é";
    f.sessions
        .insert("odd", sse_core::Principal::new(odd).with_session("odd"));
    let mut stream = f.request("odd").send(&f.addr()).await.expect("connect");
    let connected = stream.next_event(SECOND).await.expect("connected event");
    assert_eq!(json(&connected)["user"], odd);
}
