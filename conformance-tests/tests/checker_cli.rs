//! The `sse-conformance check` binary passes against a correct endpoint and
//! fails, saying why, against deliberately broken ones.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame};
use sse_conformance::server::TestServer;
use sse_core::{
    AuthRejection, CookieSessionAuthenticator, FnAuthenticator, InMemorySessions, NewNotification,
    Principal,
};
use sse_tower::SseService;
use tower::{Layer, ServiceExt, service_fn};

/// Runs the checker binary; returns its exit code and output.
async fn checker(args: &[String]) -> (i32, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_sse-conformance"))
        .arg("check")
        .args(args)
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

/// The row of the table for `check`, with the explanation indented under it.
fn row(output: &str, check: &str) -> String {
    let mut lines = output.lines().skip_while(|line| !line.starts_with(check));
    let mut row = lines
        .next()
        .unwrap_or_else(|| panic!("no row for {check} in:\n{output}"))
        .to_owned();
    for line in lines.take_while(|line| line.starts_with(' ')) {
        row.push('\n');
        row.push_str(line);
    }
    row
}

fn sessions() -> (InMemorySessions, String, String) {
    let sessions = InMemorySessions::new();
    let alice = sessions.create(Principal::new("alice")).unwrap();
    let bob = sessions.create(Principal::new("bob")).unwrap();
    (sessions, alice, bob)
}

/// A correct server: the stream at /events and a notify endpoint at /notify.
async fn good_server(sse: SseService) -> TestServer {
    let notifier = sse.notifier().clone();
    let notify = service_fn(move |request: Request<hyper::body::Incoming>| {
        let notifier = notifier.clone();
        async move {
            use http_body_util::BodyExt;
            let body = request.into_body().collect().await.unwrap().to_bytes();
            let new: NewNotification = serde_json::from_slice(&body).unwrap();
            notifier.notify(new).await.unwrap();
            Ok::<_, Infallible>(
                Response::builder()
                    .status(201)
                    .body(http_body_util::Full::new(Bytes::new()))
                    .unwrap(),
            )
        }
    });
    TestServer::start(sse.layer("/events").layer(notify))
        .await
        .unwrap()
}

fn base_args(server: &TestServer, alice: &str) -> Vec<String> {
    vec![
        "--url".into(),
        format!("http://{}/events", server.authority()),
        "--cookie".into(),
        format!("sid={alice}"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correct_endpoint_passes_every_check() {
    let (sessions, alice, bob) = sessions();
    let sse = SseService::builder(CookieSessionAuthenticator::new("sid", sessions))
        .heartbeat(Duration::from_millis(300))
        .build();
    let server = good_server(sse).await;
    let mut args = base_args(&server, &alice);
    args.extend([
        "--other-cookie".into(),
        format!("sid={bob}"),
        "--publish".into(),
        r#"POST /notify {"user":"alice","title":"{token}"}"#.into(),
        "--publish-other".into(),
        r#"POST /notify {"user":"bob","title":"{token}"}"#.into(),
    ]);
    let (code, output) = checker(&args).await;
    assert_eq!(code, 0, "{output}");
    assert!(
        output.contains("9 checks, 9 passed, 0 failed, 0 skipped"),
        "{output}"
    );
}

#[tokio::test]
async fn usage_errors_exit_2() {
    let (code, output) = checker(&["--cookie".into(), "x".into()]).await;
    assert_eq!(code, 2);
    assert!(
        output.contains("required") && output.contains("--url"),
        "{output}"
    );
    let (code, output) = checker(&[
        "--url".into(),
        "https://example.com/".into(),
        "--cookie".into(),
        "x".into(),
    ])
    .await;
    assert_eq!(code, 2);
    assert!(output.contains("only http:// URLs"), "{output}");
}

#[tokio::test]
async fn a_missing_x_accel_buffering_header_fails_with_a_clear_message() {
    let (sessions, alice, _) = sessions();
    let sse = SseService::builder(CookieSessionAuthenticator::new("sid", sessions))
        .heartbeat(Duration::from_millis(300))
        .build();
    let stripped = ServiceExt::<Request<hyper::body::Incoming>>::map_response(
        sse,
        |mut response: Response<sse_tower::SseBody>| {
            response.headers_mut().remove("x-accel-buffering");
            response
        },
    );
    let server = TestServer::start(stripped).await.unwrap();
    let (code, output) = checker(&base_args(&server, &alice)).await;
    assert_eq!(code, 1, "{output}");
    let line = row(&output, "status_and_headers");
    assert!(
        line.contains("FAIL") && line.contains("X-Accel-Buffering"),
        "{output}"
    );
}

/// A body that waits, sends its chunks, then stays open forever.
struct ScriptedBody {
    delay: Pin<Box<tokio::time::Sleep>>,
    chunks: VecDeque<Bytes>,
}

impl Body for ScriptedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.delay.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        match self.chunks.pop_front() {
            Some(chunk) => Poll::Ready(Some(Ok(Frame::data(chunk)))),
            None => Poll::Pending,
        }
    }
}

/// A hand-written stream endpoint that checks the cookie and then plays
/// `chunks` after `delay`.
async fn scripted_server(delay: Duration, chunks: Vec<&'static str>) -> TestServer {
    let service = service_fn(move |request: Request<hyper::body::Incoming>| {
        let chunks = chunks.clone();
        async move {
            let authorized = request.headers().get("cookie").is_some();
            let response = if request.method() != http::Method::GET {
                Response::builder().status(405).header("allow", "GET")
            } else if authorized {
                Response::builder()
                    .header("content-type", "text/event-stream")
                    .header("cache-control", "no-cache")
                    .header("x-accel-buffering", "no")
            } else {
                Response::builder().status(401)
            };
            let body = ScriptedBody {
                delay: Box::pin(tokio::time::sleep(if authorized {
                    delay
                } else {
                    Duration::ZERO
                })),
                chunks: if authorized {
                    chunks
                        .into_iter()
                        .map(|c| Bytes::from_static(c.as_bytes()))
                        .collect()
                } else {
                    VecDeque::new()
                },
            };
            Ok::<_, Infallible>(response.body(body).unwrap())
        }
    });
    TestServer::start(service).await.unwrap()
}

#[tokio::test]
async fn a_buffered_first_byte_fails_with_a_clear_message() {
    let server = scripted_server(
        Duration::from_millis(1_500),
        vec![
            "retry: 1000\nevent: connected\ndata: {\"heartbeatMs\":200}\n\n",
            ": heartbeat\n\n",
        ],
    )
    .await;
    let (code, output) = checker(&base_args(&server, "any")).await;
    assert_eq!(code, 1, "{output}");
    let line = row(&output, "first_bytes_flush");
    assert!(
        line.contains("FAIL") && line.contains("buffered"),
        "{output}"
    );
}

#[tokio::test]
async fn a_missing_heartbeat_fails_with_a_clear_message() {
    let server = scripted_server(
        Duration::ZERO,
        vec!["retry: 1000\nevent: connected\ndata: {\"heartbeatMs\":200}\n\n"],
    )
    .await;
    let (code, output) = checker(&base_args(&server, "any")).await;
    assert_eq!(code, 1, "{output}");
    let line = row(&output, "heartbeat");
    assert!(
        line.contains("FAIL") && line.contains("no heartbeat comment within"),
        "{output}"
    );
    // What works is still reported as passing.
    assert!(
        row(&output, "status_and_headers").contains("PASS"),
        "{output}"
    );
    assert!(
        row(&output, "first_bytes_flush").contains("PASS"),
        "{output}"
    );
}

#[tokio::test]
async fn an_endpoint_without_auth_fails_with_a_clear_message() {
    let anyone = FnAuthenticator::new(|_| Ok::<_, AuthRejection>(Principal::new("anonymous")));
    let sse = SseService::builder(anyone)
        .heartbeat(Duration::from_millis(300))
        .build();
    let server = TestServer::start(sse).await.unwrap();
    let (code, output) = checker(&base_args(&server, "whatever")).await;
    assert_eq!(code, 1, "{output}");
    let line = row(&output, "unauthenticated_is_401");
    assert!(
        line.contains("FAIL") && line.contains("expected 401"),
        "{output}"
    );
}
