//! The direct stream writer: a connection's first request, when it is an
//! HTTP/1.1 `GET` that accepts `text/event-stream` and has no body, is
//! read and answered here, the response body written straight to the
//! socket. Anything else goes to hyper with the bytes read so far.
//!
//! Why: hyper gives every HTTP/1 connection an 8 KiB read buffer and an
//! 8 KiB write buffer for as long as it is open, and an event stream is
//! open for hours while it writes a few hundred bytes a minute. Here the
//! head is read into a buffer that is freed once parsed, and each frame
//! is written from the bytes the stream already holds (one `writev` of
//! chunk size, data and CRLF), so an idle stream holds its socket, its
//! body and this task's small state. After the response ends, a
//! keep-alive connection goes to hyper for its next requests.

use std::convert::Infallible;
use std::error::Error as StdError;
use std::io::{self, IoSlice, Write as _};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{
    ACCEPT, CONNECTION, CONTENT_LENGTH, DATE, EXPECT, HeaderMap, HeaderName, HeaderValue,
    TRANSFER_ENCODING, UPGRADE,
};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tower_service::Service;

use super::hyper::Start;
use super::{RemoteAddr, RequestBody, host};
use crate::ConnectionCloser;

/// Headers a direct request may carry at most; more go to hyper.
const MAX_HEADERS: usize = 64;

/// What became of a connection's first request.
pub(super) enum Outcome {
    /// Serve the connection with hyper, `read` first.
    HandOff {
        socket: TcpStream,
        read: Bytes,
        /// `Http1` once a response went out on it.
        start: Start,
        /// When the first request head was due (`None` after a response).
        head_deadline: Option<Instant>,
    },
    /// The connection is done.
    Closed,
}

/// What [`first_request`] needs of the server's settings.
pub(super) struct Limits {
    pub(super) header_read_timeout: Duration,
    pub(super) max_head: usize,
}

/// Reads the first request head and serves it if it is an event stream's.
pub(super) async fn first_request<S, B>(
    service: S,
    mut socket: TcpStream,
    addr: SocketAddr,
    stopping: &mut watch::Receiver<bool>,
    limits: &Limits,
) -> Outcome
where
    S: Service<Request<RequestBody>, Response = Response<B>, Error = Infallible>,
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let head_deadline = Instant::now() + limits.header_read_timeout;
    match read_head(&mut socket, stopping, limits, head_deadline).await {
        Head::Closed => Outcome::Closed,
        Head::Other(read) => Outcome::HandOff {
            socket,
            read,
            start: Start::Fresh,
            head_deadline: Some(head_deadline),
        },
        Head::Stream {
            request,
            rest,
            keep_alive,
        } => {
            let mut exchange = Exchange {
                socket,
                closer: ConnectionCloser::new(),
                pending: rest,
                max_pending: limits.max_head,
            };
            let keep_alive = exchange.respond(service, *request, addr, keep_alive).await;
            if keep_alive && !*stopping.borrow() {
                Outcome::HandOff {
                    socket: exchange.socket,
                    read: exchange.pending.into(),
                    start: Start::Http1,
                    head_deadline: None,
                }
            } else {
                Outcome::Closed
            }
        }
    }
}

enum Head {
    /// An event-stream request, and any bytes read after its head.
    Stream {
        request: Box<Request<RequestBody>>,
        rest: Vec<u8>,
        keep_alive: bool,
    },
    /// Anything else, as read so far.
    Other(Bytes),
    Closed,
}

