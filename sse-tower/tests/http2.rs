//! HTTP/2 under `sse_tower::serve` (prior knowledge): an idle connection
//! is shut down like an idle HTTP/1.1 one, a connection with a stream in
//! flight is not, and the connection's settings are the builder's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod serving;

use serving::{SECOND, closed_within, start};

/// An h2c client connection; its task ends when the server closes it.
async fn h2c(addr: &str) -> (SendRequest<Empty<Bytes>>, tokio::task::JoinHandle<()>) {
    let socket = TcpStream::connect(addr).await.unwrap();
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(socket))
            .await
            .unwrap();
    let done = tokio::spawn(async move {
        let _ = connection.await;
    });
    (sender, done)
}

fn get(addr: &str, cookie: Option<&str>) -> http::Request<Empty<Bytes>> {
    let mut request =
        http::Request::get(format!("http://{addr}/events")).header("accept", "text/event-stream");
    if let Some(sid) = cookie {
        request = request.header("cookie", format!("sid={sid}"));
    }
    request.body(Empty::new()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_connection_is_shut_down_after_the_idle_timeout() {
    let server = start(|s| s.idle_timeout(Duration::from_millis(500))).await;
    let (mut sender, done) = h2c(&server.addr).await;
    // One request without a session: answered at once, then nothing.
    let response = sender.send_request(get(&server.addr, None)).await.unwrap();
    assert_eq!(response.status(), 401);
    drop(response.into_body().collect().await);
    let started = Instant::now();
    tokio::time::timeout(5 * SECOND, done)
        .await
        .expect("the idle HTTP/2 connection is still open after 5 s")
        .unwrap();
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(400),
        "closed before the idle timeout: {elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_sends_only_the_preface_is_closed_too() {
    let server = start(|s| s.idle_timeout(Duration::from_millis(300))).await;
    let mut socket = TcpStream::connect(&server.addr).await.unwrap();
    socket
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    // An empty SETTINGS frame, then silence.
    socket
        .write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0])
        .await
        .unwrap();
    let closed = closed_within(&mut socket, 5 * SECOND).await;
    assert!(closed.is_ok(), "{closed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_stream_keeps_its_http2_connection_past_the_idle_timeout() {
    let server = start(|s| s.idle_timeout(Duration::from_millis(300))).await;
    let (mut sender, done) = h2c(&server.addr).await;
    let response = sender
        .send_request(get(&server.addr, Some("alice")))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(!done.is_finished(), "closed with a stream in flight");
    server
        .sse
        .notifier()
        .broadcast(
            &sse_core::Audience::user("alice"),
            &sse_core::Event::json(&"still here").unwrap(),
        )
        .await
        .unwrap();
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("still here") {
        let frame = tokio::time::timeout(SECOND, body.frame())
            .await
            .expect("an event within 1 s")
            .expect("the stream is open")
            .unwrap();
        if let Some(data) = frame.data_ref() {
            seen.extend_from_slice(data);
        }
    }
    // Once the stream ends, the idle connection goes.
    drop(body);
    tokio::time::timeout(5 * SECOND, done)
        .await
        .expect("still open after its last stream ended")
        .unwrap();
}

/// The SETTINGS frame the server sends first, as (identifier, value).
async fn server_settings(addr: &str) -> Vec<(u16, u32)> {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    socket
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    socket
        .write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0])
        .await
        .unwrap();
    let mut head = [0u8; 9];
    socket.read_exact(&mut head).await.unwrap();
    assert_eq!(head[3], 4, "the first frame is SETTINGS");
    let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
    let mut payload = vec![0u8; len];
    socket.read_exact(&mut payload).await.unwrap();
    payload
        .chunks_exact(6)
        .map(|c| {
            (
                u16::from_be_bytes([c[0], c[1]]),
                u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_http2_settings_are_the_builders() {
    const MAX_CONCURRENT_STREAMS: u16 = 3;
    const INITIAL_WINDOW_SIZE: u16 = 4;
    const MAX_HEADER_LIST_SIZE: u16 = 6;
    let defaults = start(|s| s).await;
    let settings = server_settings(&defaults.addr).await;
    assert!(
        settings.contains(&(MAX_CONCURRENT_STREAMS, 128)),
        "{settings:?}"
    );
    assert!(
        settings.contains(&(MAX_HEADER_LIST_SIZE, 16 * 1024)),
        "{settings:?}"
    );
    let tuned = start(|s| {
        s.http2(
            sse_tower::serve::Http2::default()
                .max_concurrent_streams(7)
                .initial_stream_window_size(100_000)
                .max_header_list_size(4_096),
        )
    })
    .await;
    let settings = server_settings(&tuned.addr).await;
    assert!(
        settings.contains(&(MAX_CONCURRENT_STREAMS, 7)),
        "{settings:?}"
    );
    assert!(
        settings.contains(&(INITIAL_WINDOW_SIZE, 100_000)),
        "{settings:?}"
    );
    assert!(
        settings.contains(&(MAX_HEADER_LIST_SIZE, 4_096)),
        "{settings:?}"
    );
}

/// An HTTP/2 frame: its 9-byte header, then `payload`.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut bytes = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    bytes.extend_from_slice(&stream.to_be_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_dribbled_in_continuation_frames_is_cut_at_the_idle_timeout() {
    let server = start(|s| s.idle_timeout(Duration::from_millis(500))).await;
    let mut socket = TcpStream::connect(&server.addr).await.unwrap();
    socket
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    socket.write_all(&frame(4, 0, 0, &[])).await.unwrap();
    // HEADERS without END_HEADERS: `:method GET`, `:scheme http`,
    // `:authority localhost`, and a `:path` of 100 bytes still to come.
    let mut block = vec![0x82, 0x86, 0x41, 9];
    block.extend_from_slice(b"localhost");
    block.extend_from_slice(&[0x04, 100]);
    socket.write_all(&frame(1, 0x1, 1, &block)).await.unwrap();
    let started = Instant::now();
    let (mut reader, mut writer) = socket.into_split();
    // The path one byte a CONTINUATION frame, every 100 ms, for 10 s.
    let dribble = tokio::spawn(async move {
        for _ in 0..100 {
            if writer.write_all(&frame(9, 0, 1, b"a")).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut buf = [0u8; 4096];
    let closed = loop {
        match tokio::time::timeout(5 * SECOND, reader.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break started.elapsed(),
            Ok(Ok(_)) => continue,
            Err(_) => panic!(
                "still open after {:?} of a dribbled head",
                started.elapsed()
            ),
        }
    };
    // Not refused as malformed at once: cut by the idle timeout.
    assert!(
        closed >= Duration::from_millis(400),
        "closed after {closed:?}"
    );
    assert!(closed < 3 * SECOND, "closed after {closed:?}");
    dribble.abort();
}
