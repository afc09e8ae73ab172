//! Process-level socket plumbing done once, on the main thread, before shards start.
//!
//! Owns listening-socket creation: one `SO_REUSEPORT` socket per (bind address, shard), all
//! on the same port, so the kernel spreads connections across shards and a bind failure
//! (port in use, no permission) is reported before any shard runs. Port 0 picks an
//! ephemeral port once and every shard binds that same port. Listeners get `TCP_NODELAY`,
//! which every accepted connection inherits (no option is set per client). Also raises
//! the descriptor limit. Never touches a socket after handing it to a shard.

use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

/// Listen backlog per shard socket (the kernel caps it at `net.core.somaxconn`).
pub const LISTEN_BACKLOG: i32 = 4096;

/// Binds `shards` listening sockets on `addr` with `SO_REUSEPORT` and `TCP_NODELAY`
/// (inherited by every accepted connection). With port 0 they all share the port the
/// first one was given.
pub fn bind_reuseport(addr: SocketAddr, shards: usize) -> io::Result<Vec<TcpListener>> {
    let mut out = Vec::with_capacity(shards);
    let mut addr = addr;
    for _ in 0..shards {
        let socket = Socket::new(
            Domain::for_address(addr),
            Type::STREAM.cloexec(),
            Some(Protocol::TCP),
        )?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        // Accepted sockets inherit it (Linux): no `setsockopt` per connection.
        socket.set_nodelay(true)?;
        socket.bind(&addr.into())?;
        socket.listen(LISTEN_BACKLOG)?;
        let listener: TcpListener = socket.into();
        if addr.port() == 0 {
            addr = listener.local_addr()?;
        }
        out.push(listener);
    }
    Ok(out)
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (a proxy holds two descriptors per
/// session, plus pipes). Returns the new soft limit.
pub fn raise_fd_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write/read a valid, initialised rlimit struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(io::Error::last_os_error());
        }
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(lim.rlim_cur)
}

/// CPUs this process may run on (its affinity mask, so `taskset` is respected), ascending.
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is plain data; zeroed is a valid empty set, and
    // sched_getaffinity writes at most size_of::<cpu_set_t>() bytes into it.
    let set = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Err(io::Error::last_os_error());
        }
        set
    };
    let max = 8 * std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: CPU_ISSET reads the set we own, for indices below its capacity.
    Ok((0..max)
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The proxy sets no option on an accepted client: it relies on this inheritance.
    #[test]
    fn accepted_connections_inherit_nodelay() {
        let listeners = bind_reuseport("127.0.0.1:0".parse().unwrap(), 2).unwrap();
        let addr = listeners[0].local_addr().unwrap();
        assert_eq!(listeners[1].local_addr().unwrap(), addr);
        let _client = std::net::TcpStream::connect(addr).unwrap();
        // SO_REUSEPORT hands the connection to either socket.
        for l in &listeners {
            l.set_nonblocking(true).unwrap();
        }
        let accepted = (0..200)
            .find_map(|_| {
                let found = listeners.iter().find_map(|l| l.accept().ok());
                if found.is_none() {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                found
            })
            .expect("the connection is accepted")
            .0;
        assert!(accepted.nodelay().unwrap());
    }
}
