//! The shard's pools of idle server connections, shared by every client of the shard.
//!
//! Owns the sockets of idle connections (one [`IdlePool`] per server of each http
//! backend), the watching of them, and the clean closing of server connections. The
//! decisions (order, bounds, expiry, who may reuse what) are [`crate::upstream::pool`]'s.
//!
//! Watching costs no system call per request: when a connection is returned, one
//! non-blocking read attempt registers the watcher task's waker on the socket's pending
//! read poll (glommio keeps one armed after every short read), so a FIN, bytes or an
//! error on an idle connection wakes the watcher, which closes it at once. The same
//! attempt, made with no waker at checkout, finds no sign of death yet before a request
//! goes on it (a FIN still in flight is covered by the session's free retry). The
//! watcher also closes connections idle for `pool_idle_timeout` and, when the shard
//! stops, every idle connection.
//!
//! Identity: a pooled connection remembers the SNI it was made for when the backend takes
//! it from each request's `Host` (`sni_from_host`), and serves only requests for that
//! name; otherwise every connection to a server is alike (the TLS settings are the
//! server's). An idle TLS connection is watched the same way: session tickets the server
//! sends wake the watcher and are taken in by rustls (the connection stays);
//! `close_notify`, a FIN or bytes close it.
//!
//! Closing: a plain server connection with nothing left to read is closed with
//! `shutdown(SHUT_WR)` (a FIN) and released at once. When unread input may be left (an
//! exchange was cut short, an idle server sent bytes), and always on TLS (a server answers
//! the proxy's `close_notify` with its own), a short task ([`shut`]) sends `close_notify`
//! and FIN and reads and discards what comes back up to the server's FIN, because closing
//! a socket with unread input makes the kernel send an RST.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use futures_lite::{AsyncRead, AsyncReadExt};
use glommio::net::TcpStream;

use crate::tls::Stream;

use crate::config::{Config, HttpReuse, Mode};
use crate::upstream::pool::{Idle, IdlePool, PoolCounters, Want};
use crate::upstream::ServerState;
use crate::worker::Shard;

/// How long, and how many bytes, a closing server connection is drained for.
pub const DRAIN_TIME: Duration = Duration::from_secs(1);
pub const DRAIN_BYTES: usize = 1024 * 1024;

/// The buffer [`drain`] reads and discards through (allocated per drain, which is rare).
const DRAIN_CHUNK: usize = 4096;

/// A server connection between two requests, and the SNI it was made for (only with
/// `sni_from_host`).
pub struct Pooled {
    pub stream: Stream,
    pub sni: Option<Box<str>>,
}

/// Idle connections of every http backend's servers on one shard.
pub struct Pools {
    /// `[backend][server]`; empty for tcp backends.
    pools: Vec<Vec<RefCell<IdlePool<Pooled>>>>,
    /// `pool_idle_timeout` and `pool_max_idle` per backend.
    timeouts: Vec<Duration>,
    max_idle: Vec<usize>,
    /// The watcher task's waker, registered on every idle socket.
    waker: RefCell<Option<Waker>>,
    /// Closing connections still being drained.
    pub draining: Rc<Cell<usize>>,
}

/// What a non-blocking look at an idle socket saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    /// Nothing to read: still open.
    Alive,
    /// The server closed it (or it failed).
    Closed,
    /// The server sent bytes nobody asked for.
    Bytes,
}

fn probe(stream: &mut Stream, cx: &mut Context<'_>) -> Probe {
    let mut buf = [0u8; 64];
    match Pin::new(stream).poll_read(cx, &mut buf) {
        Poll::Pending => Probe::Alive,
        Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => Probe::Closed,
        Poll::Ready(Ok(_)) => Probe::Bytes,
    }
}

impl Pools {
    pub fn new(config: &Config) -> Pools {
        let pools = config
            .backends
            .iter()
            // Only http backends that reuse connections pool them.
            .map(|b| match (b.mode, b.http.reuse) {
                (Mode::Http, r) if r != HttpReuse::Never => {
                    b.servers.iter().map(|_| RefCell::default()).collect()
                }
                _ => Vec::new(),
            })
            .collect();
        Pools {
            pools,
            timeouts: config
                .backends
                .iter()
                .map(|b| b.http.pool_idle_timeout)
                .collect(),
            max_idle: config
                .backends
                .iter()
                .map(|b| b.http.pool_max_idle)
                .collect(),
            waker: RefCell::new(None),
            draining: Rc::new(Cell::new(0)),
        }
    }

    /// Whether any backend pools connections (else no watcher is needed).
    pub fn any(&self) -> bool {
        self.pools.iter().any(|p| !p.is_empty())
    }

    /// Idle connections held for one server.
    pub fn idle(&self, backend: usize, server: usize) -> usize {
        // A backend that never reuses has no pools.
        self.pools
            .get(backend)
            .and_then(|p| p.get(server))
            .map_or(0, |p| p.borrow().len())
    }

