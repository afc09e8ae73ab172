//! Server selection: a sans-IO decision over a backend's servers as one shard sees them.
//!
//! Owns the per-shard balancing state: the smooth round-robin weights, the leastconn cursor,
//! the PRNG of `random`, and for `hash_type = "consistent"` a hash ring built once in
//! [`Balancer::new`]. It never touches a socket or a clock, and [`Balancer::pick`] never
//! allocates: tables are built up front, anything that depends on the current eligible set
//! is computed by scanning the candidates. For `source`, `uri` and `hdr(<name>)` the caller
//! hashes the request's key with [`hash_key`] or [`hash_ip`] and passes the hash.
//!
//! Invariants:
//! - a server is *eligible* when its (effective) weight is above 0, its shard share of
//!   `maxconn` is not used up and the caller does not exclude it (already tried). Only an
//!   eligible server is ever picked, and `pick` returns `None` iff none is eligible;
//! - the hashing algorithms send a key to the same server on every shard and across
//!   restarts while the eligible set and the weights are unchanged: no seed, no per-process
//!   state enters them. Only `random` and the round-robin cursor differ between shards;
//! - a request without a key (no such header, ...) falls back to round robin, as in HAProxy.

use std::fmt;
use std::net::IpAddr;

use crate::config::{Balance, HashType};

/// Ring points per unit of configured weight (weights first divided by their gcd) with
/// `hash_type = "consistent"`. With `p` points a server's share of the ring deviates from its
/// weight by about `1/sqrt(p)` (10 % relative at 100); more points smooth that out at the
/// cost of memory and of a longer binary search.
const RING_POINTS_PER_WEIGHT: u32 = 100;

/// Bound on the points of one ring (16 bytes each: 1 MiB per backend per shard). Larger
/// total weights get fewer points per unit of weight, never fewer than one.
const RING_POINTS_MAX: u64 = 1 << 16;

/// What the balancer needs to know of one server at the moment of a pick.
#[derive(Debug, Clone, Copy, Default)]
pub struct Candidate {
    /// Effective weight: the configured one, or lower (e.g. during slow start); 0 takes no
    /// new session.
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

    /// Fewer active sessions per unit of weight than `other` (without division).
    fn lighter_than(&self, other: &Candidate) -> bool {
        u64::from(self.active) * u64::from(other.weight)
            < u64::from(other.active) * u64::from(self.weight)
    }
}

/// Hash of a request key (a path, a header value) for `balance = "uri"` and `"hdr(...)"`.
///
/// FNV-1a over the bytes, then MurmurHash3's 64-bit finaliser (`fmix64`). FNV-1a is tiny,
/// needs no table or state, costs one multiply per byte (keys are short: a path, a cookie-sized
/// value) and is the same in every process, on every shard and in every version, unlike
/// `std`'s per-process seeded SipHash, so a key stays on its server across shards and
/// restarts. Its weakness is that a multiply carries only upward, so the low bits of the
/// result see little of the input (the lowest bit is the parity of the bytes' lowest bits),
/// while map-based hashing takes the key modulo a small total weight; `fmix64` makes every
/// output bit depend on every input bit. Not for adversarial input: a client can choose keys
/// that collide, which only lets it pick its own server.
pub fn hash_key(bytes: &[u8]) -> u64 {
    const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = FNV_OFFSET_BASIS;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    fmix64(h)
}

/// Hash of a client address for `balance = "source"`. An IPv4-mapped IPv6 address
/// (`::ffff:a.b.c.d`, as seen on a dual-stack listener) hashes as the IPv4 address, so a
/// client keeps its server whichever listener it came through.
pub fn hash_ip(ip: IpAddr) -> u64 {
    match ip.to_canonical() {
        IpAddr::V4(v4) => hash_key(&v4.octets()),
        IpAddr::V6(v6) => hash_key(&v6.octets()),
    }
}

/// MurmurHash3's 64-bit finaliser: a bijection with full avalanche.
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

/// splitmix64: a 64-bit state, one add and a finaliser per draw; statistically sound for
/// load balancing (not for secrets) and fine with any seed, 0 included.
#[derive(Debug, Clone)]
struct SplitMix64 {
    /// Advanced by the golden-ratio increment on every draw.
    state: u64,
}

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A draw in `0..n` (`n > 0`) by multiply-shift: the bias is `n / 2^64`, negligible for
    /// total weights of a backend.
    fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
}

