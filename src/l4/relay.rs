//! The bidirectional byte relay between a client and a server connection.
//!
//! Owns both directions of one tunnel and its inactivity clock. Two engines move the bytes
//! behind one state machine, so they share every rule (half-close, timeouts, errors):
//! - [`Forwarding::Splice`]: `splice(2)` socket → pipe → socket, never copying to user space.
//!   glommio has no readiness wait for raw descriptors, so when a socket would block the
//!   engine moves a single byte through glommio's own awaitable read or write: that arms the
//!   io_uring poll, and the byte keeps its place in the stream. Once a splice came back
//!   short (the source is empty), the next wait reads through glommio into the shard's
//!   scratch buffer: a small message is sent on at once (read + send), anything the socket
//!   does not take, or a full buffer, goes into the pipe and splicing resumes.
//! - [`Forwarding::Copy`]: a user-space buffer per direction, for streams splice cannot serve
//!   (always when either side is TLS: bytes are decrypted and encrypted in user space).
//!
//! Invariants: bytes leave in the order they arrived; a FIN from one side becomes a
//! `shutdown(SHUT_WR)` on the other only after every byte before it was delivered; the
//! relay never waits longer than the bound in force (`timeout_tunnel` while both directions
//! are open; `timeout_server_fin` once the client has closed its side, `timeout_client_fin`
//! once the server has, as HAProxy's `client-fin`/`server-fin`). One poll moves at most
//! [`POLL_BUDGET_CHUNKS`] chunks per direction, then yields, so one fast tunnel cannot starve
//! the shard.

use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::timer::Timer;

use super::splice::{Pipe, RelayBuffers};
use crate::tls::Stream;
use crate::worker::abort::{AbortHandle, KillRegistration};

/// Chunks one direction may move in one poll before yielding to other tasks.
pub const POLL_BUDGET_CHUNKS: u32 = 16;

/// Size of the user-space buffer of one direction in copy mode.
pub const COPY_BUFFER_BYTES: usize = 16 * 1024;

/// How the bytes are moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forwarding {
    Splice,
    Copy,
}

/// Which end of the tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

/// Inactivity bounds of a tunnel.
#[derive(Debug, Clone, Copy)]
pub struct RelayTimeouts {
    /// While both directions are open (`timeout_tunnel`).
    pub idle: Duration,
    /// Once the server has closed its side: waiting on the client.
    pub client_fin: Duration,
    /// Once the client has closed its side: waiting on the server.
    pub server_fin: Duration,
}

/// Why a relay ended. Only `Closed` is a clean end.
#[derive(Debug)]
pub enum RelayEnd {
    /// Both sides sent FIN and every byte was delivered.
    Closed,
    /// Nothing moved for the bound in force; `half_closed` is the side that had already
    /// closed, if any.
    Timeout { half_closed: Option<Side> },
    /// An I/O error on `side` (reset, broken pipe).
    Error { side: Side, error: io::Error },
    /// The shard told every session to end (grace period over).
    Aborted,
    /// The server's sessions were shut down (it was marked down, or by the operator).
    Killed,
}

/// Bytes moved, per direction.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RelayBytes {
    pub client_to_server: u64,
    pub server_to_client: u64,
}

