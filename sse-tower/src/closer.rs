//! [`ConnectionCloser`]: lets a stream close the connection it is served on.

use tokio_util::sync::CancellationToken;

/// A handle that closes one HTTP/1 connection, put into each request's
/// extensions by a server that supports it ([`serve`](crate::serve()) does).
///
/// Why a stream needs it: a client that stops reading fills the socket's
/// buffers, and from then on the HTTP server stops polling the response
/// body. The hub closes the stream's queue when it overflows, but the
/// stream itself is not polled to notice. With this handle in the request,
/// [`SseService`](crate::SseService) closes the connection at the moment
/// the overflow is counted, so a stalled connection holds nothing for
/// longer than it takes to fill its queue. Without it, the operating
/// system closes the connection after the stall timeout
/// ([`socket::close_stalled_readers`](crate::socket::close_stalled_readers)).
///
/// Servers insert it only for HTTP/1 requests: on HTTP/2 one connection
/// carries many streams.
///
/// ```
/// use sse_tower::ConnectionCloser;
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let closer = ConnectionCloser::new();
/// let watcher = closer.clone();
/// closer.close();
/// watcher.closed().await; // the server drops the connection here
/// assert!(watcher.is_closed());
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct ConnectionCloser {
    token: CancellationToken,
}

impl ConnectionCloser {
    /// A handle for a new connection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the server to close the connection now.
    pub fn close(&self) {
        self.token.cancel();
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves once [`close`](Self::close) is called; the server awaits it
    /// beside the connection.
    pub async fn closed(&self) {
        self.token.cancelled().await;
    }
}
