//! Server selection: a sans-IO decision over a backend's servers as one shard sees them.
//!
//! Owns the per-shard balancing state (round-robin weights, a rotating cursor). It never
//! touches a socket or a clock; the caller tells it which servers are eligible. Invariants:
//! a server with weight 0, or whose shard share of `maxconn` is used up, or that the caller
//! excludes (already tried), is never picked; with no eligible server `pick` returns `None`.

use crate::config::Balance;

/// What the balancer needs to know of one server at the moment of a pick.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    pub weight: u32,
    /// Sessions this shard has open to the server right now.
    pub active: u32,
    /// This shard's limit of concurrent sessions; `None` is unlimited.
    pub limit: Option<u32>,
}

impl Candidate {
    fn has_room(&self) -> bool {
        self.weight > 0 && self.limit.is_none_or(|l| self.active < l)
    }
}

/// Per-shard, per-backend balancing state.
#[derive(Debug, Clone)]
pub struct Balancer {
    algorithm: Balance,
    /// Smooth weighted round robin: the running "current weight" of each server.
    current: Vec<i64>,
    /// Where leastconn starts scanning, so that ties rotate instead of piling on server 0.
    cursor: usize,
}

impl Balancer {
    pub fn new(algorithm: Balance, servers: usize) -> Self {
        Balancer {
            algorithm,
            current: vec![0; servers],
            cursor: 0,
        }
    }

    /// Picks a server among `candidates` for which `excluded(i)` is false.
    pub fn pick(
        &mut self,
        candidates: &[Candidate],
        excluded: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        debug_assert_eq!(candidates.len(), self.current.len());
        match self.algorithm {
            Balance::RoundRobin => self.pick_round_robin(candidates, excluded),
            Balance::LeastConn => self.pick_least_conn(candidates, excluded),
        }
    }

    /// nginx's smooth weighted round robin: every eligible server gains its weight, the
    /// highest is picked and loses the total. Over `sum(weights)` picks each server is
    /// chosen exactly `weight` times, interleaved.
    fn pick_round_robin(
        &mut self,
        candidates: &[Candidate],
        excluded: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let mut total: i64 = 0;
        let mut best: Option<usize> = None;
        for (i, c) in candidates.iter().enumerate() {
            if !c.has_room() || excluded(i) {
                continue;
            }
            self.current[i] += i64::from(c.weight);
            total += i64::from(c.weight);
            if best.is_none_or(|b| self.current[i] > self.current[b]) {
                best = Some(i);
            }
        }
        let chosen = best?;
        self.current[chosen] -= total;
        Some(chosen)
    }

    /// Fewest active sessions per unit of weight; ties go to the next server after the
    /// previous pick.
    fn pick_least_conn(
        &mut self,
        candidates: &[Candidate],
        excluded: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let n = candidates.len();
        let mut best: Option<usize> = None;
        for k in 0..n {
            let i = (self.cursor + k) % n;
            let c = &candidates[i];
            if !c.has_room() || excluded(i) {
                continue;
            }
            let better = match best {
                None => true,
                // active_i / weight_i < active_b / weight_b, without division.
                Some(b) => {
                    u64::from(c.active) * u64::from(candidates[b].weight)
                        < u64::from(candidates[b].active) * u64::from(c.weight)
                }
            };
            if better {
                best = Some(i);
            }
        }
        let chosen = best?;
        self.cursor = (chosen + 1) % n;
        Some(chosen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(weight: u32) -> Candidate {
        Candidate {
            weight,
            active: 0,
            limit: None,
        }
    }

    #[test]
    fn round_robin_follows_weights_interleaved() {
        let servers = [cand(5), cand(1), cand(1)];
        let mut b = Balancer::new(Balance::RoundRobin, 3);
        let picks: Vec<usize> = (0..7)
            .map(|_| b.pick(&servers, |_| false).unwrap())
            .collect();
        // nginx's documented sequence for weights 5,1,1.
        assert_eq!(picks, vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn round_robin_distribution_over_many_picks() {
        let servers = [cand(3), cand(2), cand(0), cand(1)];
        let mut b = Balancer::new(Balance::RoundRobin, 4);
        let mut counts = [0u32; 4];
        for _ in 0..6000 {
            counts[b.pick(&servers, |_| false).unwrap()] += 1;
        }
        assert_eq!(counts, [3000, 2000, 0, 1000]);
    }

    #[test]
    fn exclusions_and_limits_are_respected() {
        let servers = [
            Candidate {
                weight: 1,
                active: 2,
                limit: Some(2),
            },
            cand(1),
            cand(1),
        ];
        let mut b = Balancer::new(Balance::RoundRobin, 3);
        for _ in 0..10 {
            let p = b.pick(&servers, |i| i == 1).unwrap();
            assert_eq!(p, 2, "server 0 is full and server 1 excluded");
        }
        assert_eq!(b.pick(&servers, |i| i != 0), None);
    }

    #[test]
    fn least_conn_prefers_idle_and_rotates_ties() {
        let mut servers = [cand(1), cand(1), cand(1)];
        let mut b = Balancer::new(Balance::LeastConn, 3);
        let mut seen = Vec::new();
        for _ in 0..3 {
            let p = b.pick(&servers, |_| false).unwrap();
            servers[p].active += 1;
            seen.push(p);
        }
        seen.sort();
        assert_eq!(
            seen,
            vec![0, 1, 2],
            "one session each before any server gets two"
        );
        servers[1].active = 0;
        assert_eq!(b.pick(&servers, |_| false), Some(1));
    }

    #[test]
    fn least_conn_weighs_capacity() {
        let servers = [
            Candidate {
                weight: 4,
                active: 3,
                limit: None,
            },
            Candidate {
                weight: 1,
                active: 1,
                limit: None,
            },
        ];
        let mut b = Balancer::new(Balance::LeastConn, 2);
        assert_eq!(b.pick(&servers, |_| false), Some(0), "3/4 < 1/1");
    }
}
