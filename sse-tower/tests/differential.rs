//! The direct stream writer against hyper: the same request bytes sent to
//! a server that answers event-stream `GET`s itself and to one that leaves
//! everything to hyper (`streams_through_hyper`) must get the same status,
//! the same headers (but `date`), the same body and the same connection
//! fate, whatever the service answers (a stream, a `Content-Length` body
//! that is right, too long or too short, `Connection: close`, a 1xx, a
//! length that is not a number) and however the request is sent (split at
//! every byte, pipelined, odd or invalid heads).
//!
//! `PROPTEST_CASES` sets how many generated requests the property tries
//! (`.ci/run` runs it longer, like the fuzz targets).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::IntoFuture;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use proptest::prelude::*;
use sse_tower::serve::RequestBody;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A body of frames given one at a time, length unknown to hyper (so it
/// reads `Content-Length` from the headers, as with a streamed body).
struct Frames(VecDeque<Bytes>);

impl Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|data| Ok(Frame::data(data))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// Answers by path: every kind of response the direct writer must frame
/// as hyper does.
async fn answer(request: Request<RequestBody>) -> Result<Response<Frames>, Infallible> {
    let frames = |parts: &[&'static str]| {
        Frames(
            parts
                .iter()
                .map(|p| Bytes::from_static(p.as_bytes()))
                .collect(),
        )
    };
    let (status, length, body, close) = match request.uri().path() {
        "/stream" => (200, None, frames(&["data: a\n\n", "data: b\n\n"]), false),
        "/length" => (200, Some("5"), frames(&["hel", "lo"]), false),
        "/long" => (200, Some("3"), frames(&["hel", "lo"]), false),
        "/short" => (200, Some("10"), frames(&["hello"]), false),
        "/zero" => (200, Some("0"), frames(&[]), false),
        "/close" => (200, None, frames(&["bye"]), true),
        "/info" => (103, None, frames(&[]), false),
        "/badlen" => (200, Some("abc"), frames(&["abc"]), false),
        "/empty" => (204, None, frames(&[]), false),
        _ => (404, None, frames(&["nope"]), false),
    };
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    let headers = response.headers_mut();
    headers.insert(
        "content-type",
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert("x-path", request.uri().path().parse().unwrap());
    if let Some(length) = length {
        headers.insert("content-length", HeaderValue::from_static(length));
    }
    if close {
        headers.insert("connection", HeaderValue::from_static("close"));
    }
    Ok(response)
}

#[derive(Clone)]
struct Servers {
    direct: String,
    hyper: String,
}

async fn servers() -> Servers {
    let mut addrs = Vec::new();
    for direct in [true, false] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        addrs.push(listener.local_addr().unwrap().to_string());
        let service = tower::service_fn(answer);
        let serve = sse_tower::serve(listener, service).header_read_timeout(Duration::from_secs(2));
        let serve = if direct {
            serve
        } else {
            serve.streams_through_hyper()
        };
        tokio::spawn(serve.into_future());
    }
    let hyper = addrs.pop().unwrap();
    let direct = addrs.pop().unwrap();
    Servers { direct, hyper }
}

/// One response as a client sees it.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    status: u16,
    /// Lowercased, sorted, without `date`.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// What a connection got: its whole responses, and whether it was closed
/// after them. A response cut short (a body shorter than its
/// `Content-Length`) counts as none: hyper may have flushed part of it or
/// not, depending on when the body ended, and either way the client is
/// left with a broken response and a closed connection.
#[derive(Debug, PartialEq, Eq)]
struct Fate {
    answers: Vec<Answer>,
    closed: bool,
}

/// Sends `parts` one after another (each its own segment), then reads
/// every response until the server closes or goes quiet.
async fn send(addr: &str, parts: &[&[u8]]) -> Fate {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    socket.set_nodelay(true).unwrap();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if socket.write_all(part).await.is_err() {
            break;
        }
    }
    let mut wire = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match tokio::time::timeout(Duration::from_millis(300), socket.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => wire.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    let (answers, _cut) = parse_all(&wire);
    Fate { answers, closed }
}

/// Every whole response in `wire`, and what is left after them.
fn parse_all(mut wire: &[u8]) -> (Vec<Answer>, Vec<u8>) {
    let mut answers = Vec::new();
    while let Some((answer, len)) = parse_one(wire) {
        answers.push(answer);
        wire = &wire[len..];
    }
    (answers, wire.to_vec())
}

fn parse_one(wire: &[u8]) -> Option<(Answer, usize)> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(head_len) = response.parse(wire).ok()? else {
        return None;
    };
    let status = response.code?;
    let mut named: Vec<(String, String)> = response
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .filter(|(name, _)| name != "date")
        .collect();
    named.sort();
    let value = |name: &str| {
        named
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let rest = &wire[head_len..];
    let (body, body_len) = if status == 204 || status == 304 {
        (Vec::new(), 0)
    } else if value("transfer-encoding").is_some() {
        dechunk(rest)?
    } else if let Some(length) = value("content-length") {
        let length: usize = length.parse().ok()?;
        (rest.get(..length)?.to_vec(), length)
    } else {
        (rest.to_vec(), rest.len())
    };
    Some((
        Answer {
            status,
            headers: named,
            body,
        },
        head_len + body_len,
    ))
}

fn dechunk(mut wire: &[u8]) -> Option<(Vec<u8>, usize)> {
    let start = wire.len();
    let mut body = Vec::new();
    loop {
        let line_end = wire.windows(2).position(|w| w == b"\r\n")?;
        let size = usize::from_str_radix(std::str::from_utf8(&wire[..line_end]).ok()?, 16).ok()?;
        wire = &wire[line_end + 2..];
        if size == 0 {
            wire = wire.strip_prefix(b"\r\n")?;
            return Some((body, start - wire.len()));
        }
        body.extend_from_slice(wire.get(..size)?);
        wire = wire.get(size..)?.strip_prefix(b"\r\n")?;
    }
}

/// Requires the same fate from both servers.
async fn same_on_both(servers: &Servers, parts: &[&[u8]]) {
    let (direct, hyper) = tokio::join!(send(&servers.direct, parts), send(&servers.hyper, parts));
    assert_eq!(
        direct,
        hyper,
        "direct (left) and hyper (right) differ on {:?}",
        parts
            .iter()
            .map(|p| String::from_utf8_lossy(p))
            .collect::<Vec<_>>()
    );
}

fn stream_get(path: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n{extra}\r\n")
        .into_bytes()
}

const PATHS: [&str; 10] = [
    "/stream", "/length", "/long", "/short", "/zero", "/close", "/info", "/badlen", "/empty",
    "/missing",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_response_is_framed_as_hyper_frames_it() {
    let servers = servers().await;
    for path in PATHS {
        for extra in ["", "Connection: close\r\n", "Connection: keep-alive\r\n"] {
            let request = stream_get(path, extra);
            same_on_both(&servers, &[&request]).await;
            // Pipelined: a second request right behind the first.
            let mut two = request.clone();
            two.extend_from_slice(&stream_get("/length", ""));
            same_on_both(&servers, &[&two]).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_split_at_any_byte_gets_the_same_answer() {
    let servers = servers().await;
    for request in [
        stream_get("/stream", ""),
        stream_get("/short", "Connection: close\r\n"),
        b"GET /stream HTTP/1.1\r\nAccept: text/event-stream\r\n\r\n".to_vec(),
        b"GET /stream HTTP/1.1\r\nHost: a b\r\nAccept: text/event-stream;q=0\r\n\r\n".to_vec(),
    ] {
        // A few at a time: each waits out a quiet 300 ms.
        for batch in (1..request.len()).collect::<Vec<_>>().chunks(16) {
            let mut checks = tokio::task::JoinSet::new();
            for &at in batch {
                let servers = servers.clone();
                let (head, tail) = (request[..at].to_vec(), request[at..].to_vec());
                checks.spawn(async move { same_on_both(&servers, &[&head, &tail]).await });
            }
            while let Some(done) = checks.join_next().await {
                done.unwrap();
            }
        }
    }
}

/// One runtime and one pair of servers for every generated case.
fn shared() -> &'static (tokio::runtime::Runtime, Servers) {
    static SHARED: std::sync::OnceLock<(tokio::runtime::Runtime, Servers)> =
        std::sync::OnceLock::new();
    SHARED.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let servers = runtime.block_on(servers());
        (runtime, servers)
    })
}

/// A request head from parts a client may get right or wrong.
fn request() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(vec!["GET", "GET", "GET", "HEAD", "POST"]),
        prop::sample::select(PATHS.to_vec()),
        prop::sample::select(vec!["HTTP/1.1", "HTTP/1.1", "HTTP/1.0"]),
        prop::sample::select(vec![
            "Host: x\r\n",
            "Host: x\r\n",
            "",
            "Host: x\r\nHost: y\r\n",
            "Host: a b/c@d\r\n",
            "Host: x:port\r\n",
            "Host: [::1]:80\r\n",
        ]),
        prop::sample::select(vec![
            "Accept: text/event-stream\r\n",
            "Accept: text/event-stream\r\n",
            "Accept: text/event-stream;q=0\r\n",
            "Accept: text/html, text/event-stream;q=0.5\r\n",
            "Accept: */*\r\n",
            "",
        ]),
        prop::sample::select(vec![
            "",
            "",
            "Connection: close\r\n",
            "Connection: keep-alive\r\n",
            "Connection: Keep-Alive, Close\r\n",
        ]),
        prop::sample::select(vec![
            "",
            "",
            "Content-Length: 0\r\n",
            "Content-Length: 3\r\n",
            "Transfer-Encoding: chunked\r\n",
            "Expect: 100-continue\r\n",
        ]),
        0..70usize,
    )
        .prop_map(
            |(method, path, version, host, accept, connection, framing, extra)| {
                let mut head = format!("{method} {path} {version}\r\n{host}{accept}{connection}");
                for i in 0..extra % 8 + if extra > 60 { 60 } else { 0 } {
                    head.push_str(&format!("X-Extra-{i}: {i}\r\n"));
                }
                head.push_str(framing);
                head.push_str("\r\n");
                match framing {
                    "Content-Length: 3\r\n" => head.push_str("abc"),
                    "Transfer-Encoding: chunked\r\n" => head.push_str("3\r\nabc\r\n0\r\n\r\n"),
                    _ => {}
                }
                head.into_bytes()
            },
        )
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(32)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// Any request (valid, odd or invalid), maybe pipelined behind another
    /// and split anywhere, meets the same fate on both paths.
    #[test]
    fn any_request_meets_the_same_fate_on_both_paths(
        first in request(),
        second in prop::option::of(request()),
        split in 0.0f64..1.0,
    ) {
        let mut wire = first;
        if let Some(second) = second {
            wire.extend_from_slice(&second);
        }
        let at = ((wire.len() as f64 * split) as usize).clamp(1, wire.len() - 1);
        let (runtime, servers) = shared();
        runtime.block_on(same_on_both(servers, &[&wire[..at], &wire[at..]]));
    }
}
