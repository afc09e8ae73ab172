//! A shard at work: its listeners, accept loops and sessions.
//!
//! Owns everything one shard holds: its `SO_REUSEPORT` listeners (one per frontend bind),
//! its view of the backends, its statistics, its rustls configurations (whose session
//! caches are the shard's own). All of it lives in one executor thread and
//! is shared between that thread's tasks with `Rc`/`Cell`, never with another thread.
//! What crosses threads is the stop request ([`StopFlag`]), the messages of the [`mesh`]
//! (server status from its owning shard, operator commands, discovered addresses), both
//! read on the shard's 50 ms control tick, and the shard's statistics snapshots and
//! access log records, pushed into its own lock-free rings ([`crate::stats`]). The
//! servers this shard owns are checked by its own tasks (`upstream::check`).
//!
//! Stopping: the accept loops end (each waits with a readiness poll that the stop
//! cancels) and `stopping_signal` fires (the pool watcher and the health checkers end);
//! `close_idle` fires (http connections idle between requests close, busy ones close
//! after their response) and the listeners are shut down, so connections still in the
//! backlog are refused at once; established sessions run on until they end or
//! `global.grace` has passed; then the shard's [`abort::AbortSignal`] fires, every
//! remaining session ends and closes its sockets, and the shard returns with no session
//! left behind. Idle pooled server connections are closed when the stop begins.
//!
//! Retiring (a reload replaced this shard's generation): the same, except that the
//! listeners stay open for the next generation, which accepts on them already, and idle
//! http connections are not closed (each closes after its next response, or at its
//! keep-alive timeout), unless the process stops meanwhile.

use std::cell::Cell;
use std::os::fd::IntoRawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::net::TcpListener;

pub mod abort;
pub mod limit;
pub mod mesh;

use crate::config::{Config, Mode, Observe};
use crate::stats::Fe;
use crate::upstream::{shard_backends, BackendState};
use abort::AbortSignal;

/// How often a shard looks at the stop flag. Control plane only; bounds stop latency.
pub const STOP_POLL_INTERVAL: Duration = Duration::from_millis(50);

/// While draining, how often a shard counts its remaining sessions. Control plane only.
pub const DRAIN_POLL_INTERVAL: Duration = Duration::from_millis(10);

/// After an accept error such as `EMFILE`, wait this long before accepting again, so an
/// exhausted process backs off instead of spinning.
pub const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Accept errors in a row (other than resource exhaustion) after which an accept loop
/// backs off: one failed connection is no reason to wait, a stream of them is.
pub const ACCEPT_FAILURES_BEFORE_BACKOFF: u32 = 16;

/// Connections an accept loop takes in a row before it lets the shard's other tasks run.
pub const ACCEPT_BURST: u32 = 64;

/// The cross-thread stop request: set once by the control side, read by every shard.
/// A stop ends the process's work; a retirement (a reload replaced this generation of
/// shards) keeps the listening sockets open for the next one, and lets kept-alive client
/// connections finish their next exchange instead of closing them while idle.
#[derive(Debug, Default)]
pub struct StopFlag(AtomicU8);

/// Bits of a [`StopFlag`].
const STOP: u8 = 1;
const RETIRE: u8 = 2;

impl StopFlag {
    /// Requests a stop (also of a generation retiring: its idle connections close now).
    pub fn request(&self) {
        self.0.fetch_or(STOP, Ordering::AcqRel);
    }

    /// Requests a retirement.
    pub fn retire(&self) {
        self.0.fetch_or(RETIRE, Ordering::AcqRel);
    }

    /// Whether a stop or a retirement was requested.
    pub fn is_requested(&self) -> bool {
        self.0.load(Ordering::Acquire) != 0
    }

    /// Whether a stop (not only a retirement) was requested.
    pub fn is_stop(&self) -> bool {
        self.0.load(Ordering::Acquire) & STOP != 0
    }

    /// Whether a reload retired this generation (whatever came after): its listening
    /// sockets belong to the next generation, which still accepts on them.
    pub fn is_retired(&self) -> bool {
        self.0.load(Ordering::Acquire) & RETIRE != 0
    }
}

