//! Idle server connections of one server on one shard, and the rules for reusing them.
//!
//! Owns the decisions, not the sockets' I/O: which idle connection a request may take
//! ([`IdlePool::checkout`]: by policy, [`reuse_for`], and by TLS identity, a predicate), which one goes when the pool is full
//! ([`IdlePool::checkin`]), and which have waited too long ([`IdlePool::expire`]). The
//! connection type is a parameter, so all of it is tested without sockets; the http
//! module stores its streams (plain or TLS) in it and does the watching and closing.
//!
//! Order: the most recently returned connection is reused first (it is the least likely
//! to have been closed by the server, and the surplus at the other end ages out), and
//! the oldest is the first to expire or to make room.

use std::cell::Cell;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::config::HttpReuse;

/// How long connections beyond `pool_max_idle` may stay idle before they are trimmed.
/// Under load the number of idle connections swings with the requests in flight;
/// trimming the surplus at once would close connections needed a moment later.
pub const SURPLUS_GRACE: Duration = Duration::from_millis(500);

/// Most idle connections kept per server whatever the load: `max_idle` × 16.
pub fn hard_max(max_idle: usize) -> usize {
    max_idle.saturating_mul(16)
}

/// An idle connection and what the pool knows of it.
#[derive(Debug)]
pub struct Idle<C> {
    pub conn: C,
    /// When it was returned.
    pub since: Instant,
    /// Requests it has served.
    pub uses: u32,
}

/// Which idle connections a request may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Any idle connection.
    Any,
    /// Only one that has served at least two requests: the server has shown that it
    /// keeps connections open (`http_reuse = "aggressive"`, a first request that cannot
    /// be retried).
    Proven,
}

/// Whether a request may go on a pooled connection, and on which ones. `first`: the
/// first request of its client connection; `retryable`: the proxy can send it again on
/// a new connection if a pooled one turns out dead (idempotent, and held whole).
pub fn reuse_for(policy: HttpReuse, first: bool, retryable: bool) -> Option<Want> {
    match policy {
        HttpReuse::Never => None,
        HttpReuse::Safe if first && !retryable => None,
        HttpReuse::Aggressive if first && !retryable => Some(Want::Proven),
        HttpReuse::Safe | HttpReuse::Aggressive | HttpReuse::Always => Some(Want::Any),
    }
}

/// Idle connections to one server, newest at the back.
#[derive(Debug)]
pub struct IdlePool<C> {
    idle: VecDeque<Idle<C>>,
}

impl<C> Default for IdlePool<C> {
    fn default() -> Self {
        IdlePool {
            idle: VecDeque::new(),
        }
    }
}

impl<C> IdlePool<C> {
    pub fn len(&self) -> usize {
        self.idle.len()
    }

    pub fn is_empty(&self) -> bool {
        self.idle.is_empty()
    }

    /// Returns a connection to the pool. `max_idle` is a soft bound: connections beyond
    /// it stay while they are reused within [`SURPLUS_GRACE`] (a busy server needs as
    /// many as it has requests in flight) and are trimmed by [`IdlePool::expire`] once
    /// idle longer; [`hard_max`] of them is a hard bound, beyond which the oldest leaves
    /// at once and is returned to be closed (with `max_idle` 0, the connection itself is).
    pub fn checkin(&mut self, conn: C, uses: u32, now: Instant, max_idle: usize) -> Option<C> {
        if max_idle == 0 {
            return Some(conn);
        }
        let evicted = if self.idle.len() >= hard_max(max_idle) {
            self.idle.pop_front().map(|i| i.conn)
        } else {
            None
        };
        self.idle.push_back(Idle {
            conn,
            since: now,
            uses,
        });
        evicted
    }

    /// Takes the newest idle connection that `want` allows and that `fits` (the request's
    /// TLS identity: a connection made for one SNI serves only that SNI).
    pub fn checkout(&mut self, want: Want, fits: impl Fn(&C) -> bool) -> Option<Idle<C>> {
        let i = self
            .idle
            .iter()
            .rposition(|i| fits(&i.conn) && (want == Want::Any || i.uses >= 2))?;
        self.idle.remove(i)
    }

    /// Removes one connection that must go at `now`, oldest first: idle for `timeout`
    /// or longer, or beyond `max_idle` and idle for [`SURPLUS_GRACE`].
    pub fn expire(&mut self, now: Instant, timeout: Duration, max_idle: usize) -> Option<C> {
        let oldest = self.idle.front()?;
        let idle_for = now.saturating_duration_since(oldest.since);
        let surplus = self.idle.len() > max_idle && idle_for >= SURPLUS_GRACE;
        if idle_for >= timeout || surplus {
            self.idle.pop_front().map(|i| i.conn)
        } else {
            None
        }
    }

    /// When [`IdlePool::expire`] will next remove a connection.
    pub fn next_expiry(&self, timeout: Duration, max_idle: usize) -> Option<Instant> {
        let oldest = self.idle.front()?;
        let grace = if self.idle.len() > max_idle {
            SURPLUS_GRACE.min(timeout)
        } else {
            timeout
        };
        Some(oldest.since + grace)
    }

    /// Removes the connections for which `dead` gives a reason (a watched socket saw a
    /// FIN, bytes, or an error), passing each removed one and its reason to `closed`.
    pub fn remove_dead<K>(
        &mut self,
        mut dead: impl FnMut(&mut C) -> Option<K>,
        mut closed: impl FnMut(C, K),
    ) {
        let mut i = 0;
        while i < self.idle.len() {
            match dead(&mut self.idle[i].conn) {
                Some(reason) => {
                    if let Some(gone) = self.idle.remove(i) {
                        closed(gone.conn, reason);
                    }
                }
                None => i += 1,
            }
        }
    }

