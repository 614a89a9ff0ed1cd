//! Connections past the cap: answered `503` with `Retry-After` at once,
//! instead of waiting unanswered in the backlog (see
//! [`Serve::busy_connections`](super::Serve::busy_connections)).

use std::time::{Duration, SystemTime};

use tokio::io::AsyncWriteExt;
use tokio::sync::OwnedSemaphorePermit;

use super::rewind::Transport;

/// The body of the `503`.
const BODY: &str = "the server is at its connection limit; retry in a second\n";

/// Writes the `503` (whatever the client sends: the answer does not
/// depend on it), then closes lingering; `slot` is held until then.
pub(super) async fn refuse(mut socket: impl Transport, slot: OwnedSemaphorePermit) {
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\ndate: {}\r\n\r\n{BODY}",
        BODY.len(),
        httpdate::fmt_http_date(SystemTime::now()),
    );
    let write = async {
        socket.write_all(answer.as_bytes()).await?;
        socket.flush().await
    };
    let written = tokio::time::timeout(Duration::from_secs(1), write).await;
    if matches!(written, Ok(Ok(()))) {
        socket.close().await;
    }
    drop(slot);
}