/// Everything one shard owns.
pub struct Shard {
    pub id: usize,
    pub config: Arc<Config>,
    /// Indexed like `config.backends`.
    pub backends: Vec<Rc<BackendState>>,
    /// Sessions open on this shard (what a stop waits for).
    pub active: Cell<u64>,
    /// Pipes and the scratch buffer the relays of this shard share.
    pub relay_buffers: crate::l4::splice::RelayBuffers,
    /// Input buffers of http connections, reused across connections.
    pub http_buffers: crate::http::body::BufferPool,
    /// Idle server connections of the http backends, shared by all clients of the shard.
    pub http_pools: crate::http::pool::Pools,
    /// Fired when the grace period after a stop is over: every session ends.
    pub abort: Rc<AbortSignal>,
    /// Fired when the shard begins to stop or retire: the accept loops, the pool watcher
    /// and the health checkers end.
    pub stopping_signal: Rc<AbortSignal>,
    /// Fired when the shard stops (not when it retires): http connections idle between
    /// requests close at once.
    pub close_idle: Rc<AbortSignal>,
    /// Set once the shard stops accepting.
    pub stopping: Cell<bool>,
    /// Channels to the other shards and the control thread.
    pub mesh: mesh::Mesh,
    /// Counters and latency histograms, published to the control thread on the tick.
    pub stats: crate::stats::ShardStats,
    /// rustls configurations of the TLS frontends and servers, with this shard's session
    /// caches.
    pub tls: crate::tls::ShardTls,
    /// This shard's share of `global.maxconn` and of each frontend's `maxconn`.
    pub limits: limit::Limits,
}

impl Shard {
    pub fn new(
        id: usize,
        shards: usize,
        config: Arc<Config>,
        mesh: mesh::Mesh,
        stats: crate::stats::ShardStats,
    ) -> Shard {
        let backends = shard_backends(&config, id, shards);
        let http_pools = crate::http::pool::Pools::new(&config);
        let tls = crate::tls::ShardTls::new(&config);
        Shard {
            limits: limit::Limits::new(&config, id, shards),
            tls,
            id,
            config,
            backends,
            active: Cell::new(0),
            relay_buffers: Default::default(),
            http_buffers: Default::default(),
            http_pools,
            abort: Default::default(),
            stopping_signal: Default::default(),
            close_idle: Default::default(),
            stopping: Cell::new(false),
            mesh,
            stats,
        }
    }

    /// Records a finished request (http) or session (tcp) that `ender` ended: its
    /// statistics, and its access log line when the log is on (`log`: the record begun
    /// for it, holding the client and the request line).
    pub fn record(
        &self,
        frontend: usize,
        txn: &crate::stats::Txn,
        ender: crate::stats::Ender,
        log: Option<&mut crate::stats::log::LogRecord>,
    ) {
        let stats = &self.stats;
        let tt = stats.finish(frontend, txn, ender, Instant::now());
        let Some(log) = log else {
            return;
        };
        log.fill(txn, tt, ender, &stats.clock);
        let backend = txn.backend.map(|b| &self.backends[b]);
        log.conns = [
            self.active.get() as u32,
            stats.frontends[frontend].get(Fe::CurrentSessions as usize) as u32,
            backend.map_or(0, |b| b.servers.iter().map(|s| s.active()).sum()),
            backend
                .zip(txn.server)
                .map_or(0, |(b, s)| b.servers[s].active()),
        ];
        stats.log(*log);
    }

    /// Passive checks: records one outcome of live traffic to `server`; at its
    /// `error_limit` errors in a row, tells the server's owning shard.
    pub fn observe(&self, server: &crate::upstream::ServerState, layer: Observe, ok: bool) {
        if server.observed(layer, ok) {
            let owner = crate::upstream::owner_shard(
                &self.config,
                server.backend,
                server.index,
                self.mesh.shards(),
            );
            self.mesh.send_to(
                owner,
                mesh::ShardMsg::Errors {
                    backend: server.backend,
                    server: server.index,
                },
            );
        }
    }
}

/// A listening socket handed to a shard, with the frontend it serves.
pub struct ShardListener {
    pub frontend: usize,
    pub listener: std::net::TcpListener,
}