    /// Takes a live idle connection to `server` that `want` allows, made for `sni` (with
    /// `sni_from_host`; else `None`); dead ones met on the way are closed.
    pub fn checkout(
        &self,
        backend: usize,
        server: usize,
        want: Want,
        sni: Option<&str>,
        state: &Rc<ServerState>,
    ) -> Option<Idle<Pooled>> {
        let pool = &self.pools[backend][server];
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            let mut idle = pool
                .borrow_mut()
                .checkout(want, |p| p.sni.as_deref() == sni)?;
            match probe(&mut idle.conn.stream, &mut cx) {
                Probe::Alive => return Some(idle),
                p => {
                    PoolCounters::add(&state.pool.closed_by_peer_idle);
                    self.close(idle.conn.stream, p == Probe::Bytes, state);
                }
            }
        }
    }

    /// Returns a connection after a complete exchange (its input buffer was empty).
    pub fn checkin(
        &self,
        shard: &Shard,
        backend: usize,
        server: usize,
        mut conn: Pooled,
        uses: u32,
    ) {
        let state = &shard.backends[backend].servers[server];
        if shard.stopping.get() {
            self.close(conn.stream, false, state);
            return;
        }
        // The idle wait is the pool's: no read timeout may fire into the watcher.
        conn.stream.set_read_timeout(None);
        let seen = {
            let waker = self.waker.borrow();
            let mut cx = Context::from_waker(waker.as_ref().unwrap_or(Waker::noop()));
            probe(&mut conn.stream, &mut cx)
        };
        match seen {
            Probe::Alive => {}
            p => {
                PoolCounters::add(&state.pool.closed_by_peer_idle);
                self.close(conn.stream, p == Probe::Bytes, state);
                return;
            }
        }
        let max_idle = self.max_idle[backend];
        let evicted =
            self.pools[backend][server]
                .borrow_mut()
                .checkin(conn, uses, Instant::now(), max_idle);
        if let Some(old) = evicted {
            PoolCounters::add(&state.pool.evicted);
            self.close(old.stream, false, state);
        }
    }

    /// Closes a server connection with a FIN, draining first when input may be pending
    /// and always on TLS.
    pub fn close(&self, stream: Stream, pending: bool, state: &Rc<ServerState>) {
        self.close_for(stream, pending, Some(state));
    }

    /// Closes a connection no server is accounted for (a purge, a failed handshake's
    /// socket), as [`Pools::close`] would.
    pub fn retire(&self, stream: Stream, pending: bool) {
        self.close_for(stream, pending, None);
    }

    /// `state`: where an unclean close is counted.
    fn close_for(&self, stream: Stream, pending: bool, state: Option<&Rc<ServerState>>) {
        if pending || stream.is_tls() {
            self.close_draining(stream, state);
        } else {
            close_clean(stream);
        }
    }

    fn close_draining(&self, stream: Stream, state: Option<&Rc<ServerState>>) {
        let draining = Rc::clone(&self.draining);
        draining.set(draining.get() + 1);
        let state = state.map(Rc::clone);
        glommio::spawn_local(async move {
            if !shut(stream, DRAIN_TIME, DRAIN_BYTES).await {
                if let Some(state) = state {
                    PoolCounters::add(&state.pool.unclean_closes);
                }
            }
            draining.set(draining.get() - 1);
        })
        .detach();
    }

    /// Watches the idle sockets: closes those that saw a FIN, bytes or an error.
    /// `Ready` when it closed any.
    fn scan(&self, shard: &Shard, cx: &mut Context<'_>) -> Poll<()> {
        {
            let mut w = self.waker.borrow_mut();
            if !w.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *w = Some(cx.waker().clone());
            }
        }
        let mut closed_any = false;
        for (b, servers) in self.pools.iter().enumerate() {
            for (s, pool) in servers.iter().enumerate() {
                let state = &shard.backends[b].servers[s];
                pool.borrow_mut().remove_dead(
                    |conn| match probe(&mut conn.stream, cx) {
                        Probe::Alive => None,
                        p => Some(p),
                    },
                    |conn, p| {
                        closed_any = true;
                        PoolCounters::add(&state.pool.closed_by_peer_idle);
                        // A FIN or an error leaves nothing to read; bytes might.
                        self.close(conn.stream, p == Probe::Bytes, state);
                    },
                );
            }
        }
        if closed_any {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Closes the connections idle too long; returns when the next one will be.
    fn expire(&self, shard: &Shard, now: Instant) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        for (b, servers) in self.pools.iter().enumerate() {
            let (timeout, max_idle) = (self.timeouts[b], self.max_idle[b]);
            for (s, pool) in servers.iter().enumerate() {
                let mut pool = pool.borrow_mut();
                while let Some(conn) = pool.expire(now, timeout, max_idle) {
                    let state = &shard.backends[b].servers[s];
                    PoolCounters::add(&state.pool.expired);
                    self.close(conn.stream, false, state);
                }
                if let Some(t) = pool.next_expiry(timeout, max_idle) {
                    next = Some(next.map_or(t, |n| n.min(t)));
                }
            }
        }
        next
    }

    /// Closes the idle connections to one server (it was marked down or put in MAINT);
    /// returns how many.
    pub fn purge_server(&self, backend: usize, server: usize) -> usize {
        let Some(pool) = self.pools.get(backend).and_then(|p| p.get(server)) else {
            return 0;
        };
        let mut n = 0;
        for conn in pool.borrow_mut().drain() {
            self.retire(conn.stream, false);
            n += 1;
        }
        n
    }

    /// Closes every idle connection (the shard is stopping).
    fn purge(&self) {
        for servers in &self.pools {
            for pool in servers {
                for conn in pool.borrow_mut().drain() {
                    self.retire(conn.stream, false);
                }
            }
        }
    }

    /// The shortest wait before a returned connection may have to go: the shortest
    /// `pool_idle_timeout` of the pooling backends, or the surplus grace.
    fn shortest_timeout(&self) -> Duration {
        self.pools
            .iter()
            .zip(&self.timeouts)
            .filter(|(p, _)| !p.is_empty())
            .map(|(_, t)| *t)
            .min()
            .unwrap_or(Duration::from_secs(1))
            .min(crate::upstream::pool::SURPLUS_GRACE)
    }
}

