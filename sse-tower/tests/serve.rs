//! `sse_tower::serve`: what a server holding long-lived streams on the
//! public internet must bound, seen from the client's side of a real socket.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use sse_conformance::client::Request;
use sse_core::Event;
use sse_tower::DisconnectCause;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod serving;

use serving::{MODES, Mode, SECOND, closed_within, start, start_on, stream_request};

#[tokio::test]
async fn connections_that_send_nothing_or_dribble_their_head_are_closed() {
    for mode in MODES {
        connections_that_send_nothing_or_dribble_their_head_are_closed_on(mode).await;
    }
}

async fn connections_that_send_nothing_or_dribble_their_head_are_closed_on(mode: Mode) {
    let server = start_on(mode, |s| s.header_read_timeout(Duration::from_millis(300))).await;
    let mut silent = TcpStream::connect(&server.addr).await.unwrap();
    let mut dribbling = TcpStream::connect(&server.addr).await.unwrap();
    let dribble = async {
        for byte in b"GET /events HTTP/1.1\r\nHost: x\r\n" {
            if dribbling.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let (_, silent_closed) = tokio::join!(dribble, closed_within(&mut silent, 3 * SECOND));
    assert!(silent_closed.is_ok(), "silent: {silent_closed:?}");
    let dribbling_closed = closed_within(&mut dribbling, 3 * SECOND).await;
    assert!(dribbling_closed.is_ok(), "dribbling: {dribbling_closed:?}");

    // A keep-alive connection that went idle after a request closes too,
    // while a stream (a response in progress) stays open.
    let mut stream = stream_request()
        .header("cookie", "sid=alice")
        .send(&server.addr)
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    stream.next_event(SECOND).await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    server
        .sse
        .notifier()
        .broadcast(
            &sse_core::Audience::user("alice"),
            &Event::json(&"still open").unwrap(),
        )
        .await
        .unwrap();
    assert!(
        stream
            .next_event(SECOND)
            .await
            .unwrap()
            .data
            .contains("still open")
    );
}

#[tokio::test]
async fn past_the_connection_cap_new_clients_are_told_to_retry_at_once() {
    for mode in MODES {
        past_the_connection_cap_new_clients_are_told_to_retry_at_once_on(mode).await;
    }
}

async fn past_the_connection_cap_new_clients_are_told_to_retry_at_once_on(mode: Mode) {
    let server = start_on(mode, |s| s.max_connections(2)).await;
    let first = stream_request()
        .header("cookie", "sid=alice")
        .send(&server.addr)
        .await
        .unwrap();
    let _second = stream_request()
        .header("cookie", "sid=bob")
        .send(&server.addr)
        .await
        .unwrap();
    // A health check and a third stream hear at once that the server is
    // full, rather than hanging until a stream ends.
    for request in [
        Request::get("/healthz"),
        stream_request().header("cookie", "sid=alice"),
    ] {
        let started = Instant::now();
        let busy = tokio::time::timeout(SECOND, request.send(&server.addr))
            .await
            .expect("no answer at the connection cap")
            .unwrap();
        assert_eq!(busy.status(), 503, "{mode:?}");
        assert_eq!(busy.header("retry-after"), Some("1"));
        assert!(started.elapsed() < SECOND);
    }
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let third = stream_request()
        .header("cookie", "sid=alice")
        .send(&server.addr)
        .await
        .unwrap();
    assert_eq!(third.status(), 200, "a freed slot was not reused");
}

#[tokio::test]
async fn without_busy_slots_new_clients_wait_for_a_free_slot() {
    let server = start(|s| s.max_connections(2).busy_connections(0)).await;
    let first = stream_request()
        .header("cookie", "sid=alice")
        .send(&server.addr)
        .await
        .unwrap();
    let _second = stream_request()
        .header("cookie", "sid=bob")
        .send(&server.addr)
        .await
        .unwrap();
    let third = tokio::spawn({
        let addr = server.addr.clone();
        async move {
            stream_request()
                .header("cookie", "sid=alice")
                .send(&addr)
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !third.is_finished(),
        "a third connection was served past the cap of 2"
    );
    drop(first);
    let third = tokio::time::timeout(3 * SECOND, third)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(third.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_reader_is_closed_when_its_queue_overflows_not_after_the_stall_timeout() {
    for mode in MODES {
        a_stalled_reader_is_closed_when_its_queue_overflows_not_after_the_stall_timeout_on(mode)
            .await;
    }
}

async fn a_stalled_reader_is_closed_when_its_queue_overflows_not_after_the_stall_timeout_on(
    mode: Mode,
) {
    // The OS-level stall timeout is 30 s; the connection must go long before.
    let server = start_on(mode, |s| {
        s.close_stalled_readers(Some(Duration::from_secs(30)))
    })
    .await;
    let mut stalled = TcpStream::connect(&server.addr).await.unwrap();
    stalled
        .write_all(b"GET /events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\nCookie: sid=alice\r\n\r\n")
        .await
        .unwrap();
    let mut healthy = stream_request()
        .header("cookie", "sid=bob")
        .send(&server.addr)
        .await
        .unwrap();
    healthy.next_event(SECOND).await.unwrap();
    while server.hub.subscriptions() < 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let big = Event::builder()
        .event("bulk")
        .data("x".repeat(64 * 1024))
        .build()
        .unwrap();
    let started = Instant::now();
    while server.hub.subscriptions() == 2 {
        assert!(
            started.elapsed() < 10 * SECOND,
            "the stalled stream was never dropped"
        );
        server
            .sse
            .notifier()
            .broadcast(&sse_core::Audience::Everyone, &big)
            .await
            .unwrap();
        assert_eq!(healthy.next_event(SECOND).await.unwrap().event_type, "bulk");
    }
    // The connection is closed, not just unregistered: reading what the
    // socket buffered ends in EOF.
    let closed = closed_within(&mut stalled, 5 * SECOND).await;
    assert!(closed.is_ok(), "{closed:?}");
    assert!(started.elapsed() < 10 * SECOND);
    for _ in 0..100 {
        if server.sse.metrics().disconnects(DisconnectCause::Lagged) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(server.sse.metrics().disconnects(DisconnectCause::Lagged), 1);
}

#[tokio::test]
async fn graceful_shutdown_ends_streams_with_retry_and_returns() {
    for mode in MODES {
        graceful_shutdown_ends_streams_with_retry_and_returns_on(mode).await;
    }
}

async fn graceful_shutdown_ends_streams_with_retry_and_returns_on(mode: Mode) {
    let mut server = start_on(mode, |s| s).await;
    let mut stream = stream_request()
        .header("cookie", "sid=alice")
        .send(&server.addr)
        .await
        .unwrap();
    stream.next_event(SECOND).await.unwrap();
    server.stop.take().unwrap().send(()).unwrap();
    let rest = stream.read_to_end(3 * SECOND).await.unwrap().to_vec();
    let rest = String::from_utf8(rest).unwrap();
    assert!(rest.contains("retry: "), "{rest:?}");
    let result = tokio::time::timeout(3 * SECOND, server.done).await;
    assert!(matches!(result, Ok(Ok(Ok(())))), "{result:?}");
    assert!(TcpStream::connect(&server.addr).await.is_err());
}

#[tokio::test]
async fn a_capped_read_buffer_streams_as_usual_and_refuses_heads_over_the_cap() {
    for mode in MODES {
        a_capped_read_buffer_streams_as_usual_and_refuses_heads_over_the_cap_on(mode).await;
    }
}

async fn a_capped_read_buffer_streams_as_usual_and_refuses_heads_over_the_cap_on(mode: Mode) {
    let server = start_on(mode, |s| s.max_read_buffer(8 * 1024)).await;
    let mut stream = stream_request()
        .header("cookie", "sid=alice")
        .send(&server.addr)
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(
        stream.next_event(SECOND).await.unwrap().event_type,
        "connected"
    );
    server
        .sse
        .notifier()
        .broadcast(
            &sse_core::Audience::user("alice"),
            &Event::builder()
                .event("ping")
                .data("x".repeat(32 * 1024))
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    let big = stream.next_event(SECOND).await.unwrap();
    assert_eq!(
        (big.event_type.as_str(), big.data.len()),
        ("ping", 32 * 1024)
    );
    // A 16 KiB header does not fit: 431 (or a closed connection), never a stream.
    let refused = stream_request()
        .header("cookie", "sid=alice")
        .header("x-padding", "p".repeat(16 * 1024))
        .send(&server.addr)
        .await;
    if let Ok(response) = refused {
        assert_eq!(response.status(), 431);
    }
}

#[tokio::test]
async fn http1_only_refuses_http2_prior_knowledge() {
    let server = start_on(
        Mode {
            direct: true,
            http1_only: true,
        },
        |s| s,
    )
    .await;
    let mut socket = TcpStream::connect(&server.addr).await.unwrap();
    socket
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(3 * SECOND, socket.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 4"),
        "{answer:?}"
    );
}

#[tokio::test]
async fn a_direct_stream_is_chunked_http_with_the_layers_headers_and_live_events() {
    let server = start(|s| s).await;
    let mut stream = stream_request()
        .header("cookie", "sid=alice")
        .send(&server.addr)
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.header("content-type"), Some("text/event-stream"));
    assert_eq!(stream.header("transfer-encoding"), Some("chunked"));
    assert_eq!(stream.header("x-accel-buffering"), Some("no"));
    assert!(stream.header("date").is_some_and(|d| d.ends_with(" GMT")));
    assert!(stream.header("content-length").is_none());
    assert_eq!(
        stream.next_event(SECOND).await.unwrap().event_type,
        "connected"
    );
    let big = "y".repeat(100 * 1024);
    for data in ["one", "two\nlines", big.as_str(), ""] {
        server
            .sse
            .notifier()
            .broadcast(
                &sse_core::Audience::user("alice"),
                &Event::builder().event("n").data(data).build().unwrap(),
            )
            .await
            .unwrap();
    }
    for data in ["one", "two\nlines", big.as_str(), ""] {
        let event = stream.next_event(SECOND).await.unwrap();
        assert_eq!(
            (event.event_type.as_str(), event.data.as_str()),
            ("n", data)
        );
    }
}

/// Reads one response with a `Content-Length` body from `socket`, keeping
/// what follows in `wire`; its status and body.
async fn read_response(socket: &mut TcpStream, wire: &mut Vec<u8>) -> (u16, Vec<u8>) {
    let mut buf = [0u8; 4096];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(len) = response.parse(wire).unwrap() {
            let status = response.code.unwrap();
            let length: usize = response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
                .expect("a Content-Length");
            if wire.len() >= len + length {
                let body = wire[len..len + length].to_vec();
                wire.drain(..len + length);
                return (status, body);
            }
        }
        let n = tokio::time::timeout(3 * SECOND, socket.read(&mut buf))
            .await
            .expect("a response within 3 s")
            .unwrap();
        assert!(
            n > 0,
            "closed mid-response: {:?}",
            String::from_utf8_lossy(wire)
        );
        wire.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn after_a_direct_response_the_connection_serves_pipelined_and_later_requests() {
    let server = start(|s| s).await;
    let mut socket = TcpStream::connect(&server.addr).await.unwrap();
    // The first is answered directly (no session: 401); the second,
    // pipelined behind it, and the third, sent later, by hyper.
    socket
        .write_all(
            b"GET /events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n\
              GET /events HTTP/1.1\r\nHost: x\r\nCookie: sid=nobody\r\n\r\n",
        )
        .await
        .unwrap();
    let mut wire = Vec::new();
    let (first, body) = read_response(&mut socket, &mut wire).await;
    assert_eq!(first, 401, "{}", String::from_utf8_lossy(&body));
    let (second, _) = read_response(&mut socket, &mut wire).await;
    assert_eq!(second, 401);
    socket
        .write_all(b"GET /events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (third, _) = read_response(&mut socket, &mut wire).await;
    assert_eq!(third, 401);
    assert!(wire.is_empty(), "{:?}", String::from_utf8_lossy(&wire));
    assert!(closed_within(&mut socket, 3 * SECOND).await.is_ok());
}

#[tokio::test]
async fn a_direct_response_with_connection_close_closes_after_it() {
    let server = start(|s| s).await;
    let mut socket = TcpStream::connect(&server.addr).await.unwrap();
    socket
        .write_all(b"GET /events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut wire = Vec::new();
    let (status, _) = read_response(&mut socket, &mut wire).await;
    assert_eq!(status, 401);
    let head = String::from_utf8_lossy(&wire).to_string();
    assert!(head.is_empty(), "{head:?}");
    assert!(closed_within(&mut socket, 3 * SECOND).await.is_ok());
}

#[tokio::test]
async fn a_direct_stream_whose_client_goes_away_is_cleaned_up() {
    let server = start(|s| s).await;
    let mut streams = Vec::new();
    for _ in 0..3 {
        let mut stream = stream_request()
            .header("cookie", "sid=alice")
            .send(&server.addr)
            .await
            .unwrap();
        stream.next_event(SECOND).await.unwrap();
        streams.push(stream);
    }
    assert!(server.hub.index_entries() > 0);
    drop(streams);
    for _ in 0..300 {
        if server.hub.index_entries() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(server.hub.index_entries(), 0);
}