/// Runs a shard until `stop` is requested and its sessions have drained (or the grace
/// period ran out and the rest were aborted).
pub async fn run(shard: Rc<Shard>, listeners: Vec<ShardListener>, stop: Arc<StopFlag>) {
    let mut loops = Vec::with_capacity(listeners.len());
    let mut listening_fds = Vec::with_capacity(listeners.len());
    // The listeners outlive their accept loops: a stop shuts their sockets down after.
    let mut listeners_kept = Vec::with_capacity(listeners.len());
    for l in listeners {
        let fd = l.listener.into_raw_fd();
        listening_fds.push(fd);
        // SAFETY: `fd` is a bound, listening TCP socket we own and give to glommio whole.
        let listener = Rc::new(unsafe { <TcpListener as std::os::fd::FromRawFd>::from_raw_fd(fd) });
        listeners_kept.push(Rc::clone(&listener));
        let task = glommio::spawn_local(accept_loop(Rc::clone(&shard), l.frontend, listener));
        loops.push(task);
    }
    let listeners = listeners_kept;
    let watcher = shard
        .http_pools
        .any()
        .then(|| glommio::spawn_local(crate::http::pool::watch(Rc::clone(&shard))));
    let checkers = crate::upstream::check::start(&shard);
    let interval = shard.config.admin.stats_interval;
    let mut published = Instant::now();
    while !stop.is_requested() {
        glommio::timer::sleep(STOP_POLL_INTERVAL).await;
        while let Some(msg) = shard.mesh.try_recv() {
            crate::upstream::check::on_message(&shard, msg);
        }
        if published.elapsed() >= interval {
            published = Instant::now();
            shard.stats.publish(shard.id, &shard.backends);
        }
    }

    // Stop accepting: each accept loop waits on a readiness poll, which the signal
    // cancels without taking a connection from the socket. A retiring shard leaves its
    // sockets to the next generation, which polls them already; a stopping one shuts them
    // down, so that connections still in the backlog are refused now rather than left to
    // wait for the drain.
    let retiring = stop.is_retired();
    shard.stopping.set(true);
    shard.stopping_signal.fire();
    for task in loops {
        task.await;
    }
    if !retiring {
        shard.close_idle.fire();
        for fd in &listening_fds {
            // SAFETY: shutdown on a listening descriptor this shard still holds.
            unsafe { libc::shutdown(*fd, libc::SHUT_RD) };
        }
    }
    drop(listeners);

    // Drain: sessions end by themselves until the grace period is over; then every one
    // still running is told to stop, and ends on its next poll.
    let grace = shard.config.global.grace;
    let start = Instant::now();
    let mut idle_closed = !retiring;
    while shard.active.get() > 0 && start.elapsed() < grace {
        if !idle_closed && stop.is_stop() {
            // The process stops while this generation drains: idle connections go now.
            idle_closed = true;
            shard.close_idle.fire();
        }
        glommio::timer::sleep(DRAIN_POLL_INTERVAL).await;
    }
    if shard.active.get() > 0 {
        eprintln!(
            "ringproxy: shard {}: grace period of {:?} over, closing {} session(s)",
            shard.id,
            grace,
            shard.active.get()
        );
        shard.abort.fire();
        // Sessions still connecting finish their (bounded) connect first.
        while shard.active.get() > 0 {
            glommio::timer::sleep(DRAIN_POLL_INTERVAL).await;
        }
    }
    // The pool watcher closed the idle server connections when the stop began; closing
    // connections that are draining end within their own bound.
    if let Some(w) = watcher {
        w.await;
    }
    for c in checkers {
        c.await;
    }
    while shard.http_pools.draining.get() > 0 {
        glommio::timer::sleep(DRAIN_POLL_INTERVAL).await;
    }
}

