//! A proxied connection, plain or TLS: one type for the session code.
//!
//! [`Stream`] reads and writes plaintext whichever it is; socket options and timeouts go
//! to the TCP socket underneath (a TLS read that waits too long fails with `TimedOut`
//! like a plain one). What differs, and what callers must respect:
//! - a TLS write may leave bytes in rustls until [`Stream::send`] or a flush: every
//!   message is flushed before waiting for an answer;
//! - only plain streams may be spliced ([`Stream::plain_fd`]);
//! - a TLS peer that closes without `close_notify` reads as end of stream (HTTP framing,
//!   not TLS, tells a complete message from a cut one);
//! - closing a TLS stream sends `close_notify` before the FIN (`poll_close`; see
//!   `http::pool::shut` for a close that also reads the peer's answer, so no RST).

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncWrite, AsyncWriteExt};
use glommio::net::TcpStream;

/// A connection to a client or a server.
pub enum Stream {
    Plain(TcpStream),
    /// A client whose TLS the proxy terminates.
    Accepted(Box<futures_rustls::server::TlsStream<TcpStream>>),
    /// TLS to a server.
    Connected(Box<futures_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Accepted(t) => t.get_ref().0,
            Stream::Connected(t) => t.get_ref().0,
        }
    }

    pub fn is_tls(&self) -> bool {
        !matches!(self, Stream::Plain(_))
    }

    /// The descriptor, when bytes may go around user space (`splice`).
    pub fn plain_fd(&self) -> Option<RawFd> {
        match self {
            Stream::Plain(s) => Some(s.as_raw_fd()),
            _ => None,
        }
    }

    pub fn set_read_timeout(&self, d: Option<Duration>) {
        let _ = self.tcp().set_read_timeout(d);
    }

    pub fn set_write_timeout(&self, d: Option<Duration>) {
        let _ = self.tcp().set_write_timeout(d);
    }

    pub fn read_timeout(&self) -> Option<Duration> {
        self.tcp().read_timeout()
    }

    pub fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        self.tcp().peer_addr().ok()
    }

    /// Writes all of `bytes` and flushes them out of rustls.
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.write_all(bytes).await?;
        self.flush_tls().await
    }

    /// Makes sure what was written left rustls (nothing to do for a plain stream).
    pub async fn flush_tls(&mut self) -> io::Result<()> {
        if self.is_tls() {
            self.flush().await
        } else {
            Ok(())
        }
    }

    /// The TCP socket, for a close that only reads and discards (TLS state is dropped).
    pub fn into_tcp(self) -> TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Accepted(t) => t.into_inner().0,
            Stream::Connected(t) => t.into_inner().0,
        }
    }
}

/// End of stream without `close_notify` is end of stream.
fn eof_is_end(r: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
    match r {
        Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => Poll::Ready(Ok(0)),
        r => r,
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Accepted(t) => eof_is_end(Pin::new(&mut **t).poll_read(cx, buf)),
            Stream::Connected(t) => eof_is_end(Pin::new(&mut **t).poll_read(cx, buf)),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Accepted(t) => Pin::new(&mut **t).poll_write(cx, buf),
            Stream::Connected(t) => Pin::new(&mut **t).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(_) => Poll::Ready(Ok(())),
            Stream::Accepted(t) => Pin::new(&mut **t).poll_flush(cx),
            Stream::Connected(t) => Pin::new(&mut **t).poll_flush(cx),
        }
    }

    /// `close_notify` (TLS), then FIN.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_close(cx),
            Stream::Accepted(t) => Pin::new(&mut **t).poll_close(cx),
            Stream::Connected(t) => Pin::new(&mut **t).poll_close(cx),
        }
    }
}
