//! Lingering close (RFC 9112 §9.6): a server that closes while its client
//! is still sending (a body refused with `413`, a request past the cap)
//! makes the client's kernel answer the unread bytes with a reset, which
//! can destroy the response before the client reads it. So `serve` closes
//! its writing side first, then reads and discards what still arrives,
//! for a bounded time, before it lets the socket go.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The longest a closing connection is drained.
pub(super) const MAX: Duration = Duration::from_secs(5);

/// How long a closing connection may send nothing before it is let go.
const QUIET: Duration = Duration::from_millis(500);

/// Shuts down the writing side of `socket` (its last bytes go first), then
/// drains what the client still sends until it closes, goes quiet for
/// half a second or [`MAX`] has passed.
pub(super) async fn close(mut socket: TcpStream) {
    if socket.shutdown().await.is_err() {
        return;
    }
    drain(socket).await;
}

/// Reads and discards what `socket` still receives until the client
/// closes, goes quiet for half a second or [`MAX`] has passed.
pub(super) async fn drain(socket: TcpStream) {
    let until = Instant::now() + MAX;
    // Allocated only if something arrives: most closing peers send nothing.
    let mut scratch = Vec::new();
    loop {
        let quiet_until = (Instant::now() + QUIET).min(until);
        match tokio::time::timeout_at(quiet_until, socket.readable()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) | Err(_) => return,
        }
        scratch.resize(8 * 1024, 0);
        match socket.try_read(&mut scratch) {
            Ok(0) => return,
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}