async fn read_head(
    socket: &mut TcpStream,
    stopping: &mut watch::Receiver<bool>,
    limits: &Limits,
    deadline: Instant,
) -> Head {
    if *stopping.borrow() {
        return Head::Closed;
    }
    let mut read = Vec::with_capacity(limits.max_head.min(2048));
    loop {
        if read.len() == read.capacity() {
            if read.len() >= limits.max_head {
                // Too large to be ours; hyper applies its own limit.
                return Head::Other(read.into());
            }
            read.reserve(read.len().min(limits.max_head - read.len()));
        }
        let got = tokio::select! {
            biased;
            got = tokio::time::timeout_at(deadline, socket.read_buf(&mut read)) => got,
            _ = stopping.changed() => return Head::Closed,
        };
        match got {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return Head::Closed,
            Ok(Ok(_)) => {}
        }
        match parse(&read) {
            Parsed::Partial => continue,
            Parsed::Other => return Head::Other(read.into()),
            Parsed::Stream {
                request,
                len,
                keep_alive,
            } => {
                return Head::Stream {
                    request,
                    rest: read[len..].to_vec(),
                    keep_alive,
                };
            }
        }
    }
}

enum Parsed {
    Partial,
    Other,
    Stream {
        request: Box<Request<RequestBody>>,
        len: usize,
        keep_alive: bool,
    },
}

fn parse(read: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut head = httparse::Request::new(&mut headers);
    match head.parse(read) {
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Ok(httparse::Status::Complete(len)) => match stream_request(&head) {
            Some((request, keep_alive)) => Parsed::Stream {
                request: Box::new(request),
                len,
                keep_alive,
            },
            None => Parsed::Other,
        },
        Err(_) => Parsed::Other,
    }
}

