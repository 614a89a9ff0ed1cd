//! HTTP/2 with prior knowledge (h2c) through axum: the stream opens, has no
//! `Connection` header (HTTP/2 forbids it) and events arrive, under
//! `axum::serve` and under `sse_axum::serve` (whose direct stream writer
//! reads the connection's first bytes and hands HTTP/2 to hyper).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use sse_axum::sse_core::{
    CookieSessionAuthenticator, InMemorySessions, NewNotification, Principal,
};
use sse_axum::{SseRouterExt, SseService};
use sse_conformance::parser::{Item, Parser};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_works_over_h2c() {
    stream_over_h2c(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_works_over_h2c_under_sse_axum_serve() {
    stream_over_h2c(true).await;
}

async fn stream_over_h2c(ours: bool) {
    let sessions = InMemorySessions::new();
    let sid = sessions.create(Principal::new("alice")).unwrap();
    let sse = SseService::builder(CookieSessionAuthenticator::new("sid", sessions)).build();
    let app = Router::new().sse_stream("/events", &sse);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        if ours {
            sse_axum::serve(listener, app).await.unwrap();
        } else {
            axum::serve(listener, app).await.unwrap();
        }
    });

    let socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(socket))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = http::Request::get(format!("http://{addr}/events"))
        .header("accept", "text/event-stream")
        .header("cookie", format!("sid={sid}"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert!(
        response.headers().get("connection").is_none(),
        "HTTP/2 forbids the Connection header"
    );
    assert_eq!(response.headers()["x-accel-buffering"], "no");

    let mut body = response.into_body();
    let mut parser = Parser::new();
    let mut events = Vec::new();
    let mut notified = false;
    while events.len() < 2 {
        let frame = tokio::time::timeout(Duration::from_secs(2), body.frame())
            .await
            .expect("a frame within 2 s")
            .expect("the stream stays open")
            .unwrap();
        if let Some(data) = frame.data_ref() {
            for item in parser.feed(data) {
                if let Item::Event(event) = item {
                    events.push(event);
                }
            }
        }
        if !notified && !events.is_empty() {
            sse.notifier()
                .notify(NewNotification::new("alice", "over h2"))
                .await
                .unwrap();
            notified = true;
        }
    }
    assert_eq!(events[0].event_type, "connected");
    assert_eq!(events[1].event_type, "notification");
    assert!(events[1].data.contains("over h2"));
    server.abort();
}
