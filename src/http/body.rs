//! Buffered connections and the forwarding of one message body.
//!
//! A [`Conn`] is a connection (plain or TLS, a [`Stream`]) with one fixed buffer,
//! allocated once per connection and reused for every message on it: heads are parsed in
//! place, and body bytes that arrived with a head are forwarded from there. [`forward`]
//! moves one body, as framed by its head, from a connection to another, in one of three
//! codings (as received, chunked decoded for an
//! HTTP/1.0 client, chunked encoded for a close-delimited body sent to a kept-alive
//! HTTP/1.1 client). A long body of known length leaves the buffer for a pipe: after the
//! buffered bytes, the rest goes socket to socket with `splice(2)`, never through user
//! space ([`splice_exact`]), when both sockets are plain. What a write leaves inside
//! rustls is flushed before any wait for more input ([`flush`]).
//!
//! Timeouts are the sockets' own (glommio's per-wait read and write timeouts), set by the
//! session: a wait that lasts too long fails with `TimedOut`.

use std::io;

use futures_lite::{AsyncReadExt, AsyncWriteExt};

use super::chunked::{Decoder, Piece};
use super::head::Body;
use super::rewrite;
use crate::l4::splice::RelayBuffers;
use crate::tls::Stream;
use std::time::{Duration, Instant};

/// How long a spliced body waits for the server before it acknowledges what it has read
/// at once. A server that corks its output (nginx's `tcp_nopush` with `sendfile`) can
/// wait on the proxy's ACK, which the kernel delays on a request/response connection:
/// behind such an origin, 1 MiB responses (`wrk -c8`, one shard) had a p99.9 of
/// 84–94 ms (the access log put the time in the body, not in the head). Acknowledging on
/// every wait took it to 14 ms but cost a tenth of the throughput; acknowledging only the
/// waits longer than 2 ms gave 32–37 ms, longer than 500 µs 22–28 ms at the same
/// throughput (three runs each).
const ACK_NUDGE_AFTER: Duration = Duration::from_micros(500);

/// Readiness reports in a row after which a source that has nothing to splice is given
/// up (see `splice_exact`).
const EMPTY_WAKES_MAX: u32 = 3;

/// Bodies of known length with more than this left after the buffered bytes are spliced
/// (below it, a pipe costs more syscalls than the copy it saves).
pub const SPLICE_MIN: u64 = 64 * 1024;

/// Most body bytes appended to a pending head so that both leave in one `send`.
pub const COALESCE_MAX: usize = 16 * 1024;

/// Input buffers of ended connections, kept by a shard for the next ones (a new
/// connection then costs no allocation and no zeroing). Bounded; shard-local.
#[derive(Debug, Default)]
pub struct BufferPool {
    spare: std::cell::RefCell<Vec<Box<[u8]>>>,
}

/// Most buffers a shard keeps.
pub const BUFFER_POOL_MAX: usize = 1024;

impl BufferPool {
    /// A buffer of exactly `len` bytes (contents unspecified).
    pub fn take(&self, len: usize) -> Box<[u8]> {
        let mut spare = self.spare.borrow_mut();
        match spare.iter().rposition(|b| b.len() == len) {
            Some(i) => spare.swap_remove(i),
            None => vec![0; len].into_boxed_slice(),
        }
    }

    pub fn give(&self, buf: Box<[u8]>) {
        let mut spare = self.spare.borrow_mut();
        if spare.len() < BUFFER_POOL_MAX {
            spare.push(buf);
        }
    }
}

/// A connection (plain or TLS) and its reused input buffer.
pub struct Conn {
    pub stream: Stream,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl Conn {
    /// A connection reading into `buf` (from a [`BufferPool`]).
    pub fn new(stream: Stream, buf: Box<[u8]>) -> Conn {
        Conn {
            stream,
            buf,
            start: 0,
            end: 0,
        }
    }

    /// Closes the socket and hands the buffer back.
    pub fn into_buffer(self) -> Box<[u8]> {
        self.buf
    }

    /// The socket and the buffer, apart (unread bytes are lost).
    pub fn into_parts(self) -> (Stream, Box<[u8]>) {
        (self.stream, self.buf)
    }

    /// Takes the buffer away (nothing may be unconsumed), leaving an empty one that
    /// allocates nothing; [`Conn::restore`] gives it one back before the next read.
    pub fn park(&mut self) -> Box<[u8]> {
        debug_assert!(self.start == self.end);
        self.start = 0;
        self.end = 0;
        std::mem::take(&mut self.buf)
    }

    /// Gives a parked connection a buffer again.
    pub fn restore(&mut self, buf: Box<[u8]>) {
        debug_assert!(self.buf.is_empty());
        self.buf = buf;
    }

    /// Bytes received and not yet consumed.
    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    pub fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.end - self.start);
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Whether the buffer cannot take more bytes.
    pub fn is_full(&self) -> bool {
        self.start == 0 && self.end == self.buf.len()
    }

