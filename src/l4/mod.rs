//! tcp mode: one client connection becomes one tunnel to one server.
//!
//! Owns the life of a tcp-mode session: pick a server (waiting in the backend's queue
//! while every usable server is at its `maxconn`), connect within `timeout_connect` (on
//! failure, another server, up to `retries` more attempts), then hand both sockets to the
//! [`relay`]. The session holds its place on the server ([`ActiveSlot`]) for as long as
//! the tunnel lives, and the tunnel ends when the server's sessions are shut down (its
//! `KillSignal`). A client for which no server can be reached is closed (with FIN) and
//! counted on the backend. [`tunnel`] (relay under the tunnel timeouts, outcome counted) and
//! [`connect`] are also what http mode uses for upgraded connections and server connects.

pub mod relay;
pub mod splice;

use std::io;
use std::os::fd::AsRawFd;
use std::rc::Rc;

use glommio::net::TcpStream;

use crate::config::{Backend, Frontend, KeyKind, Observe};
use crate::upstream::balance::hash_ip;
use crate::upstream::{ActiveSlot, BackendState, ServerState, TriedSet};
use crate::worker::Shard;
use relay::{Forwarding, RelayEnd, RelayTimeouts};

/// Serves one accepted tcp-mode client to the end.
pub async fn serve(shard: Rc<Shard>, frontend: usize, mut client: TcpStream) {
    let fe = &shard.config.frontends[frontend];
    // A tcp frontend always names a backend (config invariant); only http routes may not.
    let Some(b) = fe.backend else { return };
    let be = &shard.config.backends[b];
    let backend = &shard.backends[b];
    // Only `balance = "source"` needs the client's address: no getpeername otherwise.
    let key = match be.balance.needs_key() {
        Some(KeyKind::Source) => client.peer_addr().ok().map(|a| hash_ip(a.ip())),
        _ => None,
    };
    let Some((mut server, slot)) = connect(&shard, backend, be, key).await else {
        backend.no_server.set(backend.no_server.get() + 1);
        return;
    };
    let forwarding = if fe.splice {
        Forwarding::Splice
    } else {
        Forwarding::Copy
    };
    if prepare(&client, forwarding).is_err() || prepare(&server, forwarding).is_err() {
        shard
            .counters
            .relay_errors
            .set(shard.counters.relay_errors.get() + 1);
        return;
    }
    tunnel(&shard, &mut client, &mut server, &slot.server, fe, be).await;
}

/// Relays a prepared client/server pair until the tunnel ends (tcp mode, and http after
/// `101 Switching Protocols`), under the frontend's and backend's tunnel timeouts, the
/// shard's abort signal and the server's kill signal, and counts the outcome.
pub async fn tunnel(
    shard: &Shard,
    client: &mut TcpStream,
    server: &mut TcpStream,
    server_state: &ServerState,
    fe: &Frontend,
    be: &Backend,
) {
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
        Some(&kill),
    )
    .await;
    let c = &shard.counters;
    c.bytes_in.set(c.bytes_in.get() + bytes.client_to_server);
    c.bytes_out.set(c.bytes_out.get() + bytes.server_to_client);
    match end {
        RelayEnd::Closed => {}
        RelayEnd::Timeout { .. } => c.relay_timeouts.set(c.relay_timeouts.get() + 1),
        RelayEnd::Error { .. } => c.relay_errors.set(c.relay_errors.get() + 1),
        RelayEnd::Aborted => c.relay_aborted.set(c.relay_aborted.get() + 1),
        RelayEnd::Killed => c.sessions_killed.set(c.sessions_killed.get() + 1),
    }
}

/// Connects to a server of `backend`: the first attempt plus up to `retries` more, each on
/// a server not yet tried while one remains.
pub async fn connect(
    shard: &Shard,
    backend: &BackendState,
    be: &Backend,
    key: Option<u64>,
) -> Option<(TcpStream, ActiveSlot)> {
    let mut tried = TriedSet::default();
    for _attempt in 0..=be.retries {
        let slot = backend
            .acquire_waiting(&tried, key, be.timeout_queue)
            .await
            .ok()?;
        match connect_to(shard, &slot.server, be.timeout_connect).await {
            Some(stream) => return Some((stream, slot)),
            None => tried.insert(slot.index, backend.servers.len()),
        }
    }
    None
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
        Err(_) => {
            server
                .connect_failures
                .set(server.connect_failures.get() + 1);
            None
        }
    }
}

/// Socket options of both ends of a tunnel: no Nagle delay (the relay forwards what it
/// has at once), and non-blocking descriptors for `splice`.
fn prepare(stream: &TcpStream, forwarding: Forwarding) -> io::Result<()> {
    stream.set_nodelay(true)?;
    if forwarding == Forwarding::Splice {
        splice::set_nonblocking(stream.as_raw_fd())?;
    }
    Ok(())
}
