//! Health checks at run time: the probes, the owning shard's check loops, and what every
//! shard does with the mesh's messages about a server ([`on_message`]: its status, its
//! administrative state, passive-check errors, a discovered address, an operator's weight
//! or shutdown of its sessions; and the control thread's `Sync`, answered once the
//! messages before it are applied).
//!
//! Owns the I/O side of health; the decisions are [`super::health`]'s. Each server is
//! owned by one shard ([`super::owner_shard`]): only the owner probes it (so a server sees
//! one probe per interval whatever the number of shards) and keeps its [`Health`]. Every
//! change of its status goes to every shard, the owner included, through the mesh
//! ([`crate::worker::mesh`]); shards apply it on their next control tick. Applying a
//! status: the balancer sees it at once; a server that stops taking traffic loses its idle
//! pooled connections; with `on_marked_down = "shutdown-sessions"` a server marked DOWN has
//! its sessions and tunnels closed on every shard; with `on_marked_up =
//! "shutdown-backup-sessions"` a primary coming back closes the sessions of the backup
//! servers.
//!
//! A probe is bounded by `timeout` (connect, the TLS handshake with `check_tls`, and for
//! http the response head; a TLS check sends the server's fixed SNI, if any, never one
//! taken from a request's host) and closes
//! its connection with a FIN, after reading what the server sent (bounded), so that the
//! server never sees an RST from a check.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::AsyncReadExt;
use glommio::net::TcpStream;
use rustls::pki_types::ServerName;

use super::health::{Health, Status, Transition};
use super::{initial_health, owner_shard};
use crate::config::{CheckKind, HealthCheck, OnMarkedDown, OnMarkedUp};
use crate::tls::Stream;
use crate::worker::mesh::{ControlMsg, ShardMsg};
use crate::worker::Shard;

/// A check loop wakes at least this often to see whether a passive error asked for the
/// next check sooner, and whether the shard is stopping.
pub const CHECK_TICK: Duration = Duration::from_millis(100);

/// Bounds of reading what a server still sends after a probe, before closing.
pub const PROBE_DRAIN_BYTES: usize = 64 * 1024;
pub const PROBE_DRAIN_TIME: Duration = Duration::from_millis(500);

/// Largest response head an http check reads.
pub const PROBE_HEAD_BYTES: usize = 8 * 1024;

/// Why a check failed (for the log line).
#[derive(Debug)]
pub enum CheckFailure {
    /// Connecting failed (refused, unreachable, ...).
    Connect(String),
    /// No connection or no response head within `timeout`.
    Timeout,
    /// The server closed before a whole response head.
    Closed,
    /// Not an HTTP response head (or too large).
    Invalid,
    /// A status `expect_status` does not list.
    Status(u16),
    /// The TLS handshake failed (`check_tls`).
    Tls(String),
    /// Reading or writing failed.
    Io(io::ErrorKind),
}

impl fmt::Display for CheckFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckFailure::Connect(e) => write!(f, "layer 4: connection failed: {e}"),
            CheckFailure::Timeout => write!(f, "timeout"),
            CheckFailure::Closed => write!(f, "layer 7: closed before a response"),
            CheckFailure::Invalid => write!(f, "layer 7: invalid response"),
            CheckFailure::Status(s) => write!(f, "layer 7: unexpected status {s}"),
            CheckFailure::Io(k) => write!(f, "layer 4: {k}"),
            CheckFailure::Tls(e) => write!(f, "layer 6: TLS handshake failed: {e}"),
        }
    }
}

/// Makes this shard the keeper of the servers it owns and starts a check loop for each
/// checked one. The loops end when the shard stops.
pub fn start(shard: &Rc<Shard>) -> Vec<glommio::Task<()>> {
    let shards = shard.mesh.shards();
    let mut loops = Vec::new();
    for (b, backend) in shard.config.backends.iter().enumerate() {
        for (s, server) in backend.servers.iter().enumerate() {
            if owner_shard(&shard.config, b, s, shards) != shard.id {
                continue;
            }
            *shard.backends[b].servers[s].health.borrow_mut() = Some(initial_health(backend, s));
            if server.health.check {
                loops.push(glommio::spawn_local(check_loop(Rc::clone(shard), b, s)));
            }
        }
    }
    loops
}