    /// Reads what the socket has (waiting if nothing); `Ok(0)` is end of stream. Moves
    /// unconsumed bytes to the front first when the end of the buffer is reached.
    pub async fn fill(&mut self) -> io::Result<usize> {
        if self.end == self.buf.len() {
            if self.start == 0 {
                return Err(io::Error::other("input buffer full"));
            }
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = self.stream.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n)
    }
}

/// How a body is written out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// As received (framing included).
    AsReceived,
    /// Chunked in, payload only out (to an HTTP/1.0 client; it reads until close).
    Decode,
    /// Close-delimited in, chunked out (to a kept-alive HTTP/1.1 client).
    Encode,
}

/// Why a body could not be forwarded whole.
#[derive(Debug)]
pub enum BodyError {
    /// Reading the source failed or it ended early.
    Source(io::Error),
    /// The source's chunked framing is invalid.
    Framing(&'static str),
    /// Writing the destination failed.
    Destination(io::Error),
}

/// Writes `out` (a head, maybe empty) and then the body framed by `body` from `src` to
/// `dst`. `out` is cleared. `splice`: the shard's pipes, when large bodies may be spliced
/// (only between two plain sockets).
pub async fn forward(
    src: &mut Conn,
    dst: &mut Stream,
    out: &mut Vec<u8>,
    body: Body,
    coding: Coding,
    splice: Option<&RelayBuffers>,
) -> Result<u64, BodyError> {
    let mut left = match body {
        Body::Length(n) => n,
        _ => 0,
    };
    let mut decoder = Decoder::default();
    let mut moved = 0u64;
    let mut done = matches!(body, Body::None | Body::Length(0));
    let splice = splice.filter(|_| !src.stream.is_tls() && !dst.is_tls());
    while !done {
        // 1. Whatever is buffered.
        let avail = src.data().len();
        if avail > 0 {
            match body {
                Body::None => unreachable!(),
                Body::Length(_) => {
                    let k = left.min(avail as u64) as usize;
                    emit(out, dst, &src.data()[..k]).await?;
                    src.consume(k);
                    left -= k as u64;
                    moved += k as u64;
                    done = left == 0;
                }
                Body::Chunked => {
                    while let Some(piece) = decoder
                        .step(src.data())
                        .map_err(|e| BodyError::Framing(e.0))?
                    {
                        let (n, forward) = match piece {
                            Piece::Data(n) => (n, true),
                            Piece::Framing(n) | Piece::End(n) => (n, coding == Coding::AsReceived),
                        };
                        if forward {
                            emit(out, dst, &src.data()[..n]).await?;
                            moved += n as u64;
                        }
                        src.consume(n);
                        if decoder.is_done() {
                            done = true;
                            break;
                        }
                    }
                }
                Body::UntilClose => {
                    let data = src.data();
                    if coding == Coding::Encode {
                        rewrite::hex(out, data.len() as u64);
                        out.extend_from_slice(b"\r\n");
                        emit(out, dst, data).await?;
                        out.extend_from_slice(b"\r\n");
                    } else {
                        emit(out, dst, data).await?;
                    }
                    moved += avail as u64;
                    src.consume(avail);
                }
            }
            if done {
                break;
            }
        }
        // 2. Send what is pending before waiting for more.
        flush(out, dst).await?;
        if let (Some(buffers), Body::Length(_)) = (splice, body) {
            if left >= SPLICE_MIN {
                // Boxed: its state is allocated for long bodies only (one allocation
                // for 64 KiB or more, spliced), not carried by every session's future.
                Box::pin(splice_exact(src, dst, left, buffers)).await?;
                return Ok(moved + left);
            }
        }
        // 3. Wait for more.
        match src.fill().await {
            Ok(0) if body == Body::UntilClose => {
                if coding == Coding::Encode {
                    out.extend_from_slice(b"0\r\n\r\n");
                }
                break;
            }
            Ok(0) => {
                return Err(BodyError::Source(io::ErrorKind::UnexpectedEof.into()));
            }
            Ok(_) => {}
            Err(e) => return Err(BodyError::Source(e)),
        }
    }
    flush(out, dst).await?;
    Ok(moved)
}

/// Adds `data` to the pending output, or sends both when that would make it large.
async fn emit(out: &mut Vec<u8>, dst: &mut Stream, data: &[u8]) -> Result<(), BodyError> {
    if out.len() + data.len() <= COALESCE_MAX {
        out.extend_from_slice(data);
        return Ok(());
    }
    flush(out, dst).await?;
    dst.write_all(data).await.map_err(BodyError::Destination)
}

/// Sends the pending output (and, on TLS, whatever rustls still holds).
pub async fn flush(out: &mut Vec<u8>, dst: &mut Stream) -> Result<(), BodyError> {
    if !out.is_empty() {
        let r = dst.write_all(out).await;
        out.clear();
        r.map_err(BodyError::Destination)?;
    }
    dst.flush_tls().await.map_err(BodyError::Destination)
}

/// Moves exactly `left` bytes from `src`'s socket to `dst` through a pipe (`src`'s buffer
/// must be empty). When the source has nothing, a readiness poll waits for it (the bytes
/// stay in the socket for the next splice, and the end of stream is seen there); when the
/// destination is full, one byte goes through glommio's write, which waits for room. Both
/// streams are plain.
pub async fn splice_exact(
    src: &mut Conn,
    dst: &mut Stream,
    mut left: u64,
    buffers: &RelayBuffers,
) -> Result<(), BodyError> {
    debug_assert!(src.data().is_empty());
    let pipe = buffers.get().map_err(BodyError::Source)?;
    let (Some(src_fd), Some(dst_fd)) = (src.stream.plain_fd(), dst.plain_fd()) else {
        return Err(BodyError::Source(io::Error::other(
            "splice needs plain sockets",
        )));
    };
    let mut in_pipe = 0usize;
    // A stretch without a byte from the source: when it began, whether the server was
    // sent our ACK in it, and how many readiness reports in a row found nothing.
    let mut stalled: Option<Instant> = None;
    let mut nudged = false;
    let mut empty_wakes = 0u32;
    let bound = src.stream.read_timeout();
    loop {
        while in_pipe > 0 {
            match pipe.drain_into(dst_fd, in_pipe) {
                Ok(0) => return Err(BodyError::Destination(io::ErrorKind::WriteZero.into())),
                Ok(n) => in_pipe -= n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let b = pipe.take_byte().map_err(BodyError::Destination)?;
                    in_pipe -= 1;
                    dst.write_all(&[b]).await.map_err(BodyError::Destination)?;
                }
                Err(e) => return Err(BodyError::Destination(e)),
            }
        }
        if left == 0 {
            buffers.put(pipe);
            return Ok(());
        }
        let want = left.min(pipe.capacity() as u64) as usize;
        match pipe.fill_from(src_fd, want) {
            Ok(0) => return Err(BodyError::Source(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => {
                in_pipe = n;
                left -= n as u64;
                (stalled, nudged, empty_wakes) = (None, false, 0);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // Readable, yet nothing to splice: urgent (out-of-band) data stops
                // `splice` at its mark while the poll keeps reporting it. Not HTTP; end
                // the body rather than spin.
                if empty_wakes >= EMPTY_WAKES_MAX {
                    return Err(BodyError::Source(io::Error::other(
                        "the server's socket stays readable with nothing to splice (urgent data?)",
                    )));
                }
                // Wait until the source has bytes (or its end, or an error) without
                // taking them: they go through the pipe on the next turn. glommio's
                // readiness poll ignores the read timeout: the wait is bounded here, over
                // the whole stretch without progress. The first ACK_NUDGE_AFTER of it
                // ends by sending the server our ACK at once.
                let since = *stalled.get_or_insert_with(Instant::now);
                let left_of_bound = bound.map(|t| t.saturating_sub(since.elapsed()));
                if left_of_bound == Some(Duration::ZERO) {
                    return Err(BodyError::Source(io::ErrorKind::TimedOut.into()));
                }
                let nudge_at = (!nudged).then(|| ACK_NUDGE_AFTER.saturating_sub(since.elapsed()));
                let step = match (nudge_at, left_of_bound) {
                    (Some(n), Some(b)) => Some(n.min(b)),
                    (n, b) => n.or(b),
                };
                let ready = futures_lite::future::or(
                    async { Some(src.stream.tcp().readable().await) },
                    async {
                        match step {
                            Some(t) => glommio::timer::sleep(t).await,
                            None => futures_lite::future::pending::<()>().await,
                        }
                        None
                    },
                )
                .await;
                match ready {
                    Some(Ok(())) => empty_wakes += 1,
                    Some(Err(e)) => return Err(BodyError::Source(e.into())),
                    // The nudge's time, or the bound's (checked on the next turn).
                    None => {
                        if !nudged && since.elapsed() >= ACK_NUDGE_AFTER {
                            nudged = true;
                            let _ = crate::l4::splice::ack_now(src_fd);
                        }
                    }
                }
            }
            Err(e) => return Err(BodyError::Source(e)),
        }
    }
}