/// Whether an accept error means the process is short of a resource (then accepting
/// backs off) rather than one connection having failed (then the next accept goes on).
fn is_resource_exhaustion(e: &glommio::GlommioError<()>) -> bool {
    let glommio::GlommioError::IoError(io) = e else {
        return false;
    };
    matches!(
        io.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Whether an accept error means the listening socket no longer listens.
fn listener_gone(e: &glommio::GlommioError<()>) -> bool {
    let glommio::GlommioError::IoError(io) = e else {
        return false;
    };
    matches!(
        io.raw_os_error(),
        Some(libc::EINVAL | libc::EBADF | libc::ENOTSOCK)
    )
}

/// Accepts on one listener until the shard stops. Waiting is a readiness poll, then
/// connections are taken with non-blocking `accept4` until none is left: a stop cancels
/// the poll, which (unlike an io_uring accept) never holds a connection the kernel gave
/// it, so a retiring generation hands the socket's backlog to the next one whole.
async fn accept_loop(shard: Rc<Shard>, frontend: usize, listener: Rc<TcpListener>) {
    let stopping = shard.stopping_signal.register();
    // Accept errors so far: the first and every thousandth are reported.
    let mut errors = 0u64;
    // Connections taken in a row without yielding to the sessions.
    let mut burst = 0u32;
    // Accept errors since the last success.
    let mut failing = 0u32;
    while !shard.stopping.get() {
        // At its maxconn the shard takes no connection until one of its sessions ends
        // (worker::limit): new ones wait in the backlog.
        let Some(slot) = shard.limits.try_admit(frontend) else {
            if !shard.limits.room(frontend, &stopping).await {
                return;
            }
            continue;
        };
        match listener.try_accept() {
            Some(Ok(stream)) => {
                failing = 0;
                spawn_session(&shard, frontend, stream, slot);
                burst += 1;
                if burst >= ACCEPT_BURST {
                    burst = 0;
                    glommio::yield_if_needed().await;
                }
            }
            Some(Err(e)) => {
                drop(slot);
                errors += 1;
                if listener_gone(&e) {
                    // Shut down by the stop of the process (perhaps by a generation that
                    // was retiring when it came): nothing more to accept.
                    return;
                }
                if is_resource_exhaustion(&e) {
                    if errors == 1 || errors.is_multiple_of(1000) {
                        eprintln!("ringproxy: shard {}: accept: {e} (backing off)", shard.id);
                    }
                    if stopping.sleep(ACCEPT_ERROR_BACKOFF).await {
                        return;
                    }
                } else {
                    // One connection failed (aborted before the accept): go on. Errors
                    // without a success between them are not that: back off.
                    failing += 1;
                    if failing >= ACCEPT_FAILURES_BEFORE_BACKOFF {
                        failing = 0;
                        if stopping.sleep(ACCEPT_ERROR_BACKOFF).await {
                            return;
                        }
                    }
                }
            }
            None => {
                drop(slot);
                burst = 0;
                let ready =
                    futures_lite::future::or(async { listener.readable().await.is_ok() }, async {
                        stopping.fired().await;
                        false
                    })
                    .await;
                if !ready && !shard.stopping.get() {
                    // The poll failed: do not spin on it.
                    glommio::timer::sleep(ACCEPT_ERROR_BACKOFF).await;
                }
            }
        }
    }
}

fn spawn_session(
    shard: &Rc<Shard>,
    frontend: usize,
    stream: glommio::net::TcpStream,
    slot: limit::Admission,
) {
    let admitted = Admitted::new(Rc::clone(shard), frontend, slot);
    // Each mode's session is the task's future itself: no wrapper holding copies of its
    // arguments, and a task is as large as its own mode's largest state (glommio
    // allocates that for the task's whole life), not the other mode's.
    match shard.config.frontends[frontend].mode {
        Mode::Tcp => glommio::spawn_local(crate::l4::serve(admitted, stream)).detach(),
        Mode::Http => glommio::spawn_local(crate::http::serve(admitted, stream)).detach(),
    };
}

/// An accepted client connection, counted open (the shard's active sessions, the
/// frontend's current sessions) and holding its `maxconn` slots for as long as it lives:
/// the session's task owns it, so the counts follow the task however it ends.
pub struct Admitted {
    pub shard: Rc<Shard>,
    pub frontend: usize,
    _slot: limit::Admission,
}

impl Admitted {
    fn new(shard: Rc<Shard>, frontend: usize, slot: limit::Admission) -> Admitted {
        shard.active.set(shard.active.get() + 1);
        let fe = &shard.stats.frontends[frontend];
        fe.add(Fe::Sessions as usize, 1);
        fe.open(Fe::CurrentSessions as usize);
        Admitted {
            shard,
            frontend,
            _slot: slot,
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let shard = &self.shard;
        shard.stats.frontends[self.frontend].close(Fe::CurrentSessions as usize);
        shard.active.set(shard.active.get() - 1);
    }
}
