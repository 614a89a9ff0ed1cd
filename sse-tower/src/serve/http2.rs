//! [`Http2`]: how [`serve`](super::serve) runs HTTP/2 connections.

use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;

/// HTTP/2 settings for [`serve`](super::serve) (over TLS with ALPN `h2`,
/// or with prior knowledge); see [`Serve::http2`](super::Serve::http2).
///
/// | setting | default | why |
/// | --- | --- | --- |
/// | [`max_concurrent_streams`](Self::max_concurrent_streams) | 128 | a browser's tabs and API calls, not a flood (nginx's default) |
/// | [`keep_alive`](Self::keep_alive) | a `PING` after 20 s of silence, closed if unanswered in 20 s | finds dead peers under streams that stay quiet |
/// | [`max_header_list_size`](Self::max_header_list_size) | 16 KiB | bounds each request head, as on HTTP/1.1 |
/// | [`initial_stream_window_size`](Self::initial_stream_window_size) | 64 KiB | the protocol's |
/// | [`initial_connection_window_size`](Self::initial_connection_window_size) | 1 MiB | uploads of several streams at once |
/// | [`max_pending_accept_reset_streams`](Self::max_pending_accept_reset_streams) | 20 | bounds "rapid reset" floods |
///
/// A connection with no request in flight is closed after
/// [`Serve::idle_timeout`](super::Serve::idle_timeout), whatever its
/// protocol. A request is in flight from its complete head on, so a head
/// sent slowly (a `HEADERS` frame and `CONTINUATION`s dribbled) on a
/// connection with nothing else in flight is cut there too. While other
/// requests are in flight, one head at a time can be in progress on a
/// connection (HTTP/2 forbids interleaving other frames in a header
/// block), at most [`max_header_list_size`](Self::max_header_list_size),
/// and it stalls only its own connection. Request bodies are read by your
/// handlers: bound them with a timeout there, as on HTTP/1.1.
///
/// ```
/// use std::time::Duration;
/// use sse_tower::serve::Http2;
///
/// let http2 = Http2::default()
///     .max_concurrent_streams(64)
///     .keep_alive(Some(Duration::from_secs(30)), Duration::from_secs(10));
/// # let _ = http2;
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct Http2 {
    max_concurrent_streams: u32,
    keep_alive_interval: Option<Duration>,
    keep_alive_timeout: Duration,
    max_header_list_size: u32,
    initial_stream_window_size: u32,
    initial_connection_window_size: u32,
    max_pending_accept_reset_streams: usize,
}

impl Default for Http2 {
    fn default() -> Self {
        Self {
            max_concurrent_streams: 128,
            keep_alive_interval: Some(Duration::from_secs(20)),
            keep_alive_timeout: Duration::from_secs(20),
            max_header_list_size: 16 * 1024,
            initial_stream_window_size: 64 * 1024,
            initial_connection_window_size: 1024 * 1024,
            max_pending_accept_reset_streams: 20,
        }
    }
}

impl Http2 {
    /// Streams (requests) a connection may have open at once.
    pub fn max_concurrent_streams(mut self, max: u32) -> Self {
        self.max_concurrent_streams = max.max(1);
        self
    }

    /// Sends a `PING` when the connection has been silent for `interval`
    /// and closes it if the answer takes longer than `timeout`; `None`
    /// sends none.
    pub fn keep_alive(mut self, interval: Option<Duration>, timeout: Duration) -> Self {
        self.keep_alive_interval = interval;
        self.keep_alive_timeout = timeout;
        self
    }

    /// The largest request head (the sum of its header fields, as HTTP/2
    /// counts them) a connection accepts.
    pub fn max_header_list_size(mut self, bytes: u32) -> Self {
        self.max_header_list_size = bytes;
        self
    }

    /// The flow-control window of each stream, in bytes.
    pub fn initial_stream_window_size(mut self, bytes: u32) -> Self {
        self.initial_stream_window_size = bytes;
        self
    }

    /// The flow-control window of the whole connection, in bytes.
    pub fn initial_connection_window_size(mut self, bytes: u32) -> Self {
        self.initial_connection_window_size = bytes;
        self
    }

    /// Streams a client may open and reset before the server accepts them;
    /// past it the connection is closed.
    pub fn max_pending_accept_reset_streams(mut self, max: usize) -> Self {
        self.max_pending_accept_reset_streams = max;
        self
    }

    pub(super) fn apply(&self, builder: &mut auto::Builder<TokioExecutor>) {
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(self.max_concurrent_streams)
            .keep_alive_interval(self.keep_alive_interval)
            .keep_alive_timeout(self.keep_alive_timeout)
            .max_header_list_size(self.max_header_list_size)
            .initial_stream_window_size(self.initial_stream_window_size)
            .initial_connection_window_size(self.initial_connection_window_size)
            .max_pending_accept_reset_streams(self.max_pending_accept_reset_streams);
    }
}
