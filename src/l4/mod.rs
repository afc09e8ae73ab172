//! tcp mode: one client connection becomes one tunnel to one server.
//!
//! Owns the life of a tcp-mode session: pick a server (waiting in the backend's queue
//! while every usable server is at its `maxconn`), connect within `timeout_connect` (on
//! failure, another server, up to `retries` more attempts), then hand both sockets to the
//! [`relay`]. The session holds its place on the server ([`ActiveSlot`]) for as long as
//! the tunnel lives, and the tunnel ends when the server's sessions are shut down (its
//! `KillSignal`). A client for which no server can be reached is closed (with FIN) and
//! counted on the backend. [`tunnel`] (relay under the tunnel timeouts, outcome returned),
//! [`connect_to`] (one counted connection attempt), [`prepare`] (socket options),
//! [`accept_tls`] and [`secure`] (the counted TLS handshakes with clients and servers) are
//! also what http mode uses for upgraded connections and server connects. A TLS frontend
//! terminates TLS in front of plain servers, a server with `tls` is spoken to over TLS;
//! either way the tunnel copies (splice needs plain sockets on both sides).

pub mod relay;
pub mod splice;

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Instant;

use glommio::net::TcpStream;

use crate::config::{Backend, Frontend, KeyKind, Observe};
use crate::stats::log::LogRecord;
use crate::stats::{micros, Ender, Fe, Sv, Txn};
use crate::tls::{self, Stream};
use crate::upstream::balance::hash_ip;
use crate::upstream::{ActiveSlot, BackendState, NoSlot, ServerState, TriedSet};
use crate::worker::{Admitted, Shard};
use relay::{Forwarding, RelayBytes, RelayEnd, RelayTimeouts, Side};

/// Serves one accepted tcp-mode client to the end.
pub async fn serve(admitted: Admitted, client: TcpStream) {
    let (shard, frontend) = (&admitted.shard, admitted.frontend);
    let fe = &shard.config.frontends[frontend];
    // A tcp frontend always names a backend (config invariant); only http routes may not.
    let Some(b) = fe.backend else { return };
    let be = &shard.config.backends[b];
    let backend = &shard.backends[b];
    let mut txn = Txn::new(Instant::now());
    txn.backend = Some(b);
    let peer = (shard.stats.logging() || matches!(be.balance.needs_key(), Some(KeyKind::Source)))
        .then(|| client.peer_addr().ok())
        .flatten();
    // Only `balance = "source"` needs the client's address: no getpeername otherwise.
    let key = match be.balance.needs_key() {
        Some(KeyKind::Source) => peer.map(|a| hash_ip(a.ip())),
        _ => None,
    };
    let Some(mut client) = accept_tls(shard, frontend, client).await else {
        return;
    };
    let (mut server, slot) = match connect(shard, backend, be, key, &mut txn).await {
        Ok(connected) => connected,
        Err(no) => {
            backend.no_server.set(backend.no_server.get() + 1);
            record(shard, frontend, &txn, no.ender().0, peer);
            return;
        }
    };
    txn.phase = b'D';
    let (ender, bytes) = tunnel(shard, &mut client, &mut server, &slot.server, fe, be).await;
    txn.bytes_in = bytes.client_to_server;
    txn.bytes_out = bytes.server_to_client;
    drop(slot);
    record(shard, frontend, &txn, ender, peer);
}

/// Records a finished tcp session: statistics, and the access log line (with the client's
/// address) when the log is on.
fn record(shard: &Shard, frontend: usize, txn: &Txn, ender: Ender, peer: Option<SocketAddr>) {
    let mut log = shard.stats.logging().then(|| {
        let mut r = LogRecord::new(frontend as u16);
        r.client = peer;
        r
    });
    shard.record(frontend, txn, ender, log.as_mut());
}

