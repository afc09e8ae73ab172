//! DNS discovery: servers whose address is a host name with `resolve = "30s"` follow
//! what the name resolves to (HAProxy's `server-template`).
//!
//! A template server with `slots = N` is N servers (`name1`..`nameN`, or just `name` when
//! N is 1), each with a fixed index on every shard; resolution only changes which
//! address each slot holds. [`assign`] (sans-IO) keeps every address that is still
//! resolved in its slot, so sessions and pooled connections to addresses that stay are
//! untouched; a vanished address frees its slot (no new sessions; established ones run
//! on); a new address takes a free slot. Slots without an address are out of service.
//!
//! Resolution blocks (`getaddrinfo`), so it runs on its own thread, never on a shard: it
//! re-resolves each template every `resolve` and sends the changed slots to every shard
//! and the control thread over the mesh. A failed resolution keeps the current addresses.
//! `global.hosts_file` (hosts(5) format, read at every resolution) is consulted before the
//! system resolver: operators can drive discovery from a file, and tests use it.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::worker::mesh::{ControlMsg, Outlets, ShardMsg};
use crate::worker::StopFlag;

/// How often the discovery thread looks at the stop flag.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Addresses of `host` (with `port`): from `hosts_file` when it names the host, else from
/// the system resolver. Sorted, without duplicates.
pub fn resolve(host: &str, port: u16, hosts_file: Option<&Path>) -> io::Result<Vec<SocketAddr>> {
    let mut addrs: Vec<SocketAddr> = match hosts_file.map(|f| from_hosts_file(f, host)) {
        Some(Ok(ips)) if !ips.is_empty() => ips
            .into_iter()
            .map(|ip| SocketAddr::new(ip, port))
            .collect(),
        Some(Err(e)) => return Err(e),
        _ => (host, port).to_socket_addrs()?.collect(),
    };
    addrs.sort();
    addrs.dedup();
    Ok(addrs)
}

/// The addresses a hosts(5) file gives `host` (case-insensitive), in file order.
fn from_hosts_file(path: &Path, host: &str) -> io::Result<Vec<IpAddr>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let line = line.split('#').next().unwrap_or("");
            let mut words = line.split_whitespace();
            let ip: IpAddr = words.next()?.parse().ok()?;
            words.any(|w| w.eq_ignore_ascii_case(host)).then_some(ip)
        })
        .collect())
}

/// New slot contents after a resolution: addresses still resolved stay in their slots,
/// others leave, new ones fill free slots in order; addresses beyond the slots are left
/// out.
pub fn assign(slots: &[Option<SocketAddr>], resolved: &[SocketAddr]) -> Vec<Option<SocketAddr>> {
    let mut out: Vec<Option<SocketAddr>> = slots
        .iter()
        .map(|s| s.filter(|a| resolved.contains(a)))
        .collect();
    let fresh: Vec<SocketAddr> = resolved
        .iter()
        .filter(|a| !out.contains(&Some(**a)))
        .copied()
        .collect();
    let mut fresh = fresh.into_iter();
    for slot in out.iter_mut().filter(|s| s.is_none()) {
        match fresh.next() {
            Some(a) => *slot = Some(a),
            None => break,
        }
    }
    out
}

/// One template: where its slots are and what it resolves.
struct Template {
    backend: usize,
    /// Server indexes of its slots, in slot order.
    servers: Vec<usize>,
    host: String,
    port: u16,
    every: Duration,
    slots: Vec<Option<SocketAddr>>,
    next: Instant,
    failing: bool,
}

/// Starts the discovery thread when some server has `resolve`.
pub fn start(
    config: Arc<Config>,
    outlets: Outlets,
    stop: Arc<StopFlag>,
) -> io::Result<Option<JoinHandle<()>>> {
    let mut templates: HashMap<(usize, usize), Template> = HashMap::new();
    for (b, backend) in config.backends.iter().enumerate() {
        for (s, server) in backend.servers.iter().enumerate() {
            let Some(d) = &server.discovery else { continue };
            let t = templates
                .entry((b, d.template))
                .or_insert_with(|| Template {
                    backend: b,
                    servers: Vec::new(),
                    host: d.host.clone(),
                    port: d.port,
                    every: d.every,
                    slots: Vec::new(),
                    next: Instant::now() + d.every,
                    failing: false,
                });
            t.servers.push(s);
            t.slots.push(server.has_address.then_some(server.address));
        }
    }
    if templates.is_empty() {
        return Ok(None);
    }
    let hosts_file = config.global.hosts_file.clone();
    let mut templates: Vec<Template> = templates.into_values().collect();
    std::thread::Builder::new()
        .name("ringproxy-discovery".into())
        .spawn(move || {
            while !stop.is_requested() {
                std::thread::sleep(POLL_INTERVAL);
                for t in templates.iter_mut().filter(|t| Instant::now() >= t.next) {
                    t.next = Instant::now() + t.every;
                    refresh(&config, t, hosts_file.as_deref(), &outlets);
                }
            }
        })
        .map(Some)
}