    /// Empties the pool (on shutdown).
    pub fn drain(&mut self) -> impl Iterator<Item = C> + '_ {
        self.idle.drain(..).map(|i| i.conn)
    }
}

/// What became of one server's connections on one shard (plain cells: only that shard
/// writes them; connections opened are `ServerState::sessions`). Read by the stats side.
#[derive(Debug, Default)]
pub struct PoolCounters {
    /// Requests sent on a connection that had served a request before.
    pub reused: Cell<u64>,
    /// Idle connections the server closed (or sent bytes on) while they waited.
    pub closed_by_peer_idle: Cell<u64>,
    /// Idle connections closed for `pool_idle_timeout`, or as a surplus beyond
    /// `pool_max_idle` left unused for [`SURPLUS_GRACE`].
    pub expired: Cell<u64>,
    /// Idle connections closed at once to make room ([`hard_max`]).
    pub evicted: Cell<u64>,
    /// Connections closed by the proxy with unread input left after draining: the only
    /// closes that may have sent an RST instead of a FIN.
    pub unclean_closes: Cell<u64>,
}

impl PoolCounters {
    pub fn add(cell: &Cell<u64>) {
        cell.set(cell.get() + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Instant {
        thread_local!(static BASE: Instant = Instant::now());
        BASE.with(|b| *b + Duration::from_millis(ms))
    }

    #[test]
    fn newest_is_reused_first_and_oldest_makes_room() {
        let mut p = IdlePool::default();
        for c in 0..hard_max(2) {
            assert_eq!(p.checkin(c, 1, at(0), 2), None, "below the hard bound");
        }
        assert_eq!(p.checkin(99, 1, at(1), 2), Some(0), "full: the oldest goes");
        assert_eq!(p.checkout(Want::Any, |_| true).map(|i| i.conn), Some(99));
        assert_eq!(
            p.checkout(Want::Any, |_| true).map(|i| i.conn),
            Some(hard_max(2) - 1)
        );
        // Only connections that fit are taken, newest first.
        assert_eq!(
            p.checkout(Want::Any, |c| c % 2 == 0).map(|i| i.conn),
            Some(hard_max(2) - 2)
        );
        let mut empty = IdlePool::default();
        assert_eq!(
            empty.checkin(9, 1, at(3), 0),
            Some(9),
            "max_idle 0 keeps none"
        );
        assert!(empty.is_empty());
    }

    #[test]
    fn proven_takes_only_connections_that_served_twice() {
        let mut p = IdlePool::default();
        p.checkin("once", 1, at(0), 8);
        p.checkin("twice", 2, at(1), 8);
        p.checkin("once-again", 1, at(2), 8);
        assert_eq!(
            p.checkout(Want::Proven, |_| true).map(|i| i.conn),
            Some("twice")
        );
        assert!(p.checkout(Want::Proven, |_| true).is_none());
        assert_eq!(p.len(), 2);
    }

    #[test]
    fn expiry_is_oldest_first_and_exact() {
        let mut p = IdlePool::default();
        let t = Duration::from_millis(100);
        p.checkin('a', 1, at(0), 8);
        p.checkin('b', 1, at(50), 8);
        assert_eq!(p.next_expiry(t, 8), Some(at(100)));
        assert_eq!(p.expire(at(99), t, 8), None);
        assert_eq!(p.expire(at(100), t, 8), Some('a'));
        assert_eq!(p.expire(at(100), t, 8), None);
        assert_eq!(p.expire(at(150), t, 8), Some('b'));
        assert_eq!(p.next_expiry(t, 8), None);
    }

    #[test]
    fn surplus_beyond_max_idle_is_trimmed_after_the_grace() {
        let mut p = IdlePool::default();
        let t = Duration::from_secs(60);
        let g = SURPLUS_GRACE.as_millis() as u64;
        for c in 0..5 {
            p.checkin(c, 1, at(c), 2);
        }
        assert_eq!(p.next_expiry(t, 2), Some(at(g)));
        assert_eq!(p.expire(at(g - 1), t, 2), None, "reused in time: kept");
        assert_eq!(p.expire(at(g + 10), t, 2), Some(0));
        assert_eq!(p.expire(at(g + 10), t, 2), Some(1));
        assert_eq!(p.expire(at(g + 10), t, 2), Some(2));
        assert_eq!(p.expire(at(g + 10), t, 2), None, "down to max_idle");
        assert_eq!(p.next_expiry(t, 2), Some(at(3) + t));
    }

    #[test]
    fn remove_dead_keeps_order_of_the_rest() {
        let mut p = IdlePool::default();
        for c in 0..6 {
            p.checkin(c, 1, at(c), 8);
        }
        let mut gone = Vec::new();
        p.remove_dead(
            |c| (*c % 2 == 1).then_some(*c * 10),
            |c, k| gone.push((c, k)),
        );
        assert_eq!(gone, [(1, 10), (3, 30), (5, 50)]);
        let rest: Vec<_> = p.drain().collect();
        assert_eq!(rest, [0, 2, 4]);
    }

    #[test]
    fn reuse_policies() {
        use HttpReuse::*;
        // Later requests of a client connection may always share, except with never.
        for first in [false, true] {
            for retryable in [false, true] {
                let got = |p| reuse_for(p, first, retryable);
                assert_eq!(got(Never), None);
                assert_eq!(got(Always), Some(Want::Any));
                let safe_ok = !first || retryable;
                assert_eq!(got(Safe), safe_ok.then_some(Want::Any));
                let aggressive = if safe_ok { Want::Any } else { Want::Proven };
                assert_eq!(got(Aggressive), Some(aggressive));
            }
        }
    }
}