/// Relays until both sides have closed, one fails, or the tunnel is idle too long.
pub async fn relay(
    client: &mut Stream,
    server: &mut Stream,
    forwarding: Forwarding,
    timeouts: RelayTimeouts,
    buffers: &RelayBuffers,
    abort: &AbortHandle,
    kill: &KillRegistration<'_>,
) -> (RelayEnd, RelayBytes) {
    let forwarding = if client.is_tls() || server.is_tls() {
        Forwarding::Copy
    } else {
        forwarding
    };
    let engines = match forwarding {
        Forwarding::Splice => match (Engine::splice(buffers), Engine::splice(buffers)) {
            (Ok(a), Ok(b)) => Some((a, b)),
            // Out of descriptors for pipes: degrade to copying rather than refuse.
            (a, b) => {
                a.into_iter().chain(b).for_each(|e| e.recycle(buffers));
                None
            }
        },
        Forwarding::Copy => None,
    };
    let (up, down) = engines.unwrap_or_else(|| (Engine::copy(buffers), Engine::copy(buffers)));
    let mut relay = Relay {
        abort,
        kill,
        buffers,
        client,
        server,
        up: Direction::new(up, Side::Client),
        down: Direction::new(down, Side::Server),
        timer: Timer::new(timeouts.idle),
        bound: timeouts.idle,
        last_activity: Instant::now(),
        timeouts,
    };
    let out = (&mut relay).await;
    let Relay { up, down, .. } = relay;
    up.engine.recycle(buffers);
    down.engine.recycle(buffers);
    out
}

struct Relay<'a> {
    abort: &'a AbortHandle,
    kill: &'a KillRegistration<'a>,
    buffers: &'a RelayBuffers,
    client: &'a mut Stream,
    server: &'a mut Stream,
    /// Client → server.
    up: Direction,
    /// Server → client.
    down: Direction,
    /// Fires at the earliest possible expiry; re-armed lazily when it fires early.
    timer: Timer,
    /// Inactivity bound in force.
    bound: Duration,
    last_activity: Instant,
    timeouts: RelayTimeouts,
}

impl Relay<'_> {
    fn bytes(&self) -> RelayBytes {
        RelayBytes {
            client_to_server: self.up.bytes,
            server_to_client: self.down.bytes,
        }
    }

    fn half_closed(&self) -> Option<Side> {
        match (self.up.done, self.down.done) {
            (true, false) => Some(Side::Client),
            (false, true) => Some(Side::Server),
            _ => None,
        }
    }
}

impl Future for Relay<'_> {
    type Output = (RelayEnd, RelayBytes);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.abort.poll_fired(cx) {
            return Poll::Ready((RelayEnd::Aborted, this.bytes()));
        }
        if this.kill.poll_killed(cx) {
            return Poll::Ready((RelayEnd::Killed, this.bytes()));
        }
        let mut progressed = false;
        let mut scratch = this.buffers.scratch();
        if !this.up.done {
            if let Poll::Ready(Err((side, error))) =
                this.up
                    .poll(this.client, this.server, cx, &mut progressed, &mut scratch)
            {
                return Poll::Ready((RelayEnd::Error { side, error }, this.bytes()));
            }
        }
        if !this.down.done {
            if let Poll::Ready(Err((side, error))) =
                this.down
                    .poll(this.server, this.client, cx, &mut progressed, &mut scratch)
            {
                return Poll::Ready((RelayEnd::Error { side, error }, this.bytes()));
            }
        }
        if this.up.done && this.down.done {
            return Poll::Ready((RelayEnd::Closed, this.bytes()));
        }

        let now = Instant::now();
        if progressed {
            this.last_activity = now;
        }
        let bound = match this.half_closed() {
            None => this.timeouts.idle,
            Some(Side::Client) => this.timeouts.server_fin.min(this.timeouts.idle),
            Some(Side::Server) => this.timeouts.client_fin.min(this.timeouts.idle),
        };
        if bound != this.bound {
            this.bound = bound;
            let deadline = this.last_activity + bound;
            this.timer.reset(deadline.saturating_duration_since(now));
        }
        loop {
            match Pin::new(&mut this.timer).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(_) => {
                    let now = Instant::now();
                    let deadline = this.last_activity + this.bound;
                    if now >= deadline {
                        let end = RelayEnd::Timeout {
                            half_closed: this.half_closed(),
                        };
                        return Poll::Ready((end, this.bytes()));
                    }
                    this.timer.reset(deadline - now);
                }
            }
        }
    }
}

/// One direction of the tunnel: reads from `from`, writes to the other side.
struct Direction {
    engine: Engine,
    from: Side,
    /// The source sent FIN.
    eof: bool,
    /// FIN seen, every byte delivered, and the destination shut down for writing.
    done: bool,
    bytes: u64,
}