/// One point of the consistent-hashing ring.
#[derive(Debug, Clone, Copy)]
struct RingPoint {
    /// Position on the ring: `fmix64(server << 32 | replica)`, distinct for distinct points
    /// because `fmix64` is a bijection.
    hash: u64,
    /// Index of the server this point belongs to.
    server: u32,
    /// Which of the server's points this is (0-based): with an effective weight below the
    /// configured one, only the first points by replica count (see [`Ring::point_active`]).
    replica: u32,
}

/// `hash_type = "consistent"`: points sorted by hash, built once from the configured weights.
/// A key belongs to the first point clockwise from it (hash ≥ key, wrapping) whose server is
/// eligible, so a server that leaves hands only its own keys to the next points.
#[derive(Clone)]
struct Ring {
    /// Sorted by `hash`.
    points: Box<[RingPoint]>,
    /// Configured weight of each server: the weight its points were placed for.
    weights: Box<[u32]>,
    /// Number of points placed for each server (0 for a configured weight of 0).
    placed: Box<[u32]>,
}

impl fmt::Debug for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("points", &self.points.len())
            .field("placed", &self.placed)
            .finish()
    }
}

impl Ring {
    fn new(weights: &[u32]) -> Ring {
        let g = weights.iter().fold(0, |g, &w| gcd(g, w));
        let units: u64 = weights
            .iter()
            .map(|&w| u64::from(w.checked_div(g).unwrap_or(0)))
            .sum();
        let per_unit = (RING_POINTS_MAX / units.max(1)).clamp(1, u64::from(RING_POINTS_PER_WEIGHT));
        let placed: Box<[u32]> = weights
            .iter()
            .map(|&w| (u64::from(w.checked_div(g).unwrap_or(0)) * per_unit) as u32)
            .collect();
        let mut points = Vec::with_capacity(placed.iter().map(|&p| p as usize).sum());
        for (server, &count) in placed.iter().enumerate() {
            for replica in 0..count {
                points.push(RingPoint {
                    hash: fmix64((server as u64) << 32 | u64::from(replica)),
                    server: server as u32,
                    replica,
                });
            }
        }
        points.sort_unstable_by_key(|p| p.hash);
        Ring {
            points: points.into_boxed_slice(),
            weights: weights.into(),
            placed,
        }
    }

    /// A point counts when its server is eligible and the point is among the first
    /// `placed * effective / configured` of the server's points: lowering a server's
    /// effective weight (slow start) takes points away from it alone, exactly as a ring
    /// built for that weight would, without rebuilding anything. A server with an effective
    /// weight above 0 always keeps its replica 0.
    fn point_active(&self, p: &RingPoint, candidates: &[Candidate]) -> bool {
        let s = p.server as usize;
        u64::from(p.replica) * u64::from(self.weights[s])
            < u64::from(self.placed[s]) * u64::from(candidates[s].weight)
    }