/// The request, if it is an event stream's `GET` without a body; and
/// whether the connection may be kept alive after it.
fn stream_request(head: &httparse::Request<'_, '_>) -> Option<(Request<RequestBody>, bool)> {
    if head.method != Some("GET") || head.version != Some(1) {
        return None;
    }
    let path = head.path.filter(|path| path.starts_with('/'))?;
    let uri: Uri = path.parse().ok()?;
    let mut headers = HeaderMap::with_capacity(head.headers.len());
    let (mut wants_stream, mut keep_alive) = (false, true);
    for header in head.headers.iter() {
        let name = HeaderName::from_bytes(header.name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(header.value).ok()?;
        if name == TRANSFER_ENCODING || name == UPGRADE || name == EXPECT {
            return None;
        }
        if name == CONTENT_LENGTH && value != "0" {
            return None;
        }
        if name == ACCEPT && accepts_event_stream(value.as_bytes()) {
            wants_stream = true;
        }
        if name == CONNECTION && has_token(value.as_bytes(), "close") {
            keep_alive = false;
        }
        headers.append(name, value);
    }
    // A bad `Host` is hyper's to refuse, with the `400` it gets there.
    if !wants_stream || !host::is_valid(Version::HTTP_11, &headers) {
        return None;
    }
    let mut request = Request::new(RequestBody::empty());
    *request.method_mut() = Method::GET;
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = headers;
    Some((request, keep_alive))
}

/// Whether an `Accept` value names `text/event-stream` with a weight
/// above zero (RFC 9110 §12.5.1: `q=0` means "not acceptable").
fn accepts_event_stream(value: &[u8]) -> bool {
    value.split(|&b| b == b',').any(|range| {
        let mut parts = range.split(|&b| b == b';');
        let media = parts.next().unwrap_or_default().trim_ascii();
        if !media.eq_ignore_ascii_case(b"text/event-stream") {
            return false;
        }
        parts.all(|param| {
            let param = param.trim_ascii();
            let Some(weight) = param
                .strip_prefix(b"q=")
                .or_else(|| param.strip_prefix(b"Q="))
            else {
                return true;
            };
            // `0`, `0.`, `0.000`: zero; anything else (`1`, `0.5`) is not.
            !(weight.first() == Some(&b'0')
                && weight[1..]
                    .strip_prefix(b".")
                    .unwrap_or(&weight[1..])
                    .iter()
                    .all(|&b| b == b'0'))
        })
    })
}

fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|part| part.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// One request and response on a connection this module holds.
struct Exchange {
    socket: TcpStream,
    closer: ConnectionCloser,
    /// Bytes the client sent after the request head (its next request).
    pending: Vec<u8>,
    max_pending: usize,
}

/// How the response body is delimited.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body (`204`, `304`).
    None,
    /// `Content-Length`: exactly this many bytes, as they are; more are cut
    /// off, fewer close the connection (as hyper does).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// What the connection's task waits for while a response streams.
enum Step {
    Closed,
    Frame(Option<Result<http_body::Frame<Bytes>, BoxError>>),
    Readable(io::Result<()>),
}

type BoxError = Box<dyn StdError + Send + Sync>;

impl Exchange {
    /// Serves `request`; whether the connection can take another request.
    async fn respond<S, B>(
        &mut self,
        mut service: S,
        mut request: Request<RequestBody>,
        addr: SocketAddr,
        keep_alive: bool,
    ) -> bool
    where
        S: Service<Request<RequestBody>, Response = Response<B>, Error = Infallible>,
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        request.extensions_mut().insert(RemoteAddr(addr));
        request.extensions_mut().insert(self.closer.clone());
        let Ok(()) = std::future::poll_fn(|cx| service.poll_ready(cx)).await;
        // Boxed: the call's future lives only until the response head, and
        // inline it would size this task for as long as the stream is open.
        let Ok(response) = Box::pin(service.call(request)).await;
        drop(service);
        let (mut parts, body) = response.into_parts();
        let mut body = std::pin::pin!(body);
        let framing = match framing(&mut parts, body.as_ref().get_ref()) {
            Ok(framing) => framing,
            // What hyper does with each, so that the two paths agree
            // (tests/differential.rs): a 1xx as the final answer becomes a
            // `500` and a close; a `Content-Length` that is not one number,
            // a close with nothing written.
            Err(Unsendable::Informational) => {
                let _ = self.write(&mut [IoSlice::new(&internal_error())]).await;
                return false;
            }
            Err(Unsendable::BadLength) => return false,
        };
        let keep_alive = keep_alive && !says_close(&parts.headers);
        let mut head = head(&parts, framing, keep_alive);
        drop(parts);
        let mut left = match framing {
            Framing::Length(len) => Some(len),
            _ => None,
        };
        // Most streams have their first event ready: send it with the head.
        let mut ended = framing == Framing::None || left == Some(0);
        let mut complete = true;
        if !ended {
            match body
                .as_mut()
                .poll_frame(&mut Context::from_waker(Waker::noop()))
            {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        let data = clip(data, &mut left);
                        frame_into(&mut head, &data, framing);
                        ended = left == Some(0);
                    }
                }
                Poll::Ready(Some(Err(error))) => return failed(error),
                Poll::Ready(None) => {
                    ended = true;
                    complete = left.is_none_or(|left| left == 0);
                }
                Poll::Pending => {}
            }
        }
        if ended && framing == Framing::Chunked {
            head.extend_from_slice(b"0\r\n\r\n");
        }
        if !self.write(&mut [IoSlice::new(&head)]).await || !complete {
            return false;
        }
        drop(head);
        if !ended {
            if !self.stream(body, framing, &mut left).await {
                return false;
            }
            if framing == Framing::Chunked && !self.write(&mut [IoSlice::new(b"0\r\n\r\n")]).await {
                return false;
            }
        }
        keep_alive
    }

    /// Writes the body's frames as they come; `false` if the connection
    /// must close (client gone, closer fired, body failed).
    async fn stream<B>(
        &mut self,
        mut body: Pin<&mut B>,
        framing: Framing,
        left: &mut Option<u64>,
    ) -> bool
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        loop {
            let step = tokio::select! {
                biased;
                () = self.closer.closed() => Step::Closed,
                frame = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)) => {
                    Step::Frame(frame.map(|frame| frame.map_err(Into::into)))
                }
                ready = self.socket.readable() => Step::Readable(ready),
            };
            match step {
                Step::Closed => return false,
                // A body shorter than its `Content-Length` cannot be
                // framed: the connection must close.
                Step::Frame(None) => return left.is_none_or(|left| left == 0),
                Step::Frame(Some(Err(error))) => return failed(error),
                Step::Frame(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        continue; // trailers: not sent on a stream
                    };
                    let data = clip(data, left);
                    if data.is_empty() {
                        continue; // an empty chunk would end the body
                    }
                    let written = if framing == Framing::Chunked {
                        let mut size = [0u8; 18];
                        let n = chunk_size(data.len(), &mut size);
                        self.write(&mut [
                            IoSlice::new(&size[..n]),
                            IoSlice::new(&data),
                            IoSlice::new(b"\r\n"),
                        ])
                        .await
                    } else {
                        self.write(&mut [IoSlice::new(&data)]).await
                    };
                    if !written {
                        return false;
                    }
                    if *left == Some(0) {
                        return true; // what is left of the body is cut off
                    }
                }
                Step::Readable(Err(_)) => return false,
                Step::Readable(Ok(())) => {
                    if !self.read_pending() {
                        return false;
                    }
                }
            }
        }
    }

    /// Keeps what the client sent while its stream is open (its next
    /// request); `false` once it closed its side or sent more than a head.
    fn read_pending(&mut self) -> bool {
        let mut scratch = [0u8; 1024];
        match self.socket.try_read(&mut scratch) {
            Ok(0) => false,
            Ok(n) => {
                self.pending.extend_from_slice(&scratch[..n]);
                self.pending.len() <= self.max_pending
            }
            Err(error) => error.kind() == io::ErrorKind::WouldBlock,
        }
    }

    /// Writes every slice, unless the closer fires first.
    async fn write(&mut self, mut slices: &mut [IoSlice<'_>]) -> bool {
        let (socket, closer) = (&mut self.socket, &self.closer);
        let write = async {
            while !slices.is_empty() {
                let n = socket.write_vectored(slices).await?;
                if n == 0 {
                    return Err(io::ErrorKind::WriteZero.into());
                }
                IoSlice::advance_slices(&mut slices, n);
            }
            Ok::<(), io::Error>(())
        };
        tokio::select! {
            biased;
            () = closer.closed() => false,
            written = write => written.is_ok(),
        }
    }
}