enum Engine {
    Splice {
        pipe: Pipe,
        /// Bytes sitting in the pipe.
        in_pipe: usize,
        /// A byte taken out of the pipe to wait for writability through glommio; it is
        /// the next byte of the stream.
        held: Option<u8>,
        /// The last fill returned less than asked: the source is empty for now, so the
        /// next fill goes straight to waiting instead of a splice that would fail.
        src_drained: bool,
    },
    Copy {
        buf: Box<[u8]>,
        /// `buf[start..end]` is read and not yet written.
        start: usize,
        end: usize,
    },
}

impl Engine {
    fn splice(buffers: &RelayBuffers) -> io::Result<Engine> {
        // `relay` chooses splice only between plain sockets (see `Stream::plain_fd`).
        Ok(Engine::Splice {
            pipe: buffers.get()?,
            in_pipe: 0,
            held: None,
            src_drained: false,
        })
    }

    /// Gives an empty pipe back to the pool; a pipe with bytes left in it is closed.
    /// Gives the engine's pipe (only when empty) or buffer back to the shard.
    fn recycle(self, buffers: &RelayBuffers) {
        match self {
            Engine::Splice {
                pipe,
                in_pipe: 0,
                held: None,
                ..
            } => buffers.put(pipe),
            Engine::Copy { buf, .. } => buffers.put_copy_buffer(buf),
            Engine::Splice { .. } => {}
        }
    }

    fn copy(buffers: &RelayBuffers) -> Engine {
        Engine::Copy {
            buf: buffers.copy_buffer(COPY_BUFFER_BYTES),
            start: 0,
            end: 0,
        }
    }
}

type DirResult = Result<(), (Side, io::Error)>;

impl Direction {
    fn new(engine: Engine, from: Side) -> Self {
        Direction {
            engine,
            from,
            eof: false,
            done: false,
            bytes: 0,
        }
    }

    fn to(&self) -> Side {
        match self.from {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        }
    }

