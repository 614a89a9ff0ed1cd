//! Abuse against the real app: floods without credentials, too many
//! streams per user, oversized and malformed heads and cookies, a 10 MiB
//! body, a client that never reads, a client that writes on its stream.
//! Each gets a clear status or a closed connection; a well-behaved client
//! keeps receiving on time throughout; memory comes back afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use sse_conformance::client::Request;
use tokio::io::AsyncWriteExt;

const BIN: &str = env!("CARGO_BIN_EXE_notifications");

async fn login(authority: &str, user: &str) -> String {
    support::login_json(authority, user).await
}

async fn status_of(authority: &str, request: Request) -> Result<u16, String> {
    match request
        .send_within(authority, Duration::from_secs(10))
        .await
    {
        Ok(mut response) => {
            let status = response.status();
            if response.header("content-type") != Some("text/event-stream") {
                let _ = response.read_to_end(Duration::from_secs(5)).await;
            }
            Ok(status)
        }
        Err(e) => Err(e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abuse_gets_clear_answers_while_a_good_client_stays_on_time() {
    let (running, authority) = support::start(
        BIN,
        &[
            "--addr",
            "127.0.0.1:0",
            "--store",
            "memory",
            "--heartbeat-secs",
            "1",
            "--max-connections-per-user",
            "8",
        ],
        &[],
    );
    let pid = running.0.id();
    let alice = login(&authority, "alice").await;
    let bob = login(&authority, "bob").await;
    let mallory = login(&authority, "mallory").await;

    // Warm up, then take the memory baseline.
    for _ in 0..20 {
        let stream = stream_request()
            .header("cookie", &alice)
            .send(&authority)
            .await
            .unwrap();
        drop(stream);
    }
    support::wait_for_streams(&authority, 0).await;
    let baseline = support::rss_kib(pid);

    // The well-behaved client: a notification every 20 ms, timed to arrival.
    let mut good = stream_request()
        .header("cookie", &alice)
        .send(&authority)
        .await
        .unwrap();
    good.next_event(Duration::from_secs(2)).await.unwrap();
    let abusing = Arc::new(AtomicBool::new(true));
    let good_client = {
        let (authority, bob, abusing) = (authority.clone(), bob.clone(), abusing.clone());
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = 0;
            while abusing.load(Ordering::SeqCst) {
                let sent = Instant::now();
                let body = json!({"user": "alice", "title": format!("on time {i}")}).to_string();
                let status = status_of(
                    &authority,
                    Request::new("POST", "/api/notifications")
                        .header("cookie", &bob)
                        .header("content-type", "application/json")
                        .body(body),
                )
                .await;
                assert_eq!(status, Ok(201));
                let event = good
                    .next_event(Duration::from_secs(5))
                    .await
                    .expect("the good client stopped receiving");
                assert!(event.data.contains(&format!("on time {i}")));
                latencies.push(sent.elapsed());
                i += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (latencies, good)
        })
    };

    // 10,000 connection attempts without credentials, 50 at a time.
    let mut floods = Vec::new();
    for worker in 0..50 {
        let authority = authority.clone();
        floods.push(tokio::spawn(async move {
            let mut unauthorized = 0;
            for i in 0..200 {
                let request = if (worker + i) % 2 == 0 {
                    stream_request()
                } else {
                    stream_request().header("cookie", format!("sid=forged-{worker}-{i}"))
                };
                if status_of(&authority, request).await == Ok(401) {
                    unauthorized += 1;
                }
            }
            unauthorized
        }));
    }

    // One user past the per-user limit.
    let mut held = Vec::new();
    for _ in 0..8 {
        let stream = stream_request()
            .header("cookie", &mallory)
            .send(&authority)
            .await
            .unwrap();
        assert_eq!(stream.status(), 200);
        held.push(stream);
    }
    let over = stream_request()
        .header("cookie", &mallory)
        .send(&authority)
        .await
        .unwrap();
    assert_eq!(over.status(), 429);
    assert!(over.header("retry-after").is_some());

    // Oversized and malformed heads and cookies: a status or a closed connection.
    let huge_cookie = format!("sid={}", "x".repeat(512 * 1024));
    let many_headers = (0..200).fold(stream_request(), |r, i| r.header(format!("x-h{i}"), "v"));
    let cases: Vec<(&str, Request, &[u16])> = vec![
        (
            "a 512 KiB cookie",
            stream_request().header("cookie", &huge_cookie),
            &[431, 400],
        ),
        ("200 headers", many_headers, &[431, 400]),
        (
            "a 4 KiB Last-Event-ID",
            stream_request()
                .header("cookie", &alice)
                .header("last-event-id", "9".repeat(4 * 1024)),
            &[200],
        ),
        (
            // Past --max-request-head (8 KiB by default).
            "a 64 KiB Last-Event-ID",
            stream_request()
                .header("cookie", &alice)
                .header("last-event-id", "9".repeat(64 * 1024)),
            &[431],
        ),
        (
            "a non-UTF-8 cookie",
            stream_request().header("cookie", b"sid=\xff\xfe\x00".as_slice()),
            &[401, 400],
        ),
        (
            "a cookie of semicolons",
            stream_request().header("cookie", ";;;;=;=;"),
            &[401],
        ),
        (
            "a header without a value",
            stream_request().header("cookie", ""),
            &[401],
        ),
    ];
    for (what, request, allowed) in cases {
        match status_of(&authority, request).await {
            Ok(status) => assert!(
                allowed.contains(&status),
                "{what}: got {status}, expected one of {allowed:?}"
            ),
            Err(closed) => assert!(
                !allowed.contains(&200),
                "{what}: connection closed ({closed}) where a stream was expected"
            ),
        }
    }
    // Not HTTP at all.
    let mut raw = tokio::net::TcpStream::connect(&authority).await.unwrap();
    raw.write_all(b"\x16\x03\x01garbage\r\n\r\n").await.unwrap();
    drop(raw);

    // A 10 MiB body to the notify endpoint.
    let body = format!(
        r#"{{"user":"bob","title":"x","message":"{}"}}"#,
        "y".repeat(10 * 1024 * 1024)
    );
    let status = status_of(
        &authority,
        Request::new("POST", "/api/notifications")
            .header("cookie", &bob)
            .header("content-type", "application/json")
            .body(body),
    )
    .await;
    assert_eq!(status, Ok(413));

    // A client that never reads, while it is sent notifications.
    let stalled = stream_request()
        .header("cookie", &login(&authority, "stalled").await)
        .send(&authority)
        .await
        .unwrap();
    for i in 0..200 {
        let body = json!({"user": "stalled", "title": format!("unread {i}"), "message": "z".repeat(1_900)}).to_string();
        status_of(
            &authority,
            Request::new("POST", "/api/notifications")
                .header("cookie", &bob)
                .header("content-type", "application/json")
                .body(body),
        )
        .await
        .unwrap();
    }

    // A client that writes on its stream.
    let mut writer = stream_request()
        .header("cookie", &login(&authority, "writer").await)
        .send(&authority)
        .await
        .unwrap();
    writer.next_event(Duration::from_secs(2)).await.unwrap();
    let junk = vec![b'j'; 1024 * 1024];
    let _ =
        tokio::time::timeout(Duration::from_secs(5), writer.socket_mut().write_all(&junk)).await;

    let mut unauthorized = 0;
    for flood in floods {
        unauthorized += flood.await.unwrap();
    }
    assert_eq!(
        unauthorized, 10_000,
        "every unauthenticated attempt should get 401"
    );

    abusing.store(false, Ordering::SeqCst);
    let (mut latencies, good) = good_client.await.unwrap();
    latencies.sort_unstable();
    let p50 = latencies[latencies.len() / 2];
    let p99 = latencies[latencies.len() * 99 / 100];
    let max = *latencies.last().unwrap();
    println!(
        "good client during the abuse: {} notifications, p50 {p50:?}, p99 {p99:?}, max {max:?}",
        latencies.len()
    );
    assert!(latencies.len() >= 20, "too few deliveries measured");
    assert!(
        p99 < Duration::from_millis(500),
        "the good client's p99 was {p99:?} during the abuse"
    );

    // Afterwards: nothing left registered, memory back near the baseline.
    drop((held, stalled, writer, good));
    support::wait_for_streams(&authority, 0).await;
    let peak_note = support::rss_kib(pid);
    let after = support::rss_kib(pid);
    println!("RSS: baseline {baseline} KiB, after {after} KiB (sampled {peak_note} KiB)");
    assert!(
        after < baseline + 32 * 1024,
        "RSS grew from {baseline} KiB to {after} KiB and stayed"
    );
}

/// Reads until the server closes the connection; the time it took, or
/// `None` if it is still open after `limit`.
async fn closed_within(socket: &mut tokio::net::TcpStream, limit: Duration) -> Option<Duration> {
    use tokio::io::AsyncReadExt;
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        let left = limit.checked_sub(started.elapsed())?;
        match tokio::time::timeout(left, socket.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
            Err(_) => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_connections_are_closed_and_capped() {
    let (_running, authority) = support::start(
        BIN,
        &[
            "--addr",
            "127.0.0.1:0",
            "--store",
            "memory",
            "--request-timeout-secs",
            "1",
            "--max-connections",
            "60",
        ],
        &[],
    );
    let alice = login(&authority, "alice").await;

    // 50 sockets that never send a byte, and 5 that send their head one
    // byte at a time: every one is closed within the request timeout.
    let mut idle = Vec::new();
    for _ in 0..50 {
        idle.push(tokio::net::TcpStream::connect(&authority).await.unwrap());
    }
    let mut dribblers = Vec::new();
    for _ in 0..5 {
        let mut socket = tokio::net::TcpStream::connect(&authority).await.unwrap();
        dribblers.push(tokio::spawn(async move {
            for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: yes\r\n" {
                if socket.write_all(&[*byte]).await.is_err() {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            closed_within(&mut socket, Duration::from_secs(5))
                .await
                .is_some()
        }));
    }
    // A body sent at 1 byte per 100 ms: the request times out with 408.
    let mut slow_body = tokio::net::TcpStream::connect(&authority).await.unwrap();
    let head = format!(
        "POST /api/notifications HTTP/1.1\r\nHost: {authority}\r\nCookie: {alice}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    );
    slow_body.write_all(head.as_bytes()).await.unwrap();
    let dribble_body = tokio::spawn(async move {
        let started = Instant::now();
        let mut answer = Vec::new();
        let mut buf = [0u8; 1024];
        use tokio::io::AsyncReadExt;
        while started.elapsed() < Duration::from_secs(10) {
            if slow_body.write_all(b" ").await.is_err() {
                break;
            }
            if let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(100), slow_body.read(&mut buf)).await
            {
                if n == 0 {
                    break;
                }
                answer.extend_from_slice(&buf[..n]);
                if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
        }
        (
            started.elapsed(),
            String::from_utf8_lossy(&answer).into_owned(),
        )
    });

    // Past the cap of 60, a well-behaved client waits for a slot rather than
    // failing, and gets one once the idle sockets are closed.
    let started = Instant::now();
    let healthz = status_of(&authority, Request::get("/healthz")).await;
    assert_eq!(healthz, Ok(200), "a normal client was not served");
    assert!(started.elapsed() < Duration::from_secs(5));

    for (i, socket) in idle.iter_mut().enumerate() {
        let closed = closed_within(socket, Duration::from_secs(5)).await;
        assert!(closed.is_some(), "idle socket {i} is still open");
    }
    for dribbler in dribblers {
        assert!(dribbler.await.unwrap(), "a dribbled head was never cut off");
    }
    let (took, answer) = dribble_body.await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(
        took < Duration::from_secs(5),
        "a slow body was held {took:?}"
    );
}

/// A stream request as `EventSource` sends it (the server writes such
/// streams directly; see `sse_tower::serve`).
fn stream_request() -> Request {
    Request::get("/api/notifications/stream").header("accept", "text/event-stream")
}
