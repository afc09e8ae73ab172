//! Upstream side of a shard: its view of every backend and server.
//!
//! Owns the per-shard server state (active session counts, this shard's share of
//! `maxconn`, health status as sent by the server's owning shard, address, counters) and
//! the [`balance::Balancer`]. Around it: the rise/fall decision ([`health`]) and the checks
//! that feed it ([`check`]), the backend queue ([`queue`]), the rules for pooling idle http
//! connections ([`pool`]) and DNS discovery ([`discovery`]). State lives in
//! `Cell`/`RefCell` inside one shard and is never shared with another: no locks. A session
//! holds an [`ActiveSlot`] for as long as it uses a server; dropping the slot gives the
//! place back (and wakes the queue), so a count can never leak on an early return.
//!
//! Which servers take new sessions: those UP by their checks, READY by the operator, with
//! an address; backups only while no primary does; weights and limits ramp during
//! `slowstart`.
//!
//! `maxconn` is a whole-process limit split across shards: shard `i` of `n` may hold
//! `maxconn / n` sessions, plus one if `i < maxconn % n` (see [`shard_share`]). The sum over
//! shards is exactly `maxconn`, so a server never sees more than it asked for; the price is
//! that a busy shard cannot borrow an idle shard's share.

pub mod balance;
pub mod check;
pub mod discovery;
pub mod health;
pub mod pool;
pub mod queue;

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::config::{Backend, Config, Observe};
use crate::worker::abort::KillSignal;
use balance::{Balancer, Candidate};
use health::{Admin, Health, Status};

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
    /// Where it is; DNS discovery may move it.
    address: Cell<SocketAddr>,
    /// False for a discovery slot the name gives no address now (out of service).
    has_address: Cell<bool>,
    /// Its weight now (the configured one, or the operator's `set weight`).
    pub weight: Cell<u32>,
    /// This shard's share of `maxconn`; `None` is unlimited.
    pub limit: Option<u32>,
    /// Sessions this shard has open to the server.
    active: Cell<u32>,
    /// The most sessions this shard has had open to it at once.
    pub max_active: Cell<u32>,
    /// Connection attempts that failed (refused, timed out, unreachable).
    pub connect_failures: Cell<u64>,
    /// Of those, attempts that ran out of `timeout_connect`.
    pub connect_timeouts: Cell<u64>,
    /// Connections established with this server (tcp mode: one per session).
    pub sessions: Cell<u64>,
    /// http mode: what became of its connections (reused, retried, closed).
    pub pool: pool::PoolCounters,
    /// Index of its backend in the configuration, and its own index in the backend.
    pub backend: usize,
    pub index: usize,
    /// Takes traffic only when no primary server of the backend is usable.
    pub backup: bool,
    /// Its health as this shard knows it (from the owning shard).
    status: Cell<Status>,
    /// When it last became usable, while `slowstart` ramps its weight and limit.
    ramp_since: Cell<Option<Instant>>,
    slowstart: Duration,
    /// Closes the sessions using it (`on_marked_down = "shutdown-sessions"`).
    pub kill: KillSignal,
    /// Passive checks: which errors count, and how many in a row this shard has seen.
    observe: Option<Observe>,
    error_limit: u32,
    consecutive_errors: Cell<u32>,
    /// On the owning shard only: the rise/fall decision.
    pub health: RefCell<Option<Health>>,
    /// Its backend's queue: a freed slot wakes the head waiter.
    queue: Rc<queue::Queue>,
}

impl ServerState {
    pub fn active(&self) -> u32 {
        self.active.get()
    }

    pub fn status(&self) -> Status {
        self.status.get()
    }

    pub fn address(&self) -> SocketAddr {
        self.address.get()
    }

    pub fn has_address(&self) -> bool {
        self.has_address.get()
    }

    /// Takes new sessions (checks say UP, operator says READY, it has an address).
    pub fn usable(&self) -> bool {
        self.status.get().usable() && self.has_address.get()
    }

    /// Takes requests of sessions that already use it (DRAIN too, not DOWN or MAINT).
    fn serves_persistent(&self) -> bool {
        self.status.get().serves_persistent() && self.has_address.get()
    }