/// Relays a prepared client/server pair until the tunnel ends (tcp mode, and http after
/// `101 Switching Protocols`), under the frontend's and backend's tunnel timeouts, the
/// shard's abort signal and the server's kill signal, and counts the outcome. Returns
/// who ended it and the bytes moved.
pub async fn tunnel(
    shard: &Shard,
    client: &mut Stream,
    server: &mut Stream,
    server_state: &ServerState,
    fe: &Frontend,
    be: &Backend,
) -> (Ender, RelayBytes) {
    let forwarding = if fe.splice {
        Forwarding::Splice
    } else {
        Forwarding::Copy
    };
    let timeouts = RelayTimeouts {
        idle: be.timeout_tunnel,
        client_fin: fe.timeout_client_fin,
        server_fin: be.timeout_server_fin,
    };
    let abort = shard.abort.register();
    let kill = server_state.kill.guard();
    let (end, bytes) = relay::relay(
        client,
        server,
        forwarding,
        timeouts,
        &shard.relay_buffers,
        &abort,
        &kill,
    )
    .await;
    let ender = match end {
        RelayEnd::Closed => Ender::Normal,
        // A half-closed tunnel waits for the other side; an idle one for both.
        RelayEnd::Timeout {
            half_closed: Some(Side::Client),
        } => Ender::ServerTimeout,
        RelayEnd::Timeout { .. } => Ender::ClientTimeout,
        RelayEnd::Error {
            side: Side::Client, ..
        } => Ender::Client,
        RelayEnd::Error {
            side: Side::Server, ..
        } => Ender::Server,
        RelayEnd::Aborted => Ender::Killed,
        RelayEnd::Killed => Ender::Down,
    };
    (ender, bytes)
}

/// Connects to a server of `backend`: the first attempt plus up to `retries` more, each on
/// a server not yet tried while one remains. The times, server and retries go into `txn`.
/// `Err`: why no server took the session (every attempt failed: `NoServer`).
async fn connect(
    shard: &Shard,
    backend: &BackendState,
    be: &Backend,
    key: Option<u64>,
    txn: &mut Txn,
) -> Result<(Stream, ActiveSlot), NoSlot> {
    let mut tried = TriedSet::default();
    for attempt in 0..=be.retries {
        txn.phase = b'Q';
        let waiting = Instant::now();
        let slot = backend.acquire_waiting(&tried, key, be.timeout_queue).await;
        let connecting = Instant::now();
        txn.tw = Some(txn.tw.unwrap_or(0) + micros(waiting, connecting));
        let slot = slot?;
        txn.server = Some(slot.index);
        txn.phase = b'C';
        let connected = match connect_to(shard, &slot.server, be.timeout_connect).await {
            // Server sockets are always ready for splice (see `prepare`).
            Some(tcp) if prepare(&tcp).is_ok() => {
                secure(shard, &slot.server, tcp, None, be.timeout_connect)
                    .await
                    .ok()
            }
            _ => None,
        };
        match connected {
            Some(stream) => {
                txn.tc = Some(micros(connecting, Instant::now()));
                return Ok((stream, slot));
            }
            None => {
                tried.insert(slot.index, backend.servers.len());
                if attempt < be.retries {
                    // Elsewhere unless every server was tried (the round starts over).
                    let elsewhere = tried.contains(slot.index);
                    let backend = slot.server.backend;
                    shard.stats.retried(txn, backend, slot.index, elsewhere);
                }
            }
        }
    }
    Err(NoSlot::NoServer)
}

/// One connection attempt to `server` within `timeout`, counted on the server (an
/// established connection, or a failure) and observed for passive checks.
pub async fn connect_to(
    shard: &Shard,
    server: &ServerState,
    timeout: std::time::Duration,
) -> Option<TcpStream> {
    let result = TcpStream::connect_timeout(server.address(), timeout).await;
    shard.observe(server, Observe::Layer4, result.is_ok());
    match result {
        Ok(stream) => {
            server.sessions.set(server.sessions.get() + 1);
            Some(stream)
        }
        Err(e) => {
            server
                .connect_failures
                .set(server.connect_failures.get() + 1);
            let timed_out = matches!(&e, glommio::GlommioError::IoError(io)
                if io.kind() == io::ErrorKind::TimedOut);
            if timed_out {
                let t = &server.connect_timeouts;
                t.set(t.get() + 1);
            }
            None
        }
    }
}