/// Reads and discards what the peer still sends, up to its FIN, for at most `time` and
/// `bytes`, then releases the socket (whose write side the caller has shut). True when
/// the FIN came (or the connection failed): then closing sends no RST.
pub async fn drain(mut stream: TcpStream, time: Duration, bytes: usize) -> bool {
    // On the heap: an array here would be part of the future of every task that may
    // drain, sessions included, for their whole life.
    let mut buf = vec![0u8; DRAIN_CHUNK];
    let start = Instant::now();
    let mut read = 0usize;
    loop {
        let left = time.saturating_sub(start.elapsed());
        if left.is_zero() || read >= bytes {
            return false;
        }
        let _ = stream.set_read_timeout(Some(left));
        match stream.read(&mut buf).await {
            Ok(0) => return true,
            Ok(n) => read += n,
            Err(e) => return e.kind() != io::ErrorKind::TimedOut,
        }
    }
}

/// FIN, then release: for plain connections with nothing left to read (a TLS one needs
/// [`shut`]). `close` alone would also send the FIN, but the explicit `shutdown` is
/// cheaper in all: without it, `ab -c64` without keep-alive cost 25.5–27.5 µs of proxy
/// CPU per request instead of 22.0–24.6 (six runs of each, interleaved).
pub fn close_clean(stream: Stream) {
    debug_assert!(!stream.is_tls(), "a TLS stream is closed by shut");
    let _ = crate::l4::splice::shutdown_write(stream.tcp().as_raw_fd());
    drop(stream);
}

/// Closes a connection without an RST: `close_notify` (TLS; flushed within `time`),
/// FIN, then reads and discards what the peer still sends up to its FIN, for at most
/// `time` and `bytes` in all. True when the peer's FIN came (or the connection failed).
pub async fn shut(mut stream: Stream, time: Duration, bytes: usize) -> bool {
    use futures_lite::AsyncWriteExt;
    let start = Instant::now();
    let closed = stream.is_tls()
        && futures_lite::future::or(async { stream.close().await.is_ok() }, async {
            glommio::timer::sleep(time).await;
            false
        })
        .await;
    if !closed {
        let _ = crate::l4::splice::shutdown_write(stream.tcp().as_raw_fd());
    }
    drain(
        stream.into_tcp(),
        time.saturating_sub(start.elapsed()),
        bytes,
    )
    .await
}

/// The shard's pool watcher: runs until the shard stops, then closes every idle
/// connection.
pub async fn watch(shard: Rc<Shard>) {
    let stopping = shard.stopping_signal.register();
    let pools = &shard.http_pools;
    // A connection returned while the watcher sleeps expires no sooner than this after
    // it, so waking at least this often never misses an expiry.
    let tick = pools.shortest_timeout();
    loop {
        let now = Instant::now();
        let wake = pools
            .expire(&shard, now)
            .map_or(now + tick, |t| t.min(now + tick));
        let stop = futures_lite::future::or(
            async {
                futures_lite::future::poll_fn(|cx| pools.scan(&shard, cx)).await;
                false
            },
            stopping.sleep(wake.saturating_duration_since(now)),
        )
        .await;
        if stop {
            pools.purge();
            return;
        }
    }
}