    /// Weight and limit as the balancer sees them now: 0 when not usable, ramped while
    /// `slowstart` runs.
    fn effective(&self) -> (u32, Option<u32>) {
        if !self.usable() {
            return (0, self.limit);
        }
        let Some(since) = self.ramp_since.get() else {
            return (self.weight.get(), self.limit);
        };
        let now = Instant::now();
        if now.saturating_duration_since(since) >= self.slowstart {
            self.ramp_since.set(None);
            return (self.weight.get(), self.limit);
        }
        let ramp = |full| health::ramp(full, since, now, self.slowstart);
        (ramp(self.weight.get()), self.limit.map(ramp))
    }

    /// Records one outcome of live traffic for passive checks (`observe`); returns true
    /// when this shard has just seen `error_limit` errors in a row (then the owner
    /// applies `on_error`, and the count starts over).
    pub fn observed(&self, layer: Observe, ok: bool) -> bool {
        let counts = matches!(
            (self.observe, layer),
            (Some(Observe::Layer7), _) | (Some(Observe::Layer4), Observe::Layer4)
        );
        if !counts {
            return false;
        }
        if ok {
            self.consecutive_errors.set(0);
            return false;
        }
        let n = self.consecutive_errors.get() + 1;
        if n >= self.error_limit {
            self.consecutive_errors.set(0);
            true
        } else {
            self.consecutive_errors.set(n);
            false
        }
    }
}

/// The status every shard starts with for a server: UP (one failed check from DOWN when
/// checked), MAINT when `disabled`.
pub fn initial_health(backend: &Backend, server: usize) -> Health {
    let s = &backend.servers[server];
    let mut h = if s.health.check {
        Health::new(backend.health_check.rise, backend.health_check.fall)
    } else {
        Health::unchecked()
    };
    let admin = match s.start_admin {
        Some(admin) => admin,
        None if s.disabled => Admin::Maint,
        None => Admin::Ready,
    };
    if admin != Admin::Ready {
        h.set_admin(admin);
    }
    h
}

/// The shard that checks server `server` of backend `backend` and decides its state:
/// servers are dealt to shards in configuration order.
pub fn owner_shard(config: &Config, backend: usize, server: usize, shards: usize) -> usize {
    let before: usize = config.backends[..backend]
        .iter()
        .map(|b| b.servers.len())
        .sum();
    (before + server) % shards
}

/// One backend as one shard sees it.
#[derive(Debug)]
pub struct BackendState {
    pub name: String,
    pub servers: Vec<Rc<ServerState>>,
    balancer: RefCell<Balancer>,
    /// Sessions closed because no server could be picked or reached.
    pub no_server: Cell<u64>,
    /// Primary servers usable now; backups take traffic only while it is 0.
    usable_primaries: Cell<usize>,
    /// Sessions waiting for a slot while every usable server is at its `maxconn`.
    pub queue: Rc<queue::Queue>,
    /// This shard's share of `maxqueue`; `None` is unbounded.
    maxqueue: Option<u32>,
}

/// Why no server slot could be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoSlot {
    /// No usable server (all DOWN, in MAINT or DRAIN, or already tried).
    NoServer,
    /// Every usable server is full and `maxqueue` sessions are waiting already.
    QueueFull,
    /// Every usable server stayed full for `timeout_queue`.
    QueueTimeout,
}

impl NoSlot {
    /// Who the statistics and the access log blame (HAProxy's termination letter), and
    /// the detail of the 503 that answers it in http mode.
    pub fn ender(self) -> (crate::stats::Ender, &'static str) {
        use crate::stats::Ender;
        match self {
            NoSlot::NoServer => (Ender::Server, "no server is available"),
            NoSlot::QueueFull => (Ender::Proxy, "every server is full and the queue too"),
            NoSlot::QueueTimeout => (
                Ender::ServerTimeout,
                "no server was free within timeout_queue",
            ),
        }
    }
}