/// Socket options of a server connection: no Nagle delay (what the proxy has is
/// forwarded at once) and a non-blocking descriptor (what `splice` needs). Accepted
/// clients need neither call: they inherit `TCP_NODELAY` from the listener
/// (`runtime::sockets::bind_reuseport`) and are accepted non-blocking (`accept4` in
/// vendored glommio).
pub fn prepare(stream: &TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    splice::set_nonblocking(stream.as_raw_fd())
}

/// The TLS handshake of a client of a TLS frontend, within `timeout_client_handshake`,
/// counted on the frontend by outcome; a plain frontend's client is passed through.
/// `None`: the handshake failed and the connection is closed.
pub async fn accept_tls(shard: &Shard, frontend: usize, tcp: TcpStream) -> Option<Stream> {
    let Some(config) = &shard.tls.frontends[frontend] else {
        return Some(Stream::Plain(tcp));
    };
    let timeout = shard.config.frontends[frontend].timeout_client_handshake;
    let stats = &shard.stats.frontends[frontend];
    // Boxed: the handshake's state (rustls' connection, ~4 KiB) would otherwise size the
    // future of every session, plain or TLS, for its whole life (the future is as large as
    // its largest state). One allocation per handshake, freed when it ends.
    match Box::pin(tls::accept(tcp, config, timeout)).await {
        Ok((stream, resumed)) => {
            stats.add(Fe::TlsHandshakes as usize, 1);
            if resumed {
                stats.add(Fe::TlsResumed as usize, 1);
            }
            Some(stream)
        }
        Err(e) => {
            if let Some(tcp) = e.tcp {
                // Read the client's late bytes before closing, so it gets no RST.
                shard.http_pools.retire(Stream::Plain(tcp), true);
            }
            let counter = match e.failure {
                tls::Failure::Timeout => Fe::TlsFailedTimeout,
                tls::Failure::Closed | tls::Failure::Other => Fe::TlsFailedClosed,
                tls::Failure::Protocol => Fe::TlsFailedProtocol,
                tls::Failure::Certificate => Fe::TlsFailedCertificate,
            };
            stats.add(counter as usize, 1);
            None
        }
    }
}

/// A new connection to `server` made ready for requests: the TLS handshake, within
/// `timeout`, when the server has `tls` (for `host`, with `sni_from_host`), counted on
/// the server; a failure is reported on stderr (the first and every 1000th per server
/// and shard). A server without TLS gets its plain stream.
pub async fn secure(
    shard: &Shard,
    server: &ServerState,
    tcp: TcpStream,
    host: Option<&str>,
    timeout: std::time::Duration,
) -> Result<Stream, tls::HandshakeError> {
    let (b, s) = (server.backend, server.index);
    let Some(config) = &shard.tls.servers[b][s] else {
        return Ok(Stream::Plain(tcp));
    };
    let settings = shard.config.backends[b].servers[s]
        .tls
        .as_deref()
        .expect("a server with a client configuration has tls");
    let name = tls::server_name(settings, server.address().ip(), host);
    let stats = shard.stats.server(b, Some(s));
    // Boxed, as in `accept_tls`: only connections to TLS servers pay for the state.
    match Box::pin(tls::connect(tcp, config, name, timeout)).await {
        Ok((stream, resumed)) => {
            stats.add(Sv::TlsHandshakes as usize, 1);
            if resumed {
                stats.add(Sv::TlsResumed as usize, 1);
            }
            Ok(stream)
        }
        Err(mut e) => {
            if let Some(tcp) = e.tcp.take() {
                shard.http_pools.retire(Stream::Plain(tcp), true);
            }
            let counter = match e.failure {
                tls::Failure::Certificate => Sv::TlsFailedCertificate,
                _ => Sv::TlsFailedOther,
            };
            stats.add(counter as usize, 1);
            let n = stats.get(Sv::TlsFailedCertificate as usize)
                + stats.get(Sv::TlsFailedOther as usize);
            if n == 1 || n.is_multiple_of(1000) {
                eprintln!(
                    "ringproxy: shard {}: backend {} server {}: TLS handshake failed ({n} so far): {e}",
                    shard.id, shard.config.backends[b].name, server.name
                );
            }
            Err(e)
        }
    }
}
