//! Socket settings for servers that hold long-lived event streams.
//!
//! A client that stops reading (a frozen tab, a stuck proxy) fills the
//! socket's buffers. From then on the HTTP server stops asking the stream
//! for data, so the stream cannot notice the stall itself: the hub closes
//! its queue (it never holds more than the queue capacity), and the
//! connection has to be closed by the operating system.
//! [`close_stalled_readers`] asks it to, after a timeout.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use std::time::Duration;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! let (socket, _) = listener.accept().await?;
//! sse_tower::socket::close_stalled_readers(&socket, Duration::from_secs(30))?;
//! # Ok(()) }
//! ```

use std::io;
use std::time::Duration;

use tokio::net::TcpStream;

/// Closes the connection when data written to it stays unacknowledged for
/// `after`, including while the peer's receive window is closed because it
/// stopped reading (Linux `TCP_USER_TIMEOUT`). Heartbeats make sure there
/// is data in flight, so dead peers are detected within the heartbeat
/// interval plus `after`.
///
/// On platforms without `TCP_USER_TIMEOUT` this does nothing and returns
/// `Ok`; there, stalled connections end when the kernel gives up
/// retransmitting.
pub fn close_stalled_readers(socket: &TcpStream, after: Duration) -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "fuchsia"))]
    {
        socket2::SockRef::from(socket).set_tcp_user_timeout(Some(after))
    }
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "fuchsia")))]
    {
        let _ = (socket, after);
        Ok(())
    }
}