impl BackendState {
    pub fn new(cfg: &Backend, backend_index: usize, shard: usize, shards: usize) -> Self {
        let queue = Rc::new(queue::Queue::default());
        let servers = cfg
            .servers
            .iter()
            .enumerate()
            .map(|(index, s)| {
                Rc::new(ServerState {
                    name: s.name.clone(),
                    address: Cell::new(s.address),
                    has_address: Cell::new(s.has_address),
                    weight: Cell::new(s.start_weight.unwrap_or(s.weight)),
                    limit: s.maxconn.map(|m| shard_share(m.get(), shard, shards)),
                    active: Cell::new(0),
                    max_active: Cell::new(0),
                    connect_failures: Cell::new(0),
                    connect_timeouts: Cell::new(0),
                    sessions: Cell::new(0),
                    pool: Default::default(),
                    backend: backend_index,
                    index,
                    backup: s.backup,
                    status: Cell::new(initial_health(cfg, index).status()),
                    ramp_since: Cell::new(None),
                    slowstart: s.health.slowstart,
                    kill: KillSignal::default(),
                    observe: s.health.observe,
                    error_limit: s.health.error_limit,
                    consecutive_errors: Cell::new(0),
                    health: RefCell::new(None),
                    queue: Rc::clone(&queue),
                })
            })
            .collect::<Vec<_>>();
        let state = BackendState {
            name: cfg.name.clone(),
            balancer: RefCell::new(Balancer::new(
                &cfg.balance,
                cfg.hash_type,
                &cfg.servers
                    .iter()
                    .map(|s| s.start_weight.unwrap_or(s.weight))
                    .collect::<Vec<_>>(),
                shard as u64,
            )),
            servers,
            no_server: Cell::new(0),
            usable_primaries: Cell::new(0),
            queue,
            maxqueue: cfg.maxqueue.map(|m| shard_share(m.get(), shard, shards)),
        };
        state.count_usable();
        state
    }

    fn count_usable(&self) {
        let n = self
            .servers
            .iter()
            .filter(|s| !s.backup && s.usable() && s.weight.get() > 0)
            .count();
        self.usable_primaries.set(n);
    }

    /// Applies a server's new status (sent by its owning shard); returns the status it
    /// had. A server that becomes usable starts its `slowstart` ramp.
    pub fn set_status(&self, index: usize, status: Status) -> Status {
        let server = &self.servers[index];
        let old = server.status.replace(status);
        if !old.usable() && status.usable() && !server.slowstart.is_zero() {
            server.ramp_since.set(Some(Instant::now()));
        }
        self.count_usable();
        // A server back in service may take a queued session.
        self.queue.wake_head();
        old
    }

    /// Sets a server's weight (runtime API `set weight`); 0 takes it out of balancing
    /// without touching its sessions.
    pub fn set_weight(&self, index: usize, weight: u32) {
        self.servers[index].weight.set(weight);
        self.count_usable();
        self.queue.wake_head();
    }

    /// Whether a session that found no room could get a slot by waiting: some usable
    /// server it has not tried has a `maxconn` (and so will free a slot).
    fn could_free(&self, tried: &TriedSet) -> bool {
        let backups = !self.primaries_usable();
        self.servers.iter().enumerate().any(|(i, s)| {
            s.backup == backups
                && s.usable()
                && s.weight.get() > 0
                && s.limit.is_some()
                && !tried.contains(i)
        })
    }

    /// [`Self::acquire`], waiting in the backend's queue (in order, up to `timeout`)
    /// while every usable server is at its `maxconn`.
    pub async fn acquire_waiting(
        &self,
        tried: &TriedSet,
        key: Option<u64>,
        timeout: Duration,
    ) -> Result<ActiveSlot, NoSlot> {
        if self.queue.is_empty() {
            if let Some(slot) = self.acquire(tried, key) {
                return Ok(slot);
            }
        }
        if !self.could_free(tried) {
            return Err(NoSlot::NoServer);
        }
        if self
            .maxqueue
            .is_some_and(|m| self.queue.len() >= m as usize)
        {
            self.queue.full.set(self.queue.full.get() + 1);
            return Err(NoSlot::QueueFull);
        }
        // Boxed: the wait's state (a timer among it) is allocated by the requests that
        // queue, not carried by the future of every session.
        Box::pin(self.wait_in_queue(tried, key, timeout)).await
    }