fn refresh(config: &Config, t: &mut Template, hosts_file: Option<&Path>, outlets: &Outlets) {
    let backend = &config.backends[t.backend];
    let resolved = match resolve(&t.host, t.port, hosts_file) {
        Ok(r) => {
            t.failing = false;
            r
        }
        Err(e) => {
            if !t.failing {
                eprintln!(
                    "ringproxy: backend {}: cannot resolve {}: {e} (keeping the current addresses)",
                    backend.name, t.host
                );
            }
            t.failing = true;
            return;
        }
    };
    let next = assign(&t.slots, &resolved);
    for (i, (old, new)) in t.slots.iter().zip(&next).enumerate() {
        if old == new {
            continue;
        }
        let server = t.servers[i];
        eprintln!(
            "ringproxy: server {}/{}: {} now {}",
            backend.name,
            backend.servers[server].name,
            t.host,
            new.map_or("has no address (out of service)".to_string(), |a| format!(
                "at {a}"
            ))
        );
        outlets.broadcast(ShardMsg::Address {
            backend: t.backend,
            server,
            addr: *new,
        });
        outlets.to_control(ControlMsg::Address {
            backend: t.backend,
            server,
            addr: *new,
        });
    }
    t.slots = next;
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn a(n: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, n], 80))
    }

    #[test]
    fn addresses_that_stay_keep_their_slots() {
        let slots = [Some(a(1)), Some(a(2)), None];
        assert_eq!(
            assign(&slots, &[a(2), a(3)]),
            vec![Some(a(3)), Some(a(2)), None],
            "a(1)'s slot went free and a(3) took it; a(2) stayed"
        );
        assert_eq!(assign(&slots, &[]), vec![None, None, None]);
        assert_eq!(
            assign(&[None, None], &[a(1), a(2), a(3)]),
            vec![Some(a(1)), Some(a(2))],
            "more addresses than slots: the first ones"
        );
    }

    #[test]
    fn hosts_file_lookup() {
        let path = std::env::temp_dir().join(format!("ringproxy-hosts-{}", std::process::id()));
        std::fs::write(
            &path,
            "# test\n127.0.0.2 app.test other\n127.0.0.1 APP.test # comment\n::1 six.test\nbad line\n",
        )
        .unwrap();
        let got = resolve("app.test", 81, Some(&path)).unwrap();
        assert_eq!(
            got,
            vec![
                "127.0.0.1:81".parse().unwrap(),
                "127.0.0.2:81".parse().unwrap()
            ]
        );
        assert_eq!(
            resolve("six.test", 1, Some(&path)).unwrap(),
            vec!["[::1]:1".parse().unwrap()]
        );
        // Not in the file: the system resolver (numeric names need no network).
        assert_eq!(
            resolve("127.0.0.9", 5, Some(&path)).unwrap(),
            vec!["127.0.0.9:5".parse().unwrap()]
        );
        std::fs::remove_file(&path).unwrap();
    }

    proptest! {
        /// Whatever resolves: a still-resolved address never moves, no address is in two
        /// slots, only resolved addresses are held, and as many as fit are held.
        #[test]
        fn assign_invariants(
            before in proptest::collection::vec(proptest::option::of(1u8..12), 1..8),
            resolved in proptest::collection::btree_set(1u8..12, 0..10),
        ) {
            // Slots start without duplicates, as `assign` keeps them.
            let mut seen = std::collections::HashSet::new();
            let slots: Vec<Option<SocketAddr>> = before
                .iter()
                .map(|s| s.filter(|n| seen.insert(*n)).map(a))
                .collect();
            let resolved: Vec<SocketAddr> = resolved.into_iter().map(a).collect();
            let next = assign(&slots, &resolved);
            prop_assert_eq!(next.len(), slots.len());
            for (old, new) in slots.iter().zip(&next) {
                if let Some(o) = old {
                    if resolved.contains(o) {
                        prop_assert_eq!(Some(*o), *new);
                    }
                }
            }
            let held: Vec<SocketAddr> = next.iter().flatten().copied().collect();
            let unique: std::collections::HashSet<_> = held.iter().collect();
            prop_assert_eq!(unique.len(), held.len());
            prop_assert!(held.iter().all(|h| resolved.contains(h)));
            prop_assert_eq!(held.len(), resolved.len().min(slots.len()));
        }
    }
}
