//! A socket whose first reads return bytes already read from it.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// What a connection is carried on: a TCP socket, or a TLS stream over
/// one (`tls.rs`).
pub(crate) trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Closes the connection lingering (`linger.rs`): the last bytes go
    /// first, then what the client still sends is drained for a moment.
    fn close(self) -> impl Future<Output = ()> + Send;
}

impl Transport for TcpStream {
    fn close(self) -> impl Future<Output = ()> + Send {
        super::linger::close(self)
    }
}

/// `socket`, with `prefix` put back in front of what it reads: the direct
/// stream writer hands a connection to hyper with the bytes of the request
/// it read but did not serve. Dropped, it closes the socket lingering
/// (`linger.rs`), so a client still sending reads the last response.
pub(crate) struct Rewind<T: Transport = TcpStream> {
    prefix: Bytes,
    /// `None` only once dropped.
    socket: Option<T>,
}

impl<T: Transport> Rewind<T> {
    pub(crate) fn new(prefix: Bytes, socket: T) -> Self {
        Self {
            prefix,
            socket: Some(socket),
        }
    }

    fn socket(self: Pin<&mut Self>) -> io::Result<Pin<&mut T>> {
        match &mut self.get_mut().socket {
            Some(socket) => Ok(Pin::new(socket)),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }
}

impl<T: Transport> Drop for Rewind<T> {
    fn drop(&mut self) {
        if let Some(socket) = self.socket.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(socket.close());
        }
    }
}

impl<T: Transport> AsyncRead for Rewind<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.prefix.has_remaining() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix.split_to(n));
            return Poll::Ready(Ok(()));
        }
        self.socket()?.poll_read(cx, buf)
    }
}

impl<T: Transport> AsyncWrite for Rewind<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.socket()?.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.socket()?.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.socket
            .as_ref()
            .is_some_and(|socket| socket.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.socket()?.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.socket()?.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn reads_the_prefix_then_the_socket() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut client = TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let mut rewound = Rewind::new(Bytes::from_static(b"GET / HT"), server);
        client.write_all(b"TP/1.1\r\n").await.unwrap();
        let mut read = [0; 16];
        let mut got = Vec::new();
        while got.len() < 16 {
            let n = rewound.read(&mut read[..5]).await.unwrap();
            got.extend_from_slice(&read[..n]);
        }
        assert_eq!(got, b"GET / HTTP/1.1\r\n");
        rewound.write_all(b"ok").await.unwrap();
        let mut answer = [0; 2];
        client.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"ok");
    }
}