    /// Moves bytes until the source would block, the destination would block, or the
    /// budget is spent. `Ready(Ok)` once the direction is finished.
    fn poll(
        &mut self,
        src: &mut Stream,
        dst: &mut Stream,
        cx: &mut Context<'_>,
        progressed: &mut bool,
        scratch: &mut [u8],
    ) -> Poll<DirResult> {
        let (from, to) = (self.from, self.to());
        let src_fd = src.tcp().as_raw_fd();
        let dst_fd = dst.tcp().as_raw_fd();
        let mut budget = POLL_BUDGET_CHUNKS;
        match &mut self.engine {
            Engine::Splice {
                pipe,
                in_pipe,
                held,
                src_drained,
            } => loop {
                if let Some(b) = *held {
                    match Pin::new(&mut *dst).poll_write(cx, &[b]) {
                        Poll::Ready(Ok(0)) => {
                            return Poll::Ready(Err((to, io::ErrorKind::WriteZero.into())))
                        }
                        Poll::Ready(Ok(_)) => {
                            *held = None;
                            self.bytes += 1;
                            *progressed = true;
                        }
                        Poll::Ready(Err(e)) => return Poll::Ready(Err((to, e))),
                        Poll::Pending => return Poll::Pending,
                    }
                }
                while *in_pipe > 0 {
                    match pipe.drain_into(dst_fd, *in_pipe) {
                        Ok(0) => {
                            return Poll::Ready(Err((to, io::ErrorKind::WriteZero.into())));
                        }
                        Ok(n) => {
                            *in_pipe -= n;
                            self.bytes += n as u64;
                            *progressed = true;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            *held = Some(pipe.take_byte().map_err(|e| (to, e))?);
                            *in_pipe -= 1;
                            break;
                        }
                        Err(e) => return Poll::Ready(Err((to, e))),
                    }
                }
                if held.is_some() {
                    continue;
                }
                if self.eof {
                    return finish(dst, to, cx).map(|r| r.map(|()| self.done = true));
                }
                if budget == 0 {
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                budget -= 1;
                let filled = if *src_drained {
                    *src_drained = false;
                    Err(io::ErrorKind::WouldBlock.into())
                } else {
                    pipe.fill_from(src_fd, pipe.capacity())
                };
                match filled {
                    Ok(0) => {
                        self.eof = true;
                        *progressed = true;
                    }
                    Ok(n) => {
                        *in_pipe = n;
                        *src_drained = n < pipe.capacity();
                        *progressed = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        // The source is empty: wait through glommio's read, which also
                        // reads what arrives. A short read (a small message) is sent on
                        // at once, two syscalls in all; what the socket does not take, or
                        // a full buffer (a bulk stream: back to splicing), goes to the pipe.
                        let cap = scratch.len().min(pipe.capacity());
                        match Pin::new(&mut *src).poll_read(cx, &mut scratch[..cap]) {
                            Poll::Ready(Ok(0)) => {
                                self.eof = true;
                                *progressed = true;
                            }
                            Poll::Ready(Ok(n)) => {
                                *progressed = true;
                                let sent = if n < cap {
                                    super::splice::send_now(dst_fd, &scratch[..n])
                                        .map_err(|e| (to, e))?
                                } else {
                                    0
                                };
                                self.bytes += sent as u64;
                                if sent < n {
                                    pipe.put_all(&scratch[sent..n]).map_err(|e| (from, e))?;
                                    *in_pipe = n - sent;
                                }
                                *src_drained = n < cap;
                            }
                            Poll::Ready(Err(e)) => return Poll::Ready(Err((from, e))),
                            Poll::Pending => return Poll::Pending,
                        }
                    }
                    Err(e) => return Poll::Ready(Err((from, e))),
                }
            },
            Engine::Copy { buf, start, end } => loop {
                while *start < *end {
                    match Pin::new(&mut *dst).poll_write(cx, &buf[*start..*end]) {
                        Poll::Ready(Ok(0)) => {
                            return Poll::Ready(Err((to, io::ErrorKind::WriteZero.into())))
                        }
                        Poll::Ready(Ok(n)) => {
                            *start += n;
                            self.bytes += n as u64;
                            *progressed = true;
                        }
                        Poll::Ready(Err(e)) => return Poll::Ready(Err((to, e))),
                        Poll::Pending => return Poll::Pending,
                    }
                }
                *start = 0;
                *end = 0;
                // TLS: what rustls holds goes out before the source is read again.
                if dst.is_tls() {
                    match Pin::new(&mut *dst).poll_flush(cx) {
                        Poll::Ready(Ok(())) => {}
                        Poll::Ready(Err(e)) => return Poll::Ready(Err((to, e))),
                        Poll::Pending => return Poll::Pending,
                    }
                }
                if self.eof {
                    return finish(dst, to, cx).map(|r| r.map(|()| self.done = true));
                }
                if budget == 0 {
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                budget -= 1;
                match Pin::new(&mut *src).poll_read(cx, buf) {
                    Poll::Ready(Ok(0)) => {
                        self.eof = true;
                        *progressed = true;
                    }
                    Poll::Ready(Ok(n)) => {
                        *end = n;
                        *progressed = true;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err((from, e))),
                    Poll::Pending => return Poll::Pending,
                }
            },
        }
    }
}

/// Passes the FIN on: the destination will read end of stream after the last byte (on
/// TLS, after a `close_notify`, which may wait for room in the socket).
fn finish(dst: &mut Stream, to: Side, cx: &mut Context<'_>) -> Poll<DirResult> {
    if dst.is_tls() {
        return Pin::new(dst).poll_close(cx).map_err(|e| (to, e));
    }
    Poll::Ready(super::splice::shutdown_write(dst.tcp().as_raw_fd()).map_err(|e| (to, e)))
}
