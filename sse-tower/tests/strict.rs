//! `sse_tower::serve` as strict as hyper and the RFCs on both paths (the
//! direct stream writer and hyper): `Host`, protocol switches, the head
//! timer, lingering close. Raw sockets, so nothing is cleaned up for us.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod serving;

use serving::{MODES, Mode, SECOND, start_on};

/// Sends `bytes` and reads until the peer closes (or `limit`): what came
/// back, and whether the connection closed.
async fn exchange(addr: &str, bytes: &[u8], limit: Duration) -> (String, bool) {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    socket.write_all(bytes).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, socket.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&got).into(), true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&got).into(), false),
        }
    }
}

#[tokio::test]
async fn a_request_without_exactly_one_good_host_gets_400_and_a_close() {
    for mode in MODES {
        a_request_without_exactly_one_good_host_gets_400_and_a_close_on(mode).await;
    }
}

async fn a_request_without_exactly_one_good_host_gets_400_and_a_close_on(mode: Mode) {
    let server = start_on(mode, |s| s).await;
    for hosts in [
        "",
        "Host: a\r\nHost: a\r\n",
        "Host: a b/c@d\r\n",
        "Host: user@x\r\n",
    ] {
        for accept in ["text/event-stream", "*/*"] {
            let request = format!(
                "GET /events HTTP/1.1\r\n{hosts}Accept: {accept}\r\nCookie: sid=alice\r\n\r\n"
            );
            let (answer, closed) = exchange(&server.addr, request.as_bytes(), 2 * SECOND).await;
            assert!(
                answer.starts_with("HTTP/1.1 400 "),
                "{mode:?} {request:?}: {answer:?}"
            );
            assert!(closed, "{mode:?} {request:?}: left open after the 400");
        }
    }
    // HTTP/1.0 may leave it out.
    let (answer, _) = exchange(
        &server.addr,
        b"GET /healthz HTTP/1.0\r\nCookie: sid=alice\r\n\r\n",
        2 * SECOND,
    )
    .await;
    assert!(!answer.starts_with("HTTP/1.1 400 "), "{mode:?}: {answer:?}");
}

#[tokio::test]
async fn after_a_response_the_connection_never_turns_into_http2() {
    for mode in MODES {
        let server = start_on(mode, |s| s).await;
        // A stream request without a session: the direct writer (or hyper)
        // answers 401; then the HTTP/2 preface on the same socket.
        let request = format!(
            "GET /events HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\nPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            server.addr
        );
        let (answer, closed) = exchange(&server.addr, request.as_bytes(), 2 * SECOND).await;
        assert!(answer.starts_with("HTTP/1.1 401 "), "{mode:?}: {answer:?}");
        // hyper's HTTP/1 parser refuses `PRI` (a 4xx/5xx or a close); an
        // HTTP/2 session would answer with a SETTINGS frame, whose header
        // starts with NUL bytes.
        assert!(
            !answer.contains('\0'),
            "{mode:?}: an HTTP/2 session started: {answer:?}"
        );
        assert!(closed, "{mode:?}");
    }
}

#[tokio::test]
async fn a_head_too_large_to_write_directly_keeps_its_deadline() {
    for mode in MODES {
        let server = start_on(mode, |s| s.header_read_timeout(Duration::from_millis(600))).await;
        let mut socket = TcpStream::connect(&server.addr).await.unwrap();
        let started = Instant::now();
        // The head's start, slowly: most of the head timeout passes on the
        // direct writer's side; then more headers than it takes, so the
        // head goes to hyper half read.
        let start = format!("GET /events HTTP/1.1\r\nHost: {}\r\n", server.addr);
        socket.write_all(start.as_bytes()).await.unwrap();
        for i in 0..4 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let line = format!("X-Slow-{i}: {i}\r\n");
            socket.write_all(line.as_bytes()).await.unwrap();
        }
        let mut head = String::from("Accept: text/event-stream\r\n");
        for i in 0..70 {
            head.push_str(&format!("X-Header-{i}: {i}\r\n"));
        }
        socket.write_all(head.as_bytes()).await.unwrap();
        // Then a header every 200 ms, never the end of the head.
        let (mut read, mut write) = socket.split();
        let dribble = async {
            for i in 0..20 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let line = format!("X-Late-{i}: {i}\r\n");
                if write.write_all(line.as_bytes()).await.is_err() {
                    break;
                }
            }
        };
        let closed = async {
            let mut buf = [0u8; 1024];
            loop {
                match read.read(&mut buf).await {
                    Ok(0) | Err(_) => return started.elapsed(),
                    Ok(_) => {}
                }
            }
        };
        let took = tokio::select! {
            took = closed => took,
            () = dribble => panic!("{mode:?}: still open after 4 s"),
        };
        // The head timer did not start over when the head changed hands.
        assert!(
            took < Duration::from_millis(900),
            "{mode:?}: closed after {took:?} on a 600 ms head timeout"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_upload_is_answered_readably_while_the_body_still_comes() {
    for mode in MODES {
        let server = start_on(mode, |s| s).await;
        // The service refuses the method before reading a byte of the
        // body; the client sends all 8 MiB before it reads.
        let mut socket = TcpStream::connect(&server.addr).await.unwrap();
        let body = vec![b'x'; 8 * 1024 * 1024];
        let head = format!(
            "POST /events HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n\r\n",
            server.addr,
            body.len()
        );
        let (mut read, mut write) = socket.split();
        let send = async {
            write.write_all(head.as_bytes()).await?;
            write.write_all(&body).await
        };
        let receive = async {
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            // Read only once the upload is mostly out, as `http.client` does.
            tokio::time::sleep(Duration::from_millis(300)).await;
            loop {
                match tokio::time::timeout(3 * SECOND, read.read(&mut buf)).await {
                    Ok(Ok(0)) | Err(_) => return Ok(got),
                    Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
                    Ok(Err(error)) => return Err((error, got)),
                }
            }
        };
        let (sent, received) = tokio::join!(send, receive);
        // A client that writes its whole body before it reads (Python's
        // `http.client`) fails on a reset while it writes.
        assert!(sent.is_ok(), "{mode:?}: the upload was cut: {sent:?}");
        let got = match received {
            Ok(got) => got,
            Err((error, got)) => panic!(
                "{mode:?}: {error} after {:?}",
                String::from_utf8_lossy(&got)
            ),
        };
        let answer = String::from_utf8_lossy(&got);
        assert!(answer.starts_with("HTTP/1.1 405 "), "{mode:?}: {answer:?}");
    }
}