fn failed(error: impl Into<Box<dyn StdError + Send + Sync>>) -> bool {
    let error = error.into();
    tracing::debug!(%error, "response body failed; closing the connection");
    false
}

/// Why a response cannot be written as the service gave it.
enum Unsendable {
    /// A 1xx as the final response.
    Informational,
    /// A `Content-Length` that is not one number.
    BadLength,
}

/// Chooses the framing and sets the headers that say it.
fn framing(parts: &mut http::response::Parts, body: &impl Body) -> Result<Framing, Unsendable> {
    if parts.status.is_informational() {
        return Err(Unsendable::Informational);
    }
    if parts.status == StatusCode::NO_CONTENT || parts.status == StatusCode::NOT_MODIFIED {
        return Ok(Framing::None);
    }
    let mut lengths = parts.headers.get_all(CONTENT_LENGTH).iter();
    if let Some(first) = lengths.next() {
        let len = content_length(first).ok_or(Unsendable::BadLength)?;
        if lengths.any(|other| content_length(other) != Some(len)) {
            return Err(Unsendable::BadLength);
        }
        return Ok(Framing::Length(len));
    }
    if let Some(len) = body.size_hint().exact() {
        parts.headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
        return Ok(Framing::Length(len));
    }
    parts.headers.remove(TRANSFER_ENCODING);
    Ok(Framing::Chunked)
}