async fn check_loop(shard: Rc<Shard>, b: usize, s: usize) {
    let stopping = shard.stopping_signal.register();
    let be = &shard.config.backends[b];
    let hc = &be.health_check;
    let cfg = &be.servers[s];
    let state = &shard.backends[b].servers[s];
    // Spread the first checks of the servers over one interval.
    let spread = hc.intervals.interval / 8 * ((b * 31 + s) % 8) as u32;
    let mut last = Instant::now() - hc.intervals.interval + spread;
    loop {
        // Sleep until due, in ticks: a passive error may bring the next check forward.
        loop {
            let due = {
                let health = state.health.borrow();
                let h = health.as_ref().expect("set by start");
                last + h.next_interval(&hc.intervals)
            };
            let now = Instant::now();
            if now >= due {
                break;
            }
            if stopping.sleep((due - now).min(CHECK_TICK)).await {
                return;
            }
        }
        last = Instant::now();
        // Probes follow the server's address (DNS discovery may move it; a check port
        // still applies) unless check_address pins them; a server without an address is
        // not probed.
        let addr = if cfg.health.check_address_set {
            cfg.health.check_addr
        } else if state.has_address() {
            SocketAddr::new(state.address().ip(), cfg.health.check_addr.port())
        } else {
            continue;
        };
        let tls = match (cfg.check_tls, &shard.tls.servers[b][s], cfg.tls.as_deref()) {
            (true, Some(config), Some(settings)) => {
                Some((config, crate::tls::server_name(settings, addr.ip(), None)))
            }
            _ => None,
        };
        let outcome = futures_lite::future::or(probe(hc, addr, tls), async {
            stopping.fired().await;
            Err(CheckFailure::Timeout)
        })
        .await;
        if shard.stopping.get() {
            return;
        }
        let took = last.elapsed();
        let passed = outcome.is_ok();
        update(
            &shard,
            b,
            s,
            |h| h.record(passed),
            |t| match &outcome {
                Ok(()) => format!("check passed in {} ms", took.as_millis()),
                Err(e) => match t {
                    Transition::Down => format!("{e}, check took {} ms", took.as_millis()),
                    Transition::Up => String::new(),
                },
            },
        );
    }
}

/// On the owning shard: changes the server's [`Health`] with `change` and, if its status
/// changed, sends it to every shard and the control thread; a transition is logged with
/// `reason`.
fn update(
    shard: &Shard,
    b: usize,
    s: usize,
    change: impl FnOnce(&mut Health) -> Option<Transition>,
    reason: impl FnOnce(Transition) -> String,
) {
    let state = &shard.backends[b].servers[s];
    let (before, after, transition) = {
        let mut health = state.health.borrow_mut();
        let Some(h) = health.as_mut() else {
            return;
        };
        let before = h.status();
        let t = change(h);
        (before, h.status(), t)
    };
    if before == after {
        return;
    }
    if let Some(t) = transition {
        eprintln!(
            "ringproxy: server {}/{} is {} ({}); now {}",
            shard.config.backends[b].name,
            state.name,
            if t == Transition::Up { "UP" } else { "DOWN" },
            reason(t),
            after.describe()
        );
    }
    shard.mesh.broadcast(ShardMsg::Status {
        backend: b,
        server: s,
        status: after,
        transition,
    });
    shard.mesh.to_control(ControlMsg::Status {
        backend: b,
        server: s,
        status: after,
    });
}

/// Applies a message from the mesh (on the shard's control tick).
pub fn on_message(shard: &Shard, msg: ShardMsg) {
    match msg {
        ShardMsg::Status {
            backend,
            server,
            status,
            transition,
        } => apply_status(shard, backend, server, status, transition),
        ShardMsg::SetAdmin {
            backend,
            server,
            admin,
        } => {
            update(
                shard,
                backend,
                server,
                |h| {
                    h.set_admin(admin);
                    None
                },
                |_| String::new(),
            );
        }
        ShardMsg::Errors { backend, server } => {
            let on_error = shard.config.backends[backend].servers[server]
                .health
                .on_error;
            update(
                shard,
                backend,
                server,
                |h| h.observe_errors(on_error),
                |_| "errors on live traffic reached error_limit".into(),
            );
        }
        ShardMsg::Address {
            backend,
            server,
            addr,
        } => {
            // Connections to the old address must not serve the new one.
            if shard.backends[backend].set_address(server, addr) {
                shard.http_pools.purge_server(backend, server);
            }
        }
        ShardMsg::ShutdownSessions { backend, server } => {
            let name = &shard.backends[backend].servers[server].name;
            kill(shard, backend, server, &format!("{name}: by the operator"));
        }
        ShardMsg::SetWeight {
            backend,
            server,
            weight,
        } => shard.backends[backend].set_weight(server, weight),
        ShardMsg::Sync { seq } => shard.mesh.to_control(ControlMsg::Synced {
            shard: shard.id,
            seq,
        }),
    }
}