    /// The server of the first active point clockwise from `key`; `None` when no eligible
    /// server has a point (the caller falls back to round robin).
    fn lookup(
        &self,
        candidates: &[Candidate],
        eligible: &impl Fn(usize) -> bool,
        key: u64,
    ) -> Option<usize> {
        // One scan of the servers first, so that the walk below is known to stop early.
        let any = (0..candidates.len()).any(|i| eligible(i) && self.placed[i] > 0);
        if !any {
            return None;
        }
        let start = self.points.partition_point(|p| p.hash < key);
        let (before, after) = self.points.split_at(start);
        after
            .iter()
            .chain(before)
            .find(|p| eligible(p.server as usize) && self.point_active(p, candidates))
            .map(|p| p.server as usize)
    }
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The algorithm with the state that only it needs.
#[derive(Debug, Clone)]
enum Algorithm {
    RoundRobin,
    LeastConn,
    /// Power of two choices.
    Random,
    /// Hashing, `hash_type = "map-based"`.
    MapBased,
    /// Hashing, `hash_type = "consistent"`.
    Consistent(Ring),
}

/// Per-shard, per-backend balancing state.
#[derive(Debug, Clone)]
pub struct Balancer {
    /// What `pick` does.
    algorithm: Algorithm,
    /// Smooth weighted round robin: the running "current weight" of each server. Also the
    /// state of the hashing algorithms when a request has no key.
    current: Vec<i64>,
    /// Where leastconn starts scanning, so that ties rotate instead of piling on server 0.
    cursor: usize,
    /// The draws of `random`; seeded per shard so that shards do not draw in lockstep.
    rng: SplitMix64,
}

impl Balancer {
    /// A balancer for servers with the configured `weights` (one per server, in config
    /// order). `hash_type` matters only for `source`, `uri` and `hdr(...)`; `seed` only for
    /// `random` (give each shard its own).
    pub fn new(algorithm: &Balance, hash_type: HashType, weights: &[u32], seed: u64) -> Self {
        let algorithm = match algorithm {
            Balance::RoundRobin => Algorithm::RoundRobin,
            Balance::LeastConn => Algorithm::LeastConn,
            Balance::Random => Algorithm::Random,
            Balance::Source | Balance::Uri | Balance::Header { .. } => match hash_type {
                HashType::MapBased => Algorithm::MapBased,
                HashType::Consistent => Algorithm::Consistent(Ring::new(weights)),
            },
        };
        Balancer {
            algorithm,
            current: vec![0; weights.len()],
            cursor: 0,
            rng: SplitMix64 { state: seed },
        }
    }