    /// The queued part of [`Self::acquire_waiting`]: in order, up to `timeout`.
    async fn wait_in_queue(
        &self,
        tried: &TriedSet,
        key: Option<u64>,
        timeout: Duration,
    ) -> Result<ActiveSlot, NoSlot> {
        let waiter = Waiting {
            queue: &self.queue,
            id: self.queue.push(),
        };
        let turn = futures_lite::future::poll_fn(|cx| {
            if self.queue.is_head(waiter.id) {
                if let Some(slot) = self.acquire(tried, key) {
                    return std::task::Poll::Ready(Ok(slot));
                }
                if !self.could_free(tried) {
                    return std::task::Poll::Ready(Err(NoSlot::NoServer));
                }
            }
            self.queue.set_waker(waiter.id, cx.waker());
            std::task::Poll::Pending
        });
        let timed_out = async {
            glommio::timer::sleep(timeout).await;
            self.queue.timeouts.set(self.queue.timeouts.get() + 1);
            Err(NoSlot::QueueTimeout)
        };
        futures_lite::future::or(turn, timed_out).await
    }

    /// Moves a discovery slot to `addr` (`None`: out of service); returns whether it
    /// changed.
    pub fn set_address(&self, index: usize, addr: Option<std::net::SocketAddr>) -> bool {
        let server = &self.servers[index];
        let old = server.has_address.get().then(|| server.address.get());
        if old == addr {
            return false;
        }
        if let Some(a) = addr {
            server.address.set(a);
        }
        server.has_address.set(addr.is_some());
        self.count_usable();
        self.queue.wake_head();
        true
    }

    /// Whether any primary server is usable (else backups take the traffic).
    pub fn primaries_usable(&self) -> bool {
        self.usable_primaries.get() > 0
    }

    /// Takes a place on server `index` for a session that already used it (its kept
    /// connection, `prefer_last_server`) if it has room (its share of `maxconn`), weight,
    /// and serves such sessions (UP, not in MAINT; DRAIN does); `None` otherwise.
    pub fn acquire_server(&self, index: usize) -> Option<ActiveSlot> {
        let server = self.servers.get(index)?;
        let full = server.limit.is_some_and(|l| server.active.get() >= l);
        if full || server.weight.get() == 0 || !server.serves_persistent() {
            return None;
        }
        Some(ActiveSlot::take(index, server))
    }

    /// Picks a server not in `tried` and takes a place on it. `key`: the hash of what
    /// the hashing algorithms (`source`, `uri`, `hdr`) balance on, when present.
    pub fn acquire(&self, tried: &TriedSet, key: Option<u64>) -> Option<ActiveSlot> {
        // Backends are small (a handful to a few hundred servers); a fixed stack array
        // covers the common case without allocating per pick.
        const INLINE: usize = 32;
        let n = self.servers.len();
        let mut inline = [Candidate::default(); INLINE];
        let mut heap = Vec::new();
        let candidates: &mut [Candidate] = if n <= INLINE {
            &mut inline[..n]
        } else {
            heap.resize(n, Candidate::default());
            &mut heap
        };
        // Backups take traffic only while no primary is usable.
        let backups = !self.primaries_usable();
        for (c, s) in candidates.iter_mut().zip(&self.servers) {
            let (weight, limit) = if s.backup == backups {
                s.effective()
            } else {
                (0, s.limit)
            };
            *c = Candidate {
                weight,
                active: s.active.get(),
                limit,
            };
        }
        let index = self
            .balancer
            .borrow_mut()
            .pick(candidates, |i| tried.contains(i), key)?;
        Some(ActiveSlot::take(index, &self.servers[index]))
    }
}

/// A session's place on a server; released on drop.
#[derive(Debug)]
pub struct ActiveSlot {
    pub index: usize,
    pub server: Rc<ServerState>,
}

impl ActiveSlot {
    fn take(index: usize, server: &Rc<ServerState>) -> ActiveSlot {
        let active = server.active.get() + 1;
        server.active.set(active);
        if active > server.max_active.get() {
            server.max_active.set(active);
        }
        ActiveSlot {
            index,
            server: Rc::clone(server),
        }
    }
}

impl Drop for ActiveSlot {
    fn drop(&mut self) {
        let a = self.server.active.get();
        debug_assert!(a > 0, "active count underflow on {}", self.server.name);
        self.server.active.set(a.saturating_sub(1));
        if !self.server.queue.is_empty() {
            self.server.queue.wake_head();
        }
    }
}

/// A place in a backend's queue, left when dropped (served, timed out, or the session
/// ended while waiting).
struct Waiting<'a> {
    queue: &'a queue::Queue,
    id: u64,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.queue.remove(self.id);
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
        .enumerate()
        .map(|(i, b)| Rc::new(BackendState::new(b, i, shard, shards)))
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