fn content_length(value: &HeaderValue) -> Option<u64> {
    let digits = value.as_bytes();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// What `left` (bytes owed under `Content-Length`) lets through of `data`.
fn clip(mut data: Bytes, left: &mut Option<u64>) -> Bytes {
    if let Some(left) = left {
        let keep = usize::try_from(*left).map_or(data.len(), |left| left.min(data.len()));
        data.truncate(keep);
        *left -= keep as u64;
    }
    data
}

/// Whether the service's response says `Connection: close`.
fn says_close(headers: &HeaderMap) -> bool {
    headers
        .get_all(CONNECTION)
        .iter()
        .any(|value| has_token(value.as_bytes(), "close"))
}

/// What a response that cannot be sent becomes.
fn internal_error() -> Vec<u8> {
    format!(
        "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\ndate: {}\r\n\r\n",
        httpdate::fmt_http_date(SystemTime::now())
    )
    .into_bytes()
}

fn head(parts: &http::response::Parts, framing: Framing, keep_alive: bool) -> Vec<u8> {
    let mut head = Vec::with_capacity(512);
    let status = parts.status;
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    head.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    if !parts.headers.contains_key(DATE) {
        head.extend_from_slice(b"date: ");
        head.extend_from_slice(httpdate::fmt_http_date(SystemTime::now()).as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    if framing == Framing::Chunked {
        head.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    if !keep_alive && !says_close(&parts.headers) {
        head.extend_from_slice(b"connection: close\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// Appends `data` to `out` as the body's framing wants it.
fn frame_into(out: &mut Vec<u8>, data: &[u8], framing: Framing) {
    if data.is_empty() {
        return;
    }
    if framing == Framing::Chunked {
        let mut size = [0u8; 18];
        let n = chunk_size(data.len(), &mut size);
        out.extend_from_slice(&size[..n]);
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    } else {
        out.extend_from_slice(data);
    }
}

/// Writes `len` in hex and CRLF into `out`; the bytes written.
fn chunk_size(len: usize, out: &mut [u8; 18]) -> usize {
    let mut cursor = &mut out[..];
    // 16 hex digits and CRLF always fit.
    let _ = write!(cursor, "{len:x}\r\n");
    let left = cursor.len();
    out.len() - left
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(head: &str) -> Parsed {
        parse(head.as_bytes())
    }

    #[test]
    fn only_an_event_stream_get_without_a_body_is_taken() {
        let stream = "GET /events?topic=a HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n";
        let Parsed::Stream {
            request,
            len,
            keep_alive,
        } = parsed(stream)
        else {
            panic!("not taken");
        };
        assert_eq!(len, stream.len());
        assert!(keep_alive);
        assert_eq!(request.uri().path(), "/events");
        assert_eq!(request.uri().query(), Some("topic=a"));
        assert_eq!(request.headers()["host"], "x");
        for other in [
            "GET /events HTTP/1.1\r\nHost: x\r\n\r\n",
            "POST /events HTTP/1.1\r\nAccept: text/event-stream\r\nContent-Length: 2\r\n\r\nhi",
            "GET /events HTTP/1.0\r\nAccept: text/event-stream\r\n\r\n",
            "GET /events HTTP/1.1\r\nAccept: text/event-stream\r\nContent-Length: 5\r\n\r\n",
            "GET /events HTTP/1.1\r\nAccept: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET /ws HTTP/1.1\r\nAccept: text/event-stream\r\nUpgrade: websocket\r\n\r\n",
            "GET http://x/events HTTP/1.1\r\nAccept: text/event-stream\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "GET /events HTTP/1.1\r\nAccept: text/event-stream\r\nBad Header: x\r\n\r\n",
        ] {
            assert!(matches!(parsed(other), Parsed::Other), "{other:?}");
        }
        assert!(matches!(
            parsed("GET /events HTTP/1.1\r\nAccept: text/ev"),
            Parsed::Partial
        ));
    }

    #[test]
    fn connection_close_is_honoured() {
        let Parsed::Stream { keep_alive, .. } = parsed(
            "GET / HTTP/1.1\r\nHost: x\r\nAccept: TEXT/EVENT-STREAM\r\nConnection: keep-alive, Close\r\n\r\n",
        ) else {
            panic!("not taken");
        };
        assert!(!keep_alive);
    }

    #[test]
    fn accept_is_read_as_media_ranges_with_weights() {
        for taken in [
            "text/event-stream",
            "TEXT/Event-Stream",
            "text/html, text/event-stream;q=0.5",
            "text/event-stream; charset=utf-8",
            "text/event-stream;q=1",
            "text/event-stream; q=0.001",
        ] {
            assert!(accepts_event_stream(taken.as_bytes()), "{taken:?}");
        }
        for refused in [
            "text/event-stream;q=0",
            "text/event-stream; q=0.000",
            "text/event-stream;Q=0.",
            "text/event-streams",
            "application/json; x=text/event-stream",
            "*/*",
        ] {
            assert!(!accepts_event_stream(refused.as_bytes()), "{refused:?}");
        }
    }

    #[test]
    fn a_stream_request_without_one_good_host_is_left_to_hyper() {
        for head in [
            "GET /e HTTP/1.1\r\nAccept: text/event-stream\r\n\r\n",
            "GET /e HTTP/1.1\r\nHost: a\r\nHost: a\r\nAccept: text/event-stream\r\n\r\n",
            "GET /e HTTP/1.1\r\nHost: a b/c@d\r\nAccept: text/event-stream\r\n\r\n",
        ] {
            assert!(matches!(parsed(head), Parsed::Other), "{head:?}");
        }
    }

    #[test]
    fn content_length_is_one_number_and_cuts_what_exceeds_it() {
        assert_eq!(content_length(&HeaderValue::from_static("42")), Some(42));
        for bad in [
            "",
            "+1",
            "-1",
            "1,1",
            " 1",
            "0x10",
            "99999999999999999999999",
        ] {
            assert_eq!(
                content_length(&HeaderValue::from_static(bad)),
                None,
                "{bad:?}"
            );
        }
        let mut left = Some(5);
        assert_eq!(clip(Bytes::from_static(b"abc"), &mut left), "abc");
        assert_eq!(clip(Bytes::from_static(b"defg"), &mut left), "de");
        assert_eq!(left, Some(0));
        assert_eq!(clip(Bytes::from_static(b"h"), &mut left), "");
        let mut unbounded = None;
        assert_eq!(clip(Bytes::from_static(b"all"), &mut unbounded), "all");
    }

    proptest::proptest! {
        /// Whatever a client sends, reading it as a head never panics, and
        /// a head taken as a stream's is one the rules allow.
        #[test]
        fn any_bytes_parse_without_panicking(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            if let Parsed::Stream { request, len, .. } = parse(&bytes) {
                proptest::prop_assert!(len <= bytes.len());
                proptest::prop_assert_eq!(request.method(), Method::GET);
                proptest::prop_assert!(!request.headers().contains_key(TRANSFER_ENCODING));
            }
        }

        /// Any header value a client may send reaches the service intact,
        /// whatever is around it.
        #[test]
        fn header_values_reach_the_service_intact(
            value in "[ -~]{0,200}",
            cookie in "[!#-+--:<-\\[-~]{1,100}",
            path in "/[a-zA-Z0-9/_.?=&%-]{0,100}",
        ) {
            let value = value.trim();
            let head = format!(
                "GET {path} HTTP/1.1\r\nHost: x\r\nX-Any: {value}\r\nAccept: text/event-stream\r\nCookie: {cookie}\r\n\r\nnext"
            );
            let Parsed::Stream { request, len, .. } = parse(head.as_bytes()) else {
                return Err(proptest::test_runner::TestCaseError::fail(format!("not taken: {head:?}")));
            };
            proptest::prop_assert_eq!(&head[len..], "next");
            proptest::prop_assert_eq!(request.headers()["x-any"].as_bytes(), value.as_bytes());
            proptest::prop_assert_eq!(request.headers()["cookie"].as_bytes(), cookie.as_bytes());
            proptest::prop_assert_eq!(request.uri().to_string(), path);
        }
    }

    #[test]
    fn chunk_sizes_are_hex_with_crlf() {
        let mut out = [0u8; 18];
        for (len, text) in [
            (0, "0\r\n"),
            (10, "a\r\n"),
            (4096, "1000\r\n"),
            (usize::MAX, "ffffffffffffffff\r\n"),
        ] {
            let n = chunk_size(len, &mut out);
            assert_eq!(&out[..n], text.as_bytes());
        }
    }
}
