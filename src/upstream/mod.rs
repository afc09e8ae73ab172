//! Upstream side of a shard: its view of every backend and server.
//!
//! Owns the per-shard server state (active session counts, this shard's share of
//! `maxconn`, the counters of its connections) and the [`balance::Balancer`]; the
//! rules for pooling idle http connections are in [`pool`]. State lives in `Cell`/`RefCell` inside one shard
//! and is never shared with another: no locks. A session holds an [`ActiveSlot`] for as
//! long as it uses a server; dropping the slot gives the place back, so a count can never
//! leak on an early return.
//!
//! `maxconn` is a whole-process limit split across shards: shard `i` of `n` may hold
//! `maxconn / n` sessions, plus one if `i < maxconn % n` (see [`shard_share`]). The sum over
//! shards is exactly `maxconn`, so a server never sees more than it asked for; the price is
//! that a busy shard cannot borrow an idle shard's share.

pub mod balance;
pub mod pool;

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;

use crate::config::{Backend, Config};
use balance::{Balancer, Candidate};

/// This shard's part of a process-wide limit `total` split over `shards` shards.
pub fn shard_share(total: u32, shard: usize, shards: usize) -> u32 {
    let n = shards as u32;
    let i = shard as u32;
    total / n + u32::from(i < total % n)
}

/// One server as one shard sees it.
#[derive(Debug)]
pub struct ServerState {
    pub name: String,
    pub address: SocketAddr,
    pub weight: u32,
    /// This shard's share of `maxconn`; `None` is unlimited.
    pub limit: Option<u32>,
    /// Sessions this shard has open to the server.
    active: Cell<u32>,
    /// Connection attempts that failed (refused, timed out, unreachable).
    pub connect_failures: Cell<u64>,
    /// Connections established with this server (tcp mode: one per session).
    pub sessions: Cell<u64>,
    /// http mode: what became of its connections (reused, retried, closed).
    pub pool: pool::PoolCounters,
}

impl ServerState {
    pub fn active(&self) -> u32 {
        self.active.get()
    }
}

/// One backend as one shard sees it.
#[derive(Debug)]
pub struct BackendState {
    pub name: String,
    pub servers: Vec<Rc<ServerState>>,
    balancer: RefCell<Balancer>,
    /// Sessions closed because no server could be picked or reached.
    pub no_server: Cell<u64>,
}

impl BackendState {
    pub fn new(cfg: &Backend, shard: usize, shards: usize) -> Self {
        let servers = cfg
            .servers
            .iter()
            .map(|s| {
                Rc::new(ServerState {
                    name: s.name.clone(),
                    address: s.address,
                    weight: s.weight,
                    limit: s.maxconn.map(|m| shard_share(m.get(), shard, shards)),
                    active: Cell::new(0),
                    connect_failures: Cell::new(0),
                    sessions: Cell::new(0),
                    pool: Default::default(),
                })
            })
            .collect::<Vec<_>>();
        BackendState {
            name: cfg.name.clone(),
            balancer: RefCell::new(Balancer::new(
                &cfg.balance,
                cfg.hash_type,
                &cfg.servers.iter().map(|s| s.weight).collect::<Vec<_>>(),
                shard as u64,
            )),
            servers,
            no_server: Cell::new(0),
        }
    }

    /// Takes a place on server `index` if it has room (its share of `maxconn`) and
    /// weight; `None` otherwise.
    pub fn acquire_server(&self, index: usize) -> Option<ActiveSlot> {
        let server = self.servers.get(index)?;
        let full = server.limit.is_some_and(|l| server.active.get() >= l);
        if full || server.weight == 0 {
            return None;
        }
        server.active.set(server.active.get() + 1);
        Some(ActiveSlot {
            index,
            server: Rc::clone(server),
        })
    }

    /// Picks a server not in `tried` and takes a place on it.
    pub fn acquire(&self, tried: &TriedSet) -> Option<ActiveSlot> {
        // Backends are small (a handful to a few hundred servers); a fixed stack array
        // covers the common case without allocating per pick.
        const INLINE: usize = 32;
        let n = self.servers.len();
        let mut inline = [Candidate {
            weight: 0,
            active: 0,
            limit: None,
        }; INLINE];
        let mut heap = Vec::new();
        let candidates: &mut [Candidate] = if n <= INLINE {
            &mut inline[..n]
        } else {
            heap.resize(
                n,
                Candidate {
                    weight: 0,
                    active: 0,
                    limit: None,
                },
            );
            &mut heap
        };
        for (c, s) in candidates.iter_mut().zip(&self.servers) {
            *c = Candidate {
                weight: s.weight,
                active: s.active.get(),
                limit: s.limit,
            };
        }
        let index = self
            .balancer
            .borrow_mut()
            .pick(candidates, |i| tried.contains(i), None)?;
        let server = Rc::clone(&self.servers[index]);
        server.active.set(server.active.get() + 1);
        Some(ActiveSlot { index, server })
    }
}

/// A session's place on a server; released on drop.
#[derive(Debug)]
pub struct ActiveSlot {
    pub index: usize,
    pub server: Rc<ServerState>,
}

impl Drop for ActiveSlot {
    fn drop(&mut self) {
        let a = self.server.active.get();
        debug_assert!(a > 0, "active count underflow on {}", self.server.name);
        self.server.active.set(a.saturating_sub(1));
    }
}

/// Servers already tried by one session (for retries on other servers). When every
/// server has been tried, the set is cleared so that retries go round again.
#[derive(Debug, Default)]
pub struct TriedSet {
    bits: Vec<u64>,
}

impl TriedSet {
    pub fn contains(&self, i: usize) -> bool {
        self.bits
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    pub fn insert(&mut self, i: usize, servers: usize) {
        if self.bits.len() <= i / 64 {
            self.bits.resize(i / 64 + 1, 0);
        }
        self.bits[i / 64] |= 1 << (i % 64);
        if (0..servers).all(|k| self.contains(k)) {
            self.bits.clear();
        }
    }
}

/// Every backend of the configuration, as one shard sees it, in config order.
pub fn shard_backends(config: &Config, shard: usize, shards: usize) -> Vec<Rc<BackendState>> {
    config
        .backends
        .iter()
        .map(|b| Rc::new(BackendState::new(b, shard, shards)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_sum_to_total() {
        for total in [1u32, 2, 3, 7, 500, 1001] {
            for shards in 1..=8usize {
                let sum: u32 = (0..shards).map(|i| shard_share(total, i, shards)).sum();
                assert_eq!(sum, total, "total {total} over {shards} shards");
            }
        }
    }

    #[test]
    fn tried_set_wraps_when_all_tried() {
        let mut t = TriedSet::default();
        t.insert(0, 2);
        assert!(t.contains(0) && !t.contains(1));
        t.insert(1, 2);
        assert!(!t.contains(0) && !t.contains(1), "all tried: start over");
        t.insert(70, 100);
        assert!(t.contains(70));
    }
}