    /// Picks an eligible server among `candidates` (same order and length as the weights
    /// given to [`Balancer::new`]); `excluded(i)` rules server `i` out. `key` is the hash of
    /// the request's key ([`hash_key`], [`hash_ip`]) for `source`, `uri` and `hdr(...)`, which
    /// balance round robin when it is `None`; the other algorithms ignore it.
    pub fn pick(
        &mut self,
        candidates: &[Candidate],
        excluded: impl Fn(usize) -> bool,
        key: Option<u64>,
    ) -> Option<usize> {
        debug_assert_eq!(candidates.len(), self.current.len());
        let eligible = |i: usize| candidates[i].has_room() && !excluded(i);
        match (&self.algorithm, key) {
            (Algorithm::RoundRobin, _) | (Algorithm::MapBased | Algorithm::Consistent(_), None) => {
                pick_round_robin(&mut self.current, candidates, &eligible)
            }
            (Algorithm::LeastConn, _) => {
                let chosen = pick_least_conn(self.cursor, candidates, &eligible)?;
                self.cursor = (chosen + 1) % candidates.len();
                Some(chosen)
            }
            (Algorithm::Random, _) => pick_random(&mut self.rng, candidates, &eligible),
            (Algorithm::MapBased, Some(key)) => pick_map_based(candidates, &eligible, key),
            (Algorithm::Consistent(ring), Some(key)) => ring
                .lookup(candidates, &eligible, key)
                // Only when no eligible server has ring points (configured weight 0 but an
                // effective weight above it): round robin keeps `None` for "none eligible".
                .or_else(|| pick_round_robin(&mut self.current, candidates, &eligible)),
        }
    }
}

/// nginx's smooth weighted round robin: every eligible server gains its weight, the highest
/// is picked and loses the total. Over `sum(weights)` picks each server is chosen exactly
/// `weight` times, interleaved.
fn pick_round_robin(
    current: &mut [i64],
    candidates: &[Candidate],
    eligible: &impl Fn(usize) -> bool,
) -> Option<usize> {
    let mut total: i64 = 0;
    let mut best: Option<usize> = None;
    for (i, c) in candidates.iter().enumerate() {
        if !eligible(i) {
            continue;
        }
        current[i] += i64::from(c.weight);
        total += i64::from(c.weight);
        if best.is_none_or(|b| current[i] > current[b]) {
            best = Some(i);
        }
    }
    let chosen = best?;
    current[chosen] -= total;
    Some(chosen)
}

/// Fewest active sessions per unit of weight; ties go to the first server at or after
/// `cursor`.
fn pick_least_conn(
    cursor: usize,
    candidates: &[Candidate],
    eligible: &impl Fn(usize) -> bool,
) -> Option<usize> {
    let n = candidates.len();
    let mut best: Option<usize> = None;
    for k in 0..n {
        let i = (cursor + k) % n;
        if eligible(i) && best.is_none_or(|b| candidates[i].lighter_than(&candidates[b])) {
            best = Some(i);
        }
    }
    best
}

/// Power of two choices: two distinct eligible servers drawn with probability proportional to
/// their weight; the second wins only if it has fewer active sessions per unit of weight, so
/// that among equally loaded servers picks follow the weights exactly. Close to leastconn's
/// balance, without every shard's new sessions rushing to the same idle server.
fn pick_random(
    rng: &mut SplitMix64,
    candidates: &[Candidate],
    eligible: &impl Fn(usize) -> bool,
) -> Option<usize> {
    let total = eligible_weight(candidates, eligible);
    if total == 0 {
        return None;
    }
    let first = nth_by_weight(candidates, eligible, rng.below(total))?;
    let rest = total - u64::from(candidates[first].weight);
    if rest == 0 {
        return Some(first);
    }
    let others = |i: usize| i != first && eligible(i);
    let second = nth_by_weight(candidates, &others, rng.below(rest))?;
    if candidates[second].lighter_than(&candidates[first]) {
        Some(second)
    } else {
        Some(first)
    }
}

/// Map-based hashing: `key` modulo the total weight of the eligible servers, indexing the
/// table in which each eligible server appears `weight` times in config order. Even and
/// cheap, but any change of the eligible set or of a weight changes the modulus and remaps
/// most keys (the documented tradeoff against `consistent`).
fn pick_map_based(
    candidates: &[Candidate],
    eligible: &impl Fn(usize) -> bool,
    key: u64,
) -> Option<usize> {
    let total = eligible_weight(candidates, eligible);
    if total == 0 {
        return None;
    }
    nth_by_weight(candidates, eligible, key % total)
}

/// Sum of the weights of the eligible servers.
fn eligible_weight(candidates: &[Candidate], eligible: &impl Fn(usize) -> bool) -> u64 {
    candidates
        .iter()
        .enumerate()
        .filter(|&(i, _)| eligible(i))
        .map(|(_, c)| u64::from(c.weight))
        .sum()
}

/// The eligible server holding slot `slot` of the weight-expanded table (each eligible server
/// `weight` slots, in order); `None` if `slot` is past the total.
fn nth_by_weight(
    candidates: &[Candidate],
    eligible: &impl Fn(usize) -> bool,
    mut slot: u64,
) -> Option<usize> {
    for (i, c) in candidates.iter().enumerate() {
        if !eligible(i) {
            continue;
        }
        let w = u64::from(c.weight);
        if slot < w {
            return Some(i);
        }
        slot -= w;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// Number of picks, and of distinct keys, behind every distribution assertion.
    const PICKS: usize = 10_000;

    fn cand(weight: u32) -> Candidate {
        Candidate {
            weight,
            active: 0,
            limit: None,
        }
    }

    fn cands(weights: &[u32]) -> Vec<Candidate> {
        weights.iter().map(|&w| cand(w)).collect()
    }

    fn no_exclusion(_: usize) -> bool {
        false
    }

    /// Round robin and leastconn ignore hash type and seed.
    fn balancer(algorithm: Balance, weights: &[u32]) -> Balancer {
        Balancer::new(&algorithm, HashType::MapBased, weights, 0)
    }

    fn hashing(hash_type: HashType, weights: &[u32]) -> Balancer {
        Balancer::new(&Balance::Uri, hash_type, weights, 0)
    }

    /// `PICKS` distinct keys, hashed as the session would hash request paths.
    fn keys() -> Vec<u64> {
        (0..PICKS)
            .map(|k| hash_key(format!("/item/{k}?page=1").as_bytes()))
            .collect()
    }

    /// Share of each server over `picks`, in percent.
    fn shares(picks: &[usize], servers: usize) -> Vec<f64> {
        let mut counts = vec![0usize; servers];
        for &p in picks {
            counts[p] += 1;
        }
        counts
            .iter()
            .map(|&c| 100.0 * c as f64 / picks.len() as f64)
            .collect()
    }

    #[track_caller]
    fn assert_shares(got: &[f64], want: &[f64], tolerance_percent: f64) {
        for (g, w) in got.iter().zip(want) {
            assert!(
                (g - w).abs() <= tolerance_percent,
                "shares {got:.2?}, want {want:?} ± {tolerance_percent}"
            );
        }
    }

    /// Where each key goes with `candidates`, excluding `excluded`.
    fn assign(
        b: &mut Balancer,
        candidates: &[Candidate],
        excluded: Option<usize>,
        keys: &[u64],
    ) -> Vec<usize> {
        keys.iter()
            .map(|&k| {
                b.pick(candidates, |i| Some(i) == excluded, Some(k))
                    .expect("an eligible server")
            })
            .collect()
    }

    // ------------------------------------------------------------ round robin, leastconn

    #[test]
    fn round_robin_follows_weights_interleaved() {
        let servers = cands(&[5, 1, 1]);
        let mut b = balancer(Balance::RoundRobin, &[5, 1, 1]);
        let picks: Vec<usize> = (0..7)
            .map(|_| b.pick(&servers, no_exclusion, None).unwrap())
            .collect();
        // nginx's documented sequence for weights 5,1,1.
        assert_eq!(picks, vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn round_robin_distribution_is_exact() {
        let servers = cands(&[1, 1, 0, 2]);
        let mut b = balancer(Balance::RoundRobin, &[1, 1, 0, 2]);
        let mut counts = [0u32; 4];
        for _ in 0..PICKS {
            counts[b.pick(&servers, no_exclusion, None).unwrap()] += 1;
        }
        assert_eq!(counts, [2500, 2500, 0, 5000]);
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
        let mut b = balancer(Balance::RoundRobin, &[1, 1, 1]);
        for _ in 0..10 {
            let p = b.pick(&servers, |i| i == 1, None).unwrap();
            assert_eq!(p, 2, "server 0 is full and server 1 excluded");
        }
        assert_eq!(b.pick(&servers, |i| i != 0, None), None);
    }

    #[test]
    fn least_conn_prefers_idle_and_rotates_ties() {
        let mut servers = cands(&[1, 1, 1]);
        let mut b = balancer(Balance::LeastConn, &[1, 1, 1]);
        let mut seen = Vec::new();
        for _ in 0..3 {
            let p = b.pick(&servers, no_exclusion, None).unwrap();
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
        assert_eq!(b.pick(&servers, no_exclusion, None), Some(1));
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
        let mut b = balancer(Balance::LeastConn, &[4, 1]);
        assert_eq!(b.pick(&servers, no_exclusion, None), Some(0), "3/4 < 1/1");
    }

    // ------------------------------------------------------------ random (power of two choices)

    #[test]
    fn random_distribution_follows_weights() {
        let servers = cands(&[1, 1, 2]);
        let mut b = Balancer::new(&Balance::Random, HashType::MapBased, &[1, 1, 2], 7);
        let picks: Vec<usize> = (0..PICKS)
            .map(|_| b.pick(&servers, no_exclusion, None).unwrap())
            .collect();
        assert_shares(&shares(&picks, 3), &[25.0, 25.0, 50.0], 3.0);
    }

    #[test]
    fn random_prefers_the_less_loaded_of_two() {
        // Two servers: both are always drawn, the idle one always wins.
        let mut servers = cands(&[1, 1]);
        servers[0].active = 5;
        let mut b = Balancer::new(&Balance::Random, HashType::MapBased, &[1, 1], 1);
        for _ in 0..1000 {
            assert_eq!(b.pick(&servers, no_exclusion, None), Some(1));
        }
        // Load is per unit of weight: 3 sessions on weight 4 are lighter than 1 on weight 1.
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
        let mut b = Balancer::new(&Balance::Random, HashType::MapBased, &[4, 1], 2);
        for _ in 0..1000 {
            assert_eq!(b.pick(&servers, no_exclusion, None), Some(0));
        }
        // Three servers, the middle one idle: it wins whenever drawn (2 draws of 3 servers:
        // probability 2/3), the two loaded ones split the rest. Not leastconn: it is not
        // picked every time.
        let mut servers = cands(&[1, 1, 1]);
        servers[0].active = 10;
        servers[2].active = 10;
        let mut b = Balancer::new(&Balance::Random, HashType::MapBased, &[1, 1, 1], 3);
        let picks: Vec<usize> = (0..PICKS)
            .map(|_| b.pick(&servers, no_exclusion, None).unwrap())
            .collect();
        assert_shares(&shares(&picks, 3), &[16.67, 66.67, 16.67], 3.0);
    }

    #[test]
    fn random_never_picks_excluded_or_full_servers() {
        let servers = [
            Candidate {
                weight: 1,
                active: 3,
                limit: Some(3),
            },
            cand(1),
            cand(0),
            cand(1),
            cand(1),
        ];
        let mut b = Balancer::new(&Balance::Random, HashType::MapBased, &[1, 1, 1, 1, 1], 4);
        let mut seen = [0u32; 5];
        for _ in 0..PICKS {
            seen[b.pick(&servers, |i| i == 3, None).unwrap()] += 1;
        }
        assert_eq!(seen[0], 0, "full");
        assert_eq!(seen[2], 0, "weight 0");
        assert_eq!(seen[3], 0, "excluded");
        assert_eq!(seen[1] + seen[4], PICKS as u32);
        assert!(seen[1] > 4000 && seen[4] > 4000, "{seen:?}");
        // Only one eligible server: it is picked; none: no pick.
        assert_eq!(b.pick(&servers, |i| i != 4, None), Some(4));
        assert_eq!(b.pick(&servers, |i| i == 1 || i == 3 || i == 4, None), None);
        assert_eq!(b.pick(&cands(&[0, 0, 0, 0, 0]), no_exclusion, None), None);
    }

    #[test]
    fn random_draws_depend_on_the_seed() {
        let servers = cands(&[1; 8]);
        let draws = |seed| {
            let mut b = Balancer::new(&Balance::Random, HashType::MapBased, &[1; 8], seed);
            (0..64)
                .map(|_| b.pick(&servers, no_exclusion, None).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(draws(1), draws(1), "reproducible");
        assert_ne!(draws(0), draws(1), "shards do not draw in lockstep");
    }

    // ------------------------------------------------------------ hashing

    #[test]
    fn hash_key_is_fnv1a_with_fmix64() {
        // Reference values computed independently (Python); a change here moves every
        // sticky client after an upgrade, so it must be deliberate.
        assert_eq!(hash_key(b""), 0xefd0_1f60_ba99_2926);
        assert_eq!(hash_key(b"/index.html"), 0x43f3_e2a1_af9f_1352);
        assert_eq!(
            hash_ip(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
            0x8039_3182_6a22_88ea
        );
        // The finaliser matters for `key % total`: the low bit of raw FNV-1a is the parity
        // of the bytes' low bits, here it is even over sequential keys.
        let odd = keys().iter().filter(|&&k| k & 1 == 1).count();
        assert!((4700..=5300).contains(&odd), "{odd} odd of {PICKS}");
    }

    #[test]
    fn hash_ip_treats_v4_mapped_v6_as_v4() {
        let v4 = Ipv4Addr::new(203, 0, 113, 9);
        assert_eq!(
            hash_ip(IpAddr::V6(v4.to_ipv6_mapped())),
            hash_ip(IpAddr::V4(v4))
        );
        assert_ne!(
            hash_ip(IpAddr::V4(v4)),
            hash_ip(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10)))
        );
        assert_ne!(
            hash_ip(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            hash_ip(IpAddr::V4(Ipv4Addr::LOCALHOST))
        );
    }

    #[test]
    fn hashing_distribution_follows_weights() {
        // Map-based is as even as the hash (binomial: about ±0.5 %); a ring of 100 points
        // per unit of weight gives each server a share off by up to ~1/sqrt(100) of itself.
        let weights = [1, 1, 2];
        for (hash_type, tolerance) in [(HashType::MapBased, 3.0), (HashType::Consistent, 5.0)] {
            let mut b = hashing(hash_type, &weights);
            let picks = assign(&mut b, &cands(&weights), None, &keys());
            assert_shares(&shares(&picks, 3), &[25.0, 25.0, 50.0], tolerance);
        }
        let weights = [1; 5];
        for (hash_type, tolerance) in [(HashType::MapBased, 3.0), (HashType::Consistent, 5.0)] {
            let mut b = hashing(hash_type, &weights);
            let picks = assign(&mut b, &cands(&weights), None, &keys());
            assert_shares(&shares(&picks, 5), &[20.0; 5], tolerance);
        }
    }

    #[test]
    fn hashing_is_stable_across_picks_and_shards() {
        let weights = [3, 1, 2, 2];
        let servers = cands(&weights);
        let keys = keys();
        for hash_type in [HashType::MapBased, HashType::Consistent] {
            let mut one = Balancer::new(&Balance::Source, hash_type, &weights, 1);
            let mut other = Balancer::new(&Balance::Source, hash_type, &weights, 99);
            let first = assign(&mut one, &servers, None, &keys);
            // Interleaved with round-robin fallbacks and in reverse order on another shard.
            for (i, &k) in keys.iter().enumerate().rev() {
                assert!(other.pick(&servers, no_exclusion, None).is_some());
                assert_eq!(
                    other.pick(&servers, no_exclusion, Some(k)),
                    Some(first[i]),
                    "{hash_type:?}"
                );
            }
            assert_eq!(
                assign(&mut one, &servers, None, &keys),
                first,
                "{hash_type:?}"
            );
            assert_eq!(shares(&first, 4).iter().filter(|&&s| s == 0.0).count(), 0);
        }
    }

    #[test]
    fn hashing_without_a_key_falls_back_to_round_robin() {
        let header = Balance::Header {
            name: "x-user".into(),
        };
        let servers = cands(&[5, 1, 1]);
        for algorithm in [Balance::Source, Balance::Uri, header] {
            for hash_type in [HashType::MapBased, HashType::Consistent] {
                let mut b = Balancer::new(&algorithm, hash_type, &[5, 1, 1], 0);
                let picks: Vec<usize> = (0..7)
                    .map(|_| b.pick(&servers, no_exclusion, None).unwrap())
                    .collect();
                assert_eq!(
                    picks,
                    vec![0, 0, 1, 0, 2, 0, 0],
                    "{algorithm} {hash_type:?}"
                );
            }
        }
    }

    /// The ways a server can leave: excluded by the caller, weight 0 (down, drained), full.
    fn leave(servers: &mut [Candidate], j: usize, how: usize) -> Option<usize> {
        match how {
            0 => return Some(j),
            1 => servers[j].weight = 0,
            _ => servers[j].limit = Some(servers[j].active),
        }
        None
    }

    #[test]
    fn consistent_moves_only_the_leaving_servers_keys() {
        let keys = keys();
        for n in [3usize, 4, 5, 8] {
            let weights = vec![1; n];
            let mut b = hashing(HashType::Consistent, &weights);
            let before = assign(&mut b, &cands(&weights), None, &keys);
            let bound = PICKS * (100 / n + 5) / 100;
            for j in 0..n {
                for how in 0..3 {
                    let mut servers = cands(&weights);
                    let excluded = leave(&mut servers, j, how);
                    let after = assign(&mut b, &servers, excluded, &keys);
                    let mut moved = 0;
                    for (k, (&was, &is)) in before.iter().zip(&after).enumerate() {
                        if was != is {
                            moved += 1;
                            assert_eq!(was, j, "n={n} key {k} moved from a server that stayed");
                        }
                        assert_ne!(is, j, "n={n}: server {j} left");
                    }
                    assert!(moved <= bound, "n={n} j={j}: {moved} moved, bound {bound}");
                    assert!(moved > 0, "n={n} j={j}: the leaving server had keys");
                }
                // Back in: every key returns.
                assert_eq!(assign(&mut b, &cands(&weights), None, &keys), before);
            }
        }
    }

    /// Documents the tradeoff of map-based hashing: one server leaving remaps most keys,
    /// well past what consistent hashing moves.
    #[test]
    fn map_based_moves_more_keys_than_consistent() {
        let keys = keys();
        let moved = |hash_type, n: usize, j: usize| {
            let weights = vec![1; n];
            let mut b = hashing(hash_type, &weights);
            let before = assign(&mut b, &cands(&weights), None, &keys);
            let after = assign(&mut b, &cands(&weights), Some(j), &keys);
            before.iter().zip(&after).filter(|(a, b)| a != b).count()
        };
        for n in [3usize, 4, 5, 8] {
            let bound = PICKS * (100 / n + 5) / 100;
            for j in [0, n / 2, n - 1] {
                let map = moved(HashType::MapBased, n, j);
                let consistent = moved(HashType::Consistent, n, j);
                assert!(
                    map > bound && map > consistent,
                    "n={n} j={j}: map-based moved {map}, consistent {consistent}, bound {bound}"
                );
            }
        }
    }

    #[test]
    fn consistent_lower_effective_weight_moves_only_that_servers_keys() {
        let weights = [2, 2, 2, 2];
        let keys = keys();
        let mut b = hashing(HashType::Consistent, &weights);
        let before = assign(&mut b, &cands(&weights), None, &keys);
        // Slow start: server 1 at half weight holds about half its share (1/7 of the keys).
        let after = assign(&mut b, &cands(&[2, 1, 2, 2]), None, &keys);
        for (k, (&was, &is)) in before.iter().zip(&after).enumerate() {
            assert!(was == is || was == 1, "key {k} moved from {was} to {is}");
        }
        let share = shares(&after, 4)[1];
        assert!((100.0 / 7.0 - share).abs() <= 5.0, "share {share:.2} %");
        assert!(shares(&before, 4)[1] - share > 5.0, "it lost keys");
    }

    #[test]
    fn map_based_uses_the_eligible_set() {
        let servers = cands(&[1, 1, 1]);
        let mut b = hashing(HashType::MapBased, &[1, 1, 1]);
        // key % 3 picks the server; with server 1 excluded, key % 2 over (0, 2).
        assert_eq!(b.pick(&servers, no_exclusion, Some(7)), Some(1));
        assert_eq!(b.pick(&servers, |i| i == 1, Some(7)), Some(2));
        assert_eq!(b.pick(&servers, |i| i == 1, Some(6)), Some(0));
        assert_eq!(b.pick(&servers, |_| true, Some(6)), None);
    }

    // ------------------------------------------------------------ every algorithm

    fn every_algorithm(weights: &[u32], seed: u64) -> Vec<Balancer> {
        let mut all = vec![
            Balancer::new(&Balance::RoundRobin, HashType::MapBased, weights, seed),
            Balancer::new(&Balance::LeastConn, HashType::MapBased, weights, seed),
            Balancer::new(&Balance::Random, HashType::MapBased, weights, seed),
        ];
        for hash_type in [HashType::MapBased, HashType::Consistent] {
            all.push(Balancer::new(&Balance::Source, hash_type, weights, seed));
        }
        all
    }

    proptest! {
        /// Whatever the servers, exclusions and keys, every algorithm picks only eligible
        /// servers, and picks one whenever one is eligible. Effective weights are drawn
        /// independently of the configured ones, so an effective weight above a configured
        /// 0 (no ring points) is covered too.
        #[test]
        fn pick_returns_an_eligible_server_iff_one_exists(
            servers in prop::collection::vec(
                (0u32..4, 0u32..4, 0u32..3, prop::option::of(0u32..3), any::<bool>()),
                1..12,
            ),
            keys in prop::collection::vec(prop::option::of(any::<u64>()), 1..8),
            seed in any::<u64>(),
        ) {
            let weights: Vec<u32> = servers.iter().map(|s| s.0).collect();
            let excluded: Vec<bool> = servers.iter().map(|s| s.4).collect();
            for mut b in every_algorithm(&weights, seed) {
                let mut candidates: Vec<Candidate> = servers
                    .iter()
                    .map(|&(_, weight, active, limit, _)| Candidate { weight, active, limit })
                    .collect();
                for &key in &keys {
                    let eligible = |c: &[Candidate], i: usize| {
                        c[i].weight > 0
                            && c[i].limit.is_none_or(|l| c[i].active < l)
                            && !excluded[i]
                    };
                    let any = (0..candidates.len()).any(|i| eligible(&candidates, i));
                    match b.pick(&candidates, |i| excluded[i], key) {
                        Some(i) => {
                            prop_assert!(eligible(&candidates, i), "{b:?} picked {i}");
                            candidates[i].active += 1;
                        }
                        None => prop_assert!(!any, "{b:?} found none"),
                    }
                }
            }
        }
    }
}
