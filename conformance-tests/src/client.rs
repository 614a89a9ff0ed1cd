//! A minimal HTTP/1.1 client that reads an event stream byte for byte.
//!
//! It writes the request itself and decodes the response (chunked, sized
//! or until close) without buffering, so tests and the checker see exactly
//! when each byte arrived. Plain TCP only; point it at the upstream or a
//! local TLS terminator for `https` deployments.
//!
//! ```no_run
//! use std::time::Duration;
//! use sse_conformance::client::Request;
//!
//! # #[tokio::main] async fn main() -> Result<(), sse_conformance::client::ClientError> {
//! let mut stream = Request::get("/events").header("cookie", "sid=…").send("127.0.0.1:3000").await?;
//! assert_eq!(stream.status(), 200);
//! let connected = stream.next_event(Duration::from_secs(1)).await?;
//! assert_eq!(connected.event_type, "connected");
//! # Ok(()) }
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::parser::{Item, ParsedEvent, Parser};

/// Why a request or a read failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientError {
    /// Connecting, writing or reading failed.
    Io(std::io::Error),
    /// Nothing arrived within the time allowed.
    Timeout(Duration),
    /// The response is not valid HTTP/1.1.
    Protocol(String),
    /// The stream ended before what was awaited arrived.
    Closed,
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "I/O error: {e}"),
            Self::Timeout(t) => write!(f, "nothing arrived within {t:?}"),
            Self::Protocol(why) => write!(f, "invalid HTTP response: {why}"),
            Self::Closed => f.write_str("the stream ended"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<std::io::Error> for ClientError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

/// A request to send.
#[derive(Debug, Clone)]
pub struct Request {
    method: String,
    target: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

impl Request {
    /// A `GET` of `target` (path and query).
    pub fn get(target: impl Into<String>) -> Self {
        Self::new("GET", target)
    }

    /// A request with any method.
    pub fn new(method: impl Into<String>, target: impl Into<String>) -> Self {
        Self {
            method: method.into(),
            target: target.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl AsRef<[u8]>) -> Self {
        self.headers.push((name.into(), value.as_ref().to_vec()));
        self
    }

    /// Sets the body (and its `Content-Length`).
    #[must_use]
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The request as bytes on the wire, with `Host: host` unless a `Host`
    /// header was added.
    pub fn to_bytes(&self, host: &str) -> Vec<u8> {
        let mut out = format!("{} {} HTTP/1.1\r\n", self.method, self.target).into_bytes();
        if !self
            .headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("host"))
        {
            out.extend_from_slice(format!("host: {host}\r\n").as_bytes());
        }
        for (name, value) in &self.headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        if !self.body.is_empty() || !matches!(self.method.as_str(), "GET" | "HEAD") {
            out.extend_from_slice(format!("content-length: {}\r\n", self.body.len()).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }

    /// Connects to `addr` (`host:port`), sends the request and reads the
    /// response head (within 10 s).
    pub async fn send(&self, addr: &str) -> Result<Response, ClientError> {
        self.send_within(addr, Duration::from_secs(10)).await
    }

    /// Like [`Request::send`] with a limit on how long the head may take.
    pub async fn send_within(&self, addr: &str, limit: Duration) -> Result<Response, ClientError> {
        let sent_at = Instant::now();
        let mut socket = tokio::time::timeout(limit, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Timeout(limit))??;
        socket.set_nodelay(true)?;
        match socket.write_all(&self.to_bytes(addr)).await {
            Ok(()) => Response::read_head(socket, sent_at, limit).await,
            // A server may answer (e.g. 413) and close before reading a large
            // body: its answer is still there to read.
            Err(write_error) => Response::read_head(socket, sent_at, limit)
                .await
                .map_err(|_| ClientError::Io(write_error)),
        }
    }
}

/// A response being read: its head, and its body as it arrives.
pub struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    socket: TcpStream,
    /// Bytes read from the socket not yet decoded.
    wire: Vec<u8>,
    framing: Framing,
    body: Vec<u8>,
    parser: Parser,
    items: VecDeque<Item>,
    sent_at: Instant,
    head_at: Instant,
    first_body_byte_at: Option<Instant>,
    ended: bool,
}

#[derive(Debug, Clone, Copy)]
enum Framing {
    Chunked(ChunkState),
    Length(u64),
    UntilClose,
}

#[derive(Debug, Clone, Copy)]
enum ChunkState {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
    Done,
}

impl Response {
    async fn read_head(
        mut socket: TcpStream,
        sent_at: Instant,
        limit: Duration,
    ) -> Result<Self, ClientError> {
        let mut wire = Vec::with_capacity(4096);
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut parsed = httparse::Response::new(&mut headers);
            match parsed.parse(&wire) {
                Ok(httparse::Status::Complete(len)) => {
                    let status = parsed.code.unwrap_or(0);
                    let headers: Vec<(String, String)> = parsed
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_ascii_lowercase(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect();
                    let head_at = Instant::now();
                    let rest = wire.split_off(len);
                    let framing = framing(status, &headers)?;
                    let mut response = Self {
                        status,
                        headers,
                        socket,
                        wire: Vec::new(),
                        framing,
                        body: Vec::new(),
                        parser: Parser::new(),
                        items: VecDeque::new(),
                        sent_at,
                        head_at,
                        first_body_byte_at: None,
                        ended: false,
                    };
                    response.ingest(&rest)?;
                    return Ok(response);
                }
                Ok(httparse::Status::Partial) => {}
                Err(e) => return Err(ClientError::Protocol(e.to_string())),
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout_at(deadline, socket.read(&mut chunk))
                .await
                .map_err(|_| ClientError::Timeout(limit))??;
            if n == 0 {
                return Err(ClientError::Closed);
            }
            wire.extend_from_slice(&chunk[..n]);
        }
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every header, names lowercased, in order.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// Time from sending the request to receiving the whole head.
    pub fn head_latency(&self) -> Duration {
        self.head_at - self.sent_at
    }

    /// Time from sending the request to the first body byte, once it came.
    pub fn first_byte_latency(&self) -> Option<Duration> {
        self.first_body_byte_at.map(|t| t - self.sent_at)
    }

    /// The decoded body received so far.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Whether the body has ended.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// The next parsed item (event, retry or comment), waiting up to `limit`.
    /// `Ok(None)` when the stream ended.
    pub async fn next_item(&mut self, limit: Duration) -> Result<Option<Item>, ClientError> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(item) = self.items.pop_front() {
                return Ok(Some(item));
            }
            if self.ended {
                return Ok(None);
            }
            self.read_more(deadline, limit).await?;
        }
    }

    /// The next dispatched event, skipping comments and retries.
    pub async fn next_event(&mut self, limit: Duration) -> Result<ParsedEvent, ClientError> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_item(left).await {
                Ok(Some(Item::Event(event))) => return Ok(event),
                Ok(Some(_)) => {}
                Ok(None) => return Err(ClientError::Closed),
                Err(ClientError::Timeout(_)) => return Err(ClientError::Timeout(limit)),
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads until the body ends (for refusals and other finite bodies).
    pub async fn read_to_end(&mut self, limit: Duration) -> Result<&[u8], ClientError> {
        let deadline = tokio::time::Instant::now() + limit;
        while !self.ended {
            self.read_more(deadline, limit).await?;
        }
        Ok(&self.body)
    }

    /// Waits up to `limit` for the body to end: `Ok(true)` if it ended.
    pub async fn wait_for_end(&mut self, limit: Duration) -> Result<bool, ClientError> {
        let deadline = tokio::time::Instant::now() + limit;
        while !self.ended {
            match self.read_more(deadline, limit).await {
                Ok(()) => {}
                Err(ClientError::Timeout(_)) => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Drops the connection abruptly: the peer sees a reset (RST), not a
    /// clean close.
    pub fn abort(self) {
        let _ = self.socket.set_zero_linger();
    }

    /// The socket, e.g. to write junk to it or shut it down.
    pub fn socket_mut(&mut self) -> &mut TcpStream {
        &mut self.socket
    }

    async fn read_more(
        &mut self,
        deadline: tokio::time::Instant,
        limit: Duration,
    ) -> Result<(), ClientError> {
        let mut chunk = [0u8; 16 * 1024];
        let n = tokio::time::timeout_at(deadline, self.socket.read(&mut chunk))
            .await
            .map_err(|_| ClientError::Timeout(limit))??;
        if n == 0 {
            if matches!(self.framing, Framing::UntilClose) {
                self.ended = true;
                self.parser.finish();
                return Ok(());
            }
            return Err(ClientError::Closed);
        }
        self.ingest(&chunk[..n])
    }

    fn ingest(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.wire.extend_from_slice(bytes);
        let mut decoded = Vec::new();
        let mut at = 0;
        loop {
            match &mut self.framing {
                Framing::UntilClose => {
                    decoded.extend_from_slice(&self.wire[at..]);
                    at = self.wire.len();
                    break;
                }
                Framing::Length(0) => {
                    self.ended = true;
                    break;
                }
                Framing::Length(left) => {
                    let take = (*left).min((self.wire.len() - at) as u64) as usize;
                    if take == 0 {
                        break;
                    }
                    decoded.extend_from_slice(&self.wire[at..at + take]);
                    at += take;
                    *left -= take as u64;
                }
                Framing::Chunked(state) => match *state {
                    ChunkState::Size => {
                        let Some(line_end) = find_crlf(&self.wire[at..]) else {
                            break;
                        };
                        let line = std::str::from_utf8(&self.wire[at..at + line_end])
                            .map_err(|_| ClientError::Protocol("chunk size is not UTF-8".into()))?;
                        let size_text = line.split(';').next().unwrap_or("").trim();
                        let size = u64::from_str_radix(size_text, 16).map_err(|_| {
                            ClientError::Protocol(format!("bad chunk size {line:?}"))
                        })?;
                        at += line_end + 2;
                        *state = if size == 0 {
                            ChunkState::Trailers
                        } else {
                            ChunkState::Data(size)
                        };
                    }
                    ChunkState::Data(left) => {
                        let take = left.min((self.wire.len() - at) as u64) as usize;
                        if take == 0 {
                            break;
                        }
                        decoded.extend_from_slice(&self.wire[at..at + take]);
                        at += take;
                        *state = if left == take as u64 {
                            ChunkState::DataEnd
                        } else {
                            ChunkState::Data(left - take as u64)
                        };
                    }
                    ChunkState::DataEnd => {
                        if self.wire.len() - at < 2 {
                            break;
                        }
                        if &self.wire[at..at + 2] != b"\r\n" {
                            return Err(ClientError::Protocol("chunk not followed by CRLF".into()));
                        }
                        at += 2;
                        *state = ChunkState::Size;
                    }
                    ChunkState::Trailers => {
                        let Some(line_end) = find_crlf(&self.wire[at..]) else {
                            break;
                        };
                        at += line_end + 2;
                        if line_end == 0 {
                            *state = ChunkState::Done;
                        }
                    }
                    ChunkState::Done => {
                        self.ended = true;
                        break;
                    }
                },
            }
        }
        self.wire.drain(..at);
        if !decoded.is_empty() {
            self.first_body_byte_at.get_or_insert_with(Instant::now);
            self.body.extend_from_slice(&decoded);
            let mut items = Vec::new();
            self.parser.feed_into(&decoded, &mut items);
            self.items.extend(items);
        }
        if self.ended {
            self.parser.finish();
        }
        Ok(())
    }
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body", &String::from_utf8_lossy(&self.body))
            .finish_non_exhaustive()
    }
}

fn find_crlf(bytes: &[u8]) -> Option<usize> {
    bytes.windows(2).position(|w| w == b"\r\n")
}

fn framing(status: u16, headers: &[(String, String)]) -> Result<Framing, ClientError> {
    if status == 204 || status == 304 || (100..200).contains(&status) {
        return Ok(Framing::Length(0));
    }
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    if get("transfer-encoding").is_some_and(|te| te.to_ascii_lowercase().contains("chunked")) {
        return Ok(Framing::Chunked(ChunkState::Size));
    }
    if let Some(len) = get("content-length") {
        return len
            .trim()
            .parse()
            .map(Framing::Length)
            .map_err(|_| ClientError::Protocol(format!("bad content-length {len:?}")));
    }
    Ok(Framing::UntilClose)
}