fn apply_status(shard: &Shard, b: usize, s: usize, status: Status, transition: Option<Transition>) {
    let backend = &shard.backends[b];
    let old = backend.set_status(s, status);
    let cfg = &shard.config.backends[b].servers[s];
    let name = &backend.servers[s].name;
    if old.serves_persistent() && !status.serves_persistent() {
        shard.http_pools.purge_server(b, s);
    }
    if transition == Some(Transition::Down)
        && cfg.health.on_marked_down == OnMarkedDown::ShutdownSessions
    {
        kill(shard, b, s, &format!("{name} marked DOWN"));
    }
    if !old.usable()
        && status.usable()
        && !cfg.backup
        && cfg.health.on_marked_up == OnMarkedUp::ShutdownBackupSessions
    {
        for (i, server) in backend.servers.iter().enumerate() {
            if server.backup {
                kill(shard, b, i, &format!("{name} is back UP"));
            }
        }
    }
}

/// Closes the sessions using server `s` of backend `b` on this shard.
fn kill(shard: &Shard, b: usize, s: usize, why: &str) {
    let server = &shard.backends[b].servers[s];
    let n = server.kill.kill_registered();
    if n > 0 {
        eprintln!(
            "ringproxy: shard {}: closing {n} session(s) of {}/{} ({why})",
            shard.id, shard.config.backends[b].name, server.name
        );
    }
}

/// One check of `addr` within `hc.timeout`.
/// `tls`: the server's client configuration and the name to connect for (`check_tls`).
async fn probe(
    hc: &HealthCheck,
    addr: SocketAddr,
    tls: Option<(&std::sync::Arc<rustls::ClientConfig>, ServerName<'static>)>,
) -> Result<(), CheckFailure> {
    let deadline = Instant::now() + hc.timeout;
    let tcp = match TcpStream::connect_timeout(addr, hc.timeout).await {
        Ok(s) => s,
        Err(e) => {
            let e = io::Error::from(e);
            return Err(match e.kind() {
                io::ErrorKind::TimedOut => CheckFailure::Timeout,
                _ => CheckFailure::Connect(e.to_string()),
            });
        }
    };
    let mut stream = match tls {
        None => Stream::Plain(tcp),
        Some((config, name)) => {
            let left = deadline.saturating_duration_since(Instant::now());
            match crate::tls::connect(tcp, config, name, left).await {
                Ok((s, _)) => s,
                Err(mut e) => {
                    if let Some(tcp) = e.tcp.take() {
                        close(Stream::Plain(tcp)).await;
                    }
                    return Err(match e.failure {
                        crate::tls::Failure::Timeout => CheckFailure::Timeout,
                        _ => CheckFailure::Tls(e.to_string()),
                    });
                }
            }
        }
    };
    let result = match &hc.kind {
        CheckKind::Tcp => Ok(()),
        CheckKind::Http(http) => {
            let mut head = [0u8; PROBE_HEAD_BYTES];
            http_probe(&mut stream, &http.request, &mut head, deadline)
                .await
                .and_then(|status| {
                    if http.expects(status) {
                        Ok(())
                    } else {
                        Err(CheckFailure::Status(status))
                    }
                })
        }
    };
    close(stream).await;
    result
}

/// Sends the check request and reads the response head; its status.
async fn http_probe(
    stream: &mut Stream,
    request: &[u8],
    buf: &mut [u8],
    deadline: Instant,
) -> Result<u16, CheckFailure> {
    let left = || deadline.saturating_duration_since(Instant::now());
    stream.set_write_timeout(Some(left().max(Duration::from_millis(1))));
    if let Err(e) = stream.send(request).await {
        return Err(io_failure(e));
    }
    let mut filled = 0;
    loop {
        let wait = left();
        if wait.is_zero() {
            return Err(CheckFailure::Timeout);
        }
        stream.set_read_timeout(Some(wait));
        match stream.read(&mut buf[filled..]).await {
            Ok(0) => return Err(CheckFailure::Closed),
            Ok(n) => filled += n,
            Err(e) => return Err(io_failure(e)),
        }
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&buf[..filled]) {
            Ok(httparse::Status::Complete(_)) => {
                return resp.code.ok_or(CheckFailure::Invalid);
            }
            Ok(httparse::Status::Partial) if filled < buf.len() => {}
            _ => return Err(CheckFailure::Invalid),
        }
    }
}

fn io_failure(e: io::Error) -> CheckFailure {
    match e.kind() {
        io::ErrorKind::TimedOut => CheckFailure::Timeout,
        k => CheckFailure::Io(k),
    }
}

/// FIN, then read what the server still sends (bounded), then release: a check never
/// leaves unread input behind, which would make the kernel send an RST.
async fn close(stream: Stream) {
    crate::http::pool::shut(stream, PROBE_DRAIN_TIME, PROBE_DRAIN_BYTES).await;
}
